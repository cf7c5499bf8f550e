/**
 * A sync that creates directories (a first sync, a new base dir) writes their files into a staging
 * folder of its own under .anklume-gen/ and renames each directory into place once every file is
 * written. Readers (Ansible, an editor) see no directory, then the whole of it, never half a file,
 * as with a temporary file and a rename per file, but for one rename per directory: on a tree of
 * thousands of files, the renames cost as much as the writes. A sync that fails leaves no staged
 * directory in the tree, and the folder is removed.
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { systemReason } from '../core/files.js';
import { nameOf, parentOf, under } from '../core/paths.js';
import { CACHE_DIR } from './cache.js';
import type { Writer } from './writer.js';

const PREFIX = 'staging-';

export interface Staging {
  /** Where a target file is written: in the staging folder when its directory is staged. */
  path(target: string): string;
  /** Every staged directory renamed into place. */
  commit(): void;
  /**
   * The directories (relative to the base dir) that commit renamed into place whole: they hold
   * this sync's files and nothing else.
   */
  renamedWhole(): ReadonlySet<string>;
  /** The staging folder removed (nothing of it reaches the tree). */
  discard(): void;
}

/** Whether the process that made a staging folder is gone (its folder is then a leftover). */
function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

function removeLeftovers(cacheDir: string): void {
  let names: string[] = [];
  try {
    names = readdirSync(cacheDir);
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number(name.slice(PREFIX.length));
    if (name.startsWith(PREFIX) && Number.isInteger(pid) && pid > 0 && pid !== process.pid && gone(pid)) rmSync(join(cacheDir, name), { recursive: true, force: true });
  }
}

function moveEach(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    if (entry.isDirectory()) moveEach(join(from, entry.name), join(to, entry.name));
    else renameSync(join(from, entry.name), join(to, entry.name));
  }
}

/**
 * The staging of the directories below baseDir that the targets need and that do not exist, made
 * in the staging folder; undefined when they all exist (files are then written one by one,
 * atomically).
 */
export function stageMissingDirs(baseDir: string, targets: string[]): Staging | undefined {
  const staged = new Set<string>();
  const known = new Map<string, boolean>();
  const exists = (dir: string): boolean => {
    let e = known.get(dir);
    // lstat: a dangling symlink is there (mkdir refuses it, as before), not a directory to stage.
    if (e === undefined) known.set(dir, (e = lstatSync(join(baseDir, dir), { throwIfNoEntry: false }) !== undefined));
    return e;
  };
  const targetDirs = new Set(targets.map(parentOf));
  for (const dir of new Set([...targetDirs].map((d) => relative(baseDir, d)))) {
    if (dir === '' || dir.startsWith('..')) continue;
    const parts = dir.split(sep);
    // The top-most missing directory: everything below it comes with it.
    for (let depth = 1; depth <= parts.length; depth++) {
      const prefix = parts.slice(0, depth).join(sep);
      if (staged.has(prefix)) break;
      if (!exists(prefix)) {
        staged.add(prefix);
        break;
      }
    }
  }
  if (!staged.size) return undefined;
  const whole = new Set<string>();
  const cacheDir = join(baseDir, CACHE_DIR);
  removeLeftovers(cacheDir);
  const root = join(cacheDir, `${PREFIX}${process.pid}`);
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  // Per directory, not per file (thousands of files share a handful of directories): where its
  // files go in the staging folder, or undefined when it is not staged.
  const stagedDirs = new Map<string, string | undefined>();
  const stagedDirOf = (dir: string): string | undefined => {
    if (!stagedDirs.has(dir)) {
      const rel = relative(baseDir, dir);
      const inStaged = [...staged].some((prefix) => rel === prefix || rel.startsWith(prefix + sep));
      stagedDirs.set(dir, inStaged ? join(root, rel) : undefined);
    }
    return stagedDirs.get(dir);
  };
  for (const dir of targetDirs) {
    const inRoot = stagedDirOf(dir);
    if (inRoot) mkdirSync(inRoot, { recursive: true });
  }
  return {
    path: (target) => {
      const inRoot = stagedDirOf(parentOf(target));
      return inRoot === undefined ? target : under(inRoot, nameOf(target));
    },
    commit: () => {
      for (const prefix of staged) {
        const from = join(root, prefix);
        // Gone: something removed the staging folder under this sync; its files are not written.
        if (!existsSync(from)) throw new Error(`cannot write ${join(baseDir, prefix)}: its staging folder ${from} was removed during the sync`);
        try {
          renameSync(from, join(baseDir, prefix));
          whole.add(prefix);
        } catch {
          // The directory appeared meanwhile (another program made it): each file then moves on
          // its own, still atomically.
          try {
            moveEach(from, join(baseDir, prefix));
          } catch (err) {
            throw new Error(`cannot move ${from} into ${join(baseDir, prefix)}: ${systemReason(err)}`, { cause: err });
          }
        }
      }
      rmSync(root, { recursive: true, force: true });
    },
    renamedWhole: () => whole,
    discard: () => rmSync(root, { recursive: true, force: true }),
  };
}

/** A writer that writes staged targets fresh into the staging folder and commits it when done. */
export function stagedWriter(inner: Writer, staging: Staging): Writer {
  return {
    write: (target, content, mode) => {
      const path = staging.path(target);
      if (path === target) inner.write(target, content, mode);
      else inner.write(path, content, 'fresh');
    },
    finish: async () => {
      try {
        // A rename keeps a file's size and mtime: the stamps taken in the staging folder are the targets'.
        const stamps = await inner.finish();
        staging.commit();
        return stamps;
      } finally {
        staging.discard();
      }
    },
  };
}
