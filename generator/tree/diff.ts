/**
 * Unified diffs of what a sync would change (`sync --diff`). Hand-written: the changes are small
 * (a managed block, a few ruleset lines), and a line LCS between the common head and tail is all
 * they need. Line numbers are the file's own, so the output applies with `patch -p0` in the base dir.
 */

import { blockSpan } from './managedBlock.js';

const CONTEXT = 3;
/** Beyond this many cells the LCS table costs more than it saves: the changed middle is shown as one replacement. */
const MAX_LCS_CELLS = 4_000_000;

type Edit = { kind: ' ' | '-' | '+'; line: string };

function splitLines(text: string): string[] {
  if (text === '') return [];
  const lines = text.split('\n');
  // A final newline ends the last line; it does not start another.
  if (lines[lines.length - 1] === '') lines.pop();
  else lines[lines.length - 1] += '\n\\ No newline at end of file';
  return lines;
}

function middleEdits(a: string[], b: string[]): Edit[] {
  if (a.length * b.length > MAX_LCS_CELLS) {
    return [...a.map((line) => ({ kind: '-' as const, line })), ...b.map((line) => ({ kind: '+' as const, line }))];
  }
  const width = b.length + 1;
  const lcs = new Uint32Array((a.length + 1) * width);
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i * width + j] = a[i] === b[j] ? lcs[(i + 1) * width + j + 1] + 1 : Math.max(lcs[(i + 1) * width + j], lcs[i * width + j + 1]);
    }
  }
  const edits: Edit[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) {
      edits.push({ kind: ' ', line: a[i++] });
      j++;
    } else if (i < a.length && (j === b.length || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1])) {
      // Removals first, as diff(1) writes them.
      edits.push({ kind: '-', line: a[i++] });
    } else {
      edits.push({ kind: '+', line: b[j++] });
    }
  }
  return edits;
}

function edits(a: string[], b: string[]): Edit[] {
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  return [
    ...a.slice(0, head).map((line) => ({ kind: ' ' as const, line })),
    ...middleEdits(a.slice(head, a.length - tail), b.slice(head, b.length - tail)),
    ...a.slice(a.length - tail).map((line) => ({ kind: ' ' as const, line })),
  ];
}

const range = (start: number, count: number): string => (count === 1 ? `${start}` : `${count === 0 ? start - 1 : start},${count}`);

export interface DiffPart {
  /** The text before (undefined: the file is new) and after. */
  before: string | undefined;
  after: string;
  /** Line of the file where `before` / `after` start (1 for a whole file). */
  beforeLine?: number;
  afterLine?: number;
  /** The texts are a part of the file (its managed block): lines come before them, after them. */
  linesBefore?: boolean;
  linesAfter?: boolean;
}

/** The unified diff of one file, headers included; empty when nothing differs. */
export function unifiedDiff(path: string, part: DiffPart): string {
  const all = edits(splitLines(part.before ?? ''), splitLines(part.after));
  const changed = all.map((e, i) => (e.kind === ' ' ? -1 : i)).filter((i) => i >= 0);
  if (!changed.length) return '';
  const out = [`--- ${part.before === undefined ? '/dev/null' : path}`, `+++ ${path}`];
  let k = 0;
  while (k < changed.length) {
    const firstChange = changed[k];
    let first = Math.max(0, firstChange - CONTEXT);
    let last = changed[k];
    while (k + 1 < changed.length && changed[k + 1] - last <= 2 * CONTEXT) last = changed[++k];
    k++;
    let end = Math.min(all.length, last + CONTEXT + 1);
    // patch(1) takes a hunk with less context on one side than on the other for one at the start
    // (or end) of the file, and applies it anywhere else only with fuzz. Where the part's edge cut
    // the context short and the file goes on, the other side gets as few lines.
    const lead = firstChange - first;
    const trail = end - 1 - last;
    if (lead < trail && first === 0 && part.linesBefore) end = last + 1 + lead;
    if (trail < lead && end === all.length && part.linesAfter) first = firstChange - trail;
    let oldLine = part.beforeLine ?? 1;
    let newLine = part.afterLine ?? 1;
    for (const e of all.slice(0, first)) {
      if (e.kind !== '+') oldLine++;
      if (e.kind !== '-') newLine++;
    }
    const hunk = all.slice(first, end);
    const oldCount = hunk.filter((e) => e.kind !== '+').length;
    const newCount = hunk.filter((e) => e.kind !== '-').length;
    out.push(`@@ -${range(oldLine, oldCount)} +${range(newLine, newCount)} @@`, ...hunk.map((e) => e.kind + e.line));
  }
  return out.join('\n') + '\n';
}

const lineOf = (text: string, offset: number): number => text.slice(0, offset).split('\n').length;

/**
 * What a sync changes in one file: the managed block alone when the file has one already (every
 * byte around it stays), else the whole file (a new file, a file without markers, the ruleset).
 */
export function changeDiff(path: string, existing: string | undefined, content: string, managed: boolean): string {
  const old = managed && existing !== undefined ? blockSpan(existing) : undefined;
  const now = old ? blockSpan(content) : undefined;
  if (!old || !now || existing === undefined) return unifiedDiff(path, { before: existing, after: content });
  return unifiedDiff(path, {
    before: existing.slice(old.start, old.end),
    after: content.slice(now.start, now.end),
    beforeLine: lineOf(existing, old.start),
    afterLine: lineOf(content, now.start),
    linesBefore: old.start > 0,
    linesAfter: old.end < existing.length,
  });
}
