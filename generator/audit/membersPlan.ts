/**
 * On an Incus cluster, the ruleset and the routes of every member as the members' play of site.yml
 * would change them: that play run under --check (`-i` the members' inventory, `--limit` them),
 * each member's record of what differs read back (ruleset:live@m1, ruleset:boot@m1,
 * ruleset:boot-conf@m1, routes:m1). The comparison is the roles' own (incus_nftables,
 * cluster_routes), so `apply --check`, the apply and the audit cannot disagree about a member.
 */
import { mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Read } from './auditChecks.js';
import type { PlanObject } from './incusPlan.js';
import { noAnswer } from '../aiswitch/readLimit.js';

export interface MembersPlanRun {
  env: NodeJS.ProcessEnv;
  baseDir: string;
  /** inventory/_cluster.yml under the tree. */
  inventory: string;
  /** The ansible variables given with -e. */
  vars: Record<string, unknown>;
  /** The members to read (default: every member of the inventory). */
  limit?: string[];
  /** The run's time limit in seconds (readLimit.ts). */
  seconds: number;
}

/** What differs on the members read, and which members wrote their record (the others were not read). */
export interface MembersPlan {
  objects: PlanObject[];
  /** The members whose records came back. */
  read: string[];
}

export async function membersPlan(run: MembersPlanRun): Promise<Read<MembersPlan>> {
  const [{ runPlaybook }, { packagePath }] = await Promise.all([import('../aiswitch/ansible.js'), import('../core/packageRoot.js')]);
  const dir = mkdtempSync(join(tmpdir(), 'anklume-members-plan-'));
  try {
    const planFile = join(dir, 'plan.json');
    let output = '';
    const limit = AbortSignal.timeout(run.seconds * 1000);
    const result = await runPlaybook({
      tempDir: dir,
      playbook: packagePath('site.yml'),
      extraArgs: ['-i', run.inventory, '--limit', run.limit ? run.limit.join(',') : 'anklume_cluster', '--tags', 'nftables,networks', '--check', '-e', JSON.stringify({ ...run.vars, anklume_plan_file: planFile })],
      env: { ...run.env, ANKLUME_BASE_DIR: realpathSync(run.baseDir) },
      color: false,
      onOutput: (chunk) => void (output += chunk),
      signal: limit,
    });
    if (limit.aborted) return { ok: false, why: `the members could not be read: ${noAnswer(run.seconds)} (ansible-playbook was stopped)` };
    if (!result.ok) return { ok: false, why: `the members could not be read (ansible-playbook ${result.spawnError ?? `exit ${result.exitCode}`}): ${output.trim().split('\n').slice(-3).join(' ')}` };
    const records = readdirSync(dir).filter((name) => /^plan\.json\.(ruleset|routes)@/.test(name)).sort();
    const read = [...new Set(records.map((name) => name.slice(name.indexOf('@') + 1)))].sort();
    const objects = records.flatMap((name) => Object.entries(JSON.parse(readFileSync(join(dir, name), 'utf8')) as Record<string, unknown>)
      // Ansible may hand the flags over as booleans or as their text.
      .filter(([, differs]) => String(differs).toLowerCase() === 'true')
      .map(([id]): PlanObject => ({ op: 'update', kind: id.startsWith('routes:') ? 'routes' : 'ruleset', id, changes: {} })));
    return { ok: true, value: { objects, read } };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
