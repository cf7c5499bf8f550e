/**
 * A network lab in Linux network namespaces, for tests that prove isolation with real packets.
 * Needs root (ip netns) and iproute2; never touches the namespace the test runs in: every command
 * runs in a namespace this harness created (`ip -n NS` / `ip netns exec NS`).
 *
 * Topology built by `Lab.create(spec)`:
 *   - one "host" namespace with IPv4 forwarding on and, per domain, a bridge `net-<domain>` holding
 *     the gateway `<base>.<subnet_id>.254/24`;
 *   - one namespace per machine, its `eth0` a veth whose peer is a port of its domain's bridge,
 *     with the machine's IP /24 and a default route via the gateway;
 *   - per outside network (spec.outside): an interface of the host that is not a domain bridge,
 *     either a bridge (`kind: 'bridge'`, e.g. incusbr0, its machines attached like a domain's) or
 *     a point-to-point link (`kind: 'link'`, e.g. the uplink: a veth named `iface` whose peer is
 *     the one machine's eth0). Its machines have `outside: true`.
 * Namespace names are `<prefix><pid>h` (host) and `<prefix><pid>m<i>` (machines), unique per run.
 *
 * A cluster (spec.members, issue 19) has one host namespace per member instead, `<prefix><pid>h<j>`,
 * each with every domain's bridge and the same gateway addresses, as Incus makes them on every
 * member. Each member's `link` is one end of a veth (two members) or a port of a bridge in a
 * switch namespace `<prefix><pid>s` (more), with the member's address /24. A machine sits on its
 * member's bridge; every member routes each machine of another member (/32 via that member's
 * address) and answers ARP for it on the domain's bridge (proxy ARP): the routed bridges of
 * docs/multi-host.md. An outside network (spec.outside) is plugged into its `member`, and the
 * other members route it through that member's address. `lab.memberNs` maps each member to its
 * namespace; `lab.nftOn(member, ...)` and `lab.inMember(member, argv)` run there.
 *
 * API (all async):
 *   labSpecFromInfra(infra, extraDomains?)  → LabSpec: the domains/machines (with an ip) of a model
 *   Lab.create(spec, { prefix? })            → Lab; on failure it removes what it created, rethrows
 *   lab.hostNs, lab.machines (name → { name, domain, ip, ns }), lab.bridges
 *   lab.host(argv, { input? })               → run a command in the host namespace (never throws;
 *                                              returns { exitCode, stdout, stderr })
 *   lab.nft(args, input?)                    → nft in the host namespace; throws on failure
 *   lab.listen(ports, udpPorts?)             → TCP echo listeners (and UDP receivers) on every
 *                                              machine; every line or datagram a machine receives
 *                                              is logged: lab.received(machine, token, waitMs)
 *   lab.relay(machine, [{ port, to, toPort }]) → on `machine`, forward each TCP connection on `port`
 *                                              to `to`:`toPort` (a relay between two networks)
 *   lab.sendUdp(list)                        → one datagram per { from, to, port }, with a unique
 *                                              token each; resolves to the tokens
 *   lab.probe(from, [{ to, port }], timeoutMs?) → per target 'open' | 'refused' | 'timeout' | 'error'
 *                                              (one process per call, connects in parallel); `to`
 *                                              is a machine name or an address
 *   lab.probeMany(list, timeoutMs?, patientMs?) → same for many sources at once (one process each);
 *                                              a timeout is tried again with patientMs
 *   lab.hold(from, to, port)                 → a long-lived TCP connection: held.ping(timeoutMs)
 *                                              → { echoed, token }: echoed is true when data still
 *                                              makes the round trip; the token tells whether it
 *                                              reached the far end (lab.received); close()
 *   lab.teardown()                           → kills every process it started, deletes every
 *                                              namespace; idempotent — call it in after()/finally
 *   canRunNetns()                            → whether this process may build a lab (root, ip, nft)
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { execa } from 'execa';
import type { Infra } from '../../generator/core/types.ts';

export interface LabDomain {
  name: string;
  subnetId: number;
  /** `member`: the cluster member the machine runs on (spec.members only). */
  machines: { name: string; ip: string; member?: string }[];
}

/** A cluster member: its link's interface name and its address on the link. */
export interface LabMember {
  name: string;
  link: string;
  address: string;
}

/** A network of the host that is not a domain bridge. Addresses are /24, the host's is `gateway`. */
export interface OutsideNet {
  iface: string;
  kind: 'bridge' | 'link';
  gateway: string;
  machines: { name: string; ip: string }[];
  /** In a cluster lab: the member it is plugged into (the other members route it through that one). */
  member?: string;
}

export interface LabSpec {
  base: string;
  domains: LabDomain[];
  outside?: OutsideNet[];
  members?: LabMember[];
}

export interface LabMachine {
  name: string;
  /** The domain, or for a machine outside the domains, the host interface it sits behind. */
  domain: string;
  ip: string;
  ns: string;
  outside: boolean;
}

export type ProbeResult = 'open' | 'refused' | 'timeout' | 'error';

export interface Held {
  /** Sends a fresh token; `echoed`: it came back. Whether it arrived: lab.received(to, token). */
  ping(timeoutMs?: number): Promise<{ echoed: boolean; token: string }>;
  close(): void;
}

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** The agent that runs inside a machine namespace: echo server, prober, or long-lived client. */
const AGENT = String.raw`
import net from 'node:net';
import dgram from 'node:dgram';
import readline from 'node:readline';
const [mode, ...args] = process.argv.slice(1);
const log = (what, data) => { for (const line of data.toString().split('\n')) if (line) process.stdout.write('recv ' + what + ' ' + line + '\n'); };
if (mode === 'serve') {
  const [tcp, udp] = args.map((a) => (a ? a.split(',') : []));
  let pending = tcp.length + udp.length;
  const up = () => { if (--pending === 0) process.stdout.write('ready\n'); };
  for (const port of tcp) {
    const server = net.createServer((s) => { s.on('error', () => {}); s.on('data', (d) => { log('tcp/' + port + ' from ' + s.remoteAddress, d); s.write(d); }); });
    server.listen(Number(port), '0.0.0.0', up);
  }
  for (const port of udp) {
    const socket = dgram.createSocket('udp4');
    socket.on('message', (d) => log('udp/' + port, d));
    socket.bind(Number(port), '0.0.0.0', up);
  }
} else if (mode === 'relay') {
  let pending = args.length;
  for (const spec of args) {
    const [port, host, toPort] = spec.split(':');
    const server = net.createServer((inbound) => {
      const outbound = net.connect({ host, port: Number(toPort) });
      for (const [a, b] of [[inbound, outbound], [outbound, inbound]]) { a.on('error', () => b.destroy()); a.pipe(b); }
    });
    server.listen(Number(port), '0.0.0.0', () => { if (--pending === 0) process.stdout.write('ready\n'); });
  }
} else if (mode === 'udp') {
  const socket = dgram.createSocket('udp4');
  const sends = args.map((spec) => {
    const [host, port, token] = spec.split(':');
    // Twice: a datagram lost by chance must not read as a datagram dropped by the ruleset.
    return Promise.all([0, 1].map(() => new Promise((resolve) => socket.send(token + '\n', Number(port), host, resolve))));
  });
  Promise.all(sends).then(() => { socket.close(); process.stdout.write('sent\n'); });
} else if (mode === 'probe') {
  const timeout = Number(args[0]);
  const one = (target) => new Promise((resolve) => {
    const [host, port] = target.split(':');
    const s = net.connect({ host, port: Number(port) });
    const done = (r) => { clearTimeout(t); s.destroy(); resolve(r); };
    const t = setTimeout(() => done('timeout'), timeout);
    s.on('connect', () => done('open'));
    s.on('error', (e) => done(e.code === 'ECONNREFUSED' ? 'refused' : 'error'));
  });
  Promise.all(args.slice(1).map(one)).then((r) => process.stdout.write(JSON.stringify(r) + '\n'));
} else if (mode === 'hold') {
  const s = net.connect({ host: args[0], port: Number(args[1]) });
  let buffer = '';
  s.on('error', () => process.stdout.write('error\n'));
  s.on('data', (d) => { buffer += d.toString(); });
  s.on('connect', () => process.stdout.write('connected\n'));
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    const [token, timeout] = line.split(' ');
    s.write(token + '\n');
    const started = Date.now();
    const check = () => {
      if (buffer.includes(token + '\n')) return process.stdout.write('ok ' + token + '\n');
      if (Date.now() - started > Number(timeout)) return process.stdout.write('timeout ' + token + '\n');
      setTimeout(check, 10);
    };
    check();
  }).on('close', () => { s.destroy(); process.exit(0); });
}
`;

export function labSpecFromInfra(infra: Infra, extraDomains: LabDomain[] = []): LabSpec {
  const domains: LabDomain[] = Object.entries(infra.domains).map(([name, d]) => ({
    name,
    subnetId: d.subnet_id,
    machines: Object.entries(d.machines ?? {})
      .filter(([, m]) => typeof m.ip === 'string')
      .map(([machine, m]) => ({ name: machine, ip: m.ip as string, ...(m.member ? { member: m.member } : {}) })),
  }));
  const cluster = infra.global.cluster;
  const members = cluster && Object.entries(cluster.members).map(([name, m]): LabMember => ({ name, link: m.member_link ?? cluster.member_link, address: m.address }));
  return { base: infra.global.base_subnet, domains: [...domains, ...extraDomains], ...(members ? { members } : {}) };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function canRunNetns(): Promise<{ ok: boolean; why?: string }> {
  if (process.getuid?.() !== 0) return { ok: false, why: 'needs root (ip netns)' };
  for (const tool of ['ip', 'nft']) {
    const r = await execa(tool, ['-V'], { reject: false });
    if (r.exitCode !== 0) return { ok: false, why: `${tool} is not installed` };
  }
  return { ok: true };
}

async function run(argv: string[], input?: string): Promise<CommandResult> {
  const r = await execa(argv[0], argv.slice(1), { input, reject: false, stripFinalNewline: false });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

async function must(argv: string[], input?: string): Promise<string> {
  const r = await run(argv, input);
  if (r.exitCode !== 0) throw new Error(`${argv.join(' ')} failed (${r.exitCode}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** Reads lines from a child's stdout, one promise per expected line. */
function lineReader(child: ChildProcessWithoutNullStreams): (timeoutMs: number) => Promise<string> {
  const queue: string[] = [];
  const waiters: ((line: string) => void)[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    const w = waiters.shift();
    if (w) w(line);
    else queue.push(line);
  });
  return (timeoutMs) =>
    new Promise((resolve, reject) => {
      const queued = queue.shift();
      if (queued !== undefined) return resolve(queued);
      const timer = setTimeout(() => reject(new Error('agent did not answer')), timeoutMs);
      waiters.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
    });
}

export class Lab {
  readonly machines = new Map<string, LabMachine>();
  readonly bridges: string[] = [];
  /** A cluster's members and their namespaces (spec.members); empty for one host. */
  readonly memberNs = new Map<string, string>();
  private readonly namespaces: string[] = [];
  private readonly children: ChildProcessWithoutNullStreams[] = [];
  /** Every line or datagram each machine received, as its listener logged it. */
  private readonly receivedLog = new Map<string, string[]>();
  private tokenCounter = 0;

  private constructor(readonly hostNs: string) {}

  static async create(spec: LabSpec, opts: { prefix?: string } = {}): Promise<Lab> {
    const prefix = `${opts.prefix ?? 'ak'}${process.pid}`;
    const lab = new Lab(`${prefix}h`);
    try {
      await (spec.members ? lab.buildCluster(spec, spec.members, prefix) : lab.build(spec, prefix));
      return lab;
    } catch (err) {
      await lab.teardown();
      throw err;
    }
  }

  private async build(spec: LabSpec, prefix: string): Promise<void> {
    const h = this.hostNs;
    const inDomains = spec.domains.flatMap((d) =>
      d.machines.map((m) => ({ ...m, domain: d.name, outside: false, gateway: `${spec.base}.${d.subnetId}.254`, port: `net-${d.name}` })));
    const outside = (spec.outside ?? []).flatMap((n) =>
      n.machines.map((m) => ({ ...m, domain: n.iface, outside: true, gateway: n.gateway, port: n.kind === 'bridge' ? n.iface : undefined })));
    const machines = [...inDomains, ...outside];
    const all = [h, ...machines.map((_, i) => `${prefix}m${i}`)];
    // Recorded before creation, so that teardown also removes a half-built lab.
    this.namespaces.push(...all);
    await must(['ip', '-batch', '-'], all.map((ns) => `netns add ${ns}\n`).join(''));

    const hostCmds: string[] = ['link set lo up'];
    for (const d of spec.domains) {
      const bridge = `net-${d.name}`;
      this.bridges.push(bridge);
      hostCmds.push(`link add ${bridge} type bridge`, `addr add ${spec.base}.${d.subnetId}.254/24 dev ${bridge}`, `link set ${bridge} up`);
    }
    for (const n of spec.outside ?? []) {
      if (n.kind === 'bridge') hostCmds.push(`link add ${n.iface} type bridge`, `addr add ${n.gateway}/24 dev ${n.iface}`, `link set ${n.iface} up`);
    }
    machines.forEach((m, i) => {
      const ns = `${prefix}m${i}`;
      this.machines.set(m.name, { name: m.name, domain: m.domain, ip: m.ip, ns, outside: m.outside });
      if (m.port) {
        hostCmds.push(`link add vh${i} type veth peer name eth0 netns ${ns}`, `link set vh${i} master ${m.port}`, `link set vh${i} up`);
      } else {
        hostCmds.push(`link add ${m.domain} type veth peer name eth0 netns ${ns}`, `addr add ${m.gateway}/24 dev ${m.domain}`, `link set ${m.domain} up`);
      }
    });
    await must(['ip', '-n', h, '-batch', '-'], hostCmds.map((c) => c + '\n').join(''));
    await must(['ip', 'netns', 'exec', h, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    await Promise.all(
      machines.map((m, i) =>
        must(['ip', '-n', `${prefix}m${i}`, '-batch', '-'],
          ['link set lo up', `addr add ${m.ip}/24 dev eth0`, 'link set eth0 up', `route add default via ${m.gateway}`].map((c) => c + '\n').join('')),
      ),
    );
  }

  private async buildCluster(spec: LabSpec, members: LabMember[], prefix: string): Promise<void> {
    const memberNs = (i: number) => `${prefix}h${i}`;
    members.forEach((m, i) => this.memberNs.set(m.name, memberNs(i)));
    const inDomains = spec.domains.flatMap((d) =>
      d.machines.map((m) => ({ ...m, domain: d.name, outside: false, gateway: `${spec.base}.${d.subnetId}.254`, port: `net-${d.name}` as string | undefined })));
    const outside = (spec.outside ?? []).flatMap((n) =>
      n.machines.map((m) => ({ ...m, member: n.member ?? members[0].name, domain: n.iface, outside: true, gateway: n.gateway, port: n.kind === 'bridge' ? n.iface : undefined })));
    const machines = [...inDomains, ...outside];
    const switchNs = members.length > 2 ? [`${prefix}s`] : [];
    const all = [...members.map((_, i) => memberNs(i)), ...switchNs, ...machines.map((_, i) => `${prefix}m${i}`)];
    this.namespaces.push(...all);
    await must(['ip', '-batch', '-'], all.map((ns) => `netns add ${ns}\n`).join(''));

    const cmds = new Map<string, string[]>(members.map((_, i) => [memberNs(i), ['link set lo up']]));
    const on = (i: number, ...c: string[]) => cmds.get(memberNs(i))!.push(...c);
    for (const d of spec.domains) {
      this.bridges.push(`net-${d.name}`);
      members.forEach((_, i) => on(i, `link add net-${d.name} type bridge`, `addr add ${spec.base}.${d.subnetId}.254/24 dev net-${d.name}`, `link set net-${d.name} up`));
    }
    if (switchNs.length) {
      await must(['ip', '-n', switchNs[0], '-batch', '-'], ['link set lo up', 'link add sw type bridge', 'link set sw up'].map((c) => c + '\n').join(''));
      members.forEach((m, i) => on(i, `link add ${m.link} type veth peer name p${i} netns ${switchNs[0]}`));
    } else if (members.length === 2) {
      on(0, `link add ${members[0].link} type veth peer name ${members[1].link} netns ${memberNs(1)}`);
    }
    members.forEach((m, i) => on(i, `addr add ${m.address}/24 dev ${m.link}`, `link set ${m.link} up`));
    const memberIndex = (name: string | undefined, what: string) => {
      const i = members.findIndex((x) => x.name === name);
      if (i < 0) throw new Error(`${what}: member ${String(name)} is not in the lab`);
      return i;
    };
    for (const n of spec.outside ?? []) {
      const home = memberIndex(n.member ?? members[0].name, n.iface);
      if (n.kind === 'bridge') on(home, `link add ${n.iface} type bridge`, `addr add ${n.gateway}/24 dev ${n.iface}`, `link set ${n.iface} up`);
      const net = `${n.gateway.split('.').slice(0, 3).join('.')}.0/24`;
      members.forEach((x, j) => j !== home && on(j, `route add ${net} via ${members[home].address} dev ${x.link}`));
    }
    machines.forEach((m, i) => {
      const home = memberIndex(m.member, `machine ${m.name}`);
      const ns = `${prefix}m${i}`;
      this.machines.set(m.name, { name: m.name, domain: m.domain, ip: m.ip, ns, outside: m.outside });
      if (m.port) {
        on(home, `link add vh${i} type veth peer name eth0 netns ${ns}`, `link set vh${i} master ${m.port}`, `link set vh${i} up`);
      } else {
        on(home, `link add ${m.domain} type veth peer name eth0 netns ${ns}`, `addr add ${m.gateway}/24 dev ${m.domain}`, `link set ${m.domain} up`);
      }
      if (!m.outside) members.forEach((x, j) => j !== home && on(j, `route add ${m.ip}/32 via ${members[home].address} dev ${x.link}`));
    });
    // The link's ends exist once the first member's batch made the veth: members in order.
    for (const [ns, list] of cmds) await must(['ip', '-n', ns, '-batch', '-'], list.map((c) => c + '\n').join(''));
    if (switchNs.length) await must(['ip', '-n', switchNs[0], '-batch', '-'], members.map((_, i) => `link set p${i} master sw\nlink set p${i} up\n`).join(''));
    await Promise.all(members.map((_, i) =>
      must(['ip', 'netns', 'exec', memberNs(i), 'sysctl', '-qw', 'net.ipv4.ip_forward=1', ...spec.domains.map((d) => `net.ipv4.conf.net-${d.name}.proxy_arp=1`)])));
    await Promise.all(machines.map((m, i) =>
      must(['ip', '-n', `${prefix}m${i}`, '-batch', '-'],
        ['link set lo up', `addr add ${m.ip}/24 dev eth0`, 'link set eth0 up', `route add default via ${m.gateway}`].map((c) => c + '\n').join(''))));
  }

  /** nft in a member's namespace (a cluster lab); throws on failure. */
  async nftOn(member: string, args: string[], input?: string): Promise<string> {
    const ns = this.memberNs.get(member);
    if (!ns) throw new Error(`no member ${member} in the lab`);
    return must(['ip', 'netns', 'exec', ns, 'nft', ...args], input);
  }

  /** A command in a member's namespace (a cluster lab; never throws). */
  inMember(member: string, argv: string[]): Promise<CommandResult> {
    const ns = this.memberNs.get(member);
    if (!ns) throw new Error(`no member ${member} in the lab`);
    return run(['ip', 'netns', 'exec', ns, ...argv]);
  }

  /** A command in a machine's namespace (never throws). */
  inMachine(name: string, argv: string[], input?: string): Promise<CommandResult> {
    return run(['ip', 'netns', 'exec', this.machine(name).ns, ...argv], input);
  }

  private machine(name: string): LabMachine {
    const m = this.machines.get(name);
    if (!m) throw new Error(`no machine ${name} in the lab`);
    return m;
  }

  private agent(ns: string, args: string[]): ChildProcessWithoutNullStreams {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', AGENT, ...args], { stdio: 'pipe' });
    this.children.push(child);
    return child;
  }

  host(argv: string[], opts: { input?: string } = {}): Promise<CommandResult> {
    return run(['ip', 'netns', 'exec', this.hostNs, ...argv], opts.input);
  }

  async nft(args: string[], input?: string): Promise<string> {
    return must(['ip', 'netns', 'exec', this.hostNs, 'nft', ...args], input);
  }

  /** Starts an agent that answers 'ready' once up; every `recv` line after that is logged for `machine`. */
  private async start(machine: LabMachine, args: string[]): Promise<void> {
    const child = this.agent(machine.ns, args);
    const log = this.receivedLog.get(machine.name) ?? [];
    this.receivedLog.set(machine.name, log);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`agent ${args[0]} in ${machine.name} did not start`)), 10_000);
      createInterface({ input: child.stdout }).on('line', (line) => {
        if (line === 'ready') {
          clearTimeout(timer);
          resolve();
        } else if (line.startsWith('recv ')) {
          log.push(line);
        }
      });
    });
  }

  async listen(ports: number[], udpPorts: number[] = []): Promise<void> {
    await Promise.all([...this.machines.values()].map((m) => this.start(m, ['serve', ports.join(','), udpPorts.join(',')])));
  }

  async relay(machine: string, forwards: { port: number; to: string; toPort: number }[]): Promise<void> {
    await this.start(this.machine(machine), ['relay', ...forwards.map((f) => `${f.port}:${this.machine(f.to).ip}:${f.toPort}`)]);
  }

  /** A token no listener has seen yet. */
  token(): string {
    return `tok${process.pid}x${++this.tokenCounter}`;
  }

  /**
   * Whether `machine` received `token` (on any port, TCP or UDP). Waits up to waitMs for it: a
   * negative answer therefore always costs waitMs.
   */
  async received(machine: string, token: string, waitMs = 1_500): Promise<boolean> {
    const log = this.receivedLog.get(this.machine(machine).name) ?? [];
    const deadline = Date.now() + waitMs;
    for (;;) {
      if (log.some((line) => line.endsWith(` ${token}`))) return true;
      if (Date.now() >= deadline) return false;
      await sleep(20);
    }
  }

  /** The source address `machine`'s TCP listener saw `token` come from (a masquerade shows here); undefined if it never arrived. */
  async senderOf(machine: string, token: string, waitMs = 1_500): Promise<string | undefined> {
    if (!(await this.received(machine, token, waitMs))) return undefined;
    const line = (this.receivedLog.get(this.machine(machine).name) ?? []).find((l) => l.endsWith(` ${token}`));
    return / from (\S+) /.exec(line ?? '')?.[1];
  }

  /** Sends one UDP datagram per entry (a fresh token each); resolves to the tokens, in order. */
  async sendUdp(list: { from: string; to: string; port: number }[]): Promise<string[]> {
    const tokens = list.map(() => this.token());
    const bySource = new Map<string, string[]>();
    list.forEach((d, i) => bySource.set(d.from, [...(bySource.get(d.from) ?? []), `${this.machine(d.to).ip}:${d.port}:${tokens[i]}`]));
    await Promise.all([...bySource.entries()].map(([from, specs]) =>
      must(['ip', 'netns', 'exec', this.machine(from).ns, process.execPath, '--input-type=module', '-e', AGENT, 'udp', ...specs])));
    return tokens;
  }

  private address(to: string): string {
    return this.machines.get(to)?.ip ?? to;
  }

  probe(from: string, targets: { to: string; port: number }[], timeoutMs = 700): Promise<ProbeResult[]> {
    return this.probeMany(targets.map((t) => ({ from, ...t })), timeoutMs);
  }

  /** One probe process in `from`: connects to every target in parallel. */
  private async probeFrom(from: string, targets: { to: string; port: number }[], timeoutMs: number): Promise<ProbeResult[]> {
    const src = this.machine(from);
    const args = targets.map((t) => `${this.address(t.to)}:${t.port}`);
    const out = await must(['ip', 'netns', 'exec', src.ns, process.execPath, '--input-type=module', '-e', AGENT, 'probe', String(timeoutMs), ...args]);
    return JSON.parse(out) as ProbeResult[];
  }

  /**
   * Probes from several machines at once; results in the order of `list`. A probe that times out is
   * tried once more with `patientMs`: on a loaded machine an open port can miss the first timeout,
   * while a dropped connection times out however long one waits.
   */
  async probeMany(list: { from: string; to: string; port: number }[], timeoutMs = 700, patientMs = 2_500): Promise<ProbeResult[]> {
    const first = await this.probeOnce(list, timeoutMs);
    const again = first.flatMap((r, i) => (r === 'timeout' ? [i] : []));
    if (again.length === 0 || patientMs <= timeoutMs) return first;
    const second = await this.probeOnce(again.map((i) => list[i]), patientMs);
    again.forEach((i, k) => (first[i] = second[k]));
    return first;
  }

  private async probeOnce(list: { from: string; to: string; port: number }[], timeoutMs: number): Promise<ProbeResult[]> {
    const bySource = new Map<string, number[]>();
    list.forEach((p, i) => bySource.set(p.from, [...(bySource.get(p.from) ?? []), i]));
    const results: ProbeResult[] = new Array<ProbeResult>(list.length);
    await Promise.all(
      [...bySource.entries()].map(async ([from, indexes]) => {
        const r = await this.probeFrom(from, indexes.map((i) => list[i]), timeoutMs);
        indexes.forEach((i, k) => (results[i] = r[k]));
      }),
    );
    return results;
  }

  async hold(from: string, to: string, port: number): Promise<Held> {
    const child = this.agent(this.machine(from).ns, ['hold', this.machine(to).ip, String(port)]);
    const next = lineReader(child);
    const first = await next(5_000);
    if (first !== 'connected') throw new Error(`hold ${from} -> ${to}:${port}: ${first}`);
    return {
      ping: async (timeoutMs = 2_000) => {
        const token = this.token();
        child.stdin.write(`${token} ${timeoutMs}\n`);
        const line = await next(timeoutMs + 5_000);
        return { echoed: line === `ok ${token}`, token };
      },
      close: () => child.stdin.end(),
    };
  }

  async teardown(): Promise<void> {
    for (const child of this.children.splice(0)) {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    const namespaces = this.namespaces.splice(0);
    // One by one: a namespace that failed to be created must not stop the others being removed.
    await Promise.all(namespaces.map((ns) => run(['ip', 'netns', 'del', ns])));
  }
}
