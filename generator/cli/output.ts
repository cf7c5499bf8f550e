/** How results reach a person (plain text, stderr for problems) or a script (--json on stdout). */
import type { Diagnostic } from '../core/types.js';

export interface Streams {
  out: (text: string) => void;
  err: (text: string) => void;
  color: boolean;
}

export function defaultStreams(env: NodeJS.ProcessEnv = process.env, terminal = Boolean(process.stderr.isTTY)): Streams {
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
    // no-color.org: NO_COLOR set to anything but the empty string.
    color: terminal && !env.NO_COLOR && env.TERM !== 'dumb',
  };
}

const paint = (streams: Streams, code: number, text: string): string => (streams.color ? `\x1b[${code}m${text}\x1b[0m` : text);

export function where(d: Diagnostic): string {
  if (!d.file) return '';
  return d.line ? `${d.file}:${d.line}:${d.column ?? 1}: ` : `${d.file}: `;
}

export function printDiagnostics(streams: Streams, errors: Diagnostic[], warnings: Diagnostic[]): void {
  for (const w of warnings) streams.err(`${where(w)}${paint(streams, 33, 'WARNING:')} ${w.message}`);
  for (const e of errors) streams.err(`${where(e)}${paint(streams, 31, 'error:')} ${e.message}`);
}

/** The --json shape of a diagnostic: every documented key present, null when unknown. */
export function jsonError(d: Diagnostic): { message: string; file: string | null; line: number | null; column: number | null; path: string | null } {
  return { message: d.message, file: d.file ?? null, line: d.line ?? null, column: d.column ?? null, path: d.path ?? null };
}

export function jsonWarning(d: Diagnostic): { message: string } {
  return { message: d.message };
}

export function printJson(streams: Streams, value: unknown): void {
  streams.out(JSON.stringify(value, null, 2));
}
