/**
 * Recording stand-ins (TEST-ONLY) for what cannot run here: `incus`, `nvidia-smi`, `systemctl`, plus
 * a journaling wrapper around the real `nft`. They live in test/fixtures/standins/ (read lib.sh
 * there); putting that directory first on PATH makes ansible and anklume-gen call them.
 *
 * Each stand-in appends one journal line per call with a timestamp and the holder set at that
 * moment (read with the real nft in the namespace the call runs in), so a test can check the
 * order of a switch against the live ruleset. Control files make a call fail or wait.
 *
 *   const s = await StandIns.create();      // a fresh state dir; s.env(base) → env with PATH
 *   s.fail('systemctl stop'); s.slow(3, 'systemctl stop'); s.gpuPids(['4242']); s.sticky(['4242'])
 *   s.resetFails(true); await s.journal() → JournalEntry[]; s.reset(); s.cleanup()
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const STANDINS_BIN = fileURLToPath(new URL('../fixtures/standins/', import.meta.url)).replace(/\/$/, '');

export interface JournalEntry {
  /** Seconds since the epoch (ns resolution). */
  t: number;
  tag: string;
  /** Bridges in the ai_holder set at the time of the call ('?' when unreadable). */
  holders: string[] | '?';
  tool: string;
  args: string;
}

export class StandIns {
  private constructor(readonly dir: string) {}

  static create(): StandIns {
    return new StandIns(mkdtempSync(join(tmpdir(), 'anklume-standins-')));
  }

  /** `base` with the stand-ins first on PATH, pointed at this state dir. */
  env(base: NodeJS.ProcessEnv, tag?: string): NodeJS.ProcessEnv {
    return { ...base, PATH: `${STANDINS_BIN}:${base.PATH ?? process.env.PATH ?? '/usr/bin:/bin'}`, STANDIN_DIR: this.dir, ...(tag ? { STANDIN_TAG: tag } : {}) };
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
    const path = this.file('journal');
    if (!existsSync(path)) return [];
    return readFileSync(path, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [t, tag, holders, tool, ...rest] = line.split('\t');
        return { t: Number(t), tag, holders: holders === '?' ? '?' : holders === '-' ? [] : holders.split(','), tool, args: rest.join('\t') };
      });
  }

  /** Back to normal behaviour with an empty journal. */
  reset(): void {
    for (const name of ['fail', 'slow', 'gpu-pids', 'gpu-sticky', 'gpu-reset-fails', 'journal']) rmSync(this.file(name), { force: true });
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
