/**
 * The files that make up the infra, read as bytes and screened (size, NUL bytes), not parsed:
 * what an unchanged sync hashes before it knows whether anything needs parsing, so this module
 * loads no YAML reader. Synchronous: a few files, read one after the other in any case.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Source } from './load.js';
import type { Diagnostic } from '../core/types.js';

/** An infra file larger than this is refused before it is read (a YAML bomb needs no aliases). */
export const MAX_SOURCE_BYTES = 16 * 1024 * 1024;

function fileError(file: string, message: string): Diagnostic {
  return { file, message };
}

async function readSource(file: string, role: Source['role'], errors: Diagnostic[]): Promise<Source | undefined> {
  try {
    const info = statSync(file);
    if (!info.isFile()) {
      errors.push(fileError(file, 'not a regular file'));
      return undefined;
    }
    if (info.size > MAX_SOURCE_BYTES) {
      const mb = (info.size / 1024 / 1024).toFixed(1);
      errors.push({ file, line: 1, column: 1, message: `file too large (${mb} MiB; an infra file may hold at most ${MAX_SOURCE_BYTES / 1024 / 1024} MiB)` });
      return undefined;
    }
    const bytes = readFileSync(file);
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
    isDir = statSync(infraPath).isDirectory();
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
    domainFiles = readdirSync(join(infraPath, 'domains')).filter((f) => /\.ya?ml$/.test(f)).sort();
  } catch {
    domainFiles = [];
  }
  for (const f of domainFiles) {
    const source = await readSource(join(infraPath, 'domains', f), 'domains', errors);
    if (source) sources.push(source);
  }
  const policiesFile = join(infraPath, 'policies.yml');
  const hasPolicies = statSync(policiesFile, { throwIfNoEntry: false })?.isFile() === true;
  if (hasPolicies) {
    const source = await readSource(policiesFile, 'policies', errors);
    if (source) sources.push(source);
  }
  return { sources, errors };
}
