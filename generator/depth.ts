/**
 * How deeply a YAML text nests, measured in one pass without parsing. Both YAML readers recurse once
 * per level: near a thousand levels they exhaust the stack, and depending on what V8 is compiling
 * at that moment the process can abort (a fatal "allocation failed") instead of throwing. A text
 * nested deeper than any infra file could be is refused before either reader sees it.
 */

/** Levels of `[ ]` / `{ }`. An infra file uses two or three. */
export const MAX_FLOW_DEPTH = 64;
/** Columns of indentation, `- ` sequence indicators included. An infra file uses a dozen or two. */
export const MAX_INDENT = 256;

export interface DepthProblem {
  /** Offset of the character that went too deep. */
  offset: number;
  message: string;
}

const SPACE = 0x20;
const TAB = 0x09;
const NEWLINE = 0x0a;
const RETURN = 0x0d;
const DASH = 0x2d;

function isBlank(code: number): boolean {
  return code === SPACE || code === TAB || code === NEWLINE || code === RETURN;
}

/** The end of the quoted scalar that starts at `start` (the offset after its closing quote). */
function skipQuoted(text: string, start: number): number {
  const quote = text[start];
  let i = start + 1;
  while (i < text.length) {
    const c = text[i];
    if (quote === '"' && c === '\\') i += 2;
    else if (c === quote && quote === "'" && text[i + 1] === "'") i += 2;
    else if (c === quote) return i + 1;
    else i++;
  }
  return i;
}

/** In block context a bracket opens a flow collection only where a value starts. */
function startsValue(text: string, i: number, lineStart: number): boolean {
  let j = i - 1;
  while (j >= lineStart && text.charCodeAt(j) === SPACE) j--;
  return j < lineStart || text[j] === ':' || text[j] === '-';
}

/** Indentation of the line at `start`, `- ` sequence indicators included, counted up to `limit`. */
function indentOf(text: string, start: number, limit: number): number {
  let i = start;
  while (i - start <= limit) {
    const code = text.charCodeAt(i);
    if (code === SPACE) i++;
    else if (code === DASH && (text.charCodeAt(i + 1) === SPACE || i + 1 === text.length || text.charCodeAt(i + 1) === NEWLINE)) i += 2;
    else break;
  }
  return i - start;
}

/** The characters that can change the depth; everything between them is skipped by one search. */
const SIGNIFICANT = /[\n#"'[\]{}]/g;

export function depthProblem(text: string): DepthProblem | undefined {
  let flow = 0;
  let lineStart = 0;
  const tooIndented = (start: number) =>
    flow === 0 && indentOf(text, start, MAX_INDENT) > MAX_INDENT
      ? { offset: start + MAX_INDENT, message: `the document is indented too deeply (past column ${MAX_INDENT}); an infra file nests a few levels` }
      : undefined;
  const first = tooIndented(0);
  if (first) return first;
  const next = new RegExp(SIGNIFICANT);
  let match: RegExpExecArray | null;
  while ((match = next.exec(text))) {
    const i = match.index;
    const c = text[i];
    const afterBlank = i === 0 || isBlank(text.charCodeAt(i - 1));
    if (c === '\n') {
      lineStart = i + 1;
      const deep = tooIndented(lineStart);
      if (deep) return deep;
    } else if (c === '#') {
      // A comment runs to the end of its line; the newline itself still counts.
      const end = text.indexOf('\n', i);
      if (afterBlank) next.lastIndex = end < 0 ? text.length : end;
    } else if (c === '"' || c === "'") {
      if (afterBlank || (flow > 0 && '[{,:'.includes(text[i - 1]))) next.lastIndex = skipQuoted(text, i);
    } else if (c === '[' || c === '{') {
      if ((flow > 0 || startsValue(text, i, lineStart)) && ++flow > MAX_FLOW_DEPTH) {
        return { offset: i, message: `the document nests too deeply (more than ${MAX_FLOW_DEPTH} levels of [ ] or { }); an infra file nests a few levels` };
      }
    } else if (flow > 0) {
      flow--;
    }
  }
  return undefined;
}
