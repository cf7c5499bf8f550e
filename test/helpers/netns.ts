/**
 * A network lab in Linux network namespaces, for tests that prove isolation with real packets.
 * Needs root (ip netns) and iproute2; never touches the namespace the test runs in: every command
 * runs in a namespace this harness created (`ip -n NS` / `ip netns exec NS`).
 *
 * Topology built by `Lab.create(spec)`:
 *   - one "host" namespace with IPv4 forwarding on and, per domain, a bridge `net-<domain>` holding
 *     the gateway `<base>.<subnet_id>.254/24`;
 *   - one namespace per machine, its `eth0` a veth whose peer is a port of its domain's bridge,
 *     with the machine's IP /24 and a default route via the gateway.
 * Namespace names are `<prefix><pid>h` (host) and `<prefix><pid>m<i>` (machines), unique per run.
 *
 * API (all async):
 *   labSpecFromInfra(infra, extraDomains?)  → LabSpec: the domains/machines (with an ip) of a model
 *   Lab.create(spec, { prefix? })            → Lab; on failure it removes what it created, rethrows
 *   lab.hostNs, lab.machines (name → { name, domain, ip, ns }), lab.bridges
 *   lab.host(argv, { input? })               → run a command in the host namespace (never throws;
 *                                              returns { exitCode, stdout, stderr })
 *   lab.nft(args, input?)                    → nft in the host namespace; throws on failure
 *   lab.listen(ports)                        → TCP echo listeners on every machine, on every port
 *   lab.probe(from, [{ to, port }], timeoutMs?) → per target 'open' | 'refused' | 'timeout' | 'error'
 *                                              (one process per call, connects in parallel)
 *   lab.probeMany(list, timeoutMs?)          → same for many sources at once (one process each)
 *   lab.hold(from, to, port)                 → a long-lived TCP connection: held.ping(timeoutMs)
 *                                              → true when data still makes the round trip; close()
 *   lab.teardown()                           → kills every process it started, deletes every
 *                                              namespace; idempotent — call it in after()/finally
 *   canRunNetns()                            → whether this process may build a lab (root, ip, nft)
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { execa } from 'execa';
import type { Infra } from '../../generator/types.ts';

export interface LabDomain {
  name: string;
  subnetId: number;
  machines: { name: string; ip: string }[];
}

export interface LabSpec {
  base: string;
  domains: LabDomain[];
}

export interface LabMachine {
  name: string;
  domain: string;
  ip: string;
  ns: string;
}

export type ProbeResult = 'open' | 'refused' | 'timeout' | 'error';

export interface Held {
  ping(timeoutMs?: number): Promise<boolean>;
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
import readline from 'node:readline';
const [mode, ...args] = process.argv.slice(1);
if (mode === 'serve') {
  let pending = args.length;
  for (const port of args) {
    const server = net.createServer((s) => { s.on('error', () => {}); s.pipe(s); });
    server.listen(Number(port), '0.0.0.0', () => { if (--pending === 0) process.stdout.write('ready\n'); });
  }
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
      .map(([machine, m]) => ({ name: machine, ip: m.ip as string })),
  }));
  return { base: infra.global.base_subnet, domains: [...domains, ...extraDomains] };
}

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
  private readonly namespaces: string[] = [];
  private readonly children: ChildProcessWithoutNullStreams[] = [];
  private holdCounter = 0;

  private constructor(readonly hostNs: string) {}

  static async create(spec: LabSpec, opts: { prefix?: string } = {}): Promise<Lab> {
    const prefix = `${opts.prefix ?? 'ak'}${process.pid}`;
    const lab = new Lab(`${prefix}h`);
    try {
      await lab.build(spec, prefix);
      return lab;
    } catch (err) {
      await lab.teardown();
      throw err;
    }
  }

  private async build(spec: LabSpec, prefix: string): Promise<void> {
    const h = this.hostNs;
    const machines = spec.domains.flatMap((d) => d.machines.map((m) => ({ ...m, domain: d.name, subnetId: d.subnetId })));
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
    machines.forEach((m, i) => {
      const ns = `${prefix}m${i}`;
      this.machines.set(m.name, { name: m.name, domain: m.domain, ip: m.ip, ns });
      hostCmds.push(`link add vh${i} type veth peer name eth0 netns ${ns}`, `link set vh${i} master net-${m.domain}`, `link set vh${i} up`);
    });
    await must(['ip', '-n', h, '-batch', '-'], hostCmds.map((c) => c + '\n').join(''));
    await must(['ip', 'netns', 'exec', h, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    await Promise.all(
      machines.map((m, i) =>
        must(['ip', '-n', `${prefix}m${i}`, '-batch', '-'],
          ['link set lo up', `addr add ${m.ip}/24 dev eth0`, 'link set eth0 up', `route add default via ${spec.base}.${m.subnetId}.254`].map((c) => c + '\n').join('')),
      ),
    );
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

  async listen(ports: number[]): Promise<void> {
    await Promise.all(
      [...this.machines.values()].map(async (m) => {
        const child = this.agent(m.ns, ['serve', ...ports.map(String)]);
        const line = await lineReader(child)(10_000);
        if (line !== 'ready') throw new Error(`listener in ${m.name}: ${line}`);
      }),
    );
  }

  async probe(from: string, targets: { to: string; port: number }[], timeoutMs = 700): Promise<ProbeResult[]> {
    const src = this.machine(from);
    const args = targets.map((t) => `${this.machine(t.to).ip}:${t.port}`);
    const out = await must(['ip', 'netns', 'exec', src.ns, process.execPath, '--input-type=module', '-e', AGENT, 'probe', String(timeoutMs), ...args]);
    return JSON.parse(out) as ProbeResult[];
  }

  /** Probes from several machines at once; results in the order of `list`. */
  async probeMany(list: { from: string; to: string; port: number }[], timeoutMs = 700): Promise<ProbeResult[]> {
    const bySource = new Map<string, number[]>();
    list.forEach((p, i) => bySource.set(p.from, [...(bySource.get(p.from) ?? []), i]));
    const results: ProbeResult[] = new Array<ProbeResult>(list.length);
    await Promise.all(
      [...bySource.entries()].map(async ([from, indexes]) => {
        const r = await this.probe(from, indexes.map((i) => list[i]), timeoutMs);
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
      ping: async (timeoutMs = 500) => {
        const token = `t${++this.holdCounter}`;
        child.stdin.write(`${token} ${timeoutMs}\n`);
        const line = await next(timeoutMs + 5_000);
        return line === `ok ${token}`;
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
