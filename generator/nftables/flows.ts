/**
 * `anklume-gen flows`: may this open a connection to that, and why (a packet tracer for the infra).
 *
 * Pure. The verdicts are the ruleset's own: the sets and elements of buildRuleset, looked up with
 * the same element keys, in the order of the forward chain. FORWARD_CHAIN restates that chain (its
 * text lives in templates/nftables/anklume.nft.hbs); a unit test holds the two rule lists equal,
 * and an end-to-end test holds the verdicts against what the kernel does with real connections.
 *
 * A new connection is one packet with conntrack state new: `ct state established,related accept`
 * never applies to it, so the chain reduces to the steps below.
 */
import { AI_DOMAIN, HOST_ENDPOINT, OUTSIDE_ENDPOINT } from '../infra/validate.js';
import { connectPortFor, publishedPorts, type PublishedPort } from '../infra/devices.js';
import { BRIDGE_PREFIX, bridgeOf, buildRuleset, elementKey, type Ruleset, type SetName } from './nftables.js';
import { nftString } from '../core/templates.js';
import type { Infra, Mapping } from '../core/types.js';

export type FlowProtocol = 'tcp' | 'udp' | 'icmp';
export const FLOW_PROTOCOLS: readonly FlowProtocol[] = ['tcp', 'udp', 'icmp'];

/** What a name on the command line stands for. */
export type FlowEndpoint =
  | { kind: 'machine'; name: string; domain: string; addr?: string }
  | { kind: 'domain'; name: string }
  | { kind: 'outside' }
  | { kind: 'host' };

/** One side of a packet: the interface, and the address when it is one known machine. */
interface Side {
  iface: string;
  addr?: string;
  /** How a reason names this side. */
  label: string;
  /** The machine this side is, when it is one (its published ports apply). */
  machine?: string;
}

/** Any interface that is not a domain bridge: what `outside` stands for on the wire. */
const OUTSIDE_IFACE = 'uplink';

interface Packet {
  src: Side;
  dst: Side;
  proto: FlowProtocol;
  /** Absent for icmp. */
  port?: number;
}

type Why = 'outbound' | 'same-domain' | 'ai-exclusive' | 'policy' | 'no-policy' | 'published';

interface Decision {
  allow: boolean;
  why: Why;
  policy?: number;
  /** The proxy device that publishes the port: the path goes through the host, not the chain. */
  published?: PublishedPort;
}

/** The ruleset as lookup tables: element key → the policy it comes from (-1: none). */
class Tables {
  private readonly sets = new Map<SetName, Map<string, number>>();

  constructor(readonly ruleset: Ruleset) {
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

type Field = Parameters<typeof elementKey>[0][number];
const ifname = (iface: string): Field => ({ ifname: iface });
const isBridge = (iface: string) => iface.startsWith(BRIDGE_PREFIX);

interface ChainRule {
  /** The rule's text as the template renders it. */
  rule: string;
  exclusiveOnly?: true;
  decide: (p: Packet, t: Tables) => Decision | undefined;
}

/** An accept rule that is one set lookup; `fields` undefined: the packet cannot match it. */
function lookupRule(rule: string, set: SetName, fields: (p: Packet, t: Tables) => Field[] | undefined): ChainRule {
  return {
    rule,
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

/** The rules of the chain for this mode, in order. */
export function chainRules(exclusive: boolean): string[] {
  return FORWARD_CHAIN.filter((r) => exclusive || !r.exclusiveOnly).map((r) => r.rule);
}

function decide(packet: Packet, tables: Tables): Decision {
  for (const rule of FORWARD_CHAIN) {
    if (rule.exclusiveOnly && !tables.ruleset.exclusive) continue;
    const d = rule.decide(packet, tables);
    if (d) return d;
  }
  throw new Error('the forward chain ends in a drop rule');
}

/**
 * The chain's verdict, or else a port that a proxy device of the destination machine publishes on
 * the host: without nat the host itself connects into the machine (its input and output are not
 * judged), so anything that reaches the host's addresses gets in; with nat the host translates the
 * connection, and the chain judges the translated one.
 */
function decideWithPublished(model: FlowModel, packet: Packet): Decision {
  const verdict = decide(packet, model.tables);
  const { port } = packet;
  if (verdict.allow || packet.proto === 'icmp' || port === undefined || packet.dst.machine === undefined) return verdict;
  let refused: Decision | undefined;
  for (const published of model.published) {
    if (published.machine !== packet.dst.machine || published.protocol !== packet.proto || !published.ports.includes(port)) continue;
    if (!published.nat) return { allow: true, why: 'published', published };
    const translatedPort = connectPortFor(published, port);
    const translated = translatedPort === undefined ? undefined : decide({ ...packet, port: translatedPort }, model.tables);
    if (translated?.allow) return { allow: true, why: 'published', published, policy: translated.policy };
    refused ??= translated && { ...translated, published };
  }
  return refused ?? verdict;
}

// ---------------------------------------------------------------------------------------------
// Answers

export interface FlowAnswer {
  from: string;
  to: string;
  protocol: FlowProtocol;
  /** The port asked about; null: any port (then `ports` says which are open). */
  port: number | null;
  holder: string | null;
  verdict: 'allow' | 'drop';
  reason: string;
  /** The index of the policy that allows it (the first, when several do), else null. */
  policy: number | null;
  /** Without a port: the ports open for tcp/udp ('all', a list, or none). */
  ports?: 'all' | number[];
  /** The proxy devices whose published ports open this flow (through the host, not the chain). */
  published?: PublishedAnswer[];
  /** Machines of a domain side whose verdict differs from the domain's (machine-level policies, published ports). */
  exceptions?: FlowAnswer[];
}

export interface PublishedAnswer {
  machine: string;
  device: string;
  profile?: string;
  listen: string;
  connect: string;
  nat: boolean;
}

/** The infra and one AI holder, ready to answer many questions. */
export interface FlowModel {
  infra: Infra;
  holder: string | null;
  tables: Tables;
  /** Every port that some element names: any other port behaves like `otherPort`. */
  ports: number[];
  otherPort: number;
  /** Addresses that some element names: a machine with another address behaves like its domain. */
  addressed: Set<string>;
  /** The ports proxy devices publish on the host's addresses. */
  published: PublishedPort[];
}

const IPV4 = /^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;

export function flowModel(infra: Infra, holder: string | null): FlowModel {
  const ruleset = buildRuleset(infra, holder);
  const ports = new Set<number>();
  const addressed = new Set<string>();
  for (const set of ruleset.sets) {
    const types = set.type.split(' . ');
    for (const key of set.groups.flatMap((g) => g.elements)) {
      key.split(' . ').forEach((field, i) => {
        if (types[i] === 'inet_service') ports.add(Number(field));
        else if (types[i] === 'ipv4_addr' && IPV4.test(field)) addressed.add(field);
      });
    }
  }
  const published = publishedPorts(infra as unknown as Mapping);
  for (const p of published) for (const port of p.ports) ports.add(port);
  let otherPort = 1;
  while (ports.has(otherPort)) otherPort++;
  return { infra, holder: ruleset.holder, tables: new Tables(ruleset), ports: [...ports].sort((a, b) => a - b), otherPort, addressed, published };
}

/** The name as an endpoint, or undefined when the infra has no such domain or machine. */
export function resolveFlowEndpoint(infra: Infra, name: string): FlowEndpoint | undefined {
  if (name === OUTSIDE_ENDPOINT) return { kind: 'outside' };
  if (name === HOST_ENDPOINT) return { kind: 'host' };
  if (name in infra.domains) return { kind: 'domain', name };
  for (const [domain, def] of Object.entries(infra.domains)) {
    const machine = def.machines?.[name];
    if (machine) return { kind: 'machine', name, domain, addr: machine.ip };
  }
  return undefined;
}

export function endpointNames(infra: Infra): string[] {
  return [OUTSIDE_ENDPOINT, HOST_ENDPOINT, ...Object.entries(infra.domains).flatMap(([d, def]) => [d, ...Object.keys(def.machines ?? {})])];
}

const nameOf = (e: FlowEndpoint): string => (e.kind === 'outside' ? OUTSIDE_ENDPOINT : e.kind === 'host' ? HOST_ENDPOINT : e.name);

/**
 * The packet sides an endpoint stands for: the first is the endpoint as a whole (a domain: any of
 * its machines that no element names); then, for a domain, each machine that an element names.
 */
function sides(model: FlowModel, e: FlowEndpoint): { side: Side; machine?: string }[] {
  switch (e.kind) {
    case 'outside':
    case 'host':
      return [{ side: { iface: OUTSIDE_IFACE, label: OUTSIDE_ENDPOINT } }];
    case 'machine':
      return [{ side: { iface: bridgeOf(e.domain), addr: e.addr, label: e.name, machine: e.name }, machine: e.name }];
    case 'domain': {
      const publishing = new Set(model.published.map((p) => p.machine));
      const machines = Object.entries(model.infra.domains[e.name]?.machines ?? {})
        .filter(([name, m]) => (m.ip !== undefined && model.addressed.has(m.ip)) || publishing.has(name))
        .map(([name, m]) => ({ side: { iface: bridgeOf(e.name), addr: m.ip, label: name, machine: name }, machine: name }));
      return [{ side: { iface: bridgeOf(e.name), label: e.name } }, ...machines];
    }
  }
}

interface Outcome {
  allow: boolean;
  ports?: 'all' | number[];
  decisions: { port?: number; decision: Decision }[];
}

/** What the ruleset does with new connections from src to dst: for one port, or for every port. */
function outcome(model: FlowModel, src: Side, dst: Side, proto: FlowProtocol, port: number | undefined): Outcome {
  if (proto === 'icmp' || port !== undefined) {
    const decision = decideWithPublished(model, { src, dst, proto, port });
    return { allow: decision.allow, decisions: [{ port, decision }] };
  }
  // Membership in a set is all a port can change, so the named ports and one other port are
  // every case there is.
  const decisions = [...model.ports, model.otherPort].map((p) => ({ port: p, decision: decideWithPublished(model, { src, dst, proto, port: p }) }));
  const other = decisions[decisions.length - 1];
  const open = decisions.filter((d) => d.decision.allow);
  const ports: 'all' | number[] = other.decision.allow ? 'all' : open.map((d) => d.port!);
  const shown = other.decision.allow ? decisions.filter((d) => d === other || d.decision.why !== other.decision.why || d.decision.policy !== other.decision.policy) : open;
  return { allow: open.length > 0, ports, decisions: shown.length ? shown : [other] };
}

function policyLabel(model: FlowModel, index: number): string {
  const p = model.infra.network_policies?.[index];
  const text = p?.description ?? `${p?.from} to ${p?.to}`;
  return `policy [${index}] ${JSON.stringify(text)}`;
}

function publishedLabel(model: FlowModel, d: Decision): string {
  const p = d.published!;
  const device = `proxy device '${p.device}'${p.profile ? ` (profile '${p.profile}')` : ''} of '${p.machine}'`;
  if (!p.nat) return `published port: ${device} listens on the host's ${p.listen} (every domain and outside reach the host's addresses) and connects to ${p.connect} in it`;
  const policy = d.policy !== undefined && d.policy >= 0 ? `, allowed by ${policyLabel(model, d.policy)}` : '';
  return `published port (nat): ${device} translates the host's ${p.listen} to ${p.connect}, which the ruleset judges${policy}`;
}

function reasonOf(model: FlowModel, src: Side, dst: Side, proto: FlowProtocol, out: Outcome, port: number | undefined): string {
  const first = out.decisions[0].decision;
  const holder = model.holder;
  if (!out.allow) {
    if (first.published) {
      const p = first.published;
      return `drop — proxy device '${p.device}' of '${p.machine}' (nat) translates the host's ${p.listen} to ${p.connect}, and no policy from '${src.label}' to '${dst.label}' allows that`;
    }
    if (first.why === 'ai-exclusive') {
      const held = holder ? `held by '${holder}'` : 'held by nobody';
      return `drop — exclusive AI access is ${held}`;
    }
    const what = proto === 'icmp' ? ' allows icmp' : port !== undefined ? ` allows ${proto}/${port}` : ` allows ${proto}`;
    return `drop — no policy from '${src.label}' to '${dst.label}'${what}`;
  }
  switch (first.why) {
    case 'outbound':
      return src.iface === OUTSIDE_IFACE ? 'allow — neither side is a domain bridge: not judged by anklume' : 'allow — outbound: the domains always reach the outside';
    case 'same-domain':
      return 'allow — same domain';
    default: {
      const byPath = new Map<string, number[] | 'all'>();
      for (const d of out.decisions) {
        if (!d.decision.allow) continue;
        const label = d.decision.why === 'published' ? publishedLabel(model, d.decision) : d.decision.policy !== undefined ? policyLabel(model, d.decision.policy) : undefined;
        if (label === undefined) continue;
        const isOther = d.port === model.otherPort && out.ports === 'all';
        const current = byPath.get(label);
        if (isOther || proto === 'icmp' || current === 'all') byPath.set(label, 'all');
        else byPath.set(label, [...(current ?? []), d.port!]);
      }
      return 'allow — ' + [...byPath.entries()]
        .map(([label, ports]) => `${label} (${ports === 'all' ? (proto === 'icmp' ? 'icmp' : `${proto}, every port`) : `${proto}/${ports.join(',')}`})`)
        .join('; ');
    }
  }
}

function answer(model: FlowModel, from: string, to: string, src: Side, dst: Side, proto: FlowProtocol, port: number | undefined): FlowAnswer {
  const out = outcome(model, src, dst, proto, port);
  const policy = out.decisions.find((d) => d.decision.allow && d.decision.policy !== undefined)?.decision.policy;
  const published = [...new Set(out.decisions.flatMap((d) => (d.decision.allow && d.decision.published ? [d.decision.published] : [])))].map(
    ({ machine, device, profile, listen, connect, nat }): PublishedAnswer => ({ machine, device, ...(profile ? { profile } : {}), listen, connect, nat }));
  return {
    from,
    to,
    protocol: proto,
    port: port ?? null,
    holder: model.holder,
    verdict: out.allow ? 'allow' : 'drop',
    reason: reasonOf(model, src, dst, proto, out, port),
    policy: policy ?? null,
    ...(proto !== 'icmp' && port === undefined ? { ports: out.ports } : {}),
    ...(published.length ? { published } : {}),
  };
}

const sameOutcome = (a: FlowAnswer, b: FlowAnswer) => a.verdict === b.verdict && JSON.stringify(a.ports) === JSON.stringify(b.ports);

/** One question: may `from` open a connection to `to` (on this protocol and port)? */
export function judgeFlow(model: FlowModel, from: FlowEndpoint, to: FlowEndpoint, proto: FlowProtocol, port?: number): FlowAnswer {
  if (from.kind === 'host' || to.kind === 'host') {
    return {
      from: nameOf(from), to: nameOf(to), protocol: proto, port: port ?? null, holder: model.holder, verdict: 'allow',
      reason: "allow — the host's own input and output are not filtered by anklume (docs/nftables.md)", policy: null,
    };
  }
  const [srcWhole, ...srcMachines] = sides(model, from);
  const [dstWhole, ...dstMachines] = sides(model, to);
  const main = answer(model, nameOf(from), nameOf(to), srcWhole.side, dstWhole.side, proto, port);
  const exceptions: FlowAnswer[] = [];
  for (const s of [srcWhole, ...srcMachines]) {
    for (const d of [dstWhole, ...dstMachines]) {
      if (s === srcWhole && d === dstWhole) continue;
      const a = answer(model, s.machine ?? nameOf(from), d.machine ?? nameOf(to), s.side, d.side, proto, port);
      if (!sameOutcome(a, main)) exceptions.push(a);
    }
  }
  return exceptions.length ? { ...main, exceptions } : main;
}

/** Every ordered pair of outside and the domains, for every protocol. */
export function flowMatrix(model: FlowModel): FlowAnswer[] {
  const endpoints: FlowEndpoint[] = [{ kind: 'outside' }, ...Object.keys(model.infra.domains).map((name): FlowEndpoint => ({ kind: 'domain', name }))];
  return endpoints.flatMap((from) =>
    endpoints.filter((to) => to !== from).flatMap((to) => FLOW_PROTOCOLS.map((proto) => judgeFlow(model, from, to, proto))));
}
