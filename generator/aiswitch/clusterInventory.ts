/**
 * The members' inventory against the infra, before a switch on a cluster changes anything. The
 * playbooks' hosts come from infra.yml, Ansible's from inventory/_cluster.yml: a member that the
 * inventory lacks gets only Ansible's warning ("Could not match supplied host pattern") and no
 * answer, after the revoke already ran elsewhere; one at another address is another machine.
 */
import { readFile } from 'node:fs/promises';
import * as jsyaml from 'js-yaml';
import { CLUSTER_GROUP } from '../tree/tree.js';
import type { Infra } from '../core/types.js';

export interface InventoryMismatch {
  /** Members of the infra that the inventory lacks. */
  missing: string[];
  /** Hosts of the inventory's group that are no member of the infra. */
  extra: string[];
  /** Members whose ansible_host is not their address in the infra: [member, inventory, infra]. */
  moved: [string, string, string][];
  /** The inventory could not be read or parsed: why. */
  unreadable?: string;
}

const isMapping = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** What differs between the inventory's anklume_cluster hosts and global.cluster; undefined when nothing. */
export async function compareInventory(path: string, infra: Infra): Promise<InventoryMismatch | undefined> {
  let doc: unknown;
  try {
    doc = jsyaml.load(await readFile(path, 'utf8'));
  } catch (err) {
    return { missing: [], extra: [], moved: [], unreadable: err instanceof Error ? err.message.split('\n')[0] : String(err) };
  }
  const all = isMapping(doc) ? doc.all : undefined;
  const children = isMapping(all) ? all.children : undefined;
  const group = isMapping(children) ? children[CLUSTER_GROUP] : undefined;
  const hosts = isMapping(group) && isMapping(group.hosts) ? group.hosts : {};
  const members = infra.global.cluster?.members ?? {};
  const missing = Object.keys(members).filter((m) => !(m in hosts)).sort();
  const extra = Object.keys(hosts).filter((h) => !(h in members)).sort();
  const moved = Object.entries(members).flatMap(([name, member]): [string, string, string][] => {
    const host = hosts[name];
    if (!(name in hosts)) return [];
    const address = isMapping(host) ? host.ansible_host : undefined;
    return address === member.address ? [] : [[name, address === undefined ? 'none' : String(address), member.address]];
  });
  return missing.length || extra.length || moved.length ? { missing, extra, moved } : undefined;
}
