/**
 * Helpers for the loader/validator tests: build infra documents, read fixtures, and read the
 * expectations that fixtures carry in their own comments.
 *
 * A fixture says what it expects next to the node it is about, so that the file stays readable and
 * the positions cannot drift away from the text:
 *
 *     subnet_id: 300
 *   #            ^ Domain 'pro': subnet_id must be 0-254, got 300
 *
 * The caret's column is the expected column; the line is the nearest line above that is not itself
 * an expectation. `# @LINE:COL phrase` gives the position explicitly (for column 1, where the `#`
 * itself sits). `warning: phrase` expects a warning instead of an error. `# context: vm_nested=false
 * yolo=true` writes those context files before the run.
 */
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { analyse, type Analysis } from '../../generator/infra/infra.js';
import { readSources } from '../../generator/infra/sources.js';
import { readContext } from '../../generator/infra/context.js';
import type { Source } from '../../generator/infra/load.js';
import type { Context, Diagnostic } from '../../generator/core/types.js';

export const NO_CONTEXT: Context = { vmNested: undefined, yolo: false };

export interface Expectation {
  kind: 'error' | 'warning';
  phrase: string;
  file: string;
  line: number;
  column: number;
}

const CARET = /^\s*#(\s*)\^\s+(.*)$/;
const EXPLICIT = /^\s*#\s*@(\d+):(\d+)\s+(.*)$/;
const CONTEXT = /^\s*#\s*context:\s*(.*)$/;

function expectation(file: string, line: number, column: number, text: string): Expectation {
  const warning = /^warning:\s*/.exec(text);
  return { kind: warning ? 'warning' : 'error', phrase: warning ? text.slice(warning[0].length) : text.trim(), file, line, column };
}

/** The expectations written in one fixture file's comments. */
export function expectationsIn(file: string, text: string): { expected: Expectation[]; context: Record<string, string> } {
  const expected: Expectation[] = [];
  const context: Record<string, string> = {};
  const lines = text.split('\n');
  let target = 0;
  lines.forEach((line, i) => {
    const caret = CARET.exec(line);
    const explicit = EXPLICIT.exec(line);
    const ctx = CONTEXT.exec(line);
    if (caret) {
      expected.push(expectation(file, target, line.indexOf('^') + 1, caret[2]));
    } else if (explicit) {
      expected.push(expectation(file, Number(explicit[1]), Number(explicit[2]), explicit[3]));
    } else if (ctx) {
      for (const pair of ctx[1].trim().split(/\s+/)) {
        const [key, value] = pair.split('=');
        context[key] = value;
      }
    } else {
      target = i + 1;
    }
  });
  return { expected, context };
}

/** All expectations of a fixture (a file, or every .yml file of an infra/ directory). */
export async function fixtureExpectations(path: string): Promise<{ expected: Expectation[]; context: Record<string, string> }> {
  const { sources } = await readSources(path);
  const expected: Expectation[] = [];
  const context: Record<string, string> = {};
  for (const source of sources) {
    const found = expectationsIn(source.file, source.text);
    expected.push(...found.expected);
    Object.assign(context, found.context);
  }
  return { expected, context };
}

/** Runs `fn` with a temporary ANKLUME_CONF_DIR holding the given context files. */
export async function withContextDir<T>(files: Record<string, string>, fn: (ctx: Context, dir: string) => Promise<T> | T): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'anklume-conf-'));
  try {
    for (const [name, value] of Object.entries(files)) await writeFile(join(dir, name), `${value}\n`);
    const ctx = await readContext({ ANKLUME_CONF_DIR: dir });
    return await fn(ctx, dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Reads a fixture from disk and analyses it, with the context its comments ask for. */
export async function analyseFixture(path: string): Promise<{ analysis: Analysis; expected: Expectation[] }> {
  const { sources, errors } = await readSources(path);
  const { expected, context } = await fixtureExpectations(path);
  const analysis = await withContextDir(context, (ctx) => analyse(sources, ctx));
  return { analysis: { ...analysis, errors: [...errors, ...analysis.errors] }, expected };
}

/** One in-memory source, as readSources would give for a single file. */
export function single(text: string, file = 'infra.yml'): Source[] {
  return [{ file, text, role: 'single' }];
}

export function run(text: string, ctx: Context = NO_CONTEXT, file = 'infra.yml'): Analysis {
  return analyse(single(text, file), ctx);
}

/** 1-based position of `needle` in `text` (of `inner` within the needle, when given). */
export function positionOf(text: string, needle: string, inner?: string): { line: number; column: number } {
  const at = text.indexOf(needle);
  if (at < 0) throw new Error(`test bug: '${needle}' is not in the document`);
  const offset = at + (inner === undefined ? 0 : needle.indexOf(inner));
  const before = text.slice(0, offset).split('\n');
  return { line: before.length, column: before[before.length - 1].length + 1 };
}

export function describe(d: Diagnostic): string {
  return `${d.file ?? '?'}:${d.line ?? '?'}:${d.column ?? '?'} ${d.message}`;
}

export function listing(ds: Diagnostic[]): string {
  return ds.length ? ds.map(describe).join('\n') : '(none)';
}

/**
 * Fixture paths directly under `dir`: files ending in .yml and directories (infra/ layouts). Names
 * starting with `_` are fixtures that a test reads by name (they carry no expectations).
 */
export async function fixturesIn(dir: string): Promise<string[]> {
  const names = (await readdir(dir)).sort();
  const out: string[] = [];
  for (const name of names) {
    if (name.startsWith('_')) continue;
    const path = join(dir, name);
    const info = await stat(path);
    if (info.isDirectory() || name.endsWith('.yml')) out.push(path);
  }
  return out;
}

/** A small valid document that tests mutate; every domain has a machine with an IP. */
export const VALID = `project_name: test-infra
global:
  base_subnet: "10.100"
  ai_access_policy: exclusive
  ai_access_default: pro
domains:
  ai-tools:
    subnet_id: 10
    machines:
      gpu-server:
        ip: "10.100.10.10"
        gpu: true
  pro:
    subnet_id: 2
    machines:
      pro-dev:
        ip: "10.100.2.10"
  perso:
    subnet_id: 1
    machines:
      perso-desktop:
        ip: "10.100.1.10"
`;
