/**
 * The ruleset's additions on an Incus cluster (docs/multi-host.md#where-the-isolation-is-enforced).
 *
 * Every member loads the same table. A domain's bridge is local to each member; what comes from or
 * goes to a member link is another member's, and there a packet's domain is its address: the source
 * address when it comes from a member link (the first rules make sure a bridge sends only its own
 * subnet there), the destination address when it goes to one. So each policy set keyed by a source
 * bridge has a twin `_in` keyed by the source subnet (or, for a machine, by its address alone), and
 * each set keyed by a destination bridge a twin `_out` keyed by the destination subnet (or address).
 * Domain-level twins hold /24s, which never overlap; machine-level twins hold addresses; so every
 * twin is an interval set whose elements nft accepts together, and every decision stays a lookup.
 */
import { bridgeOf, type Field } from './elements.js';
import type { SET_TYPES } from './nftables.js';
import type { Cluster, Infra } from '../core/types.js';

/** What each field of a policy set's key stands for, in key order. */
type Role = 'srcBridge' | 'srcAddr' | 'dstBridge' | 'dstAddr' | 'proto' | 'port';

/** The key layout of each policy set: what nftables.ts's flowElements and outsideElements build. */
const POLICY_SET_ROLES = {
  allow_bridges: ['srcBridge', 'dstBridge'],
  allow_bridge_ports: ['srcBridge', 'dstBridge', 'proto', 'port'],
  allow_to_addr: ['srcBridge', 'dstBridge', 'dstAddr'],
  allow_to_addr_ports: ['srcBridge', 'dstBridge', 'dstAddr', 'proto', 'port'],
  allow_from_addr: ['srcBridge', 'srcAddr', 'dstBridge'],
  allow_from_addr_ports: ['srcBridge', 'srcAddr', 'dstBridge', 'proto', 'port'],
  allow_addr_pairs: ['srcBridge', 'srcAddr', 'dstBridge', 'dstAddr'],
  allow_addr_pairs_tcp: ['srcBridge', 'srcAddr', 'dstBridge', 'dstAddr', 'port'],
  allow_addr_pairs_udp: ['srcBridge', 'srcAddr', 'dstBridge', 'dstAddr', 'port'],
  allow_outside: ['dstBridge'],
  allow_outside_ports: ['dstBridge', 'proto', 'port'],
  allow_outside_to_addr: ['dstBridge', 'dstAddr'],
  allow_outside_to_addr_ports: ['dstBridge', 'dstAddr', 'proto', 'port'],
} as const satisfies Record<Exclude<keyof typeof SET_TYPES, 'ai_holder' | 'domain_bridges' | 'intra'>, readonly Role[]>;

export type PolicySetName = keyof typeof POLICY_SET_ROLES;
type Direction = 'in' | 'out';
export type TwinSetName = `${PolicySetName}_${Direction}`;

/** Sources from outside have no twin `_in`: from a member link they are judged as outside already. */
const hasIn = (set: PolicySetName): boolean => (POLICY_SET_ROLES[set] as readonly Role[]).includes('srcBridge');

/** The twins in template order: every `_in`, then every `_out`. */
export const TWIN_SETS: readonly { twin: TwinSetName; of: PolicySetName; direction: Direction }[] = (['in', 'out'] as const).flatMap((direction) =>
  (Object.keys(POLICY_SET_ROLES) as PolicySetName[])
    .filter((of) => direction === 'out' || hasIn(of))
    .map((of) => ({ twin: `${of}_${direction}` as TwinSetName, of, direction })));

const ROLE_TYPE: Record<Role, string> = { srcBridge: 'ifname', srcAddr: 'ipv4_addr', dstBridge: 'ifname', dstAddr: 'ipv4_addr', proto: 'inet_proto', port: 'inet_service' };

/**
 * A twin's key from its policy set's: the bridge on the member-link side becomes its subnet, or
 * goes when the key also has that side's address (the address alone places it).
 */
function twinRoles(of: PolicySetName, direction: Direction): (Role | 'subnet')[] {
  const roles: readonly Role[] = POLICY_SET_ROLES[of];
  const [bridge, addr]: Role[] = direction === 'in' ? ['srcBridge', 'srcAddr'] : ['dstBridge', 'dstAddr'];
  return roles.flatMap((role) => (role !== bridge ? [role] : roles.includes(addr) ? [] : ['subnet' as const]));
}

export function twinType(of: PolicySetName, direction: Direction): string {
  return twinRoles(of, direction).map((role) => (role === 'subnet' ? 'ipv4_addr' : ROLE_TYPE[role])).join(' . ');
}

/** The sets that describe the cluster itself, before the twins. */
export const CLUSTER_SET_TYPES = {
  member_links: 'ifname',
  domain_subnets: 'ipv4_addr',
  bridge_subnet: 'ifname . ipv4_addr',
  ai_holder_subnet: 'ipv4_addr',
} as const;

export type ClusterSetName = keyof typeof CLUSTER_SET_TYPES;

export function domainSubnet(infra: Infra, domain: string): string {
  return `${infra.global.base_subnet}.${infra.domains[domain].subnet_id}.0/24`;
}

/** The twins of one element of a policy set (none for a set that has no twin in that direction). */
export function twinElements(infra: Infra, set: PolicySetName, fields: Field[]): [TwinSetName, Field[]][] {
  const out: [TwinSetName, Field[]][] = [];
  for (const direction of ['in', 'out'] as const) {
    if (direction === 'in' && !hasIn(set)) continue;
    const roles = POLICY_SET_ROLES[set] as readonly Role[];
    const twin = twinRoles(set, direction).map((role): Field => {
      if (role !== 'subnet') return fields[roles.indexOf(role)];
      const bridge = fields[roles.indexOf(direction === 'in' ? 'srcBridge' : 'dstBridge')];
      if (!('ifname' in bridge)) throw new Error(`${set}: the bridge field is not an interface`);
      return { subnet: domainSubnet(infra, bridge.ifname.slice(bridgeOf('').length)) };
    });
    out.push([`${set}_${direction}`, twin]);
  }
  return out;
}

/** The member links' names: the cluster's, then each member's own where it differs. */
export function memberLinks(cluster: Cluster): string[] {
  return [...new Set([cluster.member_link, ...Object.values(cluster.members).map((m) => m.member_link ?? cluster.member_link)])];
}
