/**
 * Golden files are rewritten only on purpose: UPDATE_GOLDEN=1, never another value (a stray
 * UPDATE_GOLDEN=0 must not turn every golden comparison into a self-comparison), and never in CI,
 * where a rewrite would make the comparison pass whatever the output is: there it is an error.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export function updatingGolden(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.UPDATE_GOLDEN !== '1') return false;
  if (env.CI && env.CI !== 'false' && env.CI !== '0') {
    throw new Error(`UPDATE_GOLDEN=1 with CI=${env.CI}: golden files are never rewritten in CI; compare them instead (unset UPDATE_GOLDEN)`);
  }
  return true;
}

/** Writes the golden file when updatingGolden() says so; the caller compares either way. */
export function maybeUpdateGolden(path: string, content: string | Buffer, env: NodeJS.ProcessEnv = process.env): void {
  if (!updatingGolden(env)) return;
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
}
