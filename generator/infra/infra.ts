/** From a path on disk to a validated model, or to located errors (load → schema → semantics). */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { KEY_MARKER, MAX_SOURCE_BYTES, parseFast, parsePrecise, type Locator, type PathSegment, type Source } from './load.js';
import { checkShape } from './schema.js';
import { checkSemantics, type Finding } from './validate.js';
import type { Context, Diagnostic, Infra, Mapping } from '../core/types.js';

export interface Analysis {
  infra?: Infra;
  raw?: Mapping;
  errors: Diagnostic[];
  warnings: Diagnostic[];
}

function fileError(file: string, message: string): Diagnostic {
  return { file, message };
}

async function readSource(file: string, role: Source['role'], errors: Diagnostic[]): Promise<Source | undefined> {
  try {
    const info = await stat(file);
    if (!info.isFile()) {
      errors.push(fileError(file, 'not a regular file'));
      return undefined;
    }
    if (info.size > MAX_SOURCE_BYTES) {
      const mb = (info.size / 1024 / 1024).toFixed(1);
      errors.push({ file, line: 1, column: 1, message: `file too large (${mb} MiB; an infra file may hold at most ${MAX_SOURCE_BYTES / 1024 / 1024} MiB)` });
      return undefined;
    }
    const bytes = await readFile(file);
    if (bytes.includes(0)) {
      errors.push({ file, line: 1, column: 1, message: 'binary content (NUL byte); expected a YAML text file' });
      return undefined;
    }
    return { file, text: bytes.toString('utf8'), role };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : String(code ?? err);
    errors.push(fileError(file, `cannot read (${why})`));
    return undefined;
  }
}

/** The files that make up the infra: one file, or base.yml + domains/*.yml + policies.yml. */
export async function readSources(infraPath: string): Promise<{ sources: Source[]; errors: Diagnostic[] }> {
  const errors: Diagnostic[] = [];
  let isDir = false;
  try {
    isDir = (await stat(infraPath)).isDirectory();
  } catch {
    isDir = false;
  }
  if (!isDir) {
    const single = await readSource(infraPath, 'single', errors);
    return { sources: single ? [single] : [], errors };
  }
  const base = join(infraPath, 'base.yml');
  const sources: Source[] = [];
  const baseSource = await readSource(base, 'base', errors);
  if (!baseSource && errors.length) errors[errors.length - 1].message = 'missing or unreadable; an infra/ directory needs base.yml (project_name, global)';
  if (baseSource) sources.push(baseSource);
  let domainFiles: string[] = [];
  try {
    domainFiles = (await readdir(join(infraPath, 'domains'))).filter((f) => /\.ya?ml$/.test(f)).sort();
  } catch {
    domainFiles = [];
  }
  for (const f of domainFiles) {
    const source = await readSource(join(infraPath, 'domains', f), 'domains', errors);
    if (source) sources.push(source);
  }
  const policiesFile = join(infraPath, 'policies.yml');
  const hasPolicies = await stat(policiesFile).then((s) => s.isFile(), () => false);
  if (hasPolicies) {
    const source = await readSource(policiesFile, 'policies', errors);
    if (source) sources.push(source);
  }
  return { sources, errors };
}

function locateFinding(f: Finding, locate: Locator): Diagnostic {
  const path: PathSegment[] = f.path;
  const at = f.onKey ? locateKey(path, locate) : locate(path);
  return { message: f.message, path: '/' + path.map(String).join('/'), ...at };
}

/** A key's own position: the locator finds values, so ask for the parent and the key within it. */
function locateKey(path: PathSegment[], locate: Locator) {
  return locate([...path, KEY_MARKER]) ?? locate(path);
}

function byPosition(a: Diagnostic, b: Diagnostic): number {
  return (a.file ?? '').localeCompare(b.file ?? '') || (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0);
}

function check(raw: Mapping, ctx: Context): { errors: Finding[]; warnings: Finding[] } {
  const shape = checkShape(raw);
  const semantic = checkSemantics(raw, ctx);
  return { errors: [...shape, ...semantic.errors], warnings: semantic.warnings };
}

/** Validates sources already read. Pure apart from CPU: used by sync, validate and the tests. */
export function analyse(sources: Source[], ctx: Context): Analysis {
  const fast = parseFast(sources);
  if (fast) {
    const result = check(fast, ctx);
    // Warnings are rare: only then is the precise reader needed, to locate them like errors.
    if (result.errors.length === 0 && result.warnings.length === 0) {
      return { infra: fast as unknown as Infra, raw: fast, errors: [], warnings: [] };
    }
  }
  const precise = parsePrecise(sources);
  if (!precise.raw) {
    return { errors: precise.errors.sort(byPosition), warnings: [] };
  }
  const result = check(precise.raw, ctx);
  const errors = [...precise.errors, ...result.errors.map((f) => locateFinding(f, precise.locate))].sort(byPosition);
  const warnings = result.warnings.map((f) => locateFinding(f, precise.locate));
  return errors.length
    ? { raw: precise.raw, errors, warnings }
    : { infra: precise.raw as unknown as Infra, raw: precise.raw, errors, warnings };
}

/** Only read and merge (resolve --raw): no schema, no defaults. */
export function readRaw(sources: Source[]): { raw?: Mapping; errors: Diagnostic[] } {
  const fast = parseFast(sources);
  if (fast) return { raw: fast, errors: [] };
  const precise = parsePrecise(sources);
  return { raw: precise.errors.length ? undefined : precise.raw, errors: precise.errors };
}
