/** File-system edge: atomic writes, bounded parallel I/O. */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';

/** Enough parallel requests to keep libuv's thread pool busy without opening thousands of files. */
const IO_PARALLELISM = 32;

export async function inParallel<T, R>(items: readonly T[], work: (item: T) => Promise<R>, limit = IO_PARALLELISM): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Reads a file known to a directory listing; skips the open when the listing says it is absent. */
export async function readListed(path: string, listings: Map<string, Set<string>>): Promise<string | undefined> {
  const listing = listings.get(dirname(path));
  if (listing && !listing.has(basename(path))) return undefined;
  return readIfExists(path);
}

export async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Unique to this process, so that two writers never share a temporary file. */
const TMP_SUFFIX = `.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;

/** Temporary file in the same directory, then rename: readers see the old or the new file, never half. */
export async function writeAtomic(path: string, content: string, mode?: number): Promise<void> {
  const tmp = path + TMP_SUFFIX;
  try {
    await writeFile(tmp, content, mode === undefined ? undefined : { mode });
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/** The names in each directory (empty for a missing one): one readdir instead of a failed open per new file. */
export async function listDirs(dirs: Iterable<string>): Promise<Map<string, Set<string>>> {
  const unique = [...new Set(dirs)];
  const listings = await Promise.all(unique.map((d) => readdir(d).then((names) => new Set(names), () => new Set<string>())));
  return new Map(unique.map((d, i) => [d, listings[i]]));
}

export async function ensureDirs(paths: Iterable<string>): Promise<void> {
  const dirs = new Set<string>();
  for (const p of paths) dirs.add(dirname(p));
  await Promise.all([...dirs].map((d) => mkdir(d, { recursive: true })));
}
