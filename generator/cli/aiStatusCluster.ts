/**
 * `anklume-gen ai-status` on an Incus cluster: every member's holder sets over Ansible (through the
 * inventory sync wrote, as apply reaches the members) and the cluster's record from Incus, both
 * read-only, for aiStatus.ts to set against the state file.
 */
import { join } from 'node:path';
import type { Invocation } from './command.js';
import { isFile } from './sitePlaybook.js';
import type { ClusterReadings, MemberHolderRead } from '../aiswitch/aiStatus.js';
import type { Infra } from '../core/types.js';

export async function clusterReadings(inv: Invocation, infra: Infra, baseDir: string): Promise<ClusterReadings | { problem: string }> {
  const [{ CLUSTER_INVENTORY }, { readMembers }, { readHolderRecord }, { domainSubnet }] = await Promise.all([
    import('../tree/tree.js'), import('../audit/memberReader.js'), import('../audit/holderRecord.js'), import('../nftables/memberSets.js'),
  ]);
  const inventory = join(baseDir, CLUSTER_INVENTORY);
  if (!isFile(inventory)) {
    return { problem: `${inventory}: no inventory of the cluster's members to read their holder sets through; write it with 'anklume-gen sync <infra> --base-dir ${baseDir}' (make sync), or name the tree with --base-dir` };
  }
  const names = Object.keys(infra.global.cluster?.members ?? {}).sort();
  const [read, record] = await Promise.all([
    readMembers({ env: inv.env, inventory, members: names, vars: {}, parts: ['holders'] }),
    readHolderRecord(inv.env),
  ]);
  const members = Object.fromEntries(names.map((m): [string, MemberHolderRead] => {
    const r = read[m];
    if (!r.ok) return [m, { ok: false, why: r.why }];
    if (!r.value.holders.ok) return [m, { ok: false, why: r.value.holders.why }];
    if (!r.value.holderSubnets.ok) return [m, { ok: false, why: r.value.holderSubnets.why }];
    return [m, { ok: true, holders: r.value.holders.value, subnets: r.value.holderSubnets.value }];
  }));
  return { members, record, subnetOf: (d) => domainSubnet(infra, d) };
}
