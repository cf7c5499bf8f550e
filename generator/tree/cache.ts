/**
 * The sync cache: what the last sync wrote, so that an unchanged run proves it has nothing to do
 * by hashing the inputs and stat-ing the outputs, without parsing 1 MB of YAML or reading thousands
 * of files. Any doubt (other inputs, a file touched since, another generator build) falls back to
 * the full path, which is always correct.
 */
import { createHash, hash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stampOf, writeAtomic, type FileStamp } from '../core/files.js';
import type { Source } from '../infra/load.js';
import { packagePath } from '../core/packageRoot.js';
import type { Diagnostic } from '../core/types.js';

export const CACHE_DIR = '.anklume-gen';
const CACHE_FILE = 'cache.json';
// 2: warnings kept with their locations (file, line, column, path), not their message alone.
export const CACHE_VERSION = 2;

export interface CacheEntry extends FileStamp {
  /** Digest of what was rendered for the file (its managed block, or its whole content). */
  digest: string;
}

export interface SyncCache {
  version: number;
  /** The boot it was written in (bootId()). */
  boot: string;
  key: string;
  files: Record<string, CacheEntry>;
  /** The last sync's warnings, located: an unchanged run reports them as a full run does. */
  warnings: Diagnostic[];
  info: string[];
}

export function digest(text: string): string {
  return hash('sha1', text, 'base64');
}

/**
 * Identity of this build of the generator: its code, templates and schema, by size and mtime.
 * Synchronous on purpose: a hundred stats cost a millisecond this way, several through promises.
 */
function generatorFingerprint(): string {
  const stamp = (path: string): string => {
    const info = statSync(path);
    return `${path}:${info.size}:${info.mtimeMs}`;
  };
  // The code: the one-file build of the CLI, which every build rewrites and which carries every
  // module; otherwise the generator's root, every stage folder below it.
  const self = fileURLToPath(import.meta.url);
  const bundle = self.endsWith('.bundle.cjs');
  const parts: string[] = bundle ? [stamp(self)] : [];
  const roots = [...(bundle ? [] : [fileURLToPath(new URL('..', import.meta.url))]), packagePath('templates'), packagePath('schema')];
  const walk = (dir: string): void => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else parts.push(stamp(path));
    }
  };
  for (const root of roots) walk(root);
  return parts.join('\n');
}

/** Everything the output depends on, hashed. */
export async function inputKey(sources: Source[], extra: unknown): Promise<string> {
  const hasher = createHash('sha256');
  hasher.update(`v${CACHE_VERSION}\n`);
  hasher.update(generatorFingerprint());
  hasher.update(JSON.stringify(extra));
  for (const s of sources) hasher.update(`\n${s.role}:${s.file}:${s.text.length}\n`).update(s.text);
  return hasher.digest('hex');
}

/**
 * The tree's files are not synced to disk one by one (a flush per file would cost seconds for a
 * large tree): after a power cut, one may be empty or half while its size and mtime look right.
 * So a cache is trusted only in the boot that wrote it; after a reboot, the next sync reads and
 * compares every file, and rewrites whichever is not what it should be.
 */
export function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
}

export function loadCache(baseDir: string, boot = bootId()): SyncCache | undefined {
  try {
    const parsed = JSON.parse(readFileSync(join(baseDir, CACHE_DIR, CACHE_FILE), 'utf8')) as SyncCache;
    return parsed.version === CACHE_VERSION && parsed.boot === boot && typeof parsed.files === 'object' ? parsed : undefined;
  } catch {
    return undefined;
  }
}

export function saveCache(baseDir: string, cache: SyncCache): void {
  const dir = join(baseDir, CACHE_DIR);
  mkdirSync(dir, { recursive: true });
  // The directory ignores itself: nothing in it belongs in a repository, and no one has to add
  // it to a .gitignore of theirs. Written with the directory (or into one an older version made).
  if (!existsSync(join(dir, '.gitignore'))) writeAtomic(join(dir, '.gitignore'), '*\n');
  writeAtomic(join(dir, CACHE_FILE), JSON.stringify(cache));
}

/** True when every file the cache lists is still exactly as the last sync left it. */
export function filesUntouched(baseDir: string, cache: SyncCache): boolean {
  for (const [path, entry] of Object.entries(cache.files)) {
    const now = stampOf(join(baseDir, path));
    if (!now || now.size !== entry.size || now.mtimeMs !== entry.mtimeMs) return false;
  }
  return true;
}
