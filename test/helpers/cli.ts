/** Runs the CLI in-process with captured output, or as a real process when exit codes must be real. */
import { spawnSync } from 'node:child_process';
import { main } from '../../generator/cli/cli.ts';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runCli(args: string[], env: NodeJS.ProcessEnv, cwd = process.cwd()): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const streams = {
    out: (text: string) => void (stdout += text.endsWith('\n') ? text : text + '\n'),
    err: (text: string) => void (stderr += text.endsWith('\n') ? text : text + '\n'),
    color: false,
  };
  const code = await main({ args, env, streams, cwd });
  return { code, stdout, stderr };
}

/** The real executable (through tsx, so no build is needed). */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv, cwd = process.cwd()): CliResult {
  const result = spawnSync(process.execPath, ['--import', 'tsx', `${process.cwd()}/generator/cli/bin.ts`, ...args], { env, cwd, encoding: 'utf8' });
  return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}
