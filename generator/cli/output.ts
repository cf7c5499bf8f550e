/** How results reach a person (plain text, stderr for problems) or a script (--json on stdout). */
import type { WriteStream } from 'node:tty';
import type { Diagnostic } from '../core/types.js';

export interface Streams {
  out: (text: string) => void;
  err: (text: string) => void;
  /** Whether stderr (messages, ansible's output) takes colours. */
  color: boolean;
  /** Whether stdout (results: the diffs of sync --diff) takes colours; absent: no. */
  outColor?: boolean;
}

/**
 * Whether a stream takes colours, by Node's own rule (hasColors(): FORCE_COLOR, NO_COLOR,
 * NODE_DISABLE_COLORS, TERM and the terminal's kind): a terminal may, a pipe or a file only under
 * FORCE_COLOR. An empty NO_COLOR asks for nothing (no-color.org), and under FORCE_COLOR NO_COLOR is
 * left out rather than ignored with a warning from Node.
 */
export function hasColors(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv): boolean {
  const forced = env.FORCE_COLOR !== undefined;
  if (!stream.isTTY && !forced) return false;
  const asked = { ...env };
  if (forced || asked.NO_COLOR === '') delete asked.NO_COLOR;
  if (forced) delete asked.NODE_DISABLE_COLORS;
  // node:tty (and node:net under it) is loaded only here: a command whose output goes to a pipe or
  // a file never needs it.
  const tty = process.getBuiltinModule('node:tty');
  return tty.WriteStream.prototype.hasColors.call(stream as WriteStream, 16, asked);
}

export function defaultStreams(env: NodeJS.ProcessEnv = process.env, stderr: { isTTY?: boolean } = process.stderr, stdout: { isTTY?: boolean } = process.stdout): Streams {
  // A reader that stops reading (`| head`) does not make the command fail half-way: the rest of
  // its output is dropped and the work goes on (a switch must never stop between its steps).
  let readerGone = false;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    readerGone = true;
  });
  return {
    out: (text) => void (readerGone || process.stdout.write(text.endsWith('\n') ? text : text + '\n')),
    err: (text) => process.stderr.write(text.endsWith('\n') ? text : text + '\n'),
    color: hasColors(stderr, env),
    outColor: hasColors(stdout, env),
  };
}

const sgr = (code: number, text: string): string => `\x1b[${code}m${text}\x1b[0m`;
const paint = (streams: Streams, code: number, text: string): string => (streams.color ? sgr(code, text) : text);

/**
 * A unified diff for stdout: its lines as they are, or on a terminal that takes colours, the file
 * names bold, `@@` lines cyan, removed lines red and added ones green (as `git diff` shows them).
 */
export function paintDiff(streams: Streams, diff: string): string {
  if (!streams.outColor) return diff;
  let header = true;
  return diff
    .split('\n')
    .map((line) => {
      if (line.startsWith('@@')) {
        header = false;
        return sgr(36, line);
      }
      if (line.startsWith('--- ') || line.startsWith('+++ ')) {
        // The two lines naming the file, before its first hunk (a removed line may start with `-- `).
        if (header) return sgr(1, line);
      }
      if (header || line === '') return line;
      if (line.startsWith('-')) return sgr(31, line);
      if (line.startsWith('+')) return sgr(32, line);
      return line;
    })
    .join('\n');
}

export function where(d: Diagnostic): string {
  if (!d.file) return '';
  return d.line ? `${d.file}:${d.line}:${d.column ?? 1}: ` : `${d.file}: `;
}

export function printDiagnostics(streams: Streams, errors: Diagnostic[], warnings: Diagnostic[]): void {
  for (const w of warnings) streams.err(`${where(w)}${paint(streams, 33, 'WARNING:')} ${w.message}`);
  for (const e of errors) streams.err(`${where(e)}${paint(streams, 31, 'error:')} ${e.message}`);
}

/** An error or a warning under --json: every documented key present, null when unknown. */
export interface JsonDiagnostic {
  message: string;
  file: string | null;
  line: number | null;
  column: number | null;
  path: string | null;
}

/** The --json shape of an error. */
export function jsonError(d: Diagnostic): JsonDiagnostic {
  return { message: d.message, file: d.file ?? null, line: d.line ?? null, column: d.column ?? null, path: d.path ?? null };
}

/** The --json shape of a warning: located like an error. */
export const jsonWarning = jsonError;

export function printJson(streams: Streams, value: unknown): void {
  streams.out(JSON.stringify(value, null, 2));
}
