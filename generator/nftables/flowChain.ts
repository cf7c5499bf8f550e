/**
 * The forward chain as `flows` evaluates it: the ruleset's sets as lookup tables, and each rule of
 * templates/nftables/anklume.nft.hbs restated (FORWARD_CHAIN on one host, CLUSTER_FORWARD_CHAIN on a
 * cluster); a unit test holds each list equal to the rendered chain. A new connection is one packet
 * with conntrack state new: `ct state established,related accept` never applies to it.
 */
import { AI_DOMAIN } from '../infra/validate.js';
import type { PublishedPort } from '../infra/devices.js';
import { BRIDGE_PREFIX, bridgeOf, elementKey, type Field } from './elements.js';
import { twinElements, type PolicySetName } from './memberSets.js';
import type { Ruleset, SetName } from './nftables.js';
import { nftString } from '../core/templates.js';
import type { Infra } from '../core/types.js';

export type FlowProtocol = 'tcp' | 'udp' | 'icmp';
export const FLOW_PROTOCOLS: readonly FlowProtocol[] = ['tcp', 'udp', 'icmp'];

/** One side of a packet: the interface, and the address when it is one known machine. */
export interface Side {
  iface: string;
  addr?: string;
  /** How a reason names this side. */
  label: string;
  /** The machine this side is, when it is one (its published ports apply). */
  machine?: string;
  /** On a cluster: the member the machine runs on. */
  member?: string;
  /** When `iface` is the member link: the bridge of the machine behind it, on its own member. */
  home?: string;
}

/** Any interface that is not a domain bridge: what `outside` stands for on the wire. */
export const OUTSIDE_IFACE = 'uplink';
/** The member link, as flows names it: any interface of the set member_links. */
const LINK_IFACE = 'member-link';

export interface Packet {
  src: Side;
  dst: Side;
  proto: FlowProtocol;
  /** Absent for icmp. */
  port?: number;
}

export type Why = 'outbound' | 'same-domain' | 'ai-exclusive' | 'policy' | 'no-policy' | 'published';

export interface Decision {
  allow: boolean;
  why: Why;
  policy?: number;
  /** The proxy device that publishes the port: the path goes through the host, not the chain. */
  published?: PublishedPort;
}

/** The ruleset as lookup tables: element key → the policy it comes from (-1: none). */
export class Tables {
  private readonly sets = new Map<SetName, Map<string, number>>();

  constructor(readonly ruleset: Ruleset, readonly infra: Infra) {
    for (const set of ruleset.sets) {
      const keys = new Map<string, number>();
      for (const group of set.groups) for (const key of group.elements) keys.set(key, group.policy ?? -1);
      this.sets.set(set.name, keys);
    }
  }

  /** The policy index of the element, -1 for an element of no policy, undefined when absent. */
  lookup(set: SetName, key: string): number | undefined {
    return this.sets.get(set)?.get(key);
  }

  has(set: SetName, key: string): boolean {
    return this.lookup(set, key) !== undefined;
  }
}

const ifname = (iface: string): Field => ({ ifname: iface });
const isBridge = (iface: string) => iface.startsWith(BRIDGE_PREFIX);

type Fields = (p: Packet, t: Tables) => Field[] | undefined;

interface ChainRule {
  /** The rule's text as the template renders it. */
  rule: string;
  exclusiveOnly?: true;
  decide: (p: Packet, t: Tables) => Decision | undefined;
  /** A policy set lookup: the set, and the packet's key in it (its cluster twins derive from them). */
  lookup?: { set: PolicySetName; fields: Fields };
}

/** An accept rule that is one set lookup; `fields` undefined: the packet cannot match it. */
function lookupRule(rule: string, set: PolicySetName, fields: Fields): ChainRule {
  return {
    rule,
    lookup: { set, fields },
    decide: (p, t) => {
      const f = fields(p, t);
      const policy = f ? t.lookup(set, elementKey(f)) : undefined;
      return policy === undefined ? undefined : { allow: true, why: 'policy', policy };
    },
  };
}

const portFields = (p: Packet): Field[] | undefined => (p.proto === 'icmp' || p.port === undefined ? undefined : [{ proto: p.proto }, { port: p.port }]);
const withAddr = (addr: string | undefined, rest: Field[] | undefined): Field[] | undefined => (addr && rest ? [{ addr }, ...rest] : undefined);
const fromOutside = (p: Packet, t: Tables) => !t.has('domain_bridges', elementKey([ifname(p.src.iface)]));
const AI_BRIDGE = nftString(bridgeOf(AI_DOMAIN));

export const FORWARD_CHAIN: readonly ChainRule[] = [
  { rule: 'oifname != "net-*" accept', decide: (p) => (isBridge(p.dst.iface) ? undefined : { allow: true, why: 'outbound' }) },
  {
    rule: 'iifname . oifname @intra accept',
    decide: (p, t) => (t.has('intra', elementKey([ifname(p.src.iface), ifname(p.dst.iface)])) ? { allow: true, why: 'same-domain' } : undefined),
  },
  {
    rule: `iifname ${AI_BRIDGE} oifname != @ai_holder drop`,
    exclusiveOnly: true,
    decide: (p, t) => (p.src.iface === bridgeOf(AI_DOMAIN) && !t.has('ai_holder', elementKey([ifname(p.dst.iface)])) ? { allow: false, why: 'ai-exclusive' } : undefined),
  },
  {
    rule: `oifname ${AI_BRIDGE} iifname != @ai_holder iifname "net-*" drop`,
    exclusiveOnly: true,
    decide: (p, t) =>
      p.dst.iface === bridgeOf(AI_DOMAIN) && !t.has('ai_holder', elementKey([ifname(p.src.iface)])) && isBridge(p.src.iface) ? { allow: false, why: 'ai-exclusive' } : undefined,
  },
  {
    // A new connection is always in the original direction.
    rule: `oifname ${AI_BRIDGE} iifname != "net-*" ct direction != reply drop`,
    exclusiveOnly: true,
    decide: (p) => (p.dst.iface === bridgeOf(AI_DOMAIN) && !isBridge(p.src.iface) ? { allow: false, why: 'ai-exclusive' } : undefined),
  },
  { rule: 'ct state established,related accept', decide: () => undefined },
  lookupRule('iifname . oifname @allow_bridges accept', 'allow_bridges', (p) => [ifname(p.src.iface), ifname(p.dst.iface)]),
  lookupRule('iifname . oifname . meta l4proto . th dport @allow_bridge_ports accept', 'allow_bridge_ports', (p) => {
    const ports = portFields(p);
    return ports && [ifname(p.src.iface), ifname(p.dst.iface), ...ports];
  }),
  lookupRule('iifname . oifname . ip daddr @allow_to_addr accept', 'allow_to_addr', (p) => (p.dst.addr ? [ifname(p.src.iface), ifname(p.dst.iface), { addr: p.dst.addr }] : undefined)),
  lookupRule('iifname . oifname . ip daddr . meta l4proto . th dport @allow_to_addr_ports accept', 'allow_to_addr_ports', (p) => {
    const rest = withAddr(p.dst.addr, portFields(p));
    return rest && [ifname(p.src.iface), ifname(p.dst.iface), ...rest];
  }),
  lookupRule('iifname . ip saddr . oifname @allow_from_addr accept', 'allow_from_addr', (p) => p.src.addr ? [ifname(p.src.iface), { addr: p.src.addr }, ifname(p.dst.iface)] : undefined),
  lookupRule('iifname . ip saddr . oifname . meta l4proto . th dport @allow_from_addr_ports accept', 'allow_from_addr_ports', (p) => {
    const ports = portFields(p);
    return p.src.addr && ports ? [ifname(p.src.iface), { addr: p.src.addr }, ifname(p.dst.iface), ...ports] : undefined;
  }),
  lookupRule('iifname . ip saddr . oifname . ip daddr @allow_addr_pairs accept', 'allow_addr_pairs', (p) =>
    p.src.addr && p.dst.addr ? [ifname(p.src.iface), { addr: p.src.addr }, ifname(p.dst.iface), { addr: p.dst.addr }] : undefined),
  lookupRule('meta l4proto tcp iifname . ip saddr . oifname . ip daddr . th dport @allow_addr_pairs_tcp accept', 'allow_addr_pairs_tcp', (p) =>
    p.proto === 'tcp' && p.src.addr && p.dst.addr && p.port !== undefined ? [ifname(p.src.iface), { addr: p.src.addr }, ifname(p.dst.iface), { addr: p.dst.addr }, { port: p.port }] : undefined),
  lookupRule('meta l4proto udp iifname . ip saddr . oifname . ip daddr . th dport @allow_addr_pairs_udp accept', 'allow_addr_pairs_udp', (p) =>
    p.proto === 'udp' && p.src.addr && p.dst.addr && p.port !== undefined ? [ifname(p.src.iface), { addr: p.src.addr }, ifname(p.dst.iface), { addr: p.dst.addr }, { port: p.port }] : undefined),
  lookupRule('iifname != @domain_bridges oifname @allow_outside accept', 'allow_outside', (p, t) => (fromOutside(p, t) ? [ifname(p.dst.iface)] : undefined)),
  lookupRule('iifname != @domain_bridges oifname . meta l4proto . th dport @allow_outside_ports accept', 'allow_outside_ports', (p, t) => {
    const ports = portFields(p);
    return fromOutside(p, t) && ports ? [ifname(p.dst.iface), ...ports] : undefined;
  }),
  lookupRule('iifname != @domain_bridges oifname . ip daddr @allow_outside_to_addr accept', 'allow_outside_to_addr', (p, t) =>
    fromOutside(p, t) && p.dst.addr ? [ifname(p.dst.iface), { addr: p.dst.addr }] : undefined),
  lookupRule('iifname != @domain_bridges oifname . ip daddr . meta l4proto . th dport @allow_outside_to_addr_ports accept', 'allow_outside_to_addr_ports', (p, t) => {
    const rest = withAddr(p.dst.addr, portFields(p));
    return fromOutside(p, t) && rest ? [ifname(p.dst.iface), ...rest] : undefined;
  }),
  { rule: 'counter drop', decide: () => ({ allow: false, why: 'no-policy' }) },
];

// ---------------------------------------------------------------------------------------------
// On a cluster (memberSets.ts): the same chain with the member links' rules. A packet between two
// members is judged on both: where it leaves its source's bridge for the member link, and where it
// comes from the link into its destination's bridge.

const isLink = (iface: string) => iface === LINK_IFACE;
/** The domain subnet that holds an address (the cluster's subnet sets hold the domains' /24s). */
const subnetOf = (addr: string): Field => ({ subnet: `${addr.split('.').slice(0, 3).join('.')}.0/24` });
const inSet = (t: Tables, set: SetName, fields: Field[]) => t.has(set, elementKey(fields));
const inDomains = (t: Tables, addr: string | undefined) => addr !== undefined && inSet(t, 'domain_subnets', [subnetOf(addr)]);
const holderSubnet = (t: Tables, addr: string | undefined) => addr !== undefined && inSet(t, 'ai_holder_subnet', [subnetOf(addr)]);
const ownSubnet = (t: Tables, bridge: string, addr: string | undefined) => addr !== undefined && inSet(t, 'bridge_subnet', [ifname(bridge), subnetOf(addr)]);
const drop = (why: Why): Decision => ({ allow: false, why });
const rule = (text: string): ChainRule => {
  const found = FORWARD_CHAIN.find((r) => r.rule === text);
  if (!found) throw new Error(`no rule ${text}`);
  return found;
};

/**
 * The twin of a lookup rule: the packet's key as on one host (the member-link side replaced by the
 * machine's own bridge), turned into the twin's key as memberSets.ts turns every element.
 */
function twinRule(text: string, base: string, direction: 'in' | 'out'): ChainRule {
  const { set, fields } = rule(base).lookup!;
  return {
    rule: text,
    decide: (p, t) => {
      const side = direction === 'in' ? p.src : p.dst;
      if (!isLink(side.iface) || side.home === undefined) return undefined;
      const local = direction === 'in' ? { ...p, src: { ...p.src, iface: side.home } } : { ...p, dst: { ...p.dst, iface: side.home } };
      const f = fields(local, t);
      const twin = f && twinElements(t.infra, set, f).find(([name]) => name === `${set}_${direction}`);
      const policy = twin ? t.lookup(twin[0], elementKey(twin[1])) : undefined;
      return policy === undefined ? undefined : { allow: true, why: 'policy', policy };
    },
  };
}

const IN_RULES: [string, string][] = [
  ['iifname @member_links ip saddr . oifname @allow_bridges_in accept', 'iifname . oifname @allow_bridges accept'],
  ['iifname @member_links ip saddr . oifname . meta l4proto . th dport @allow_bridge_ports_in accept', 'iifname . oifname . meta l4proto . th dport @allow_bridge_ports accept'],
  ['iifname @member_links ip saddr . oifname . ip daddr @allow_to_addr_in accept', 'iifname . oifname . ip daddr @allow_to_addr accept'],
  ['iifname @member_links ip saddr . oifname . ip daddr . meta l4proto . th dport @allow_to_addr_ports_in accept', 'iifname . oifname . ip daddr . meta l4proto . th dport @allow_to_addr_ports accept'],
  ['iifname @member_links ip saddr . oifname @allow_from_addr_in accept', 'iifname . ip saddr . oifname @allow_from_addr accept'],
  ['iifname @member_links ip saddr . oifname . meta l4proto . th dport @allow_from_addr_ports_in accept', 'iifname . ip saddr . oifname . meta l4proto . th dport @allow_from_addr_ports accept'],
  ['iifname @member_links ip saddr . oifname . ip daddr @allow_addr_pairs_in accept', 'iifname . ip saddr . oifname . ip daddr @allow_addr_pairs accept'],
  ['meta l4proto tcp iifname @member_links ip saddr . oifname . ip daddr . th dport @allow_addr_pairs_tcp_in accept', 'meta l4proto tcp iifname . ip saddr . oifname . ip daddr . th dport @allow_addr_pairs_tcp accept'],
  ['meta l4proto udp iifname @member_links ip saddr . oifname . ip daddr . th dport @allow_addr_pairs_udp_in accept', 'meta l4proto udp iifname . ip saddr . oifname . ip daddr . th dport @allow_addr_pairs_udp accept'],
];

const OUT_RULES: [string, string][] = [
  ['oifname @member_links iifname . ip daddr @allow_bridges_out accept', 'iifname . oifname @allow_bridges accept'],
  ['oifname @member_links iifname . ip daddr . meta l4proto . th dport @allow_bridge_ports_out accept', 'iifname . oifname . meta l4proto . th dport @allow_bridge_ports accept'],
  ['oifname @member_links iifname . ip daddr @allow_to_addr_out accept', 'iifname . oifname . ip daddr @allow_to_addr accept'],
  ['oifname @member_links iifname . ip daddr . meta l4proto . th dport @allow_to_addr_ports_out accept', 'iifname . oifname . ip daddr . meta l4proto . th dport @allow_to_addr_ports accept'],
  ['oifname @member_links iifname . ip saddr . ip daddr @allow_from_addr_out accept', 'iifname . ip saddr . oifname @allow_from_addr accept'],
  ['oifname @member_links iifname . ip saddr . ip daddr . meta l4proto . th dport @allow_from_addr_ports_out accept', 'iifname . ip saddr . oifname . meta l4proto . th dport @allow_from_addr_ports accept'],
  ['oifname @member_links iifname . ip saddr . ip daddr @allow_addr_pairs_out accept', 'iifname . ip saddr . oifname . ip daddr @allow_addr_pairs accept'],
  ['meta l4proto tcp oifname @member_links iifname . ip saddr . ip daddr . th dport @allow_addr_pairs_tcp_out accept', 'meta l4proto tcp iifname . ip saddr . oifname . ip daddr . th dport @allow_addr_pairs_tcp accept'],
  ['meta l4proto udp oifname @member_links iifname . ip saddr . ip daddr . th dport @allow_addr_pairs_udp_out accept', 'meta l4proto udp iifname . ip saddr . oifname . ip daddr . th dport @allow_addr_pairs_udp accept'],
];

const OUTSIDE_OUT_RULES: [string, string][] = [
  ['iifname != @domain_bridges oifname @member_links ip daddr @allow_outside_out accept', 'iifname != @domain_bridges oifname @allow_outside accept'],
  ['iifname != @domain_bridges oifname @member_links ip daddr . meta l4proto . th dport @allow_outside_ports_out accept', 'iifname != @domain_bridges oifname . meta l4proto . th dport @allow_outside_ports accept'],
  ['iifname != @domain_bridges oifname @member_links ip daddr @allow_outside_to_addr_out accept', 'iifname != @domain_bridges oifname . ip daddr @allow_outside_to_addr accept'],
  ['iifname != @domain_bridges oifname @member_links ip daddr . meta l4proto . th dport @allow_outside_to_addr_ports_out accept', 'iifname != @domain_bridges oifname . ip daddr . meta l4proto . th dport @allow_outside_to_addr_ports accept'],
];

/** The local policy lookups, in FORWARD_CHAIN's order: the same on a cluster. */
const LOCAL_LOOKUPS = FORWARD_CHAIN.filter((r) => r.lookup && !r.rule.startsWith('iifname != @domain_bridges'));
const OUTSIDE_LOOKUPS = FORWARD_CHAIN.filter((r) => r.lookup && r.rule.startsWith('iifname != @domain_bridges'));

export const CLUSTER_FORWARD_CHAIN: readonly ChainRule[] = [
  // Flows asks about IPv4 only: the two IPv4-only rules never apply to its packets.
  { rule: 'oifname @member_links iifname "net-*" meta nfproto != ipv4 drop', decide: () => undefined },
  {
    rule: 'oifname @member_links iifname "net-*" iifname . ip saddr != @bridge_subnet drop',
    decide: (p, t) => (isLink(p.dst.iface) && isBridge(p.src.iface) && !ownSubnet(t, p.src.iface, p.src.addr) ? drop('no-policy') : undefined),
  },
  {
    rule: 'oifname @member_links iifname != "net-*" ip saddr @domain_subnets drop',
    decide: (p, t) => (isLink(p.dst.iface) && !isBridge(p.src.iface) && inDomains(t, p.src.addr) ? drop('no-policy') : undefined),
  },
  { rule: 'iifname @member_links oifname "net-*" meta nfproto != ipv4 drop', decide: () => undefined },
  { rule: 'oifname != "net-*" oifname != @member_links accept', decide: (p) => (isBridge(p.dst.iface) || isLink(p.dst.iface) ? undefined : { allow: true, why: 'outbound' }) },
  { rule: 'oifname @member_links ip daddr != @domain_subnets accept', decide: (p, t) => (isLink(p.dst.iface) && p.dst.addr !== undefined && !inDomains(t, p.dst.addr) ? { allow: true, why: 'outbound' } : undefined) },
  rule('iifname . oifname @intra accept'),
  {
    rule: 'oifname @member_links iifname . ip daddr @bridge_subnet accept',
    decide: (p, t) => (isLink(p.dst.iface) && ownSubnet(t, p.src.iface, p.dst.addr) ? { allow: true, why: 'same-domain' } : undefined),
  },
  {
    rule: 'iifname @member_links oifname . ip saddr @bridge_subnet accept',
    decide: (p, t) => (isLink(p.src.iface) && ownSubnet(t, p.dst.iface, p.src.addr) ? { allow: true, why: 'same-domain' } : undefined),
  },
  {
    rule: `iifname ${AI_BRIDGE} oifname != @ai_holder oifname != @member_links drop`,
    exclusiveOnly: true,
    decide: (p, t) => (p.src.iface === bridgeOf(AI_DOMAIN) && !t.has('ai_holder', elementKey([ifname(p.dst.iface)])) && !isLink(p.dst.iface) ? drop('ai-exclusive') : undefined),
  },
  {
    rule: `iifname ${AI_BRIDGE} oifname @member_links ip daddr != @ai_holder_subnet drop`,
    exclusiveOnly: true,
    decide: (p, t) => (p.src.iface === bridgeOf(AI_DOMAIN) && isLink(p.dst.iface) && !holderSubnet(t, p.dst.addr) ? drop('ai-exclusive') : undefined),
  },
  rule(`oifname ${AI_BRIDGE} iifname != @ai_holder iifname "net-*" drop`),
  {
    rule: `oifname ${AI_BRIDGE} iifname @member_links ip saddr @domain_subnets ip saddr != @ai_holder_subnet drop`,
    exclusiveOnly: true,
    decide: (p, t) => (p.dst.iface === bridgeOf(AI_DOMAIN) && isLink(p.src.iface) && inDomains(t, p.src.addr) && !holderSubnet(t, p.src.addr) ? drop('ai-exclusive') : undefined),
  },
  {
    // A new connection is always in the original direction.
    rule: `oifname ${AI_BRIDGE} iifname != "net-*" iifname != @member_links ct direction != reply drop`,
    exclusiveOnly: true,
    decide: (p) => (p.dst.iface === bridgeOf(AI_DOMAIN) && !isBridge(p.src.iface) && !isLink(p.src.iface) ? drop('ai-exclusive') : undefined),
  },
  {
    rule: `oifname ${AI_BRIDGE} iifname @member_links ip saddr != @domain_subnets ct direction != reply drop`,
    exclusiveOnly: true,
    decide: (p, t) => (p.dst.iface === bridgeOf(AI_DOMAIN) && isLink(p.src.iface) && !inDomains(t, p.src.addr) ? drop('ai-exclusive') : undefined),
  },
  rule('ct state established,related accept'),
  ...LOCAL_LOOKUPS,
  ...IN_RULES.map(([text, base]) => twinRule(text, base, 'in')),
  ...OUT_RULES.map(([text, base]) => twinRule(text, base, 'out')),
  { rule: 'iifname @member_links ip saddr @domain_subnets drop', decide: (p, t) => (isLink(p.src.iface) && inDomains(t, p.src.addr) ? drop('no-policy') : undefined) },
  ...OUTSIDE_LOOKUPS,
  ...OUTSIDE_OUT_RULES.map(([text, base]) => twinRule(text, base, 'out')),
  rule('counter drop'),
];

/** The rules of the chain for this mode, in order. */
export function chainRules(exclusive: boolean, cluster = false): string[] {
  return (cluster ? CLUSTER_FORWARD_CHAIN : FORWARD_CHAIN).filter((r) => exclusive || !r.exclusiveOnly).map((r) => r.rule);
}

function decideOn(chain: readonly ChainRule[], packet: Packet, tables: Tables): Decision {
  for (const r of chain) {
    if (r.exclusiveOnly && !tables.ruleset.exclusive) continue;
    const d = r.decide(packet, tables);
    if (d) return d;
  }
  throw new Error('the forward chain ends in a drop rule');
}

/**
 * The chain's verdict. On a cluster, a packet between machines on two members is judged on the
 * source's member (out to the member link) and then on the destination's (in from it); both must
 * accept it.
 */
export function decide(packet: Packet, tables: Tables): Decision {
  if (!tables.ruleset.cluster) return decideOn(FORWARD_CHAIN, packet, tables);
  const { src, dst } = packet;
  if (src.member === undefined || dst.member === undefined || src.member === dst.member) return decideOn(CLUSTER_FORWARD_CHAIN, packet, tables);
  const leaving = decideOn(CLUSTER_FORWARD_CHAIN, { ...packet, dst: { ...dst, iface: LINK_IFACE, home: dst.iface } }, tables);
  if (!leaving.allow) return leaving;
  const entering = decideOn(CLUSTER_FORWARD_CHAIN, { ...packet, src: { ...src, iface: LINK_IFACE, home: src.iface } }, tables);
  return entering.allow ? leaving : entering;
}
