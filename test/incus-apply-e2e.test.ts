/**
 * `make apply` against REAL Incus (no stand-in for incus): the fixture infra becomes projects,
 * bridges and running system containers, and the isolation promise is proven with real TCP between
 * real containers, before and after a real `make ai-switch DOMAIN=perso NO_FLUSH=1` whose
 * `incus exec ... systemctl stop/start` really stop and start the services in gpu-server.
 *
 * What is still a stand-in, because this machine kind has no GPU: the `gpu` device of gpu-server
 * (a unix-char device instead of `type: gpu`, which Incus refuses to start without a GPU), and
 * `nvidia-smi` in the switch with the VRAM flush (test/fixtures/standins/nvidia-smi, alone on PATH
 * before the real tools): it lists, as GPU compute processes, the host PIDs of real processes in
 * real containers and on the host, so the cgroups read and the processes killed are real.
 * `type: vm` is not tried: VMs cannot run here (no vhost_vsock).
 *
 * Needs root, Incus >= 6.0 with its daemon running and the test image imported: `.ci/incus-setup`
 * does all of it (cached; .ci/run calls it). Without them the suite is skipped with the reason,
 * except in CI (CI=true), where it fails. In CI, what an earlier run of the suite left when it was
 * stopped before its cleanup is removed first (earlierRunLeftovers: recognised by the fixture's
 * subnet and bridges); elsewhere anything in the way skips the suite, and nothing is touched. It loads `table inet anklume` into this machine's own
 * namespace (where Incus bridges live), and removes it and every Incus object it made afterwards,
 * failures included.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { testEnv, type TestEnv } from './helpers/env.ts';
import { CONNECT_FROM, holdConnection } from './helpers/probes.ts';
import { isAlive, STANDINS_BIN } from './helpers/standins.ts';

const ROOT = process.cwd();
const FIXTURES = join(ROOT, 'test/fixtures/incus');
const FIXTURE = join(FIXTURES, 'infra.yml');
const IMAGE = process.env.ANKLUME_TEST_IMAGE ?? 'anklume-test-debian12';
const DOMAINS = ['ai-tools', 'pro', 'perso', 'guest'];
/** The domain the fault tests add (and then remove again) to the fixture. */
const LAB = 'lab';
/** The fixture's base_subnet: every bridge of its domains is <SUBNET>.<subnet_id>.254/24. */
const SUBNET = '10.181';
const MACHINES: Record<string, { project: string; ip: string }> = {
  'gpu-server': { project: 'ai-tools', ip: '10.181.10.10' },
  'pro-dev': { project: 'pro', ip: '10.181.2.10' },
  'perso-desktop': { project: 'perso', ip: '10.181.1.10' },
  'guest-box': { project: 'guest', ip: '10.181.3.10' },
};
const RELAY = 'anklume-e2e-relay';
const RELAY_BRIDGE = 'incusbr0';
const OLLAMA = 11434;
const SPEACHES = 8000;
const WEBUI = 8080;
const WEB = 80;
const OTHER = 8443;

type Probe = 'open' | 'refused' | 'timeout' | 'error';

async function sh(argv: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  // No input: stdin is closed, because incus reads an object's definition from stdin when it is not a terminal.
  const stdio = opts.input === undefined ? { stdin: 'ignore' as const } : { input: opts.input };
  const r = await execa(argv[0], argv.slice(1), { ...stdio, env: opts.env, reject: false, timeout: 300_000 });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

async function must(argv: string[], input?: string): Promise<string> {
  const r = await sh(argv, { input });
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

async function query<T>(path: string): Promise<T> {
  return JSON.parse(await must(['incus', 'query', path])) as T;
}

/** The relay bridge's gateway when the suite creates incusbr0 itself. */
const RELAY_GATEWAY = '10.199.77.1/24';

/** What the suite makes: its instances, the domains' profiles and projects, their bridges; the relay bridge and the table when asked. */
async function removeSuiteObjects(also: { relayBridge: boolean; table: boolean }): Promise<void> {
  const instances = await query<{ name: string; project: string }[]>('/1.0/instances?recursion=1&all-projects=true').catch(() => []);
  await Promise.all(instances
    .filter((i) => [...DOMAINS, LAB].includes(i.project) || (i.project === 'default' && i.name === RELAY))
    .map((i) => sh(['incus', 'delete', '--force', i.name, '--project', i.project])));
  for (const d of [...DOMAINS, LAB]) {
    // A project is deleted only once empty: the domain profiles go first.
    const profiles = await query<string[]>(`/1.0/profiles?project=${d}`).catch(() => []);
    for (const p of profiles.map((u) => u.split('/').pop()!.split('?')[0]).filter((n) => n !== 'default')) await sh(['incus', 'profile', 'delete', p, '--project', d]);
    await sh(['incus', 'project', 'delete', d]);
  }
  const networks = await query<{ name: string; config: Record<string, string> }[]>('/1.0/networks?recursion=1').catch(() => []);
  for (const n of networks) {
    if ([...DOMAINS, LAB].includes(n.config['user.anklume.domain'] ?? '') || n.name === `net-${LAB}`) await sh(['incus', 'network', 'delete', n.name]);
  }
  if (also.relayBridge) await sh(['incus', 'network', 'delete', RELAY_BRIDGE]);
  if (also.table) await sh(['nft', 'delete', 'table', 'inet', 'anklume']);
}

/**
 * What an earlier run of this suite left when it was stopped before its own cleanup (a CI run at
 * its time limit): the fixture's projects, whose anklume bridges are on the fixture's subnet; a
 * `table inet anklume` whose domain bridges are the fixture's; incusbr0 with the relay's gateway.
 * Undefined when anything else is in the way: that is never touched.
 */
async function earlierRunLeftovers(): Promise<{ relayBridge: boolean; table: boolean } | undefined> {
  const projects = (await query<{ name: string }[]>('/1.0/projects?recursion=1')).map((p) => p.name);
  const networks = await query<{ name: string; managed: boolean; config: Record<string, string> }[]>('/1.0/networks?recursion=1');
  const ours = [...DOMAINS, LAB].filter((d) => projects.includes(d)).every((d) => {
    const bridge = networks.find((n) => n.name === `net-${d}`);
    return bridge === undefined || (bridge.config['user.anklume.domain'] === d && (bridge.config['ipv4.address'] ?? '').startsWith(`${SUBNET}.`));
  });
  if (!ours) return undefined;
  const listed = await sh(['nft', '-j', 'list', 'set', 'inet', 'anklume', 'domain_bridges']);
  let table = false;
  if ((await sh(['nft', 'list', 'table', 'inet', 'anklume'])).code === 0) {
    const set = listed.code === 0 ? (JSON.parse(listed.stdout) as { nftables: { set?: { elem?: string[] } }[] }).nftables.find((x) => x.set)?.set : undefined;
    const bridges = set?.elem ?? [];
    if (!bridges.length || !bridges.every((b) => [...DOMAINS, LAB].map((d) => `net-${d}`).includes(b))) return undefined;
    table = true;
  }
  const relay = networks.find((n) => n.name === RELAY_BRIDGE);
  return { relayBridge: relay?.managed === true && relay.config['ipv4.address'] === RELAY_GATEWAY, table };
}

/** Whether this machine can run the suite, and if not, why (the skip reason). */
async function support(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (incus, nft)';
  const version = await sh(['incus', 'query', '/1.0']).catch(() => ({ code: -1, stdout: '', stderr: 'incus is not installed' }));
  if (version.code !== 0) return `Incus is not installed or its daemon is not running (${version.stderr.trim()}): run .ci/incus-setup as root`;
  if ((await sh(['incus', 'image', 'show', IMAGE])).code !== 0) return `the test image ${IMAGE} is not imported: run .ci/incus-setup as root`;
  if ((await sh(['nft', 'list', 'table', 'inet', 'anklume'])).code === 0) return 'table inet anklume is already loaded on this machine: the test would replace it';
  const projects = (await query<{ name: string }[]>('/1.0/projects?recursion=1')).map((p) => p.name);
  const taken = [...DOMAINS, LAB].filter((d) => projects.includes(d));
  if (taken.length) return `Incus projects ${taken.join(', ')} already exist here: the test would take them over`;
  return undefined;
}

const inCi = process.env.CI === 'true';
// Only in CI, whose machine is the project's own: what an interrupted run of this suite left goes
// first (removing what is not there does nothing). Elsewhere anything in the way skips the suite.
if (inCi && process.getuid?.() === 0 && (await sh(['incus', 'query', '/1.0'])).code === 0) {
  const left = await earlierRunLeftovers().catch(() => undefined);
  if (left) await removeSuiteObjects(left);
}
const why = await support();

const OUTER_MAKE = new Set(['INFRA', 'BASE_DIR', 'DOMAIN', 'MAKEFLAGS', 'MAKELEVEL', 'MFLAGS', 'EXTRA_VARS', 'CHECK', 'DELETE_ORPHANS']);

describe('real Incus: make apply builds the domains; real TCP proves the isolation; make ai-switch with no stand-in for incus, with and without the VRAM flush (stand-ins: the GPU device and nvidia-smi; no GPU here)', { skip: why && !inCi ? why : false }, () => {
  let t: TestEnv;
  let varsFile: string;
  let installed: string;
  let bootConf: string;
  let createdRelayBridge = false;
  let loadedTable = false;
  const phases: [string, number][] = [];
  const holds: ChildProcessWithoutNullStreams[] = [];

  async function phase<T>(name: string, run: () => Promise<T>): Promise<T> {
    const start = Date.now();
    try {
      return await run();
    } finally {
      phases.push([name, (Date.now() - start) / 1000]);
    }
  }

  function env(): NodeJS.ProcessEnv {
    return {
      ...Object.fromEntries(Object.entries(t.env).filter(([k]) => !OUTER_MAKE.has(k))),
      ANKLUME_INSTALLED_RULESET: installed,
      ANKLUME_BOOT_CONF: bootConf,
    };
  }

  async function make(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string }> {
    const r = await sh(['make', '-s', '-C', ROOT, ...args], { env: { ...env(), ...extraEnv } });
    return { code: r.code, out: r.stdout + r.stderr };
  }

  async function apply(infra = FIXTURE, ...flags: string[]): Promise<{ code: number; out: string; changed: number }> {
    const synced = await make(['sync', `INFRA=${infra}`, `BASE_DIR=${t.baseDir}`]);
    assert.equal(synced.code, 0, synced.out);
    const r = await make(['apply', `BASE_DIR=${t.baseDir}`, `EXTRA_VARS=@${varsFile}`, ...flags]);
    loadedTable = true;
    const recap = /localhost\s+:\s+ok=\d+\s+changed=(\d+)/.exec(r.out);
    return { ...r, changed: recap ? Number(recap[1]) : -1 };
  }

  const gen = (args: string[]) => sh(['node', join(ROOT, 'dist/generator/cli/bin.js'), ...args], { env: env() });
  type PlanEntry = { kind: string; id: string; changes: Record<string, [unknown, unknown]> };
  type Plan = { create: PlanEntry[]; update: PlanEntry[]; delete: PlanEntry[]; refused: string[]; orphans: { label: string }[] };
  /** apply --check --json: the plan, with the suite's variables (the stand-in GPU device, the install dir). */
  async function plan(...flags: string[]): Promise<{ code: number; plan: Plan; stderr: string }> {
    const r = await gen(['apply', '--check', '--json', '--base-dir', t.baseDir, ...flags, '--', '-e', `@${varsFile}`]);
    return { code: r.code, plan: JSON.parse(r.stdout) as Plan, stderr: r.stderr };
  }
  async function audit(): Promise<{ code: number; out: string; findings: { check: string; message: string; fix: string }[] }> {
    const r = await gen(['audit', '--infra', FIXTURE, '--base-dir', t.baseDir, '--json', '--', '-e', `@${varsFile}`]);
    const report = JSON.parse(r.stdout) as { findings: { check: string; message: string; fix: string }[]; unchecked: unknown[] };
    assert.deepEqual(report.unchecked, [], 'the audit read everything');
    return { code: r.code, out: r.stdout, findings: report.findings };
  }
  const ids = (entries: PlanEntry[]) => entries.map((e) => e.id).sort();

  const exec = (machine: string, argv: string[], input?: string) => sh(['incus', 'exec', machine, '--project', MACHINES[machine]?.project ?? 'default', '--', ...argv], { input });

  async function push(machine: string, file: string, dest: string): Promise<void> {
    await must(['incus', 'file', 'push', file, `${machine}${dest}`, '--project', MACHINES[machine]?.project ?? 'default', '--create-dirs']);
  }

  /** Each machine probes its targets in parallel (real TCP, inside the containers). */
  async function probe(list: { from: string; to: string; port: number }[]): Promise<Probe[]> {
    const results: Probe[] = new Array<Probe>(list.length);
    const bySource = new Map<string, number[]>();
    list.forEach((p, i) => bySource.set(p.from, [...(bySource.get(p.from) ?? []), i]));
    await Promise.all([...bySource].map(async ([from, indexes]) => {
      const targets = indexes.map((i) => `${ipOf(list[i].to)}:${list[i].port}`);
      const r = await exec(from, ['python3', '/usr/local/bin/anklume-probe', '1500', ...targets]);
      assert.equal(r.code, 0, r.stderr);
      (JSON.parse(r.stdout) as Probe[]).forEach((v, k) => (results[indexes[k]] = v));
    }));
    return results;
  }

  let relayIp = '';
  const ipOf = (machine: string) => (machine === RELAY ? relayIp : MACHINES[machine].ip);

  const hold = (from: string, to: string, port: number) =>
    holdConnection(['incus', 'exec', from, '--project', MACHINES[from].project, '--', 'python3', '/usr/local/bin/anklume-hold', ipOf(to), String(port)], `${from} -> ${to}:${port}`, holds);

  async function service(machine: string, unit: string): Promise<{ active: string; pid: string }> {
    const active = (await exec(machine, ['systemctl', 'is-active', unit])).stdout.trim();
    const pid = (await exec(machine, ['systemctl', 'show', '--property=MainPID', '--value', unit])).stdout.trim();
    return { active, pid };
  }

  async function waitFor(what: string, ok: () => Promise<boolean>, seconds = 60): Promise<void> {
    for (let i = 0; i < seconds * 4; i++) {
      if (await ok()) return;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  async function ipv4(name: string, project: string): Promise<string[]> {
    const state = await query<{ network?: Record<string, { addresses: { family: string; address: string }[] }> }>(`/1.0/instances/${name}/state?project=${project}`);
    return (state.network?.eth0?.addresses ?? []).filter((a) => a.family === 'inet').map((a) => a.address);
  }

  /** Every object the suite may have made, whatever step failed: instances, projects, bridges, the table. */
  async function cleanup(): Promise<void> {
    for (const child of holds) child.kill('SIGKILL');
    await removeSuiteObjects({ relayBridge: createdRelayBridge, table: loadedTable });
  }

  before(async () => {
    if (why) throw new Error(`CI=true, and the real-Incus test cannot run: ${why}`);
    t = testEnv('anklume-incus-e2e-');
    installed = join(t.dir, 'etc-nftables.d', 'anklume.nft');
    // What the host's /etc/nftables.conf holds once apply included the install directory (the
    // suite keeps the host's own untouched): audit checks it.
    bootConf = join(t.dir, 'nftables.conf');
    writeFileSync(bootConf, `#!/usr/sbin/nft -f\ninclude "${join(t.dir, 'etc-nftables.d')}/*.nft"\n`);
    varsFile = join(t.dir, 'vars.json');
    // The host's own files stay untouched: the ruleset is installed under the test's directory.
    // gpu-server's `gpu` device: a stand-in character device (no GPU here).
    writeFileSync(varsFile, JSON.stringify({
      incus_nftables_install_dir: join(t.dir, 'etc-nftables.d'),
      incus_nftables_boot_include: false,
      incus_preflight_gpu_device: { type: 'unix-char', source: '/dev/null', path: '/dev/nvidia-standin' },
    }));
  });

  after(async () => {
    await cleanup();
    t?.cleanup();
    console.log(`real-Incus phases: ${phases.map(([n, s]) => `${n} ${s.toFixed(1)} s`).join(', ')}; total ${phases.reduce((a, [, s]) => a + s, 0).toFixed(1)} s`);
  });

  it('make apply creates one project and one bridge per domain and every machine as a running instance, with its IPv4, profiles and GPU device', async () => {
    const dry = await phase('apply --check on nothing', () => apply(FIXTURE, 'CHECK=1'));
    assert.equal(dry.code, 2, `make apply CHECK=1 fails when Incus would change (anklume-gen exits 1): ${dry.out}`);
    assert.match(dry.out, /^create +instance:pro\/pro-dev \(.*image: "anklume-test-debian12"; profiles: \["default","small"\]; state: "Running"; type: "container"\)$/m, dry.out);
    const planned = await plan();
    assert.equal(planned.code, 1, planned.stderr);
    assert.deepEqual(planned.plan.refused, []);
    // Exactly what the apply below makes: every project, profile, bridge, the ruleset, every instance.
    assert.deepEqual(ids(planned.plan.create), [
      ...DOMAINS.map((d) => `bridge:net-${d}`), 'instance:ai-tools/gpu-server', 'instance:guest/guest-box', 'instance:perso/perso-desktop', 'instance:pro/pro-dev',
      'profile:pro/small', ...DOMAINS.map((d) => `project:${d}`), 'ruleset:boot', 'ruleset:live',
    ].sort());
    assert.deepEqual(ids(planned.plan.update), DOMAINS.map((d) => `profile:${d}/default`).sort(), "a new project's default profile gets the root disk");
    assert.deepEqual(planned.plan.delete, []);
    const gpuPlan = planned.plan.create.find((e) => e.id === 'instance:ai-tools/gpu-server')!;
    assert.deepEqual(gpuPlan.changes['devices.gpu'], [null, { type: 'unix-char', source: '/dev/null', path: '/dev/nvidia-standin' }]);
    assert.ok(!(await query<string[]>('/1.0/projects')).some((u) => DOMAINS.includes(u.split('/').pop()!)), 'check mode made no project');
    assert.ok(!(await query<string[]>('/1.0/networks')).some((n) => n.includes('net-')), 'check mode made no bridge');

    const r = await phase('first apply', () => apply());
    assert.equal(r.code, 0, r.out);
    assert.ok(r.changed > 0, r.out);

    const projects = await query<{ name: string; config: Record<string, string> }[]>('/1.0/projects?recursion=1');
    for (const d of DOMAINS) {
      const p = projects.find((x) => x.name === d);
      assert.ok(p, `project ${d}`);
      assert.equal(p.config['user.anklume.domain'], d);
      assert.equal(p.config['features.images'], 'false');
    }
    const networks = await query<{ name: string; managed: boolean; type: string; config: Record<string, string> }[]>('/1.0/networks?recursion=1');
    for (const [d, sid] of [['ai-tools', 10], ['pro', 2], ['perso', 1], ['guest', 3]] as const) {
      const n = networks.find((x) => x.name === `net-${d}`);
      assert.ok(n, `bridge net-${d}`);
      assert.equal(n.type, 'bridge');
      assert.equal(n.config['ipv4.address'], `10.181.${sid}.254/24`);
      assert.equal(n.config['ipv4.nat'], 'true');
    }
    await phase('instances up (IPv4, systemd)', async () => {
      for (const [name, m] of Object.entries(MACHINES)) {
        await waitFor(`${name} to get ${m.ip}`, async () => (await ipv4(name, m.project)).includes(m.ip));
        await exec(name, ['systemctl', 'is-system-running', '--wait']);
      }
    });
    type Instance = { name: string; project: string; type: string; status: string; profiles: string[]; config: Record<string, string>; devices: Record<string, Record<string, string>>; expanded_config: Record<string, string> };
    const instances = await query<Instance[]>('/1.0/instances?recursion=1&all-projects=true');
    for (const [name, m] of Object.entries(MACHINES)) {
      const i = instances.find((x) => x.name === name && x.project === m.project);
      assert.ok(i, `${m.project}/${name}`);
      assert.equal(i.type, 'container');
      assert.equal(i.status, 'Running');
      assert.deepEqual(i.devices.eth0, { type: 'nic', name: 'eth0', network: `net-${m.project}`, 'ipv4.address': m.ip, 'security.ipv4_filtering': 'true' });
      assert.equal(i.config['image.description'] !== undefined, true, 'made from the image os_image/default_os_image names');
    }
    const gpu = instances.find((x) => x.name === 'gpu-server')!;
    assert.deepEqual(gpu.devices.gpu, { type: 'unix-char', source: '/dev/null', path: '/dev/nvidia-standin' });
    assert.equal(gpu.config['limits.memory'], '512MiB');
    const pro = instances.find((x) => x.name === 'pro-dev')!;
    assert.deepEqual(pro.profiles, ['default', 'small']);
    assert.equal(pro.expanded_config['limits.cpu'], '1', 'the domain profile "small" lives in project pro');
    assert.equal(instances.find((x) => x.name === 'guest-box')!.config['user.anklume.ephemeral'], 'true');
    assert.equal(gpu.config['user.anklume.ephemeral'], 'false');
    assert.ok((await sh(['nft', 'list', 'table', 'inet', 'anklume'])).code === 0, 'the isolation ruleset is loaded');
  });

  it('a second make apply changes nothing; then the plan is empty (make apply CHECK=1 exits 0) and the audit is clean', async () => {
    const again = await phase('second apply', () => apply());
    assert.equal(again.code, 0, again.out);
    assert.equal(again.changed, 0, again.out);
    assert.match(again.out, /already applied, nothing changed/);
    const check = await phase('apply --check', () => apply(FIXTURE, 'CHECK=1'));
    assert.equal(check.code, 0, check.out);
    assert.match(check.out, /nothing to do: Incus and the ruleset are what the tree describes/);
    const clean = await phase('audit', () => audit());
    assert.equal(clean.code, 0, clean.out);
    assert.deepEqual(clean.findings, []);
    const made = await make(['audit', `INFRA=${FIXTURE}`, `BASE_DIR=${t.baseDir}`, `EXTRA_VARS=@${varsFile}`]);
    assert.equal(made.code, 0, made.out);
    assert.match(made.out, /^clean: the live host is what the tree and infra.yml say$/m);
  });

  it("a machine cannot send from another address of its subnet (security.ipv4_filtering on every NIC): a domain-mate cannot pose as the machine a policy names; apply puts the filter back when it is gone", async () => {
    const spare = `${SUBNET}.2.99`;
    // A TCP connection to pro's own bridge address (dnsmasq's DNS), from a source address.
    const connect = async (source: string) => (await must(['incus', 'exec', 'pro-dev', '--project', 'pro', '--', 'python3', '-c', CONNECT_FROM, source, `${SUBNET}.2.254`, '53'])).trim();
    await must(['incus', 'exec', 'pro-dev', '--project', 'pro', '--', 'ip', 'addr', 'add', `${spare}/24`, 'dev', 'eth0']);
    try {
      assert.deepEqual([await connect(MACHINES['pro-dev'].ip), await connect(spare)], ['open', 'timeout'], 'its own address passes, another one of its subnet does not');
      // The drop is Incus's filter: without it the same connection opens, and the plan says so.
      await must(['incus', 'config', 'device', 'unset', 'pro-dev', 'eth0', 'security.ipv4_filtering', '--project', 'pro']);
      assert.equal(await connect(spare), 'open');
      const drifted = await plan();
      assert.equal(drifted.code, 1, drifted.stderr);
      assert.deepEqual(ids(drifted.plan.update), ['instance:pro/pro-dev']);
      const nic = { type: 'nic', name: 'eth0', network: 'net-pro', 'ipv4.address': MACHINES['pro-dev'].ip };
      assert.deepEqual(drifted.plan.update[0].changes, { 'devices.eth0': [nic, { ...nic, 'security.ipv4_filtering': 'true' }] });
      const repaired = await phase('apply after the filter was removed', () => apply());
      assert.equal(repaired.code, 0, repaired.out);
      assert.equal(await connect(spare), 'timeout', 'apply put the filter back');
    } finally {
      await sh(['incus', 'exec', 'pro-dev', '--project', 'pro', '--', 'ip', 'addr', 'del', `${spare}/24`, 'dev', 'eth0']);
    }
  });

  it('real TCP between real containers: the reachability matrix (pro holds AI access; pro -> guest on port 80 only)', async () => {
    await phase('services and listeners', async () => {
      const units = join(t.dir, 'units');
      mkdirSync(units, { recursive: true });
      const unit = (name: string, ports: number[]) => {
        const file = join(units, `${name}.service`);
        writeFileSync(file, `[Unit]\nDescription=anklume test service ${name}\n[Service]\nExecStart=/usr/bin/python3 /usr/local/bin/anklume-echo ${ports.join(' ')}\n[Install]\nWantedBy=multi-user.target\n`);
        return file;
      };
      const listener = unit('listener', [WEB, OTHER]);
      const ai = [unit('ollama', [OLLAMA]), unit('speaches', [SPEACHES]), unit('webui', [WEBUI])];
      await Promise.all(Object.keys(MACHINES).map(async (m) => {
        await push(m, join(FIXTURES, 'echo.py'), '/usr/local/bin/anklume-echo');
        await push(m, join(FIXTURES, 'probe.py'), '/usr/local/bin/anklume-probe');
        await push(m, join(FIXTURES, 'hold.py'), '/usr/local/bin/anklume-hold');
        const mine = m === 'gpu-server' ? [listener, ...ai] : [listener];
        for (const f of mine) await push(m, f, `/etc/systemd/system/${f.split('/').pop()}`);
        const names = mine.map((f) => f.split('/').pop()!.replace('.service', ''));
        const r = await exec(m, ['systemctl', 'enable', '--now', ...names]);
        assert.equal(r.code, 0, r.stderr);
      }));
      for (const u of ['ollama', 'speaches', 'webui']) await waitFor(`${u} to listen`, async () => (await exec('gpu-server', ['python3', '/usr/local/bin/anklume-probe', '500', `127.0.0.1:${u === 'ollama' ? OLLAMA : u === 'speaches' ? SPEACHES : WEBUI}`])).stdout.includes('open'), 20);
    });
    const cases: [string, string, number, 'open' | 'blocked'][] = [
      ['pro-dev', 'gpu-server', OLLAMA, 'open'],
      ['pro-dev', 'gpu-server', SPEACHES, 'open'],
      ['pro-dev', 'gpu-server', WEBUI, 'open'],
      ['pro-dev', 'gpu-server', WEB, 'blocked'],
      ['perso-desktop', 'gpu-server', OLLAMA, 'blocked'],
      ['guest-box', 'gpu-server', OLLAMA, 'blocked'],
      ['gpu-server', 'pro-dev', WEB, 'blocked'],
      ['gpu-server', 'perso-desktop', WEB, 'blocked'],
      ['pro-dev', 'guest-box', WEB, 'open'],
      ['pro-dev', 'guest-box', OTHER, 'blocked'],
      ['guest-box', 'pro-dev', WEB, 'blocked'],
      ['pro-dev', 'perso-desktop', WEB, 'blocked'],
      ['perso-desktop', 'pro-dev', WEB, 'blocked'],
      ['perso-desktop', 'guest-box', WEB, 'blocked'],
      ['guest-box', 'perso-desktop', WEB, 'blocked'],
    ];
    const got = await phase('matrix', () => probe(cases.map(([from, to, port]) => ({ from, to, port }))));
    const seen = cases.map(([from, to, port], i) => `${from} -> ${to}:${port} ${got[i] === 'open' ? 'open' : got[i] === 'timeout' ? 'blocked' : got[i]}`);
    assert.deepEqual(seen, cases.map(([from, to, port, want]) => `${from} -> ${to}:${port} ${want}`));
  });

  it('a relay container on incusbr0 reaches no domain, ai-tools included, though domains reach it (needs the ruleset that judges every interface)', async () => {
    await phase('relay', async () => {
      if ((await sh(['incus', 'network', 'show', RELAY_BRIDGE])).code !== 0) {
        await must(['incus', 'network', 'create', RELAY_BRIDGE, `ipv4.address=${RELAY_GATEWAY}`, 'ipv4.nat=true', 'ipv6.address=none']);
        createdRelayBridge = true;
      }
      await must(['incus', 'create', IMAGE, RELAY, '--project', 'default'], JSON.stringify({ devices: { eth0: { type: 'nic', name: 'eth0', network: RELAY_BRIDGE }, root: { type: 'disk', path: '/', pool: 'default' } } }));
      await must(['incus', 'start', RELAY, '--project', 'default']);
      await waitFor('the relay to get an address', async () => {
        relayIp = (await ipv4(RELAY, 'default'))[0] ?? '';
        return relayIp !== '';
      });
      await exec(RELAY, ['systemctl', 'is-system-running', '--wait']);
      await push(RELAY, join(FIXTURES, 'echo.py'), '/usr/local/bin/anklume-echo');
      await push(RELAY, join(FIXTURES, 'probe.py'), '/usr/local/bin/anklume-probe');
      await exec(RELAY, ['systemd-run', '--unit=listener', 'python3', '/usr/local/bin/anklume-echo', String(WEB)]);
    });
    const [outbound] = await probe([{ from: 'pro-dev', to: RELAY, port: WEB }]);
    assert.equal(outbound, 'open', 'pro-dev reaches the relay (outbound from a domain passes): the relay is up');
    const relay = await exec(RELAY, ['python3', '/usr/local/bin/anklume-probe', '1500', `${MACHINES['gpu-server'].ip}:${OLLAMA}`, `${MACHINES['perso-desktop'].ip}:${WEB}`, `${MACHINES['pro-dev'].ip}:${WEB}`]);
    assert.equal(relay.code, 0, relay.stderr);
    assert.deepEqual(JSON.parse(relay.stdout), ['timeout', 'timeout', 'timeout'], 'incusbr0 -> gpu-server:11434, perso-desktop:80, pro-dev:80');
  });

  /** Every file of the tree and its bytes: a refused sync must leave it exactly as it was. */
  function treeSnapshot(dir: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
      if (entry.isFile()) out[join(entry.parentPath, entry.name)] = readFileSync(join(entry.parentPath, entry.name), 'utf8');
    }
    return out;
  }

  it('issue 15: a NIC on ai-tools\' bridge and a proxy in ai-tools are refused before anything reaches Incus; a published port of an ordinary domain is reachable exactly as flows says, from another domain and from incusbr0', async () => {
    const base = readFileSync(FIXTURE, 'utf8');
    const variant = join(t.dir, 'infra-devices.yml');
    const withDevice = (machine: string, device: string) => {
      const at = `      ${machine}:\n        ip: "${MACHINES[machine].ip}"\n`;
      assert.ok(base.includes(at), machine);
      return base.replace(at, `${at}        devices:\n          ${device}\n`);
    };
    const devicesOf = async (machine: string) => (await query<{ devices: Record<string, unknown> }>(`/1.0/instances/${machine}?project=${MACHINES[machine].project}`)).devices;
    const gen = (args: string[]) => sh(['node', join(ROOT, 'dist/generator/cli/bin.js'), ...args], { env: env() });

    await phase('devices refused', async () => {
      const tree = treeSnapshot(t.baseDir);
      const live = { perso: await devicesOf('perso-desktop'), gpu: await devicesOf('gpu-server') };
      const refused: [string, string, RegExp][] = [
        ['perso-desktop', 'eth1: { type: nic, network: net-ai-tools }', /infra-devices\.yml:\d+:\d+: error: Machine 'perso-desktop': device 'eth1' puts the machine on 'net-ai-tools' \(network\), the bridge of domain 'ai-tools'/],
        ['gpu-server', 'api: { type: proxy, listen: "tcp:0.0.0.0:11435", connect: "tcp:127.0.0.1:11434" }', /infra-devices\.yml:\d+:\d+: error: Machine 'gpu-server': device 'api' is a proxy device in ai-tools under ai_access_policy 'exclusive'/],
      ];
      for (const [machine, device, message] of refused) {
        writeFileSync(variant, withDevice(machine, device));
        const synced = await make(['sync', `INFRA=${variant}`, `BASE_DIR=${t.baseDir}`]);
        assert.notEqual(synced.code, 0, synced.out);
        assert.match(synced.out, message);
        assert.doesNotMatch(synced.out, /\n\s+at /, 'no stack trace');
        const flows = await gen(['flows', variant, '--from', 'perso-desktop', '--to', 'gpu-server', '--port', String(OLLAMA)]);
        assert.equal(flows.code, 1, 'flows refuses the same infra');
      }
      assert.deepEqual(treeSnapshot(t.baseDir), tree, 'nothing was written');
      assert.deepEqual({ perso: await devicesOf('perso-desktop'), gpu: await devicesOf('gpu-server') }, live, 'nothing reached Incus');
    });

    const PUBLISHED = 18080;
    writeFileSync(variant, withDevice('guest-box', `web: { type: proxy, listen: "tcp:0.0.0.0:${PUBLISHED}", connect: "tcp:127.0.0.1:${WEB}" }`));
    const applied = await phase('published port', () => apply(variant));
    assert.equal(applied.code, 0, applied.out);
    assert.equal(((await devicesOf('guest-box')).web as Record<string, string>).listen, `tcp:0.0.0.0:${PUBLISHED}`);
    const relayGateway = (await must(['incus', 'network', 'get', RELAY_BRIDGE, 'ipv4.address'])).trim().split('/')[0];
    // [from, as flows names it, the address it connects to, port]: the published port through the host's address
    // on the source's side (its gateway), and the machine's own address, which stays closed.
    const cases: [string, string, string, number][] = [
      ['perso-desktop', 'perso-desktop', '10.181.1.254', PUBLISHED],
      ['perso-desktop', 'perso-desktop', MACHINES['guest-box'].ip, WEB],
      [RELAY, 'outside', relayGateway, PUBLISHED],
      [RELAY, 'outside', MACHINES['guest-box'].ip, WEB],
    ];
    const seen: string[] = [];
    const said: string[] = [];
    for (const [from, name, address, port] of cases) {
      const flows = await gen(['flows', variant, '--from', name, '--to', 'guest-box', '--port', String(port), '--json']);
      assert.equal(flows.code, 0, flows.stderr);
      const answer = JSON.parse(flows.stdout) as { verdict: string; reason: string; published?: { device: string }[] };
      if (port === PUBLISHED) assert.equal(answer.published?.[0].device, 'web', answer.reason);
      said.push(`${from} -> ${address}:${port} ${answer.verdict === 'allow' ? 'open' : 'blocked'}`);
      const r = await exec(from, ['python3', '/usr/local/bin/anklume-probe', '1500', `${address}:${port}`]);
      assert.equal(r.code, 0, r.stderr);
      const [probe] = JSON.parse(r.stdout) as Probe[];
      seen.push(`${from} -> ${address}:${port} ${probe === 'open' ? 'open' : probe === 'timeout' ? 'blocked' : probe}`);
    }
    assert.deepEqual(seen, said, 'the kernel does what flows says');
    assert.deepEqual(said.map((l) => l.endsWith('open')), [true, false, true, false]);

    const restored = await phase('published port removed', () => apply());
    assert.equal(restored.code, 0, restored.out);
    assert.equal((await devicesOf('guest-box')).web, undefined, 'apply makes the devices exactly those of infra.yml');
  });

  it('make ai-switch DOMAIN=perso NO_FLUSH=1, incus for real: ollama and speaches really restart, pro\'s open connection is cut, perso gets in; state file, log and make ai-status agree with the kernel', async () => {
    const before = { ollama: await service('gpu-server', 'ollama'), speaches: await service('gpu-server', 'speaches'), webui: await service('gpu-server', 'webui') };
    assert.deepEqual([before.ollama.active, before.speaches.active, before.webui.active], ['active', 'active', 'active']);
    const held = await hold('pro-dev', 'gpu-server', WEBUI);
    assert.equal(await held.ping(), 'ok', 'pro-dev holds a live connection to the web UI before the switch');

    const r = await phase('ai-switch', () => make(['ai-switch', `INFRA=${FIXTURE}`, `BASE_DIR=${t.baseDir}`, 'DOMAIN=perso', 'NO_FLUSH=1']));
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /SECURITY/);

    const after = { ollama: await service('gpu-server', 'ollama'), speaches: await service('gpu-server', 'speaches'), webui: await service('gpu-server', 'webui') };
    assert.deepEqual([after.ollama.active, after.speaches.active], ['active', 'active'], 'started again');
    assert.notEqual(after.ollama.pid, before.ollama.pid, 'ollama was really stopped and started (new MainPID)');
    assert.notEqual(after.speaches.pid, before.speaches.pid, 'speaches was really stopped and started (new MainPID)');
    assert.equal(after.webui.pid, before.webui.pid, 'a service that is not in ai_services is left running');
    const journal = await exec('gpu-server', ['journalctl', '--no-pager', '-o', 'cat', '-u', 'ollama']);
    assert.match(journal.stdout, /Stopped|Stopping/, journal.stdout);

    assert.equal(await held.ping(), 'timeout', 'pro-dev\'s open connection is cut by the revoke');
    const tracked = await sh(['conntrack', '-L', '-s', MACHINES['pro-dev'].ip, '-d', MACHINES['gpu-server'].ip, '-p', 'tcp', '--dport', String(WEBUI)]);
    assert.doesNotMatch(tracked.stdout, /ESTABLISHED/, 'and forgotten by conntrack: no tracked connection joins ai-tools to a domain without access');
    const [perso, pro, guest] = await probe([
      { from: 'perso-desktop', to: 'gpu-server', port: OLLAMA },
      { from: 'pro-dev', to: 'gpu-server', port: OLLAMA },
      { from: 'guest-box', to: 'gpu-server', port: OLLAMA },
    ]);
    assert.deepEqual({ perso, pro, guest }, { perso: 'open', pro: 'timeout', guest: 'timeout' });
    const persoHeld = await hold('perso-desktop', 'gpu-server', WEBUI);
    assert.equal(await persoHeld.ping(), 'ok');

    assert.equal(readFileSync(t.env.ANKLUME_STATE_FILE!, 'utf8'), 'perso\n');
    const log = readFileSync(t.env.ANKLUME_LOG_FILE!, 'utf8').trim().split('\n');
    assert.match(log.at(-1)!, /^\d{4}-\d{2}-\d{2}T\S+ switched ai-tools access: 'pro' -> 'perso' flush=false$/);
    assert.match(readFileSync(installed, 'utf8'), /AI access holder: perso/);

    const kernel = JSON.parse(await must(['nft', '-j', 'list', 'set', 'inet', 'anklume', 'ai_holder'])) as { nftables: { set?: { elem?: string[] } }[] };
    assert.deepEqual(kernel.nftables.find((x) => x.set)?.set?.elem, ['net-perso']);
    const status = await make(['ai-status', `INFRA=${FIXTURE}`]);
    assert.equal(status.code, 0, status.out);
    assert.match(status.out, /perso/);
    assert.match(status.out, /Live ruleset: agrees \(ai_holder: net-perso\)/);
  });

  /** The host PID of the process whose command line is exactly argv (none: undefined). */
  function hostPid(argv: string[]): string | undefined {
    const wanted = argv.join('\0') + '\0';
    return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).find((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8') === wanted;
      } catch {
        return false;
      }
    });
  }

  it('make ai-switch DOMAIN=pro with the VRAM flush, real containers (nvidia-smi a stand-in: no GPU here): from the host, only gpu-server\'s process is killed, by its real cgroup; pro-dev\'s and the host\'s live on', async () => {
    // Sleep lengths no other process has: they find each process's host PID in /proc.
    const mark = 86_400 + (process.pid % 10_000);
    const inGpu = ['sleep', String(mark + 1)];
    const inPro = ['sleep', String(mark + 2)];
    const detach = (argv: string[]) => ['sh', '-c', `setsid ${argv.join(' ')} </dev/null >/dev/null 2>&1 &`];
    assert.equal((await exec('gpu-server', detach(inGpu))).code, 0);
    assert.equal((await exec('pro-dev', detach(inPro))).code, 0);
    const onHost = spawn('sleep', [String(mark + 3)], { stdio: 'ignore' });
    const standinDir = mkdtempSync(join(t.dir, 'standin-'));
    try {
      let pids: { gpu?: string; pro?: string; host?: string } = {};
      await waitFor('the container processes', async () => {
        pids = { gpu: hostPid(inGpu), pro: hostPid(inPro), host: String(onHost.pid) };
        return pids.gpu !== undefined && pids.pro !== undefined;
      }, 10);
      const { gpu, pro, host } = pids as Record<'gpu' | 'pro' | 'host', string>;
      assert.match(readFileSync(`/proc/${gpu}/cgroup`, 'utf8'), /\/lxc\.payload\.ai-tools_gpu-server(\/|$)/m, "Incus runs gpu-server's processes in its payload cgroup");
      // The nvidia-smi stand-in alone in front of the real tools (incus, nft and kill stay real).
      const bin = join(standinDir, 'bin');
      mkdirSync(bin);
      for (const f of ['nvidia-smi', 'lib.sh']) symlinkSync(join(STANDINS_BIN, f), join(bin, f));
      writeFileSync(join(standinDir, 'host-gpu-apps'), [gpu, pro, host].map((pid) => `${pid}, GPU-00000000-0000-0000-0000-0000000000a0, 1024\n`).join(''));

      const r = await phase('ai-switch with flush', () => make(['ai-switch', `INFRA=${FIXTURE}`, `BASE_DIR=${t.baseDir}`, 'DOMAIN=pro'], { PATH: `${bin}:${process.env.PATH}`, STANDIN_DIR: standinDir }));
      assert.equal(r.code, 0, r.out);
      assert.ok(r.out.includes(`gpu-server (lxc, flushed from the host): killed ${gpu};`), r.out);
      assert.ok(r.out.includes(`pid ${pro} (container pro_pro-dev, 1024 MiB)`), r.out);
      assert.ok(r.out.includes(`pid ${host} (the host, 1024 MiB)`), r.out);
      assert.equal(isAlive(gpu), false, "gpu-server's process is dead");
      assert.equal(hostPid(inGpu), undefined, 'and gone from gpu-server');
      assert.ok(isAlive(pro), "pro-dev's process lives on: another container's");
      assert.ok(isAlive(host), "the host's process lives on");
      assert.match(r.out, /reset skipped \(in use by /, 'no reset of a GPU that others use');
      assert.doesNotMatch(r.out, /SECURITY/);

      assert.equal(readFileSync(t.env.ANKLUME_STATE_FILE!, 'utf8'), 'pro\n');
      assert.match(readFileSync(t.env.ANKLUME_LOG_FILE!, 'utf8').trim().split('\n').at(-1)!, /switched ai-tools access: 'perso' -> 'pro' flush=true$/);
      assert.equal((await service('gpu-server', 'ollama')).active, 'active', 'the services are started again');
      const [proIn, persoIn] = await probe([
        { from: 'pro-dev', to: 'gpu-server', port: OLLAMA },
        { from: 'perso-desktop', to: 'gpu-server', port: OLLAMA },
      ]);
      assert.deepEqual({ pro: proIn, perso: persoIn }, { pro: 'open', perso: 'timeout' });
    } finally {
      onHost.kill('SIGKILL');
      const pro = hostPid(inPro);
      if (pro) process.kill(Number(pro), 'SIGKILL');
      const left = hostPid(inGpu);
      if (left) process.kill(Number(left), 'SIGKILL');
    }
  });

  it('issue 16: drift made by hand is reported by the plan and by the audit; apply changes exactly the objects the plan named and repairs what it owns; what only a person decides is left, with its fix', async () => {
    const STRAY = 'stray';
    // A veth whose one end is attached to ai-tools' bridge by hand: not an instance's NIC.
    const PORT = 'ankl-e2e-v0';
    const entry = ['-s', MACHINES['perso-desktop'].ip, '-d', MACHINES['gpu-server'].ip, '-p', 'tcp', '--sport', '40404', '--dport', String(OLLAMA)];
    try {
      await phase('drift by hand', async () => {
        await must(['incus', 'config', 'device', 'add', 'perso-desktop', 'eth1', 'nic', 'network=net-ai-tools', '--project', 'perso']);
        await must(['incus', 'config', 'set', 'gpu-server', 'limits.memory=1GiB', '--project', 'ai-tools']);
        await must(['incus', 'stop', '--force', 'guest-box', '--project', 'guest']);
        await must(['incus', 'create', IMAGE, STRAY, '--project', 'pro']);
        await must(['incus', 'start', STRAY, '--project', 'pro']);
        await must(['nft', 'add', 'element', 'inet', 'anklume', 'ai_holder', '{ "net-perso" }']);
        writeFileSync(installed, `${readFileSync(installed, 'utf8')}# edited by hand\n`);
        await must(['conntrack', '-I', ...entry, '--state', 'ESTABLISHED', '-t', '300', '-u', 'SEEN_REPLY']);
        await must(['ip', 'link', 'add', PORT, 'type', 'veth', 'peer', 'name', 'ankl-e2e-v1']);
        await must(['ip', 'link', 'set', PORT, 'master', 'net-ai-tools']);
      });
      const drifted = await plan();
      assert.equal(drifted.code, 1, drifted.stderr);
      assert.deepEqual(drifted.plan.create, []);
      assert.deepEqual(drifted.plan.delete, []);
      assert.deepEqual(ids(drifted.plan.update), ['instance:ai-tools/gpu-server', 'instance:guest/guest-box', 'instance:perso/perso-desktop', 'ruleset:boot', 'ruleset:live']);
      const changes = Object.fromEntries(drifted.plan.update.map((e) => [e.id, e.changes]));
      assert.deepEqual(changes['instance:ai-tools/gpu-server'], { 'config.limits.memory': ['1GiB', '512MiB'] });
      assert.deepEqual(changes['instance:guest/guest-box'], { state: ['Stopped', 'Running'] });
      assert.deepEqual(Object.keys(changes['instance:perso/perso-desktop']), ['devices.eth1']);
      assert.deepEqual(drifted.plan.orphans.map((o) => o.label), [`pro/${STRAY}`]);

      const found = await phase('audit of the drift', () => audit());
      assert.equal(found.code, 1);
      const said = found.findings.map((f) => `${f.check}: ${f.message}`).join('\n');
      for (const expected of [
        /^devices: instance perso\/perso-desktop \(live\): Machine 'perso-desktop': device 'eth1' puts the machine on 'net-ai-tools' \(network\), the bridge of domain 'ai-tools'/m,
        /^ruleset: the live table inet anklume is not the ruleset of the tree/m,
        /^boot: .*anklume\.nft \(loaded at boot\) is not the tree's ruleset/m,
        /^holder: the live ai_holder set gives AI access to .*'perso'.*, the state file to 'pro'$/m,
        /^incus: instance ai-tools\/gpu-server differs from the tree: config\.limits\.memory "1GiB" \(tree: "512MiB"\)$/m,
        /^incus: instance guest\/guest-box differs from the tree: state "Stopped" \(tree: "Running"\)$/m,
        /^incus: instance perso\/perso-desktop differs from the tree: devices\.eth1 /m,
        /^incus: instance pro\/stray is in a domain's project but not in the tree \(protected: not marked ephemeral\)$/m,
        /^connections: a tcp connection 10\.181\.1\.10 -> 10\.181\.10\.10:11434 is tracked between ai-tools and perso, which does not hold AI access \('pro' does\)$/m,
        /^devices: interface ankl-e2e-v0 is attached to net-ai-tools, the bridge of domain 'ai-tools', but is no NIC of an instance of that domain/m,
      ]) assert.match(said, expected);
      assert.ok(found.findings.every((f) => f.fix.length > 0), 'every finding says how to fix it');

      const repaired = await phase('apply after drift', () => gen(['apply', '--json', '--base-dir', t.baseDir, '--', '-e', `@${varsFile}`]));
      assert.equal(repaired.code, 0, repaired.stderr);
      const applied = JSON.parse(repaired.stdout) as { changed: number; objects: string[] };
      assert.deepEqual([...applied.objects].sort(), ids(drifted.plan.update), 'apply changed exactly the objects the plan named');
      assert.equal(applied.changed, drifted.plan.update.length);
      assert.equal((await plan()).code, 0, 'nothing left to plan');
      const devices = (await query<{ devices: Record<string, unknown> }>('/1.0/instances/perso-desktop?project=perso')).devices;
      assert.equal(devices.eth1, undefined, 'the NIC on ai-tools\' bridge is gone');
      const after = await audit();
      assert.deepEqual(after.findings.map((f) => f.check).sort(), ['connections', 'devices', 'incus'], 'left: what only a person decides');
      assert.match(after.findings.find((f) => f.check === 'devices')!.fix, /^ip link set ankl-e2e-v0 nomaster/);
      assert.match(after.findings.find((f) => f.check === 'incus')!.fix, /^incus delete --force stray --project pro, or add it to infra.yml$/);
      assert.match(after.findings.find((f) => f.check === 'connections')!.fix, /^conntrack -D -s 10\.181\.1\.10 -d 10\.181\.10\.10$/);
    } finally {
      await sh(['incus', 'delete', '--force', STRAY, '--project', 'pro']);
      await sh(['conntrack', '-D', ...entry]);
      await sh(['ip', 'link', 'delete', PORT]);
    }
    assert.deepEqual((await audit()).findings, [], 'clean once a person acted');

    await must(['nft', 'delete', 'table', 'inet', 'anklume']);
    const gone = await plan();
    assert.deepEqual(ids(gone.plan.create), ['ruleset:live']);
    assert.match((await audit()).findings.map((f) => f.message).join('\n'), /table inet anklume is not loaded: nothing isolates the domains from each other/);
    const reloaded = await gen(['apply', '--json', '--base-dir', t.baseDir, '--', '-e', `@${varsFile}`]);
    assert.deepEqual((JSON.parse(reloaded.stdout) as { objects: string[] }).objects, ['ruleset:live'], reloaded.stderr);
    assert.deepEqual((await audit()).findings, []);
  });

  it('faults: a foreign bridge is refused by name with nothing made; a failure in the middle of apply is finished by the next run; orphans are reported, and deleted only when asked and unprotected', async () => {
    const labInfra = join(t.dir, 'infra-lab.yml');
    const base = readFileSync(FIXTURE, 'utf8');
    const withLab = (image: string, memory = '256MiB', extra = '') => base.replace('\nnetwork_policies:', `  ${LAB}:\n    subnet_id: 4\n    ephemeral: true\n    machines:\n      lab-box:\n        ip: "10.181.4.10"\n        os_image: ${image}\n        config: { limits.memory: "${memory}" }\n${extra}      lab-keep:\n        ip: "10.181.4.11"\n        ephemeral: false\n\nnetwork_policies:`);

    await phase('faults', async () => {
      // A bridge of the domain's name that anklume did not make.
      await must(['incus', 'network', 'create', `net-${LAB}`, 'ipv4.address=10.181.4.254/24', 'ipv6.address=none']);
      writeFileSync(labInfra, withLab(IMAGE));
      const refused = await apply(labInfra);
      assert.notEqual(refused.code, 0);
      assert.match(refused.out, /Bridge 'net-lab' already exists and is not anklume's/);
      const projects = (await query<{ name: string }[]>('/1.0/projects')).map(String);
      assert.ok(!projects.some((p) => p.endsWith(`/${LAB}`)), 'no project was made');
      await must(['incus', 'network', 'delete', `net-${LAB}`]);

      // Refused before anything is made (issue 16): an image Incus does not have, a GPU this host
      // does not have (the suite's stand-in GPU applies to gpu: true only).
      const nothingOfLab = async () => {
        assert.ok(!(await query<string[]>('/1.0/projects')).some((p) => p.endsWith(`/${LAB}`)), 'no project was made');
        assert.ok(!(await query<string[]>('/1.0/networks')).some((n) => n.endsWith(`/net-${LAB}`)), 'no bridge was made');
      };
      writeFileSync(labInfra, withLab('no-such-image'));
      const noImage = await apply(labInfra);
      assert.notEqual(noImage.code, 0, noImage.out);
      assert.match(noImage.out, /Machine 'lab-box': no image 'no-such-image' in Incus/);
      await nothingOfLab();
      writeFileSync(labInfra, withLab(IMAGE, '256MiB', '        devices: { gpu0: { type: gpu, pci: "0000:99:00.0" } }\n').replace('  ai_services:', '  gpu_policy: shared\n  ai_services:'));
      const noGpu = await apply(labInfra);
      assert.notEqual(noGpu.code, 0, noGpu.out);
      assert.match(noGpu.out, /Machine 'lab-box': device 'gpu0' asks for a GPU \(pci=0000:99:00\.0\) that this host does not have/);
      const gpuPlan = await plan();
      assert.equal(gpuPlan.code, 1);
      assert.equal(gpuPlan.plan.refused.length, 1, 'the plan says the same refusal');
      assert.deepEqual([...gpuPlan.plan.create, ...gpuPlan.plan.update], [], 'and nothing it would make');
      await nothingOfLab();
      // gpu: true, given the real GPU device (type gpu, gputype physical) instead of the suite's stand-in.
      const realGpu = join(t.dir, 'vars-real-gpu.json');
      const { incus_preflight_gpu_device: _standin, ...withoutStandin } = JSON.parse(readFileSync(varsFile, 'utf8')) as Record<string, unknown>;
      writeFileSync(realGpu, JSON.stringify(withoutStandin));
      writeFileSync(labInfra, withLab(IMAGE, '256MiB', '        gpu: true\n').replace('  ai_services:', '  gpu_policy: shared\n  ai_services:'));
      assert.equal((await make(['sync', `INFRA=${labInfra}`, `BASE_DIR=${t.baseDir}`])).code, 0);
      const gpuTrue = await make(['apply', `BASE_DIR=${t.baseDir}`, `EXTRA_VARS=@${realGpu}`]);
      assert.notEqual(gpuTrue.code, 0, gpuTrue.out);
      assert.match(gpuTrue.out, /Machine 'lab-box': device 'gpu' asks for a GPU \(gputype=physical\) that this host does not have/);
      await nothingOfLab();

      // lab-box's memory limit is one Incus refuses: apply fails after making lab's project and bridge.
      writeFileSync(labInfra, withLab(IMAGE, 'lots'));
      const failed = await apply(labInfra);
      assert.notEqual(failed.code, 0, failed.out);
      assert.match(failed.out, /lab\/lab-box/);
      writeFileSync(labInfra, withLab(IMAGE));
      const finished = await apply(labInfra);
      assert.equal(finished.code, 0, finished.out);
      const lab = await query<{ name: string; status: string }[]>(`/1.0/instances?recursion=1&project=${LAB}`);
      assert.deepEqual(lab.map((i) => `${i.name} ${i.status}`).sort(), ['lab-box Running', 'lab-keep Running']);

      // lab leaves infra.yml: reported, not deleted (only the ruleset changes); DELETE_ORPHANS=1
      // deletes lab-box only.
      const report = await apply(FIXTURE);
      assert.equal(report.code, 0, report.out);
      assert.match(report.out, /ORPHAN: instance lab\/lab-box — anklume-gen apply --delete-orphans \(make apply DELETE_ORPHANS=1\) deletes it/);
      assert.match(report.out, /PROTECTED \(ephemeral=false\): instance lab\/lab-keep — manual removal required/);
      assert.match(report.out, /ORPHAN: bridge net-lab/);
      assert.equal((await query<unknown[]>(`/1.0/instances?project=${LAB}`)).length, 2);
      const deleted = await apply(FIXTURE, 'DELETE_ORPHANS=1');
      assert.equal(deleted.code, 0, deleted.out);
      assert.deepEqual((await query<string[]>(`/1.0/instances?project=${LAB}`)).map((u) => u.split('/').pop()!.split('?')[0]), ['lab-keep']);
      // Still in use by lab-keep: the bridge stays, and the run says why rather than failing silently.
      assert.match(deleted.out, /NOT DELETED: bridge net-lab: .*in use/);
    });
  });
});
