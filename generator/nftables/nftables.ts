/**
 * Network isolation (spec §7): infra.yml + the AI access holder → the `inet anklume` ruleset.
 *
 * Pure. The model is turned into data (named sets and their elements, grouped per policy); the
 * templates under templates/nftables/ own the text layout and the chain's rules. Every decision is
 * a set lookup, so the chain has the same rules for 3 domains as for 250, and moving AI access is a
 * diff of set elements (see switchBatch).
 *
 * Element keys (elements.ts) are the only nft text built in code. On a cluster (global.cluster)
 * the same table gains the member links' sets and a twin of each policy set keyed by subnet or
 * address (memberSets.ts), for packets that come from or go to another member.
 */
import { AI_DOMAIN, endpointDomain, HOST_ENDPOINT, lookupNames, OUTSIDE_ENDPOINT, type Names } from '../infra/validate.js';
import { aiPolicyIndex } from '../infra/enrich.js';
import { render } from '../core/templates.js';
import { BRIDGE_PREFIX, bridgeOf, elementKey, type Field } from './elements.js';
import { CLUSTER_SET_TYPES, domainSubnet, memberLinks, TWIN_SETS, twinElements, twinType, type ClusterSetName, type PolicySetName, type TwinSetName } from './memberSets.js';
import type { Infra, NetworkPolicy, Protocol } from '../core/types.js';

export const TABLE_FAMILY = 'inet';
export const TABLE_NAME = 'anklume';
/** Where `sync` writes the full ruleset, relative to the base dir. */
export const RULESET_FILE = 'nftables/anklume.nft';
/** The set that names the bridge allowed to talk to net-ai-tools (exclusive mode only). */
export const AI_HOLDER_SET = 'ai_holder';

/**
 * The sets that say who holds AI access (exclusive mode only): the bridge, and on a cluster the
 * subnet, which alone lets the holder's machines on other members reach ai-tools. The guard rules
 * read them before any allow rule or conntrack state, so emptying all of them closes ai-tools.
 */
const HOLDER_SETS: ReadonlySet<string> = new Set(['ai_holder', 'ai_holder_subnet']);

/** The named sets, in the order the template declares them, with their key types. */
export const SET_TYPES = {
  ai_holder: 'ifname',
  domain_bridges: 'ifname',
  intra: 'ifname . ifname',
  allow_bridges: 'ifname . ifname',
  allow_bridge_ports: 'ifname . ifname . inet_proto . inet_service',
  allow_to_addr: 'ifname . ifname . ipv4_addr',
  allow_to_addr_ports: 'ifname . ifname . ipv4_addr . inet_proto . inet_service',
  allow_from_addr: 'ifname . ipv4_addr . ifname',
  allow_from_addr_ports: 'ifname . ipv4_addr . ifname . inet_proto . inet_service',
  allow_addr_pairs: 'ifname . ipv4_addr . ifname . ipv4_addr',
  allow_addr_pairs_tcp: 'ifname . ipv4_addr . ifname . ipv4_addr . inet_service',
  allow_addr_pairs_udp: 'ifname . ipv4_addr . ifname . ipv4_addr . inet_service',
  allow_outside: 'ifname',
  allow_outside_ports: 'ifname . inet_proto . inet_service',
  allow_outside_to_addr: 'ifname . ipv4_addr',
  allow_outside_to_addr_ports: 'ifname . ipv4_addr . inet_proto . inet_service',
} as const;

export { BRIDGE_PREFIX, bridgeOf, elementKey };

export type SetName = keyof typeof SET_TYPES | ClusterSetName | TwinSetName;

/** Every set a ruleset may have, in the order the template declares them (cluster sets last). */
const SET_ORDER: readonly SetName[] = [...(Object.keys(SET_TYPES) as (keyof typeof SET_TYPES)[]), ...(Object.keys(CLUSTER_SET_TYPES) as ClusterSetName[]), ...TWIN_SETS.map((t) => t.twin)];

export interface ElementGroup {
  /** Free text (a policy description); the template passes it through nftComment. */
  comment: string;
  /** The index of the policy these elements come from (absent for the sets that describe the infra). */
  policy?: number;
  /** Element keys, unique within their set. */
  elements: string[];
}

export interface NftSet {
  name: SetName;
  type: string;
  /** Elements are subnets or ranges (the cluster's sets): `flags interval`. */
  interval: boolean;
  groups: ElementGroup[];
}

/** What happened to one policy: which sets carry it, or why it is not a forward rule. */
export interface PolicyNote {
  index: number;
  summary: string;
  outcome: string;
}

export interface Ruleset {
  family: typeof TABLE_FAMILY;
  table: typeof TABLE_NAME;
  /** Exclusive AI mode: the guard rules and the ai_holder set exist. */
  exclusive: boolean;
  /** The domain holding AI access (exclusive mode), null when nobody has it. */
  holder: string | null;
  /** global.cluster: the member links' sets and rules, and the twins of the policy sets. */
  cluster: boolean;
  aiBridge: string;
  sets: NftSet[];
  notes: PolicyNote[];
}

// ---------------------------------------------------------------------------------------------
// Policies → elements

/** A resolved policy side: the bridge, and the address when the side is one machine. */
interface Endpoint {
  bridge: string;
  addr?: string;
}

type Resolved = { ok: true; endpoint: Endpoint } | { ok: false; why: string };

function resolveEndpoint(ref: string, infra: Infra, index: Names): Resolved {
  const domain = endpointDomain(ref, index);
  if (!domain) return { ok: false, why: `'${ref}' is not a known domain or machine` };
  if (domain === ref) return { ok: true, endpoint: { bridge: bridgeOf(domain) } };
  const ip = infra.domains[domain]?.machines?.[ref]?.ip;
  // A machine without an address cannot be matched on the wire: allow nothing rather than its domain.
  if (!ip) return { ok: false, why: `machine '${ref}' has no ip, so nothing can match it` };
  return { ok: true, endpoint: { bridge: bridgeOf(domain), addr: ip } };
}

/**
 * A policy from outside → (set, key) pairs. The source is any interface that is not a domain
 * bridge, so only the destination is a key; the reverse direction is outbound, which is open.
 */
function outsideElements(dst: Endpoint, ports: number[] | 'all', proto: Protocol): [PolicySetName, Field[]][] {
  const db = { ifname: dst.bridge };
  if (ports === 'all') return dst.addr ? [['allow_outside_to_addr', [db, { addr: dst.addr }]]] : [['allow_outside', [db]]];
  return ports.map((port): [PolicySetName, Field[]] =>
    dst.addr
      ? ['allow_outside_to_addr_ports', [db, { addr: dst.addr }, { proto }, { port }]]
      : ['allow_outside_ports', [db, { proto }, { port }]],
  );
}

/** One direction of one policy → (set, key) pairs. */
function flowElements(src: Endpoint, dst: Endpoint, ports: number[] | 'all', proto: Protocol): [PolicySetName, Field[]][] {
  const sb = { ifname: src.bridge };
  const db = { ifname: dst.bridge };
  if (ports === 'all') {
    if (src.addr && dst.addr) return [['allow_addr_pairs', [sb, { addr: src.addr }, db, { addr: dst.addr }]]];
    if (dst.addr) return [['allow_to_addr', [sb, db, { addr: dst.addr }]]];
    if (src.addr) return [['allow_from_addr', [sb, { addr: src.addr }, db]]];
    return [['allow_bridges', [sb, db]]];
  }
  return ports.map((port): [PolicySetName, Field[]] => {
    const p = { port };
    if (src.addr && dst.addr) {
      // Six fields do not fit nft's set key type (at most five), so the protocol picks the set.
      const set: PolicySetName = proto === 'udp' ? 'allow_addr_pairs_udp' : 'allow_addr_pairs_tcp';
      return [set, [sb, { addr: src.addr }, db, { addr: dst.addr }, p]];
    }
    if (dst.addr) return ['allow_to_addr_ports', [sb, db, { addr: dst.addr }, { proto }, p]];
    if (src.addr) return ['allow_from_addr_ports', [sb, { addr: src.addr }, db, { proto }, p]];
    return ['allow_bridge_ports', [sb, db, { proto }, p]];
  });
}

function summarise(p: NetworkPolicy): string {
  const ports = p.ports === undefined || p.ports === 'all' ? 'all protocols' : `${p.protocol ?? 'tcp'}/${p.ports.join(',')}`;
  return `${p.from} to ${p.to}${p.bidirectional ? ' and back' : ''} (${ports})`;
}

/**
 * The policy as the ruleset applies it. In exclusive mode the one policy targeting ai-tools says
 * what may be reached; the holder says who (spec §7): its `from` becomes the holder, unless it
 * already names the holder or one of its machines. Null: nobody holds access.
 */
function effectivePolicy(policy: NetworkPolicy, isAi: boolean, holder: string | null, index: Names): NetworkPolicy | null {
  if (!isAi) return policy;
  if (holder === null) return null;
  return endpointDomain(policy.from, index) === holder ? policy : { ...policy, from: holder };
}

interface Collected {
  elements: Map<SetName, ElementGroup[]>;
  notes: PolicyNote[];
}

function collect(infra: Infra, exclusive: boolean, holder: string | null): Collected {
  const index = lookupNames(infra as unknown as Record<string, unknown>);
  const aiIndex = exclusive ? aiPolicyIndex(infra) : -1;
  const elements = new Map<SetName, ElementGroup[]>();
  const seen = new Map<SetName, Set<string>>();
  const notes: PolicyNote[] = [];

  (infra.network_policies ?? []).forEach((original, i) => {
    const policy = effectivePolicy(original, i === aiIndex, holder, index);
    const summary = summarise(policy ?? original);
    if (!policy) {
      notes.push({ index: i, summary, outcome: 'AI access policy: nobody holds access, no element' });
      return;
    }
    if (policy.from === HOST_ENDPOINT || policy.to === HOST_ENDPOINT) {
      notes.push({ index: i, summary, outcome: 'host policy: not a forward rule (the host input/output is not filtered by this table)' });
      return;
    }
    const fromOutside = policy.from === OUTSIDE_ENDPOINT;
    const from = fromOutside ? undefined : resolveEndpoint(policy.from, infra, index);
    const to = resolveEndpoint(policy.to, infra, index);
    if ((from && !from.ok) || !to.ok) {
      const why = [from && !from.ok ? from.why : '', !to.ok ? to.why : ''].filter(Boolean).join('; ');
      notes.push({ index: i, summary, outcome: `skipped: ${why}` });
      return;
    }
    const ports = policy.ports ?? 'all';
    const proto = policy.protocol ?? 'tcp';
    const structured = from?.ok ? flowElements(from.endpoint, to.endpoint, ports, proto) : outsideElements(to.endpoint, ports, proto);
    if (policy.bidirectional && from?.ok) structured.push(...flowElements(to.endpoint, from.endpoint, ports, proto));
    // On a cluster each element also goes into its twins, right after it (docs/multi-host.md).
    const pairs = structured.flatMap(([set, fields]): [SetName, string][] => [
      [set, elementKey(fields)],
      ...(infra.global.cluster ? twinElements(infra, set, fields).map(([twin, f]): [SetName, string] => [twin, elementKey(f)]) : []),
    ]);

    const comment = policy.description ? `policy ${i}: ${policy.description}` : `policy ${i}: ${summary}`;
    const used = new Set<SetName>();
    for (const [set, key] of pairs) {
      // The header names the sets a policy uses on one host; the twins follow from them.
      if (!set.endsWith('_in') && !set.endsWith('_out')) used.add(set);
      const keys = seen.get(set) ?? new Set<string>();
      seen.set(set, keys);
      // nft refuses nothing here, but one element per key keeps the diff of two rulesets exact.
      if (keys.has(key)) continue;
      keys.add(key);
      const groups = elements.get(set) ?? [];
      elements.set(set, groups);
      let group = groups[groups.length - 1];
      if (!group || group.comment !== comment) {
        group = { comment, policy: i, elements: [] };
        groups.push(group);
      }
      group.elements.push(key);
    }
    const outbound = fromOutside && policy.bidirectional ? ' (the way back is outbound, always open)' : '';
    notes.push({ index: i, summary, outcome: [...used].join(', ') + outbound });
  });
  return { elements, notes };
}

// ---------------------------------------------------------------------------------------------
// The ruleset

function checkHolder(infra: Infra, holder: string | null): void {
  if (holder === null) return;
  if (!(holder in infra.domains)) throw new Error(`AI access holder '${holder}' is not a domain of this infra`);
  if (holder === AI_DOMAIN) throw new Error(`AI access holder cannot be '${AI_DOMAIN}' itself`);
}

/**
 * The structured ruleset.
 * @param infra a validated (preferably enriched) model
 * @param holder exclusive mode: the domain holding AI access, null for nobody. Ignored in open mode.
 */
export function buildRuleset(infra: Infra, holder: string | null): Ruleset {
  const exclusive = infra.global.ai_access_policy === 'exclusive';
  if (exclusive) checkHolder(infra, holder);
  const effectiveHolder = exclusive ? holder : null;
  const { elements, notes } = collect(infra, exclusive, effectiveHolder);

  const domains = Object.keys(infra.domains);
  elements.set('domain_bridges', [{ comment: 'the bridges of the domains: every other interface is outside', elements: domains.map((d) => elementKey([{ ifname: bridgeOf(d) }])) }]);
  elements.set('intra', [{ comment: 'traffic within one bridge (seen here when br_netfilter is loaded)', elements: domains.map((d) => elementKey([{ ifname: bridgeOf(d) }, { ifname: bridgeOf(d) }])) }]);
  if (exclusive && effectiveHolder) {
    elements.set('ai_holder', [{ comment: `the bridge that holds AI access: ${effectiveHolder}`, elements: [elementKey([{ ifname: bridgeOf(effectiveHolder) }])] }]);
  }

  const cluster = infra.global.cluster;
  if (cluster) addClusterElements(infra, elements, effectiveHolder);

  const names = (cluster ? SET_ORDER : (Object.keys(SET_TYPES) as SetName[])).filter((n) => exclusive || !HOLDER_SETS.has(n));
  const sets = names.map((name): NftSet => ({ name, ...setType(name), groups: (elements.get(name) ?? []).filter((g) => g.elements.length > 0) }));
  return { family: TABLE_FAMILY, table: TABLE_NAME, exclusive, holder: effectiveHolder, aiBridge: bridgeOf(AI_DOMAIN), cluster: cluster !== undefined, sets, notes };
}

/** A set's key type, and whether its elements are subnets (every set of the cluster but member_links). */
function setType(name: SetName): { type: string; interval: boolean } {
  if (name in SET_TYPES) return { type: SET_TYPES[name as keyof typeof SET_TYPES], interval: false };
  if (name in CLUSTER_SET_TYPES) return { type: CLUSTER_SET_TYPES[name as ClusterSetName], interval: name !== 'member_links' };
  const twin = TWIN_SETS.find((t) => t.twin === name);
  if (!twin) throw new Error(`unknown set ${name}`);
  return { type: twinType(twin.of, twin.direction), interval: true };
}

/** The sets that describe the cluster: its member links, the domains' subnets, the holder's. */
function addClusterElements(infra: Infra, elements: Map<SetName, ElementGroup[]>, holder: string | null): void {
  const cluster = infra.global.cluster!;
  const domains = Object.keys(infra.domains);
  const subnet = (d: string): Field => ({ subnet: domainSubnet(infra, d) });
  elements.set('member_links', [{ comment: 'the interfaces that join the cluster members: what crosses them is another member\'s', elements: memberLinks(cluster).map((l) => elementKey([{ ifname: l }])) }]);
  elements.set('domain_subnets', [{ comment: 'the domains\' subnets: across members, an address is a domain', elements: domains.map((d) => elementKey([subnet(d)])) }]);
  elements.set('bridge_subnet', [{ comment: 'each bridge and its subnet: the only sources it sends to another member', elements: domains.map((d) => elementKey([{ ifname: bridgeOf(d) }, subnet(d)])) }]);
  if (holder) elements.set('ai_holder_subnet', [{ comment: `the subnet that holds AI access: ${holder}`, elements: [elementKey([subnet(holder)])] }]);
}

/** Template data: the sets with their last element flagged, so the template needs no logic. */
function templateData(ruleset: Ruleset) {
  return {
    ...ruleset,
    sets: ruleset.sets.map((s) => ({ ...s, empty: s.groups.length === 0 })),
    holderLabel: ruleset.exclusive ? (ruleset.holder ?? '<none>') : 'n/a (ai_access_policy: open)',
  };
}

/** The full ruleset text: one `nft -f` batch that replaces the table atomically. */
export function renderRuleset(infra: Infra, holder: string | null): string {
  return render('nftables/anklume.nft.hbs', templateData(buildRuleset(infra, holder)));
}

/** For `sync`: the file to write under the base dir, and its content. */
export function rulesetForSync(infra: Infra, holder: string | null): { path: string; text: string } {
  return { path: RULESET_FILE, text: renderRuleset(infra, holder) };
}

// ---------------------------------------------------------------------------------------------
// ai-switch: the set update that moves AI access

export interface SetChange {
  set: SetName;
  remove: string[];
  add: string[];
}

function keysBySet(ruleset: Ruleset): Map<SetName, string[]> {
  return new Map(ruleset.sets.map((s) => [s.name, s.groups.flatMap((g) => g.elements)]));
}

/** Element-level difference between two rulesets of the same infra (sets in template order). */
export function diffRulesets(before: Ruleset, after: Ruleset): SetChange[] {
  const a = keysBySet(before);
  const b = keysBySet(after);
  const changes: SetChange[] = [];
  for (const name of SET_ORDER) {
    if (!a.has(name) && !b.has(name)) continue;
    if (a.has(name) !== b.has(name)) throw new Error(`set ${name} exists in only one of the rulesets: a switch cannot add or remove sets`);
    const old = new Set(a.get(name));
    const next = new Set(b.get(name));
    const remove = [...old].filter((k) => !next.has(k));
    const add = [...next].filter((k) => !old.has(k));
    if (remove.length || add.length) changes.push({ set: name, remove, add });
  }
  return changes;
}

/**
 * The safe state as one batch, whatever the live table holds: every holder set of this infra's
 * ruleset emptied (ai_holder, and on a cluster ai_holder_subnet: emptying ai_holder alone would
 * leave the holder's machines on other members reaching ai-tools).
 */
export function revokeAllBatch(infra: Infra): string {
  if (infra.global.ai_access_policy !== 'exclusive') throw new Error("ai_access_policy is not 'exclusive': there is no AI access to revoke");
  const sets = buildRuleset(infra, null).sets.map((s) => s.name).filter((name) => HOLDER_SETS.has(name));
  return render('ai-switch/revoke-all.nft.hbs', { family: TABLE_FAMILY, table: TABLE_NAME, sets });
}

/**
 * The nft batch that moves AI access from oldHolder to newHolder as one transaction (deletes, then
 * adds). It assumes the live table is the full ruleset for oldHolder: a missing element makes nft
 * reject the whole batch, and nothing changes.
 */
export function switchBatch(infra: Infra, oldHolder: string | null, newHolder: string | null): string {
  const before = buildRuleset(infra, oldHolder);
  const after = buildRuleset(infra, newHolder);
  if (!before.exclusive) throw new Error("ai_access_policy is not 'exclusive': there is no AI access to switch");
  return render('nftables/switch.nft.hbs', {
    family: TABLE_FAMILY,
    table: TABLE_NAME,
    from: oldHolder ?? '<none>',
    to: newHolder ?? '<none>',
    changes: diffRulesets(before, after),
  });
}

// ---------------------------------------------------------------------------------------------
// Reading the live state (ai-status, ai-switch)

/**
 * The domains named by `nft -j list set inet anklume ai_holder` (normally zero or one).
 * Throws when the text is not that command's output.
 */
export function holdersFromSetJson(json: string): string[] {
  const doc: unknown = JSON.parse(json);
  const items = typeof doc === 'object' && doc !== null && Array.isArray((doc as { nftables?: unknown }).nftables) ? (doc as { nftables: unknown[] }).nftables : undefined;
  if (!items) throw new Error('not the JSON output of nft');
  const set = items
    .map((item) => (typeof item === 'object' && item !== null ? (item as { set?: unknown }).set : undefined))
    .find((s): s is { name: string; elem?: unknown } => typeof s === 'object' && s !== null && (s as { name?: unknown }).name === AI_HOLDER_SET);
  if (!set) throw new Error(`the JSON holds no set ${AI_HOLDER_SET}`);
  const elems = Array.isArray(set.elem) ? set.elem : [];
  return elems.map((e) => {
    if (typeof e !== 'string' || !e.startsWith(BRIDGE_PREFIX)) throw new Error(`unexpected ${AI_HOLDER_SET} element ${JSON.stringify(e)}`);
    return e.slice(BRIDGE_PREFIX.length);
  });
}

/** Whether the live ai_holder set says exactly `expected` holds AI access (null: nobody). */
export function liveHolderMatches(json: string, expected: string | null): boolean {
  const holders = holdersFromSetJson(json);
  return expected === null ? holders.length === 0 : holders.length === 1 && holders[0] === expected;
}

/** The number of rules in the forward chain of a rendered ruleset (or of `nft list table`). */
export function countForwardRules(text: string): number {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => /^\s*chain forward \{\s*$/.test(l));
  if (start < 0) throw new Error('no forward chain');
  let count = 0;
  for (const line of lines.slice(start + 1)) {
    const t = line.trim();
    if (t === '}') return count;
    if (t === '' || t.startsWith('#') || /^type filter hook/.test(t)) continue;
    count++;
  }
  throw new Error('unterminated forward chain');
}
