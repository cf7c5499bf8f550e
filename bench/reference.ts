/**
 * The reference that issue 18's targets are set against: anklume's Python generator of the seed's
 * time (bench/fetch-reference downloads it into .bench/reference/generate.py; ANKLUME_REFERENCE
 * names another copy). Run as a user would, `python3 generate.py INFRA --base-dir DIR [--dry-run]`.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export function referenceScript(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const path = env.ANKLUME_REFERENCE || join(import.meta.dirname, '..', '.bench', 'reference', 'generate.py');
  return existsSync(path) ? path : undefined;
}

export const NO_REFERENCE = 'reference: not here (bench/fetch-reference downloads it, or set ANKLUME_REFERENCE)';

/**
 * The infra as the reference reads it: it knows no `outside` policy (published ports came later),
 * so that policy is left out of its copy; the rest is the same text.
 */
export function forReference(infra: Record<string, unknown>): Record<string, unknown> {
  const policies = (infra.network_policies as { from?: string }[] | undefined) ?? [];
  return { ...infra, network_policies: policies.filter((p) => p.from !== 'outside') };
}
