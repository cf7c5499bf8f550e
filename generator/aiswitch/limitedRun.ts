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
 * A command with a time limit, killed when it passes. `group`: in a process group of its own,
 * killed whole (the plan script waits on `incus` processes of its own, which would outlive it);
 * otherwise the command stays in ours, so that a Ctrl-C at the terminal reaches it too.
 */
export async function runLimited(argv: string[], env: NodeJS.ProcessEnv, seconds: number, options: { input?: string; group?: boolean } = {}): Promise<LimitedResult> {
  const child = execa(argv[0], argv.slice(1), {
    env, extendEnv: false, reject: false, detached: options.group === true, encoding: 'utf8',
    ...(options.input === undefined ? { stdin: 'ignore' as const } : { input: options.input }),
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      if (child.pid !== undefined) process.kill(options.group ? -child.pid : child.pid, 'SIGKILL');
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
