/**
 * Loads the CLI's one-file build through V8's code cache. Most of a small command's time over
 * Node's own start-up was spent loading and compiling the CLI's modules (docs/performance.md);
 * with the bytecode of everything a command runs read back from the cache, the code is neither
 * parsed nor compiled again.
 *
 * The cache is a file per content of the bundle (the build writes a digest of it on its first
 * line: V8 itself checks only the source's length, and mtimes say nothing after a copy), per Node
 * version and per architecture. V8 refuses a cache it did not make (another version, other flags);
 * the code is then compiled as usual and the cache written again when the command ends. It is read
 * from the first of its folders that has it, and only if this user owns it and nobody else may
 * write it (bytecode is code); it is written to the first folder that can be written: the
 * package's own, made by the build, then the user's cache folder. A cache never changes what runs,
 * only how fast it starts.
 */
import { closeSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createRequire, wrap } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { constants, Script } from 'node:vm';

/** The first line of the bundle: what its cache is named after (buildBundle.ts writes it). */
export const buildLine = (buildId: string): string => `// anklume-gen build ${buildId}\n`;
const BUILD_LINE = /^\/\/ anklume-gen build ([0-9a-f]{16})\n/;

/** A user's cache folder keeps caches of other builds (another install, another version) this long. */
const KEEP_OTHER_BUILDS_MS = 30 * 24 * 3600 * 1000;

export interface LoadedBundle<T> {
  exports: T;
  /** Whether V8 took the code from the cache (false: none yet, or one it refused). */
  fromCache: boolean;
  /** Writes the code cache of everything compiled so far (the build's warm-up calls it). */
  save: () => void;
}

type ModuleFunction = (exports: unknown, require: NodeJS.Require, module: { exports: unknown }, filename: string, dirname: string) => void;

function cacheFileName(bundle: string, buildId: string): string {
  return `${basename(bundle, '.cjs')}-${buildId}-${process.version}-${process.arch}.v8`;
}

/** The cache's bytes, if this user owns the file and nobody else may write it. */
function readOwnCache(path: string): Buffer | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const info = fstatSync(fd);
    if (info.uid !== process.geteuid?.() || (info.mode & 0o022) !== 0) return undefined;
    return readFileSync(fd);
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Caches of other builds not written for a month (a package upgraded): each would stay forever. */
function removeOld(dir: string, bundle: string, keep: string): void {
  const family = `${basename(bundle, '.cjs')}-`;
  for (const file of readdirSync(dir)) {
    if (!file.startsWith(family) || !file.endsWith('.v8') || file === keep) continue;
    if (Date.now() - statSync(join(dir, file)).mtimeMs > KEEP_OTHER_BUILDS_MS) unlinkSync(join(dir, file));
  }
}

/**
 * The bundle's exports, or undefined when there is no bundle (the CLI then runs from its modules).
 * @param cacheDirs where the cache is looked for, and written, in this order
 * @param saveOnExit write the cache when the process ends if none was taken
 */
export function loadBundle<T>(bundle: string, cacheDirs: string[], saveOnExit = true): LoadedBundle<T> | undefined {
  let source: string;
  try {
    source = readFileSync(bundle, 'utf8');
  } catch {
    return undefined;
  }
  // A bundle without its build line (built otherwise) runs without a cache.
  const buildId = BUILD_LINE.exec(source)?.[1];
  const name = buildId === undefined ? undefined : cacheFileName(bundle, buildId);
  let cachedData: Buffer | undefined;
  if (name !== undefined) {
    for (const dir of cacheDirs) {
      cachedData = readOwnCache(join(dir, name));
      if (cachedData) break;
    }
  }
  // A dynamic import() in the bundle (a module left outside it) loads as it would from a file.
  const script = new Script(wrap(source), { filename: bundle, cachedData, importModuleDynamically: constants.USE_MAIN_CONTEXT_DEFAULT_LOADER });
  const moduleFunction = script.runInThisContext() as ModuleFunction;
  const module = { exports: {} as T };
  moduleFunction.call(module.exports, module.exports, createRequire(bundle), module, bundle, dirname(bundle));
  const save = (): void => {
    if (name === undefined) return;
    const data = script.createCachedData();
    for (const dir of cacheDirs) {
      // Written aside and renamed: two commands that end together never leave half a cache.
      const partial = join(dir, `${name}.${process.pid}.partial`);
      try {
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        writeFileSync(partial, data, { mode: 0o600 });
        renameSync(partial, join(dir, name));
      } catch {
        try {
          unlinkSync(partial);
        } catch {
          // Nothing was written there.
        }
        continue;
      }
      try {
        removeOld(dir, bundle, name);
      } catch {
        // Another command removed them first.
      }
      return;
    }
  };
  const fromCache = cachedData !== undefined && script.cachedDataRejected === false;
  if (saveOnExit && !fromCache) process.once('exit', save);
  return { exports: module.exports, fromCache, save };
}
