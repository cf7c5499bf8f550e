/**
 * `anklume-gen audit` on an Incus cluster, the reading half, read-only, in parallel: Incus from
 * here (its instances and apply's plan, the cluster's record of the holder), every member over
 * Ansible (memberReader.ts), and the members' play of site.yml under --check (membersPlan.ts).
 */
import type { ClusterReadings } from './clusterChecks.js';
import { readHolderRecord } from './holderRecord.js';
import { instances } from './hostReader.js';
import { incusPlan } from './incusPlan.js';
import { readMembers } from './memberReader.js';
import { membersPlan } from './membersPlan.js';

export interface ClusterReadOptions {
  env: NodeJS.ProcessEnv;
  tree: string;
  /** inventory/_cluster.yml under the tree. */
  inventory: string;
  /** The members global.cluster names. */
  members: string[];
  extraVars: Record<string, unknown>;
  treeText: string | undefined;
  expectedText: string;
  installedPath: string;
  bootConfPath: string | undefined;
}

export async function readCluster(o: ClusterReadOptions): Promise<ClusterReadings> {
  const planRun = { env: o.env, baseDir: o.tree, inventory: o.inventory, vars: o.extraVars };
  const [live, plan, members, record, first] = await Promise.all([
    instances(o.env),
    incusPlan(o.tree, o.extraVars, o.env),
    readMembers({ env: o.env, inventory: o.inventory, members: o.members, vars: o.extraVars, parts: ['holders', 'table', 'conntrack', 'links'] }),
    readHolderRecord(o.env),
    membersPlan(planRun),
  ]);
  // The members' play stops at a member it cannot reach (any_errors_fatal, as apply must): the
  // others are compared again without it, and it is reported as not read.
  const readable = o.members.filter((m) => members[m]?.ok);
  const onMembers = !first.ok && readable.length > 0 && readable.length < o.members.length ? await membersPlan({ ...planRun, limit: readable }) : first;
  return {
    treeText: o.treeText,
    expectedText: o.expectedText,
    installedPath: o.installedPath,
    bootConfPath: o.bootConfPath,
    instances: live,
    plan,
    membersPlan: onMembers,
    members,
    record,
  };
}
