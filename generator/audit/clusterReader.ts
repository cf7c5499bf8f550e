/**
 * `anklume-gen audit` on an Incus cluster, the reading half, read-only, in parallel: Incus from
 * here (its instances and apply's plan, the cluster's record of the holder), every member over
 * Ansible (memberReader.ts), and the members' play of site.yml under --check (membersPlan.ts).
 * Every read has the time limit of readLimit.ts; Incus's instances and the record are read only
 * once its default remote is known to be the cluster of infra.yml (clusterRemote.ts).
 */
import type { ClusterReadings } from './clusterChecks.js';
import type { LiveInstance, Read } from './auditChecks.js';
import { checkClusterRemote } from '../aiswitch/clusterRemote.js';
import type { HolderRecord } from '../aiswitch/aiStatus.js';
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
  /** Each read's time limit in seconds. */
  seconds: number;
}

/** Incus's instances and the record, from the default remote once it is the cluster; else why not, for both. */
async function fromTheCluster(o: ClusterReadOptions): Promise<[Read<LiveInstance[]>, HolderRecord]> {
  const remote = await checkClusterRemote(o.env, o.members, o.seconds);
  if (!remote.ok) return [remote, { error: remote.why }];
  return Promise.all([instances(o.env, o.seconds), readHolderRecord(o.env, o.seconds)]);
}

export async function readCluster(o: ClusterReadOptions): Promise<ClusterReadings> {
  const planRun = { env: o.env, baseDir: o.tree, inventory: o.inventory, vars: o.extraVars, seconds: o.seconds };
  const [[live, record], plan, members, first] = await Promise.all([
    fromTheCluster(o),
    incusPlan(o.tree, o.extraVars, o.env, o.seconds),
    readMembers({ env: o.env, inventory: o.inventory, members: o.members, vars: o.extraVars, parts: ['holders', 'table', 'conntrack', 'links'], seconds: o.seconds }),
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
