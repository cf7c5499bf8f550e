/** The managed block of a generated file: replaced on every sync, every byte around it kept. */
import { frame, withoutFinalNewline, yamlText } from '../core/templates.js';

export const BEGIN_MARKER = '# === MANAGED BY infra.yml ===';
export const END_MARKER = '# === END MANAGED ===';

/** The block for a set of variables, markers included, ending with a newline. */
export function managedBlock(vars: object): string {
  const [before, after] = frame('managed-block.yml.hbs', 'vars');
  return before + yamlText(vars) + after;
}

function lineStart(text: string, index: number): number {
  return text.lastIndexOf('\n', index - 1) + 1;
}

function lineEnd(text: string, index: number): number {
  const end = text.indexOf('\n', index);
  return end < 0 ? text.length : end + 1;
}

/** Where the block lies in a file (from the start of its first marker's line to the end of its last's), if it has one. */
export function blockSpan(text: string): { start: number; end: number } | undefined {
  const begin = text.indexOf(BEGIN_MARKER);
  const end = begin < 0 ? -1 : text.indexOf(END_MARKER, begin);
  return begin >= 0 && end >= 0 ? { start: lineStart(text, begin), end: lineEnd(text, end) } : undefined;
}

/**
 * The file's new content. A new file gets the standard layout; a file with markers has only its
 * block replaced; a file without markers gets the block inserted at the top, after `---`.
 */
export function mergeManaged(existing: string | undefined, block: string): string {
  if (existing === undefined) {
    const [before, after] = frame('new-file.yml.hbs', 'block');
    return before + withoutFinalNewline(block) + after;
  }
  const span = blockSpan(existing);
  if (span) return existing.slice(0, span.start) + block + existing.slice(span.end);
  const header = /^---[ \t]*(\r?\n|$)/.exec(existing);
  if (header) {
    const rest = existing.slice(header[0].length);
    return `${header[0].endsWith('\n') ? header[0] : header[0] + '\n'}${block}${rest.length ? '\n' + rest : ''}`;
  }
  return `---\n${block}${existing.length ? '\n' + existing : ''}`;
}

const PROBE = `${BEGIN_MARKER}\n${END_MARKER}\n`;

/**
 * Whether a file holds bytes of the user's (anything besides the managed block and the standard
 * layout around it): such a file cannot be regenerated, so it is rewritten durably.
 */
export function holdsUserBytes(existing: string): boolean {
  return mergeManaged(existing, PROBE) !== mergeManaged(undefined, PROBE);
}
