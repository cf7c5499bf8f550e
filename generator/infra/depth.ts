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
const QUESTION = 0x3f;
/** A byte order mark: YAML allows one before a document, where it is no content. */
const BOM = 0xfeff;
/** Longest anchor or tag looked back over. */
const MAX_TOKEN = 128;

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

function isBlankAt(text: string, i: number): boolean {
  return i < 0 || i >= text.length || isBlank(text.charCodeAt(i));
}

/**
 * Whether offset `i` starts a value in block context: only there does a bracket open a flow
 * collection, or a quote a quoted scalar (`rock 'n roll` holds no quoted string). Looks back on the
 * line over blanks, anchors and tags, to a line start or a `:`, `-` or `?` indicator.
 */
function startsValue(text: string, i: number, lineStart: number): boolean {
  let j = i - 1;
  for (;;) {
    while (j >= lineStart && (text.charCodeAt(j) === SPACE || text.charCodeAt(j) === TAB || text.charCodeAt(j) === BOM)) j--;
    if (j < lineStart) return true;
    const c = text[j];
    if (c === ':' || ((c === '-' || c === '?') && isBlankAt(text, j - 1))) return true;
    // `--- [`: a document's content may start on the line of its marker.
    if (c === '-' && isBlankAt(text, j + 1) && j - 2 === (text.charCodeAt(lineStart) === BOM ? lineStart + 1 : lineStart) && text.startsWith('---', j - 2)) return true;
    // An anchor or a tag before the value: step over it (they are short; a longer token is not one,
    // and the bound keeps a long line of brackets from being rescanned for each bracket).
    let tokenStart = j;
    while (tokenStart > lineStart && j - tokenStart < MAX_TOKEN && !isBlankAt(text, tokenStart - 1)) tokenStart--;
    if (!isBlankAt(text, tokenStart - 1) && tokenStart > lineStart) return false;
    if (text[tokenStart] !== '&' && text[tokenStart] !== '!') return false;
    j = tokenStart - 1;
  }
}

/**
 * Indentation of the line at `start`, `- ` and `? ` indicators included (`- - - x` nests three
 * sequences on one line), counted up to `limit`; 0 for a line with only spaces, or spaces and a
 * comment.
 */
function indentOf(text: string, start: number, limit: number): number {
  let i = start;
  while (i - start <= limit) {
    const code = text.charCodeAt(i);
    if (code === SPACE) i++;
    else if ((code === DASH || code === QUESTION) && isBlankAt(text, i + 1)) i += 2;
    else break;
  }
  if (i - start <= limit) return i - start;
  // `- - - # note` nests as deeply as `- - - x`: only spaces before nothing or a comment count 0.
  const indicators = /[-?]/.test(text.slice(start, i));
  while (text.charCodeAt(i) === SPACE || text.charCodeAt(i) === TAB) i++;
  return !indicators && (i >= text.length || text[i] === '\n' || text[i] === '\r' || text[i] === '#') ? 0 : i - start;
}

/** The characters that can change the depth; everything between them is skipped by one search. */
const SIGNIFICANT = /[\n#"'[\]{}]/g;

/** A bracket: only a flow collection can nest on one line. */
const FLOW_OPEN = /[[{]/;
/**
 * A line whose first characters could all be indentation past MAX_INDENT: spaces, and `-` or `?`
 * with the blank after them, which indentOf counts even when it is a line break.
 */
const DEEP_LINE = new RegExp(`^[ \\t\\n\\r?-]{${MAX_INDENT + 1}}`, 'm');

export function depthProblem(text: string): DepthProblem | undefined {
  // Most infra files have no bracket and no line indented anywhere near the limit: two searches
  // say so (3 ms on a 1.3 MB infra), and the scan below (10 ms) is not needed.
  if (!FLOW_OPEN.test(text) && !DEEP_LINE.test(text)) return undefined;
  return scanDepth(text);
}

/** The scan itself: every bracket, quote, comment and line start, in one pass. */
export function scanDepth(text: string): DepthProblem | undefined {
  let flow = 0;
  let lineStart = 0;
  // Indentation past MAX_INDENT needs an indentation character at MAX_INDENT: most lines are ruled
  // out by that one look.
  const tooIndented = (start: number) =>
    flow === 0 && ' -?'.includes(text[start + MAX_INDENT] ?? 'x') && indentOf(text, start, MAX_INDENT) > MAX_INDENT
      ? { offset: start + MAX_INDENT, message: `the document is indented too deeply (past column ${MAX_INDENT}); an infra file nests a few levels` }
      : undefined;
  const first = tooIndented(0);
  if (first) return first;
  const next = new RegExp(SIGNIFICANT);
  // test, not exec: no match array for each of tens of thousands of stops; a match is one character.
  while (next.test(text)) {
    const i = next.lastIndex - 1;
    const c = text[i];
    if (c === '\n') {
      lineStart = i + 1;
      const deep = tooIndented(lineStart);
      if (deep) return deep;
    } else if (c === '#') {
      // A comment runs to the end of its line; the newline itself still counts.
      const end = text.indexOf('\n', i);
      if (isBlankAt(text, i - 1)) next.lastIndex = end < 0 ? text.length : end;
    } else if (c === '"' || c === "'") {
      const opens = flow > 0 ? isBlankAt(text, i - 1) || '[{,:'.includes(text[i - 1]) : startsValue(text, i, lineStart);
      if (opens) next.lastIndex = skipQuoted(text, i);
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
