/**
 * End-to-end: the generated ruleset, loaded in a host namespace that forwards between bridges
 * net-<domain>, decides who reaches whom with real TCP connections and UDP datagrams — before and
 * after moving AI access, and once loaded through ansible-playbook with the incus_nftables role.
 * Besides the domains, the host has what a real Incus host has: `incusbr0` (Incus's default
 * bridge) with a container and a relay container on it, an uplink with a LAN host behind it that
 * routes the domains' subnets through the host, and an unknown net-* bridge.
 * Data is judged where it arrives (every listener logs what it receives), so that a rule which
 * lets one direction through still fails a test.
 * Everything runs in namespaces this test creates (see test/helpers/netns.ts); needs root.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { analyse } from '../generator/infra/infra.ts';
import { enrich } from '../generator/infra/enrich.ts';
import { liveHolderMatches, renderRuleset, switchBatch } from '../generator/nftables/nftables.ts';
import { liveTableListing, nftApply, nftCheck, NftError, readLiveHolders } from '../generator/nftables/nft.ts';
import { flowModel, judgeFlow, resolveFlowEndpoint, type FlowEndpoint } from '../generator/nftables/flows.ts';
import type { Infra, NetworkPolicy } from '../generator/core/types.ts';
import { runCli } from './helpers/cli.ts';
import { canRunNetns, Lab, labSpecFromInfra, type LabMachine, type OutsideNet } from './helpers/netns.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURE = join(ROOT, 'test/fixtures/nftables/infra.yml');
const PORTS = [22, 80, 443, 5432, 8080, 11434, 9999];
const UDP_PORTS = [53, 5432, 11434];
/** A bridge named net-* that infra.yml does not know: it takes no new connection from anywhere. */
const ROGUE = { name: 'rogue', subnetId: 99, machines: [{ name: 'rogue-box', ip: '10.100.99.10' }] };
/** What else is plugged into a real Incus host: interfaces that are not domain bridges. */
const OUTSIDE: OutsideNet[] = [
  { iface: 'incusbr0', kind: 'bridge', gateway: '10.99.0.1', machines: [{ name: 'incus-box', ip: '10.99.0.11' }, { name: 'incus-relay', ip: '10.99.0.10' }] },
  { iface: 'uplink0', kind: 'link', gateway: '10.98.0.1', machines: [{ name: 'lan-host', ip: '10.98.0.2' }] },
];
/** The relay on incusbr0: each of its ports forwards to a machine behind the ruleset. */
const RELAYED = [
  { port: 7000, to: 'gpu-server', toPort: 11434 },
  { port: 7001, to: 'pro-dev', toPort: 22 },
  { port: 7002, to: 'lan-host', toPort: 80 },
  { port: 7003, to: 'pro-web', toPort: 443 },
];

async function fixture(): Promise<Infra> {
  const text = await readFile(FIXTURE, 'utf8');
  const a = analyse([{ file: FIXTURE, text, role: 'single' }], { yolo: false });
  assert.ok(a.infra, JSON.stringify(a.errors));
  return enrich(a.infra).infra;
}

/**
 * The oracle: the spec's semantics written out independently of the generator.
 * Same network passes; what enters no net-* bridge passes (outbound); an unknown net-* bridge takes
 * nothing; ai-tools talks only to the holder; otherwise a policy must match (domain or machine
 * name, or `outside` for anything that is not a domain bridge), on its ports and protocol or all,
 * in its direction(s).
 */
function allowed(infra: Infra, holder: string | null, src: LabMachine, dst: LabMachine, port: number, proto: 'tcp' | 'udp'): boolean {
  if (src.domain === dst.domain) return true;
  if (dst.outside) return true;
  const known = (m: LabMachine) => !m.outside && m.domain in infra.domains;
  if (!known(dst)) return false;
  const ai = 'ai-tools';
  if (dst.domain === ai && src.domain !== holder) return false;
  if (src.domain === ai && dst.domain !== holder) return false;
  const is = (ref: string, m: LabMachine) => known(m) && (ref === m.name || ref === m.domain);
  const portOk = (p: NetworkPolicy) => p.ports === 'all' || p.ports === undefined || ((p.protocol ?? 'tcp') === proto && p.ports.includes(port));
  return (infra.network_policies ?? []).some((p) => {
    if (!portOk(p)) return false;
    if (p.from === 'outside') return !known(src) && is(p.to, dst);
    const targetsAi = p.to === ai || infra.domains[ai]?.machines?.[p.to] !== undefined;
    const from = targetsAi ? holder : p.from;
    if (from === null) return false;
    return (is(from, src) && is(p.to, dst)) || (p.bidirectional === true && is(from, dst) && is(p.to, src));
  });
}

interface Probe {
  from: string;
  to: string;
  port: number;
}

/** A lab machine as `flows` names it: itself when it is a machine of the infra, else `outside`. */
function flowEndpoint(infra: Infra, m: LabMachine): FlowEndpoint {
  return (!m.outside && resolveFlowEndpoint(infra, m.name)) || { kind: 'outside' };
}

/**
 * Every ordered pair of machines: TCP connections on PORTS, datagrams on UDP_PORTS. What the kernel
 * did is held against the oracle and against `flows` (a machine on the unknown net-* bridge is not
 * a flows destination: the infra does not know it).
 */
async function checkMatrix(lab: Lab, infra: Infra, holder: string | null): Promise<void> {
  const machines = [...lab.machines.values()];
  const pairs = machines.flatMap((s) => machines.filter((d) => d !== s).map((d) => [s, d] as const));
  const probes: Probe[] = pairs.flatMap(([s, d]) => PORTS.map((port) => ({ from: s.name, to: d.name, port })));
  const datagrams: Probe[] = pairs.flatMap(([s, d]) => UDP_PORTS.map((port) => ({ from: s.name, to: d.name, port })));
  const [results, tokens] = await Promise.all([lab.probeMany(probes), lab.sendUdp(datagrams)]);
  // Blocked datagrams never arrive; allowed ones may be late on a loaded machine.
  const deadline = Date.now() + 2_000;
  const arrived = await Promise.all(datagrams.map((d, i) => lab.received(d.to, tokens[i], Math.max(0, deadline - Date.now()))));
  const model = flowModel(infra, holder);
  const machine = (name: string) => lab.machines.get(name)!;
  const want = (p: Probe, proto: 'tcp' | 'udp') => allowed(infra, holder, machine(p.from), machine(p.to), p.port, proto);
  const flows = (p: Probe, proto: 'tcp' | 'udp') => judgeFlow(model, flowEndpoint(infra, machine(p.from)), flowEndpoint(infra, machine(p.to)), proto, p.port).verdict === 'allow';
  const observed = [
    ...probes.map((p, i) => ({ p, proto: 'tcp' as const, passed: results[i] === 'open', got: results[i] })),
    ...datagrams.map((p, i) => ({ p, proto: 'udp' as const, passed: arrived[i], got: arrived[i] ? 'arrived' : 'lost' })),
  ];
  const wrong = observed
    .filter((o) => o.passed !== want(o.p, o.proto))
    .map((o) => `${o.p.from} -> ${o.p.to}:${o.proto}/${o.p.port}: got ${o.got}, the oracle says ${want(o.p, o.proto) ? 'pass' : 'blocked'}`);
  assert.deepEqual(wrong, [], `holder ${holder}: ${wrong.length} of ${observed.length} probes disagree with the oracle`);
  const judged = observed.filter((o) => o.p.to !== 'rogue-box');
  const disagree = judged
    .filter((o) => o.passed !== flows(o.p, o.proto))
    .map((o) => `${o.p.from} -> ${o.p.to}:${o.proto}/${o.p.port}: the kernel says ${o.got}, flows says ${flows(o.p, o.proto) ? 'allow' : 'drop'}`);
  assert.deepEqual(disagree, [], `holder ${holder}: ${disagree.length} of ${judged.length} flows verdicts disagree with the kernel`);
}

/** `flows --json` on the command line, for a few flows, against the kernel. */
async function checkFlowsCli(lab: Lab, holder: string): Promise<void> {
  const cases: [string, string, number][] = [['pro-dev', 'lab-web', 80], ['pro-dev', 'lab-web', 22], ['perso-desktop', 'gpu-server', 11434], ['pro-dev', 'gpu-server', 11434], ['lan-host', 'pro-web', 443], ['incus-relay', 'gpu-server', 11434]];
  const kernel = await lab.probeMany(cases.map(([from, to, port]) => ({ from, to, port })));
  const name = (m: string) => (lab.machines.get(m)!.outside ? 'outside' : m);
  for (const [i, [from, to, port]] of cases.entries()) {
    const r = await runCli(['flows', FIXTURE, '--from', name(from), '--to', to, '--port', String(port), '--ai-domain', holder, '--json'], { ...process.env, ANKLUME_STATE_FILE: '/nonexistent/anklume-state' });
    assert.equal(r.code, 0, r.stderr);
    const answer = JSON.parse(r.stdout) as { verdict: string; reason: string };
    assert.equal(answer.verdict === 'allow', kernel[i] === 'open', `${from} -> ${to}:${port}: kernel ${kernel[i]}, flows ${answer.reason}`);
  }
}

/**
 * perso (never the holder here) and pro (the holder or not) connect to the relay on incusbr0: the
 * relay forwards their data to ai-tools and to a domain, where it must not arrive; the LAN host and
 * an `outside` policy's port are the controls that show the relay works.
 */
async function relayChecks(lab: Lab): Promise<void> {
  const got: string[] = [];
  for (const client of ['perso-desktop', 'pro-dev']) {
    for (const r of RELAYED) {
      const held = await lab.hold(client, 'incus-relay', r.port);
      try {
        const { token } = await held.ping(300);
        const arrived = await lab.received(r.to, token, r.to === 'lan-host' || r.to === 'pro-web' ? 3_000 : 400);
        got.push(`${client} -> relay -> ${r.to}:${r.toPort}: ${arrived ? 'arrived' : 'lost'}`);
      } finally {
        held.close();
      }
    }
  }
  const want = ['perso-desktop', 'pro-dev'].flatMap((client) => [
    `${client} -> relay -> gpu-server:11434: lost`,
    `${client} -> relay -> pro-dev:22: lost`,
    `${client} -> relay -> lan-host:80: arrived`,
    `${client} -> relay -> pro-web:443: arrived`,
  ]);
  assert.deepEqual(got, want);
}

/** A few cases spelled out, so that a bug shared by the oracle and the generator still shows. */
async function spotChecks(lab: Lab, holder: 'pro' | 'perso'): Promise<void> {
  const cases: [string, string, number, 'open' | 'timeout'][] = [
    ['pro-dev', 'lab-web', 80, 'open'],
    ['pro-dev', 'lab-web', 22, 'timeout'],
    ['lab-web', 'pro-dev', 80, 'timeout'],
    ['perso-desktop', 'lab-web', 22, 'open'],
    ['perso-desktop', 'lab-db', 22, 'timeout'],
    ['pro-web', 'lab-db', 5432, 'open'],
    ['lab-db', 'pro-web', 5432, 'open'],
    ['pro-dev', 'lab-db', 5432, 'timeout'],
    ['lab-db', 'guest-box', 8080, 'open'],
    ['lab-web', 'guest-box', 8080, 'timeout'],
    ['pro-dev', 'gpu-server', 11434, holder === 'pro' ? 'open' : 'timeout'],
    ['perso-desktop', 'gpu-server', 11434, holder === 'perso' ? 'open' : 'timeout'],
    ['pro-dev', 'gpu-server', 22, 'timeout'],
    ['gpu-server', 'pro-dev', 80, 'timeout'],
    ['rogue-box', 'pro-dev', 80, 'timeout'],
    ['pro-dev', 'rogue-box', 80, 'timeout'],
    ['pro-dev', 'pro-web', 9999, 'open'],
    ['gpu-server', 'pro-dev', 11434, holder === 'pro' ? 'open' : 'timeout'],
    ['gpu-server', 'perso-desktop', 11434, holder === 'perso' ? 'open' : 'timeout'],
    // Nothing that is not a domain bridge opens a connection into a domain, unless a policy from
    // outside says so; the domains and ai-tools still reach the outside.
    ['incus-relay', 'gpu-server', 11434, 'timeout'],
    ['incus-box', 'gpu-server', 11434, 'timeout'],
    ['lan-host', 'gpu-server', 11434, 'timeout'],
    ['incus-box', 'pro-dev', 22, 'timeout'],
    ['lan-host', 'pro-dev', 22, 'timeout'],
    ['lan-host', 'perso-desktop', 80, 'timeout'],
    ['lan-host', 'pro-web', 443, 'open'],
    ['lan-host', 'pro-web', 80, 'timeout'],
    ['incus-box', 'pro-web', 443, 'open'],
    ['incus-box', 'guest-box', 22, 'open'],
    ['rogue-box', 'pro-web', 443, 'open'],
    ['pro-dev', 'lan-host', 80, 'open'],
    ['perso-desktop', 'incus-box', 22, 'open'],
    ['gpu-server', 'lan-host', 443, 'open'],
    ['rogue-box', 'lan-host', 443, 'open'],
  ];
  const got = await lab.probeMany(cases.map(([from, to, port]) => ({ from, to, port })));
  assert.deepEqual(got, cases.map((c) => c[3]), JSON.stringify(cases.map((c, i) => `${c[0]}->${c[1]}:${c[2]}=${got[i]}`)));
}

/** The kernel's listing of a ruleset file loaded in a throwaway namespace (inside the lab). */
async function listingOf(lab: Lab, file: string): Promise<string> {
  const r = await lab.host(['unshare', '--net', '--', 'sh', '-c', 'nft -f "$1" && nft -s list table inet anklume', 'sh', file]);
  assert.equal(r.exitCode, 0, r.stderr);
  return r.stdout;
}

async function liveHolder(lab: Lab, expected: string | null): Promise<boolean> {
  return liveHolderMatches(await lab.nft(['-j', 'list', 'set', 'inet', 'anklume', 'ai_holder']), expected);
}

const support = await canRunNetns();

describe('nftables end to end (network namespaces)', { skip: support.ok ? false : support.why }, () => {
  let lab: Lab | undefined;
  let tmp = '';
  let infra: Infra;

  before(async () => {
    infra = await fixture();
    tmp = await mkdtemp(join(tmpdir(), 'anklume-nft-e2e-'));
    lab = await Lab.create({ ...labSpecFromInfra(infra, [ROGUE]), outside: OUTSIDE }, { prefix: 'aknft' });
    await lab.listen(PORTS, UDP_PORTS);
    await lab.relay('incus-relay', RELAYED);
  });

  after(async () => {
    await lab?.teardown();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('loads the full ruleset and enforces the whole matrix (holder pro), incusbr0 and the uplink included', async () => {
    const netns = lab!.hostNs;
    assert.equal(await readLiveHolders({ netns }), undefined, 'no table yet');
    assert.equal(await liveTableListing({ netns }), undefined);
    // Connections opened under an earlier ruleset that let them in (open mode, ai-tools published
    // to the outside): switching the infra to exclusive mode must cut the one into ai-tools.
    const open: Infra = {
      ...infra,
      global: { ...infra.global, ai_access_policy: 'open' },
      network_policies: [...(infra.network_policies ?? []), { from: 'outside', to: 'gpu-server', ports: [11434], protocol: 'tcp', bidirectional: false }],
    };
    await nftApply(renderRuleset(open, null), { netns });
    const fromLan = await lab!.hold('lan-host', 'gpu-server', 11434);
    const published = await lab!.hold('lan-host', 'pro-web', 443);
    try {
      assert.equal((await fromLan.ping()).echoed, true, 'open mode: the LAN reaches ai-tools');
      await nftCheck(renderRuleset(infra, 'pro'), { netns });
      await nftApply(renderRuleset(infra, 'pro'), { netns });
      const cut = await fromLan.ping(400);
      assert.equal(await lab!.received('gpu-server', cut.token, 300), false, 'exclusive mode: the connection from outside into ai-tools carries nothing');
      assert.equal((await published.ping()).echoed, true, 'a connection that an outside policy allows goes on');
    } finally {
      fromLan.close();
      published.close();
    }
    assert.deepEqual(await readLiveHolders({ netns }), ['pro']);
    assert.match((await liveTableListing({ netns })) ?? '', /chain forward/);
    await assert.rejects(nftApply(switchBatch(infra, 'perso', 'guest'), { netns }), NftError, 'a batch for another holder is refused');
    assert.ok(await liveHolder(lab!, 'pro'));
    await spotChecks(lab!, 'pro');
    await checkMatrix(lab!, infra, 'pro');
    await checkFlowsCli(lab!, 'pro');
  });

  it('a relay on incusbr0 joins no domain to ai-tools or to another domain', async () => {
    await relayChecks(lab!);
  });

  it('published ports (DNAT from the uplink) reach only what an outside policy allows, never ai-tools', async () => {
    await lab!.nft(['-f', '-'], [
      'table ip lab_publish {',
      '  chain prerouting {',
      '    type nat hook prerouting priority dstnat; policy accept;',
      '    iifname "uplink0" tcp dport 8443 dnat to 10.100.2.11:443',
      '    iifname "uplink0" tcp dport 8434 dnat to 10.100.10.10:11434',
      '    iifname "uplink0" tcp dport 8022 dnat to 10.100.2.10:22',
      '  }',
      '}',
      '',
    ].join('\n'));
    try {
      const got = await lab!.probe('lan-host', [8443, 8434, 8022].map((port) => ({ to: '10.98.0.1', port })));
      assert.deepEqual(got, ['open', 'timeout', 'timeout'], 'pro-web:443 (policy from outside), gpu-server:11434, pro-dev:22');
    } finally {
      await lab!.nft(['delete', 'table', 'ip', 'lab_publish']);
    }
  });

  it('revokes live, both ways: data of connections opened before the revoke no longer arrives', async () => {
    const toAi = await lab!.hold('pro-dev', 'gpu-server', 11434);
    const fromAi = await lab!.hold('gpu-server', 'pro-dev', 11434);
    try {
      assert.equal((await toAi.ping()).echoed, true, 'pro -> ai-tools works before the revoke');
      assert.equal((await fromAi.ping()).echoed, true, 'ai-tools -> pro works before the revoke');
      await lab!.nft(['-f', '-'], switchBatch(infra, 'pro', null));
      assert.ok(await liveHolder(lab!, null));
      const sent = await toAi.ping(400);
      assert.equal(sent.echoed, false, 'no echo after the revoke');
      assert.equal(await lab!.received('gpu-server', sent.token, 300), false, 'pro -> ai-tools: nothing arrives after the revoke');
      const back = await fromAi.ping(400);
      assert.equal(await lab!.received('pro-dev', back.token, 300), false, 'ai-tools -> pro: nothing arrives after the revoke');
      await checkMatrix(lab!, infra, null);
    } finally {
      toAi.close();
      fromAi.close();
    }
  });

  it('grants the new holder with one set update, equal to a fresh load; the outside is still shut out', async () => {
    const held = await lab!.hold('perso-desktop', 'lab-web', 80);
    await lab!.nft(['-f', '-'], switchBatch(infra, null, 'perso'));
    assert.ok(await liveHolder(lab!, 'perso'));
    assert.equal((await held.ping()).echoed, true, 'unrelated connections survive the switch');
    held.close();
    await spotChecks(lab!, 'perso');
    await checkMatrix(lab!, infra, 'perso');
    await checkFlowsCli(lab!, 'perso');
    await relayChecks(lab!);
    const fresh = join(tmp, 'perso.nft');
    await writeFile(fresh, renderRuleset(infra, 'perso'));
    assert.equal(await lab!.nft(['-s', 'list', 'table', 'inet', 'anklume']), await listingOf(lab!, fresh));
  });

  it('is applied by ansible-playbook with the incus_nftables role: changed only when the live table differs', async () => {
    const src = join(tmp, 'base/nftables/anklume.nft');
    const installDir = join(tmp, 'nftables.d');
    const bootConf = join(tmp, 'nftables.conf');
    await mkdir(join(tmp, 'base/nftables'), { recursive: true });
    await writeFile(src, renderRuleset(infra, 'pro'));
    await writeFile(bootConf, '#!/usr/sbin/nft -f\n');
    // anklume_base_dir is what `make nftables` passes; the role finds nftables/anklume.nft under it.
    const vars = { anklume_base_dir: join(tmp, 'base'), incus_nftables_install_dir: installDir, incus_nftables_boot_conf: bootConf, ansible_python_interpreter: '/usr/bin/python3' };
    const playbook = async (...extra: string[]): Promise<number> => {
      const r = await lab!.host(['env', `ANSIBLE_LOCAL_TEMP=${tmp}/ansible`, 'ANSIBLE_NOCOLOR=1', 'ANSIBLE_LOCALHOST_WARNING=false',
        'ansible-playbook', '-i', 'localhost,', join(ROOT, 'site.yml'), '--tags', 'nftables', '-e', JSON.stringify(vars), ...extra]);
      assert.equal(r.exitCode, 0, r.stdout + r.stderr);
      const recap = /localhost\s*:\s*ok=\d+\s+changed=(\d+)/.exec(r.stdout);
      assert.ok(recap, r.stdout);
      return Number(recap[1]);
    };

    assert.ok((await playbook()) > 0, 'the first run changes the live table (perso -> pro)');
    assert.ok(await liveHolder(lab!, 'pro'));
    assert.equal(await readFile(join(installDir, 'anklume.nft'), 'utf8'), await readFile(src, 'utf8'));
    assert.match(await readFile(bootConf, 'utf8'), new RegExp(`include "${installDir}/\\*\\.nft"`));
    await checkMatrix(lab!, infra, 'pro');

    assert.equal(await playbook(), 0, 'a second run changes nothing');
    assert.equal(await playbook('--check'), 0, 'check mode with nothing to do');

    // A live table changed behind the role's back is seen and repaired.
    await lab!.nft(['add', 'element', 'inet', 'anklume', 'allow_bridges', '{ "net-guest" . "net-pro" }']);
    assert.equal((await lab!.probe('guest-box', [{ to: 'pro-dev', port: 22 }]))[0], 'open');
    assert.equal(await playbook(), 1, 'only the apply task changes');
    assert.equal((await lab!.probe('guest-box', [{ to: 'pro-dev', port: 22 }]))[0], 'timeout');

    // Check mode reports the change a new file would make, and changes nothing.
    await writeFile(src, renderRuleset(infra, 'perso'));
    assert.ok((await playbook('--check')) > 0);
    assert.ok(await liveHolder(lab!, 'pro'), 'check mode left the live table alone');
    assert.match(await readFile(join(installDir, 'anklume.nft'), 'utf8'), /the bridge that holds AI access: pro/);
  });
});
