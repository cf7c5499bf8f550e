/**
 * Running ansible-playbook (I/O edge). Argument arrays only, and extra vars as one JSON document
 * in a file (`-e @vars.json`): nothing a user typed is ever parsed as `key=value` or by a shell.
 */
import { join } from 'node:path';
import { execa } from 'execa';
import { packagePath } from '../core/packageRoot.js';

export const ROLES_DIR = packagePath('roles') + '/';

/**
 * The environment ansible-playbook runs with: the package's roles first, quiet about the implicit
 * localhost (the playbooks target it on purpose), no retry files next to generated playbooks.
 */
export function ansibleEnv(env: NodeJS.ProcessEnv, color: boolean): NodeJS.ProcessEnv {
  const rolesPath = [ROLES_DIR, env.ANSIBLE_ROLES_PATH].filter(Boolean).join(':');
  return {
    ...env,
    ANSIBLE_ROLES_PATH: rolesPath,
    ANSIBLE_LOCALHOST_WARNING: 'False',
    ANSIBLE_INVENTORY_UNPARSED_WARNING: 'False',
    ANSIBLE_RETRY_FILES_ENABLED: 'False',
    // Local connection: pipelining saves writing each module to a temp file.
    ANSIBLE_PIPELINING: 'True',
    ...(color ? { ANSIBLE_FORCE_COLOR: 'True' } : { ANSIBLE_NOCOLOR: 'True' }),
  };
}

export function playbookArgv(playbook: string, varsFile?: string, extraArgs: string[] = []): string[] {
  return [playbook, ...(varsFile ? ['-e', `@${varsFile}`] : []), ...extraArgs];
}

export interface PlaybookRun {
  playbook: string;
  varsFile?: string;
  /** Given by the user after `--` (apply-nftables): more arguments for ansible-playbook, as they are. */
  extraArgs?: string[];
  env: NodeJS.ProcessEnv;
  color: boolean;
  /** ansible's own output (it goes to stderr: stdout is for results and --json). */
  onOutput: (chunk: string) => void;
  /** Aborting kills the whole ansible process group (SIGTERM, then SIGKILL after 5 s). */
  signal?: AbortSignal;
  /**
   * An existing directory that the caller removes afterwards, for every temporary file of the run
   * (ansible's local temp, its module payloads, the tasks' own): a killed ansible cleans up
   * nothing, and would leave them in ~/.ansible/tmp and /tmp.
   */
  tempDir: string;
}

export interface PlaybookResult {
  exitCode?: number;
  /** Set when ansible ended by a signal (ours or anyone's). */
  signal?: string;
  /** Set when ansible-playbook could not be started at all. */
  spawnError?: string;
  ok: boolean;
  durationMs: number;
}

export async function runPlaybook(run: PlaybookRun): Promise<PlaybookResult> {
  const started = performance.now();
  // Its own process group, so that a signal meant for this switch reaches ansible only through
  // us: we decide the order (stop ansible, then restore the safe state), not the terminal.
  const child = execa('ansible-playbook', playbookArgv(run.playbook, run.varsFile, run.extraArgs), {
    env: { ...ansibleEnv(run.env, run.color), TMPDIR: run.tempDir, ANSIBLE_LOCAL_TEMP: join(run.tempDir, 'ansible-local') },
    extendEnv: false,
    reject: false,
    detached: true,
    stdin: 'ignore',
    buffer: false,
    encoding: 'utf8',
  });
  child.stdout?.on('data', (d: Buffer | string) => run.onOutput(String(d)));
  child.stderr?.on('data', (d: Buffer | string) => run.onOutput(String(d)));

  const killGroup = (sig: NodeJS.Signals) => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, sig);
    } catch {
      // already gone
    }
  };
  let forceTimer: NodeJS.Timeout | undefined;
  const onAbort = () => {
    killGroup('SIGTERM');
    forceTimer = setTimeout(() => killGroup('SIGKILL'), 5_000);
  };
  if (run.signal?.aborted) onAbort();
  else run.signal?.addEventListener('abort', onAbort, { once: true });

  const result = await child;
  run.signal?.removeEventListener('abort', onAbort);
  if (forceTimer) clearTimeout(forceTimer);
  const durationMs = performance.now() - started;
  const failure = result.failed && result.exitCode === undefined && !result.signal ? result.shortMessage : undefined;
  return {
    ...(result.exitCode !== undefined ? { exitCode: result.exitCode } : {}),
    ...(result.signal ? { signal: result.signal } : {}),
    ...(failure ? { spawnError: failure } : {}),
    ok: result.exitCode === 0,
    durationMs,
  };
}
