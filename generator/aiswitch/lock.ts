/**
 * One ai-switch at a time: an exclusive lock file (O_CREAT|O_EXCL), holding the owner's pid.
 *
 * Why not flock: Node has no flock, and a lock file that names its owner lets the message say who
 * holds it. A lock whose owner is dead (pid gone, or reused by another process: the kernel start
 * time recorded in the file differs) is stale and is taken over. Taking over goes through a second
 * exclusive file (`<lock>.break`) and re-reads the lock before deleting it, so that two processes
 * recovering the same stale lock cannot delete each other's fresh lock.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface LockOwner {
  pid: number;
  /** Field 22 of /proc/<pid>/stat (start time in clock ticks), when /proc is there. */
  procStart?: string;
  startedAt: string;
  token: string;
}

export interface Lock {
  path: string;
  owner: LockOwner;
  /** The dead owner whose lock was taken over, if any. */
  recovered?: LockOwner;
  release(): Promise<void>;
}

export class LockBusyError extends Error {
  constructor(
    readonly path: string,
    readonly owner: LockOwner | undefined,
  ) {
    super(
      owner
        ? `Another ai-switch is running (pid ${owner.pid}, started ${owner.startedAt}); wait for it to finish, or use --wait SECONDS (lock: ${path})`
        : `Another ai-switch is starting (lock: ${path}); wait for it to finish, or use --wait SECONDS`,
    );
  }
}

export interface LockOptions {
  /** How long to wait for a live owner before giving up; 0 fails at once. */
  waitMs?: number;
  pollMs?: number;
  /** A lock file that stays empty or unreadable this long belongs to a crashed writer. */
  unreadableStaleMs?: number;
}

async function procStart(pid: number): Promise<string | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

export async function isAlive(owner: LockOwner): Promise<boolean> {
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (owner.procStart === undefined) return true;
  const now = await procStart(owner.pid);
  return now === undefined || now === owner.procStart;
}

function parseOwner(text: string): LockOwner | undefined {
  try {
    const value = JSON.parse(text) as Partial<LockOwner>;
    if (typeof value.pid === 'number' && Number.isInteger(value.pid) && value.pid > 0 && typeof value.token === 'string') {
      return { pid: value.pid, token: value.token, startedAt: String(value.startedAt ?? '?'), ...(typeof value.procStart === 'string' ? { procStart: value.procStart } : {}) };
    }
  } catch {
    // fall through: not a lock this module wrote completely
  }
  return undefined;
}

async function readOwner(path: string): Promise<{ exists: boolean; text: string; owner?: LockOwner }> {
  try {
    const text = await readFile(path, 'utf8');
    return { exists: true, text, owner: parseOwner(text) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { exists: false, text: '' };
    throw err;
  }
}

async function tryCreate(path: string, content: string): Promise<boolean> {
  let handle;
  try {
    handle = await open(path, 'wx', 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    await handle.writeFile(content);
  } finally {
    await handle.close();
  }
  return true;
}

async function ageMs(path: string): Promise<number> {
  try {
    return Date.now() - (await stat(path)).mtimeMs;
  } catch {
    return 0;
  }
}

/** Deletes the lock if it still holds `staleText`; the break file serialises concurrent breakers. */
async function breakStale(path: string, staleText: string): Promise<void> {
  const breaker = `${path}.break`;
  if (!(await tryCreate(breaker, String(process.pid)))) {
    // A breaker that died mid-way leaves its file; the break takes microseconds, so old = dead.
    if ((await ageMs(breaker)) > 10_000) await unlink(breaker).catch(() => undefined);
    return;
  }
  try {
    const again = await readOwner(path);
    if (again.exists && again.text === staleText) await unlink(path).catch(() => undefined);
  } finally {
    await unlink(breaker).catch(() => undefined);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function acquireLock(path: string, options: LockOptions = {}): Promise<Lock> {
  const waitMs = options.waitMs ?? 0;
  const pollMs = options.pollMs ?? 100;
  const unreadableStaleMs = options.unreadableStaleMs ?? 5_000;
  const deadline = Date.now() + waitMs;
  await mkdir(dirname(path), { recursive: true });
  const owner: LockOwner = { pid: process.pid, startedAt: new Date().toISOString(), token: randomBytes(8).toString('hex') };
  const start = await procStart(process.pid);
  if (start !== undefined) owner.procStart = start;
  const content = JSON.stringify(owner) + '\n';
  let recovered: LockOwner | undefined;

  for (;;) {
    if (await tryCreate(path, content)) {
      return { path, owner, ...(recovered ? { recovered } : {}), release: () => releaseLock(path, owner.token) };
    }
    const current = await readOwner(path);
    if (!current.exists) continue;
    const stale = current.owner ? !(await isAlive(current.owner)) : (await ageMs(path)) > unreadableStaleMs;
    if (stale) {
      recovered = current.owner;
      await breakStale(path, current.text);
      continue;
    }
    if (Date.now() >= deadline) throw new LockBusyError(path, current.owner);
    await sleep(Math.min(pollMs, Math.max(1, deadline - Date.now())));
  }
}

/** Removes the lock only if it is still ours (a taken-over lock belongs to someone else now). */
async function releaseLock(path: string, token: string): Promise<void> {
  const current = await readOwner(path);
  if (current.owner?.token === token) await unlink(path).catch(() => undefined);
}
