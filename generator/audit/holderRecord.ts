/**
 * The cluster's record of the AI holder, read-only: `user.anklume.ai_holder` in the config of the
 * ai-tools project (docs/multi-host.md#where-the-ai-holder-lives), which every member reads from
 * the cluster's database. ai-switch writes it: "" for nobody, else the holder domain's name. A
 * cluster never switched has no such key (or no ai-tools project yet): not written, not an error.
 */
import { execa } from 'execa';
import { HOLDER_RECORD_KEY, type HolderRecord } from '../aiswitch/aiStatus.js';
import { AI_DOMAIN } from '../infra/devices.js';

export async function readHolderRecord(env: NodeJS.ProcessEnv): Promise<HolderRecord> {
  const r = await execa('incus', ['query', `/1.0/projects/${AI_DOMAIN}`], { env, extendEnv: false, reject: false, stdin: 'ignore' });
  if (r.exitCode !== 0) {
    const said = String(r.stderr || r.message || '').trim().split('\n').slice(-1)[0];
    if (/not found/i.test(said) && !/command not found|ENOENT/.test(said)) return { written: false };
    return { error: `incus query /1.0/projects/${AI_DOMAIN}: ${(r as { code?: string }).code === 'ENOENT' ? 'incus is not installed' : said}` };
  }
  try {
    const config = (JSON.parse(String(r.stdout)) as { config?: Record<string, string> }).config ?? {};
    const value = config[HOLDER_RECORD_KEY];
    return value === undefined ? { written: false } : { written: true, holder: value === '' ? null : value };
  } catch (err) {
    return { error: `incus query /1.0/projects/${AI_DOMAIN}: ${(err as Error).message}` };
  }
}
