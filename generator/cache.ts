/**
 * The sync cache: what the last sync wrote, so that an unchanged run proves it has nothing to do
 * by hashing the inputs and stat-ing the outputs, without parsing 1 MB of YAML or reading thousands
 * of files. Any doubt (other inputs, a file touched since, another generator build) falls back to
 * the full path, which is always correct.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inParallel, writeAtomic } from './files.js';
import type { Source } from './load.js';

export const CACHE_DIR = '.anklume-gen';
const CACHE_FILE = 'cache.json';
const CACHE_VERSION = 1;

export interface CacheEntry {
  size: number;
  mtimeMs: number;
  /** Digest of what was rendered for the file (its managed block, or its whole content). */
  digest: string;
}

export interface SyncCache {
  version: number;
  key: string;
  files: Record<string, CacheEntry>;
  warnings: string[];
  info: string[];
}

export function digest(text: string): string {
  return createHash('sha1').update(text).digest('base64');
}

/** Identity of this build of the generator: its code, templates and schema, by size and mtime. */
async function generatorFingerprint(): Promise<string> {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const roots = [here, join(here, '..', 'templates'), join(here, '..', '..', 'templates'), join(here, '..', 'schema'), join(here, '..', '..', 'schema')];
  const parts: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else {
        const info = await stat(path);
        parts.push(`${path}:${info.size}:${info.mtimeMs}`);
      }
    }
  };
  for (const root of roots) await walk(root);
  return parts.join('\n');
}

/** Everything the output depends on, hashed. */
export async function inputKey(sources: Source[], extra: unknown): Promise<string> {
  const hash = createHash('sha256');
  hash.update(`v${CACHE_VERSION}\n`);
  hash.update(await generatorFingerprint());
  hash.update(JSON.stringify(extra));
  for (const s of sources) hash.update(`\n${s.role}:${s.file}:${s.text.length}\n`).update(s.text);
  return hash.digest('hex');
}

export async function loadCache(baseDir: string): Promise<SyncCache | undefined> {
  try {
    const parsed = JSON.parse(await readFile(join(baseDir, CACHE_DIR, CACHE_FILE), 'utf8')) as SyncCache;
    return parsed.version === CACHE_VERSION && typeof parsed.files === 'object' ? parsed : undefined;
  } catch {
    return undefined;
  }
}

export async function saveCache(baseDir: string, cache: SyncCache): Promise<void> {
  await mkdir(join(baseDir, CACHE_DIR), { recursive: true });
  await writeAtomic(join(baseDir, CACHE_DIR, CACHE_FILE), JSON.stringify(cache));
}

export async function statEntry(path: string): Promise<Pick<CacheEntry, 'size' | 'mtimeMs'> | undefined> {
  try {
    const info = await stat(path);
    return { size: info.size, mtimeMs: info.mtimeMs };
  } catch {
    return undefined;
  }
}

/** True when every file the cache lists is still exactly as the last sync left it. */
export async function filesUntouched(baseDir: string, cache: SyncCache): Promise<boolean> {
  const entries = Object.entries(cache.files);
  const ok = await inParallel(entries, async ([path, entry]) => {
    const now = await statEntry(join(baseDir, path));
    return now !== undefined && now.size === entry.size && now.mtimeMs === entry.mtimeMs;
  }, 64);
  return ok.every(Boolean);
}
