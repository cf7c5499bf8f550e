/**
 * `anklume-gen ai-status` on an Incus cluster: every member's holder sets over Ansible (through the
 * inventory sync wrote, as apply reaches the members) and the cluster's record from Incus once its
 * default remote is known to be infra.yml's cluster, all read-only and within the time limit, for
 * aiStatus.ts to set against the state file.
 */
import { join } from 'node:path';
import type { Invocation } from './command.js';
import { isFile } from './sitePlaybook.js';
import type { ClusterReadings, HolderRecord, MemberHolderRead } from '../aiswitch/aiStatus.js';
import type { Infra } from '../core/types.js';

export interface ClusterStatusRun {
  infra: Infra;
  infraPath: string;
  baseDir: string;
  /** Each read's time limit in seconds. */
  seconds: number;
}

export async function clusterReadings(inv: Invocation, run: ClusterStatusRun): Promise<ClusterReadings | { problem: string }> {
  const [{ CLUSTER_INVENTORY }, { readMembers }, { readHolderRecord }, { checkClusterRemote }, { domainSubnet }] = await Promise.all([
    import('../tree/tree.js'), import('../audit/memberReader.js'), import('../audit/holderRecord.js'), import('../aiswitch/clusterRemote.js'), import('../nftables/memberSets.js'),
  ]);
  const inventory = join(run.baseDir, CLUSTER_INVENTORY);
  if (!isFile(inventory)) {
    return { problem: `${inventory}: no inventory of the cluster's members to read their holder sets through; write it with 'anklume-gen sync ${run.infraPath} --base-dir ${run.baseDir}' (make sync INFRA=${run.infraPath} BASE_DIR=${run.baseDir}), or name the tree that has it: 'anklume-gen ai-status --base-dir DIR' (make ai-status BASE_DIR=DIR)` };
  }
  const names = Object.keys(run.infra.global.cluster?.members ?? {}).sort();
  const record = async (): Promise<HolderRecord> => {
    const remote = await checkClusterRemote(inv.env, names, run.seconds);
    return remote.ok ? readHolderRecord(inv.env, run.seconds) : { error: remote.why };
  };
  const [read, rec] = await Promise.all([
    readMembers({ env: inv.env, inventory, members: names, vars: {}, parts: ['holders'], seconds: run.seconds }),
    record(),
  ]);
  const members = Object.fromEntries(names.map((m): [string, MemberHolderRead] => {
    const r = read[m];
    if (!r.ok) return [m, { ok: false, why: r.why }];
    if (!r.value.holders.ok) return [m, { ok: false, why: r.value.holders.why }];
    if (!r.value.holderSubnets.ok) return [m, { ok: false, why: r.value.holderSubnets.why }];
    return [m, { ok: true, holders: r.value.holders.value, subnets: r.value.holderSubnets.value }];
  }));
  return { members, record: rec, subnetOf: (d) => domainSubnet(run.infra, d) };
}
