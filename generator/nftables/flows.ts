/**
 * `anklume-gen flows`: may this open a connection to that, and why (a packet tracer for the infra).
 *
 * Pure. The verdicts are the ruleset's own: the sets and elements of buildRuleset, looked up with
 * the same element keys, in the order of the forward chain (flowChain.ts restates it; a unit test
 * holds it to the template, and end-to-end tests hold the verdicts against what the kernel does
 * with real connections, on one host and across two cluster members).
 */
import { HOST_ENDPOINT, OUTSIDE_ENDPOINT } from '../infra/validate.js';
import { connectPortFor, publishedPorts, type PublishedPort } from '../infra/devices.js';
import { bridgeOf, buildRuleset } from './nftables.js';
import { decide, FLOW_PROTOCOLS, OUTSIDE_IFACE, Tables, type Decision, type FlowProtocol, type Packet, type Side } from './flowChain.js';
import type { Infra, Mapping } from '../core/types.js';

export { FLOW_PROTOCOLS, type FlowProtocol };
export { chainRules } from './flowChain.js';

/** What a name on the command line stands for. */
export type FlowEndpoint =
  | { kind: 'machine'; name: string; domain: string; addr?: string }
  | { kind: 'domain'; name: string }
  | { kind: 'outside' }
  | { kind: 'host' };

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
  /** On a cluster, between two machines: the members whose ruleset judges the connection (one, or the source's and the destination's). */
  judged_on?: string[];
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
  return { infra, holder: ruleset.holder, tables: new Tables(ruleset, infra), ports: [...ports].sort((a, b) => a - b), otherPort, addressed, published };
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
    case 'machine': {
      const member = model.infra.domains[e.domain]?.machines?.[e.name]?.member;
      return [{ side: { iface: bridgeOf(e.domain), addr: e.addr, label: e.name, machine: e.name, ...(member ? { member } : {}) }, machine: e.name }];
    }
    case 'domain': {
      const publishing = new Set(model.published.map((p) => p.machine));
      const machines = Object.entries(model.infra.domains[e.name]?.machines ?? {})
        .filter(([name, m]) => (m.ip !== undefined && model.addressed.has(m.ip)) || publishing.has(name))
        .map(([name, m]) => ({ side: { iface: bridgeOf(e.name), addr: m.ip, label: name, machine: name, ...(m.member ? { member: m.member } : {}) }, machine: name }));
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
    reason: reasonOf(model, src, dst, proto, out, port) + judgedText(src, dst),
    policy: policy ?? null,
    ...(proto !== 'icmp' && port === undefined ? { ports: out.ports } : {}),
    ...(published.length ? { published } : {}),
    ...judgedOn(src, dst),
  };
}

/**
 * Where a connection between two machines of a cluster is judged: the same ruleset runs on every
 * member, and a packet between two members is judged where it leaves and where it arrives.
 */
function judgedOn(src: Side, dst: Side): { judged_on?: string[] } {
  if (src.member === undefined || dst.member === undefined) return {};
  return { judged_on: [...new Set([src.member, dst.member])] };
}

function judgedText(src: Side, dst: Side): string {
  const members = judgedOn(src, dst).judged_on;
  return members ? ` (judged on ${members.join(' and on ')})` : '';
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
