/**
 * The cluster's record of the AI holder, read-only: `user.anklume.ai_holder` in the config of the
 * ai-tools project (docs/multi-host.md#where-the-ai-holder-lives), which every member reads from
 * the cluster's database. ai-switch writes it: "" for nobody, else the holder domain's name. A
 * cluster never switched has no such key (or no ai-tools project yet): not written, not an error.
 * The callers read it once clusterRemote.ts says the default remote is infra.yml's cluster.
 */
import { HOLDER_RECORD_KEY, type HolderRecord } from '../aiswitch/aiStatus.js';
import { AI_DOMAIN } from '../infra/devices.js';
import { noAnswer } from '../aiswitch/readLimit.js';
import { runLimited } from '../aiswitch/limitedRun.js';

export async function readHolderRecord(env: NodeJS.ProcessEnv, seconds: number): Promise<HolderRecord> {
  const path = `/1.0/projects/${AI_DOMAIN}`;
  const r = await runLimited(['incus', 'query', path], env, seconds);
  if (r.timedOut) return { error: `incus query ${path}: ${noAnswer(seconds)} (without quorum the cluster's database does not answer)` };
  if (r.missing) return { error: `incus query ${path}: incus is not installed` };
  if (r.exitCode !== 0) {
    const said = (r.stderr || r.message).trim().split('\n').slice(-1)[0];
    if (/not found/i.test(said)) return { written: false };
    return { error: `incus query ${path}: ${said}` };
  }
  try {
    const config = (JSON.parse(r.stdout) as { config?: Record<string, string> }).config ?? {};
    const value = config[HOLDER_RECORD_KEY];
    return value === undefined ? { written: false } : { written: true, holder: value === '' ? null : value };
  } catch (err) {
    return { error: `incus query ${path}: ${(err as Error).message}` };
  }
}
