/**
 * `anklume-gen audit` on an Incus cluster's infra (global.cluster): every member read over Ansible
 * through the inventory sync wrote (as apply reaches them), Incus from here; the judgement is
 * audit/clusterChecks.ts. Read-only, as on one host; exit 1 on any finding or any member not read.
 */
import { join } from 'node:path';
import { EXIT_FAILED, EXIT_OK, reportProblems, type Invocation } from './command.js';
import { isFile } from './sitePlaybook.js';
import { printJson } from './output.js';
import type { Infra } from '../core/types.js';
import type { Finding } from '../audit/auditChecks.js';

export interface ClusterAudit {
  infra: Infra;
  /** The holder the state file gives (null: nobody, or open mode). */
  held: string | null;
  baseDir: string;
  vars: Record<string, unknown>;
  infraPath: string;
  treeText: string | undefined;
  expectedText: string;
  installedPath: string;
  bootConfPath: string | undefined;
  /** Each read's time limit in seconds. */
  seconds: number;
  /** The tree's own findings (auditChecks.treeFileFindings), listed first. */
  treeFindings: Finding[];
}

export async function auditCluster(inv: Invocation, json: boolean, a: ClusterAudit): Promise<number> {
  const [{ CLUSTER_INVENTORY }, { readCluster }, { judgeCluster }, { readContext }, { withTreeFindings }] = await Promise.all([
    import('../tree/tree.js'), import('../audit/clusterReader.js'), import('../audit/clusterChecks.js'), import('../infra/context.js'), import('../audit/auditChecks.js'),
  ]);
  const inventory = join(a.baseDir, CLUSTER_INVENTORY);
  if (!isFile(inventory)) {
    reportProblems(inv, json, [{ message: `${inventory}: no inventory of the cluster's members to audit them through; write it with 'anklume-gen sync ${a.infraPath} --base-dir ${a.baseDir}' (make sync INFRA=${a.infraPath} BASE_DIR=${a.baseDir}), or name the tree that has it: 'anklume-gen audit --base-dir DIR' (make audit BASE_DIR=DIR)` }], []);
    return EXIT_FAILED;
  }
  const members = Object.keys(a.infra.global.cluster?.members ?? {}).sort();
  const readings = await readCluster({
    env: inv.env, tree: a.baseDir, inventory, members, extraVars: a.vars,
    treeText: a.treeText, expectedText: a.expectedText, installedPath: a.installedPath, bootConfPath: a.bootConfPath, seconds: a.seconds,
  });
  const exclusive = a.infra.global.ai_access_policy === 'exclusive';
  const audit = withTreeFindings(judgeCluster(readings, a.infra, exclusive ? a.held : null, await readContext(inv.env)), a.treeFindings);
  if (json) {
    printJson(inv.streams, audit);
    return audit.clean ? EXIT_OK : EXIT_FAILED;
  }
  for (const f of audit.findings) inv.streams.out(`FINDING (${f.check}): ${f.message}\n  fix: ${f.fix}`);
  for (const u of audit.unchecked) inv.streams.out(`NOT CHECKED (${u.check}): ${u.why}`);
  const checked = members.filter((m) => audit.members[m] === 'checked');
  const rec = audit.holder_record;
  if (exclusive && !('error' in rec) && !rec.written) inv.streams.out("note: the cluster's record of the AI holder (user.anklume.ai_holder on project ai-tools) is not written: no switch on this cluster yet");
  if (audit.clean) inv.streams.out(`clean: every member of the cluster (${members.join(', ')}) is what the tree and infra.yml say`);
  else {
    const notChecked = members.filter((m) => audit.members[m] !== 'checked');
    inv.streams.out(`${audit.findings.length} finding(s)${audit.unchecked.length ? `, ${audit.unchecked.length} check(s) that could not run` : ''}; members checked: ${checked.join(', ') || 'none'}${notChecked.length ? `; NOT CHECKED: ${notChecked.join(', ')}` : ''}: not a clean cluster`);
  }
  return audit.clean ? EXIT_OK : EXIT_FAILED;
}
