/**
 * Recording stand-ins (TEST-ONLY) for what cannot run here: `incus`, `nvidia-smi`, `systemctl`, plus
 * a journaling wrapper around the real `nft`. They live in test/fixtures/standins/ (read lib.sh
 * there); putting that directory first on PATH makes ansible and anklume-gen call them.
 * The host's GPU processes are REAL processes the test starts (`sleeper()`: a `sleep`, so that the
 * flush's host kill, a real SIGKILL through a pidfd, can only ever hit the test's own); the host
 * nvidia-smi stand-in lists those still alive. Whose each one is comes from a proc root built here
 * (ANKLUME_PROC_ROOT: <root>/<pid>/cgroup), never from /proc.
 *
 * Each stand-in appends one journal line per call with a timestamp and the holder set at that
 * moment (read with the real nft in the namespace the call runs in), so a test can check the
 * order of a switch against the live ruleset. Control files make a call fail or wait.
 *
 *   const s = await StandIns.create();      // a fresh state dir; s.env(base) → env with PATH
 *   s.fail('systemctl stop'); s.slow(3, 'systemctl stop'); s.gpuPids(['4242']); s.sticky(['4242'])
 *   s.resetFails(true); await s.journal() → JournalEntry[]; s.reset(); s.cleanup()
 *   const pid = s.sleeper(); s.hostGpus([...]); s.hostApps([{ pid, cgroup: instanceCgroup('ai-tools', 'gpu-server') }])
 *   s.alive(pid) → whether the flush left it running
 *
 * Refusal tests (a command that must stop before it runs anything) use ForbiddenTools instead:
 * `ansible-playbook`, `incus` and `nft` (or the ones named) are `must-not-run` stand-ins first on
 * PATH, which journal the call and fail loudly ("stand-in: nft must not be called by this test"):
 *   const f = ForbiddenTools.create();       // or create(['nft']) where ansible must really run
 *   await runCli([...], f.env(t.env)); f.assertNoneCalled(); f.cleanup()
 *   const restore = f.onProcessPath();       // for the CLI run in-process: nft.ts spawns nft with
 *   ...; restore()                            // this process's PATH, not the env it is given
 */
import { spawn, type ChildProcess } from 'node:child_process';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const STANDINS_BIN = fileURLToPath(new URL('../fixtures/standins/', import.meta.url)).replace(/\/$/, '');

/** The host GPU of the nvidia-smi stand-in when hostGpus() is not called. */
export const GPU0 = 'GPU-00000000-0000-0000-0000-0000000000a0';

/** A compute process as the host sees it, and the cgroup file the proc root gives it. */
export interface HostApp {
  /** A process of the test's own (sleeper()), or one that is gone. */
  pid: string;
  gpu?: string;
  mib?: number;
  /** The text of <proc root>/<pid>/cgroup; absent: no such entry (an unknown owner). */
  cgroup?: string;
}

/** Cgroup files as Incus 6.0 gives a container's processes (v2, nested below the payload). */
export const instanceCgroup = (project: string, name: string, below = '/system.slice/ollama.service') => `0::/lxc.payload.${project === 'default' ? name : `${project}_${name}`}${below}\n`;
export const HOST_CGROUP = '0::/system.slice/some-host-daemon.service\n';

export interface JournalEntry {
  /** Seconds since the epoch (ns resolution). */
  t: number;
  tag: string;
  /** Bridges in the ai_holder set at the time of the call ('?' when unreadable). */
  holders: string[] | '?';
  tool: string;
  args: string;
}

/** The journal the stand-ins of one state dir wrote (see lib.sh), oldest first. */
function readJournal(path: string): JournalEntry[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [t, tag, holders, tool, ...rest] = line.split('\t');
      return { t: Number(t), tag, holders: holders === '?' ? '?' : holders === '-' ? [] : holders.split(','), tool, args: rest.join('\t') };
    });
}

/** Whether a process runs: it exists and is not a zombie (what a GPU driver would still list). */
export function isAlive(pid: string): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\S+ \(.*\) [ZX] /s.test(stat);
  } catch {
    return false;
  }
}

export class StandIns {
  private readonly sleepers = new Set<ChildProcess>();

  private constructor(readonly dir: string) {}

  static create(): StandIns {
    return new StandIns(mkdtempSync(join(tmpdir(), 'anklume-standins-')));
  }

  /** `base` with the stand-ins first on PATH, pointed at this state dir. */
  env(base: NodeJS.ProcessEnv, tag?: string): NodeJS.ProcessEnv {
    return { ...base, PATH: `${STANDINS_BIN}:${base.PATH ?? process.env.PATH ?? '/usr/bin:/bin'}`, STANDIN_DIR: this.dir, ANKLUME_PROC_ROOT: this.procRoot, ...(tag ? { STANDIN_TAG: tag } : {}) };
  }

  get procRoot(): string {
    return this.file('proc');
  }

  /** The host's GPUs: index, uuid, total MiB. */
  hostGpus(gpus: { index: string; uuid: string; total: number }[]): void {
    writeFileSync(this.file('host-gpus'), gpus.map((g) => `${g.index}, ${g.uuid}, ${g.total}\n`).join(''));
  }

  /** The host's compute processes (host PIDs) and, in the proc root, the cgroup of each. */
  hostApps(apps: HostApp[]): void {
    writeFileSync(this.file('host-gpu-apps'), apps.map((a) => `${a.pid}, ${a.gpu ?? GPU0}, ${a.mib ?? 1024}\n`).join(''));
    for (const a of apps) {
      if (a.cgroup === undefined) continue;
      mkdirSync(join(this.procRoot, a.pid), { recursive: true });
      writeFileSync(join(this.procRoot, a.pid, 'cgroup'), a.cgroup);
    }
  }

  /** A real process of the test's own to play a GPU compute process (killed at reset() at the latest). */
  sleeper(): string {
    const child = spawn('sleep', ['600'], { stdio: 'ignore' });
    if (child.pid === undefined) throw new Error('cannot start sleep');
    this.sleepers.add(child);
    child.on('exit', () => this.sleepers.delete(child));
    return String(child.pid);
  }

  alive(pid: string): boolean {
    return isAlive(pid);
  }

  private file(name: string): string {
    return join(this.dir, name);
  }

  fail(...patterns: string[]): void {
    writeFileSync(this.file('fail'), patterns.map((p) => p + '\n').join(''));
  }

  slow(seconds: number, pattern: string): void {
    writeFileSync(this.file('slow'), `${seconds} ${pattern}\n`);
  }

  gpuPids(pids: string[]): void {
    writeFileSync(this.file('gpu-pids'), pids.map((p) => p + '\n').join(''));
  }

  sticky(pids: string[]): void {
    writeFileSync(this.file('gpu-sticky'), pids.map((p) => p + '\n').join(''));
  }

  resetFails(fails: boolean): void {
    if (fails) writeFileSync(this.file('gpu-reset-fails'), '');
    else rmSync(this.file('gpu-reset-fails'), { force: true });
  }

  journal(): JournalEntry[] {
    return readJournal(this.file('journal'));
  }

  /** Back to normal behaviour with an empty journal. */
  reset(): void {
    for (const child of this.sleepers) child.kill('SIGKILL');
    for (const name of ['fail', 'slow', 'gpu-pids', 'gpu-sticky', 'gpu-reset-fails', 'journal', 'host-gpus', 'host-gpu-apps', 'proc']) rmSync(this.file(name), { recursive: true, force: true });
  }

  cleanup(): void {
    for (const child of this.sleepers) child.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** What a refusal test must never reach: it would act on this machine (its nft, its Incus). */
export type ForbiddenTool = 'ansible-playbook' | 'incus' | 'nft';
export const FORBIDDEN_TOOLS: readonly ForbiddenTool[] = ['ansible-playbook', 'incus', 'nft'];

/**
 * Stand-ins (TEST-ONLY) for the tests whose point is that a command refuses before it runs
 * anything: each named tool is test/fixtures/standins/must-not-run, which journals the call and
 * exits non-zero with "stand-in: <tool> must not be called by this test". With the refusal broken,
 * the test then fails (assertNoneCalled, or the command's own failure) instead of running the real
 * site.yml, incus or nft against this machine.
 */
export class ForbiddenTools {
  private constructor(readonly dir: string, readonly tools: readonly ForbiddenTool[]) {}

  static create(tools: readonly ForbiddenTool[] = FORBIDDEN_TOOLS): ForbiddenTools {
    const dir = mkdtempSync(join(tmpdir(), 'anklume-forbidden-'));
    mkdirSync(join(dir, 'bin'));
    for (const tool of tools) symlinkSync(join(STANDINS_BIN, 'must-not-run'), join(dir, 'bin', tool));
    return new ForbiddenTools(dir, tools);
  }

  /** The directory of the stand-ins, to put first on a PATH built by hand. */
  get bin(): string {
    return join(this.dir, 'bin');
  }

  /** `base` with the stand-ins first on PATH (before base.PATH, or this process's). */
  env(base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
    return { ...base, PATH: `${this.bin}:${base.PATH ?? process.env.PATH ?? '/usr/bin:/bin'}`, STANDIN_DIR: this.dir };
  }

  /**
   * The stand-ins first on this process's own PATH too, for a command run in-process (runCli):
   * generator/nftables/nft.ts spawns nft with this process's PATH, not the env the CLI is given.
   * Returns what puts the PATH back.
   */
  onProcessPath(): () => void {
    const saved = { PATH: process.env.PATH, STANDIN_DIR: process.env.STANDIN_DIR };
    Object.assign(process.env, this.env(process.env));
    return () => {
      for (const [key, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    };
  }

  /** The calls that reached a stand-in, oldest first. */
  calls(): JournalEntry[] {
    return readJournal(join(this.dir, 'journal'));
  }

  assertNoneCalled(): void {
    assert.deepEqual(this.calls().map((c) => `${c.tool} ${c.args}`), [], `${this.tools.join(', ')}: none may be called by this test`);
  }

  /** An empty journal (between the tests that share these stand-ins). */
  reset(): void {
    rmSync(join(this.dir, 'journal'), { force: true });
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
