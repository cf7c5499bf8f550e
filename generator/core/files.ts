/**
 * File-system edge. Synchronous on purpose: a sync writes thousands of small files, and with
 * promises the per-call overhead on the main thread (handles, thread-pool hops) costs several times
 * the system calls themselves.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { nameOf, parentOf } from './paths.js';

export interface FileStamp {
  size: number;
  mtimeMs: number;
}

export function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Reads a file known to a directory listing; skips the open when the listing says it is absent. */
export function readListed(path: string, listings: Map<string, Set<string>>): string | undefined {
  const listing = listings.get(parentOf(path));
  if (listing && !listing.has(nameOf(path))) return undefined;
  return readIfExists(path);
}

/** The names in each directory (empty for a missing one): one readdir instead of a failed open per new file. */
export function listDirs(dirs: Iterable<string>): Map<string, Set<string>> {
  const listings = new Map<string, Set<string>>();
  for (const dir of dirs) {
    if (listings.has(dir)) continue;
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      names = [];
    }
    listings.set(dir, new Set(names));
  }
  return listings;
}

export function stampOf(path: string): FileStamp | undefined {
  try {
    const info = statSync(path);
    return { size: info.size, mtimeMs: info.mtimeMs };
  } catch {
    return undefined;
  }
}

const REASONS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOENT: 'no such file or directory',
  ENOTDIR: 'a parent is not a directory',
  EISDIR: 'it is a directory',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
};

/**
 * Why a file operation failed, without the path: Node's own message repeats the path (or names a
 * temporary file), and every message here already says which file it is about.
 */
export function systemReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code) return REASONS[code] ?? code;
  return err instanceof Error ? err.message : String(err);
}

/** Unique to this process, so that two writers never share a temporary file. */
const TMP_SUFFIX = `.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;

export interface WriteOptions {
  mode?: number;
  /**
   * Survive a power cut: the data reaches the disk before the rename, and the rename before the
   * call returns (the directory is synced too). Costs a disk flush per file (about 3 ms here), so
   * only for what cannot be regenerated: the AI state file, a file holding the user's own bytes.
   */
  durable?: boolean;
}

/**
 * Temporary file in the same directory, then rename: readers see the old or the new file, never
 * half. Returns the file's size and mtime, which a rename does not change.
 */
export function writeAtomic(path: string, content: string | Uint8Array, options: WriteOptions = {}): FileStamp {
  const tmp = path + TMP_SUFFIX;
  try {
    const fd = openSync(tmp, 'w', options.mode);
    let stamp: FileStamp;
    try {
      writeContent(fd, content);
      if (options.durable) fsyncSync(fd);
      const info = fstatSync(fd);
      stamp = { size: info.size, mtimeMs: info.mtimeMs };
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    if (options.durable) syncDir(dirname(path));
    return stamp;
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // Nothing was created.
    }
    throw new Error(`cannot write ${path}: ${systemReason(err)}`, { cause: err });
  }
}

/**
 * A new file in a directory that no reader sees yet (tree/staging.ts renames the directory into
 * place once every file is in it): no temporary file and no rename, which on a tree of thousands
 * of files cost as much as the writes themselves. Fails if the file exists.
 */
export function writeFresh(path: string, content: string | Uint8Array): FileStamp {
  try {
    const fd = openSync(path, 'wx');
    try {
      writeContent(fd, content);
      const info = fstatSync(fd);
      return { size: info.size, mtimeMs: info.mtimeMs };
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw new Error(`cannot write ${path}: ${systemReason(err)}`, { cause: err });
  }
}

/** Text or bytes, in one call (writeSync's two forms, which TypeScript keeps apart). */
function writeContent(fd: number, content: string | Uint8Array): void {
  if (typeof content === 'string') writeSync(fd, content);
  else writeSync(fd, content);
}

/** How a tree file is written: writeAtomic, writeAtomic synced (WriteOptions.durable), or writeFresh. */
export type WriteMode = 'atomic' | 'durable' | 'fresh';

export function writeAs(path: string, content: string | Uint8Array, mode: WriteMode): FileStamp {
  return mode === 'fresh' ? writeFresh(path, content) : writeAtomic(path, content, { durable: mode === 'durable' });
}

/** A rename is on disk only once its directory is. */
function syncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function ensureDirs(paths: Iterable<string>): void {
  const dirs = new Set<string>();
  for (const p of paths) dirs.add(parentOf(p));
  for (const d of dirs) mkdirSync(d, { recursive: true });
}
