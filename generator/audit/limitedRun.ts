/** A command run with a time limit (readLimit.ts says why every read has one). */
import { execa } from 'execa';

export interface LimitedResult {
  exitCode?: number;
  stdout: string;
  stderr: string;
  /** The limit passed and the command was killed. */
  timedOut: boolean;
  /** The command is not installed. */
  missing: boolean;
  message: string;
}

/**
 * A command with a time limit, in a process group of its own that is killed whole when the limit
 * passes: the plan script waits on `incus` processes of its own, which would outlive it otherwise.
 */
export async function runLimited(argv: string[], env: NodeJS.ProcessEnv, seconds: number, input?: string): Promise<LimitedResult> {
  const child = execa(argv[0], argv.slice(1), {
    env, extendEnv: false, reject: false, detached: true, encoding: 'utf8',
    ...(input === undefined ? { stdin: 'ignore' as const } : { input }),
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }, seconds * 1000);
  try {
    const r = await child;
    return {
      ...(r.exitCode !== undefined ? { exitCode: r.exitCode } : {}),
      stdout: String(r.stdout ?? ''),
      stderr: String(r.stderr ?? ''),
      timedOut,
      missing: (r as { code?: string }).code === 'ENOENT',
      message: String(r.message ?? ''),
    };
  } finally {
    clearTimeout(timer);
  }
}
