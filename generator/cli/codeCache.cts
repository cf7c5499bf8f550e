/**
 * Loads the CLI's one-file build through V8's code cache. Most of a small command's time over
 * Node's own start-up was spent loading and compiling the CLI's modules (docs/performance.md);
 * with the bytecode of everything a command runs read back from the cache, the code is neither
 * parsed nor compiled again.
 *
 * The cache is a file per build of the bundle (its size and mtime in the name: V8 itself only
 * checks the source's length), per Node version and per architecture. V8 refuses a cache it did
 * not make (another version, other flags); the code is then compiled as usual and the cache
 * written again when the command ends. It is read from the first of its folders that has it, and
 * written to the first that can be written: the package's own, made by the build, then the user's
 * cache folder (a package installed by root, or unpacked by npm with other mtimes). A cache never
 * changes what runs, only how fast it starts.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createRequire, wrap } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { constants, Script } from 'node:vm';

export interface LoadedBundle<T> {
  exports: T;
  /** Whether V8 took the code from the cache (false: none yet, or one it refused). */
  fromCache: boolean;
  /** Writes the code cache of everything compiled so far (the build's warm-up calls it). */
  save: () => void;
}

type ModuleFunction = (exports: unknown, require: NodeJS.Require, module: { exports: unknown }, filename: string, dirname: string) => void;

/** `<bundle>-<size>-<mtime>-`: the caches of this build of the bundle, whatever Node made them. */
function buildPrefix(bundle: string): string {
  const { size, mtimeMs } = statSync(bundle);
  return `${basename(bundle, '.cjs')}-${size}-${Math.trunc(mtimeMs)}-`;
}

export function cacheFileName(bundle: string): string {
  return `${buildPrefix(bundle)}${process.version}-${process.arch}.v8`;
}

/** Caches of builds of the bundle that are gone (a package upgraded): each would stay forever. */
function removeStale(dir: string, bundle: string, prefix: string): void {
  const family = `${basename(bundle, '.cjs')}-`;
  for (const file of readdirSync(dir)) {
    if (file.startsWith(family) && file.endsWith('.v8') && !file.startsWith(prefix)) unlinkSync(join(dir, file));
  }
}

/**
 * The bundle's exports, or undefined when there is no bundle (the CLI then runs from its modules).
 * @param cacheDirs where the cache is looked for, and written, in this order
 * @param saveOnExit write the cache when the process ends if none was taken
 */
export function loadBundle<T>(bundle: string, cacheDirs: string[], saveOnExit = true): LoadedBundle<T> | undefined {
  let source: string;
  let name: string;
  try {
    source = readFileSync(bundle, 'utf8');
    name = cacheFileName(bundle);
  } catch {
    return undefined;
  }
  let cachedData: Buffer | undefined;
  for (const dir of cacheDirs) {
    try {
      cachedData = readFileSync(join(dir, name));
      break;
    } catch {
      cachedData = undefined;
    }
  }
  // A dynamic import() in the bundle (a module left outside it) loads as it would from a file.
  const script = new Script(wrap(source), { filename: bundle, cachedData, importModuleDynamically: constants.USE_MAIN_CONTEXT_DEFAULT_LOADER });
  const moduleFunction = script.runInThisContext() as ModuleFunction;
  const module = { exports: {} as T };
  moduleFunction.call(module.exports, module.exports, createRequire(bundle), module, bundle, dirname(bundle));
  const save = (): void => {
    const data = script.createCachedData();
    for (const dir of cacheDirs) {
      // Written aside and renamed: two commands that end together never leave half a cache.
      const partial = join(dir, `${name}.${process.pid}.partial`);
      try {
        mkdirSync(dir, { recursive: true });
        writeFileSync(partial, data);
        renameSync(partial, join(dir, name));
        try {
          removeStale(dir, bundle, buildPrefix(bundle));
        } catch {
          // Another command removed them first.
        }
        return;
      } catch {
        try {
          unlinkSync(partial);
        } catch {
          // Nothing was written there.
        }
      }
    }
  };
  const fromCache = cachedData !== undefined && script.cachedDataRejected === false;
  if (saveOnExit && !fromCache) process.once('exit', save);
  return { exports: module.exports, fromCache, save };
}
