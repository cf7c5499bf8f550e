/** How results reach a person (plain text, stderr for problems) or a script (--json on stdout). */
import { fstatSync, writeSync } from 'node:fs';
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

/** Whether a standard stream is a terminal: only a character device can be, so a pipe or a file never loads node:tty to say no. */
function isTerminal(fd: 1 | 2): boolean {
  try {
    return fstatSync(fd).isCharacterDevice() && process.getBuiltinModule('node:tty').isatty(fd);
  } catch {
    return false;
  }
}

/**
 * Text to a standard stream's descriptor, synchronously, as Node's own process.stdout and
 * process.stderr write on Linux to files, pipes and terminals alike, without building those
 * streams (the net, tty and stream modules: several ms of every command's start-up). A descriptor
 * the caller left non-blocking (EAGAIN) hands over to Node's stream, which waits for its reader.
 * A reader that stops reading (`| head`) does not make the command fail half-way: the rest of its
 * output is dropped and the work goes on (a switch must never stop between its steps).
 */
function descriptorWriter(fd: 1 | 2, stream: () => NodeJS.WriteStream): (text: string) => void {
  let handedOver = false;
  let readerGone = false;
  return (text) => {
    if (readerGone) return;
    if (handedOver) {
      stream().write(text);
      return;
    }
    const bytes = Buffer.from(text);
    let offset = 0;
    try {
      while (offset < bytes.length) offset += writeSync(fd, bytes, offset);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // EBADF: the stream was closed (`>&-`), as good as a reader gone.
      if (code === 'EPIPE' || code === 'EBADF') readerGone = true;
      else if (code === 'EAGAIN') {
        handedOver = true;
        stream().write(bytes.subarray(offset));
      } else throw err;
    }
  };
}

export function defaultStreams(env: NodeJS.ProcessEnv = process.env, stderr: { isTTY?: boolean } = { isTTY: isTerminal(2) }, stdout: { isTTY?: boolean } = { isTTY: isTerminal(1) }): Streams {
  const out = descriptorWriter(1, () => process.stdout);
  const err = descriptorWriter(2, () => process.stderr);
  return {
    out: (text) => out(text.endsWith('\n') ? text : text + '\n'),
    err: (text) => err(text.endsWith('\n') ? text : text + '\n'),
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
