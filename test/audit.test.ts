/**
 * `anklume-gen audit`, its judgement (generator/audit/auditChecks.ts) on readings made up here:
 * every kind of finding, its fix, and that what could not be read is never taken for clean. The
 * audit of a real host, drift made by hand included, is in test/incus-apply-e2e.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { judgeHost, type HostReadings, type LiveInstance } from '../generator/audit/auditChecks.ts';
import { parseConntrack } from '../generator/audit/hostReader.ts';
import { analyse } from '../generator/infra/infra.ts';
import { enrich } from '../generator/infra/enrich.ts';
import { renderRuleset } from '../generator/nftables/nftables.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURE = join(ROOT, 'test/fixtures/incus/infra.yml');
const analysis = analyse([{ file: FIXTURE, text: readFileSync(FIXTURE, 'utf8'), role: 'single' }], { yolo: false });
assert.ok(analysis.infra);
const infra = enrich(analysis.infra).infra;
const ruleset = renderRuleset(infra, 'pro');
const CTX = { yolo: false };

function instance(project: string, name: string, devices: Record<string, Record<string, string>> = {}, own = devices): LiveInstance {
  return {
    name, project, type: 'container', status: 'Running', profiles: ['default'], config: { 'volatile.eth0.host_name': `veth${project}` }, devices: own,
    expanded_config: {}, expanded_devices: { eth0: { type: 'nic', network: `net-${project}` }, ...devices },
  };
}

function readings(over: Partial<HostReadings> = {}): HostReadings {
  return {
    liveTable: { ok: true, value: 'table' },
    treeTable: { ok: true, value: 'table' },
    treeText: ruleset,
    expectedText: ruleset,
    installedPath: '/etc/nftables.d/anklume.nft',
    installedText: ruleset,
    bootConfPath: '/etc/nftables.conf',
    bootConfText: 'include "/etc/nftables.d/*.nft"\n',
    liveHolders: { ok: true, value: ['pro'] },
    instances: { ok: true, value: [instance('pro', 'pro-dev'), instance('ai-tools', 'gpu-server')] },
    conntrack: { ok: true, value: [] },
    plan: { ok: true, value: { problems: [], objects: [], orphans: [] } },
    links: { ok: true, value: [{ ifname: 'eth0' }, { ifname: 'net-pro' }, { ifname: 'vethpro', master: 'net-pro' }] },
    ...over,
  };
}

const judged = (over: Partial<HostReadings>) => judgeHost(readings(over), infra, 'pro', CTX);

describe('audit: the judgement', () => {
  it('a host that is what the tree says is clean', () => {
    assert.deepEqual(judged({}), { clean: true, holder: 'pro', findings: [], unchecked: [] });
  });

  it('the ruleset: not loaded, another one loaded, the boot copy missing or different, the boot configuration without the include, the tree older than infra.yml', () => {
    const messages = (over: Partial<HostReadings>) => judged(over).findings.map((f) => `${f.check}: ${f.message} | ${f.fix}`);
    assert.match(messages({ liveTable: { ok: true, value: undefined } })[0], /^ruleset: table inet anklume is not loaded: nothing isolates the domains from each other \| anklume-gen apply-nftables/);
    assert.match(messages({ liveTable: { ok: true, value: 'table\n  other' } })[0], /^ruleset: the live table inet anklume is not the ruleset of the tree \(line 2: the tree has "<end>", the kernel "other"\)/);
    assert.match(messages({ installedText: undefined })[0], /^boot: \/etc\/nftables\.d\/anklume\.nft is missing: after a reboot no isolation is loaded/);
    assert.match(messages({ installedText: `${ruleset}# edited` })[0], /^boot: .* \(loaded at boot\) is not the tree's ruleset/);
    assert.match(messages({ bootConfText: '#!/usr/sbin/nft -f\n' })[0], /^boot: \/etc\/nftables\.conf does not include \/etc\/nftables\.d: the ruleset is not loaded at boot/);
    assert.match(messages({ bootConfText: undefined })[0], /^boot: \/etc\/nftables\.conf does not exist/);
    assert.match(messages({ expectedText: `${ruleset}\n` })[0], /^ruleset: the tree's ruleset is not what infra\.yml gives now .*\| anklume-gen sync/);
  });

  it('the holder: the live set against the state file, with the fix that follows the state file', () => {
    const [finding] = judged({ liveHolders: { ok: true, value: ['pro', 'perso'] } }).findings;
    assert.equal(finding.message, "the live ai_holder set gives AI access to 'pro', 'perso', the state file to 'pro'");
    assert.match(finding.fix, /^anklume-gen apply-nftables/);
    assert.equal(judgeHost(readings({ liveHolders: { ok: true, value: [] } }), infra, null, CTX).findings.length, 0, 'nobody, and nobody in the set');
  });

  it("live devices are judged by infra.yml's own rules, wherever they came from; the fix removes them from the instance or its profile", () => {
    const nic = { type: 'nic', network: 'net-ai-tools' };
    const own = judged({ instances: { ok: true, value: [instance('perso', 'perso-desktop', { eth1: nic })] }, links: { ok: true, value: [] } }).findings;
    assert.equal(own.length, 1);
    assert.match(own[0].message, /^instance perso\/perso-desktop \(live\): Machine 'perso-desktop': device 'eth1' puts the machine on 'net-ai-tools' \(network\), the bridge of domain 'ai-tools'/);
    assert.equal(own[0].fix, 'incus config device remove perso-desktop eth1 --project perso');
    const fromProfile = judged({ instances: { ok: true, value: [instance('perso', 'perso-desktop', { eth1: nic }, {})] }, links: { ok: true, value: [] } }).findings;
    assert.match(fromProfile[0].fix, /^incus profile device remove default eth1 --project perso \(the device comes from a profile\)$/);
    const proxy = judged({ instances: { ok: true, value: [instance('ai-tools', 'gpu-server', { api: { type: 'proxy', listen: 'tcp:0.0.0.0:1', connect: 'tcp:127.0.0.1:1' } })] }, links: { ok: true, value: [] } }).findings;
    assert.match(proxy[0].message, /device 'api' is a proxy device in ai-tools under ai_access_policy 'exclusive'/);
    const root = instance('ai-tools', 'gpu-server');
    root.expanded_config = { 'security.privileged': 'true' };
    assert.match(judged({ instances: { ok: true, value: [root] }, links: { ok: true, value: [] } }).findings[0].fix, /^incus config unset gpu-server security\.privileged --project ai-tools/);
    const macvlan = judged({ instances: { ok: true, value: [instance('pro', 'pro-dev', { lan: { type: 'nic', nictype: 'macvlan', parent: 'eth0' } })] }, links: { ok: true, value: [] } }).findings;
    assert.match(macvlan[0].message, /device 'lan' is a NIC of type 'macvlan'/);
    const outsider = judged({ instances: { ok: true, value: [{ ...instance('default', 'relay'), expanded_devices: { eth0: { type: 'nic', network: 'net-pro' } }, devices: { eth0: { type: 'nic', network: 'net-pro' } } }] }, links: { ok: true, value: [] } }).findings;
    assert.match(outsider[0].message, /^instance default\/relay \(live\) has NIC 'eth0' on net-pro, the bridge of domain 'pro', from outside the domain's project/);
  });

  it('every port of a domain bridge is a NIC of an instance of that domain: an interface attached by hand, or a NIC of another project, is found', () => {
    const findings = judged({ links: { ok: true, value: [{ ifname: 'vethpro', master: 'net-pro' }, { ifname: 'eth1', master: 'net-ai-tools' }, { ifname: 'vethai-tools', master: 'net-pro' }] } }).findings;
    assert.deepEqual(findings.map((f) => f.message), [
      "interface eth1 is attached to net-ai-tools, the bridge of domain 'ai-tools', but is no NIC of an instance of that domain: whatever is behind it is on that domain's L2 around the isolation and the exclusive AI access",
      "interface vethai-tools is attached to net-pro, the bridge of domain 'pro', but is no NIC of an instance of that domain (it is a NIC of project 'ai-tools'): whatever is behind it is on that domain's L2 around the isolation",
    ]);
    assert.match(findings[0].fix, /^ip link set eth1 nomaster/);
  });

  it("apply's plan read as drift: objects that differ, refusals, orphans (a person decides the protected ones)", () => {
    const findings = judged({
      plan: {
        ok: true,
        value: {
          problems: ['Bridge x is not anklume\'s'],
          objects: [{ op: 'update', kind: 'instance', id: 'instance:pro/pro-dev', changes: { 'config.limits.cpu': ['2', '1'] } }],
          orphans: [{ kind: 'instance', label: 'pro/stray', protected: true }, { kind: 'bridge', label: 'net-old', protected: false }],
        },
      },
    }).findings.map((f) => `${f.message} | ${f.fix}`);
    assert.deepEqual(findings, [
      "apply would refuse: Bridge x is not anklume's | what the message says; then anklume-gen apply",
      'instance pro/pro-dev differs from the tree: config.limits.cpu "2" (tree: "1") | anklume-gen apply (make apply)',
      "instance pro/stray is in a domain's project but not in the tree (protected: not marked ephemeral) | incus delete --force stray --project pro, or add it to infra.yml",
      "bridge net-old is in a domain's project but not in the tree | anklume-gen apply --delete-orphans (make apply DELETE_ORPHANS=1), or add it to infra.yml",
    ]);
  });

  it('connections tracked between ai-tools and a domain without access, either way; not the holder\'s', () => {
    const entries = parseConntrack([
      'tcp      6 431999 ESTABLISHED src=10.181.1.10 dst=10.181.10.10 sport=40000 dport=11434 src=10.181.10.10 dst=10.181.1.10 sport=11434 dport=40000 [ASSURED] mark=0 use=1',
      'tcp      6 431999 ESTABLISHED src=10.181.2.10 dst=10.181.10.10 sport=40001 dport=11434 src=10.181.10.10 dst=10.181.2.10 sport=11434 dport=40001 [ASSURED] mark=0 use=1',
      'udp      17 29 src=10.181.10.10 dst=10.181.3.10 sport=5000 dport=53 [UNREPLIED] src=10.181.3.10 dst=10.181.10.10 sport=53 dport=5000 mark=0 use=1',
      'tcp      6 100 TIME_WAIT src=10.181.1.10 dst=10.181.10.10 sport=40002 dport=80 src=10.181.10.10 dst=10.181.1.10 sport=80 dport=40002 mark=0 use=1',
    ].join('\n'));
    assert.deepEqual(entries[0], { protocol: 'tcp', state: 'ESTABLISHED', src: '10.181.1.10', dst: '10.181.10.10', dport: '11434' });
    const findings = judged({ conntrack: { ok: true, value: entries } }).findings;
    assert.deepEqual(findings.map((f) => f.fix), ['conntrack -D -s 10.181.1.10 -d 10.181.10.10', 'conntrack -D -s 10.181.10.10 -d 10.181.3.10']);
    assert.match(findings[0].message, /^a tcp connection 10\.181\.1\.10 -> 10\.181\.10\.10:11434 is tracked between ai-tools and perso, which does not hold AI access \('pro' does\)$/);
  });

  it('what could not be read is said, and the host is not clean (not root, Incus down)', () => {
    const why = 'nft --stateless list: Operation not permitted (run as root)';
    const report = judged({ liveTable: { ok: false, why }, instances: { ok: false, why: 'incus: denied' }, plan: { ok: false, why: 'cannot read Incus' }, conntrack: { ok: false, why: 'conntrack: must be root' }, liveHolders: { ok: false, why: 'nft: denied' }, links: { ok: true, value: [] } });
    assert.equal(report.clean, false);
    assert.deepEqual(report.findings, []);
    assert.deepEqual(report.unchecked.map((u) => u.check).sort(), ['connections', 'devices', 'holder', 'incus', 'ruleset']);
  });
});

describe('audit: bad input (the real command, as a process)', () => {
  it('no tree, the tree of another infra: one message with the fix, exit 1, nothing read', async () => {
    const { spawnCli } = await import('./helpers/cli.ts');
    const { testEnv } = await import('./helpers/env.ts');
    const t = testEnv();
    try {
      const none = spawnCli(['audit', '--infra', FIXTURE, '--base-dir', join(t.dir, 'nowhere')], t.env);
      assert.equal(none.code, 1);
      assert.match(none.stderr, /nowhere\/group_vars\/all\.yml: no generated tree to audit against; write it with 'anklume-gen sync .* --base-dir .*nowhere'/);
      assert.equal(spawnCli(['sync', join(ROOT, 'examples/infra.yml'), '--base-dir', t.baseDir], t.env).code, 0);
      const other = spawnCli(['audit', '--infra', FIXTURE, '--base-dir', t.baseDir, '--json'], t.env);
      assert.equal(other.code, 1);
      assert.match((JSON.parse(other.stdout) as { errors: { message: string }[] }).errors[0].message, /this tree was written for project 'anklume-example', not for 'incus-e2e'/);
    } finally {
      t.cleanup();
    }
  });

  it('nft, conntrack and incus missing (PATH holds node and sh alone): each says how to install it, and the host is not reported clean; one of anklume\'s variables set below a managed block of the tree, and a managed block edited by hand, are findings', async () => {
    const { spawnCli } = await import('./helpers/cli.ts');
    const { testEnv } = await import('./helpers/env.ts');
    const { appendFileSync, mkdirSync, symlinkSync, writeFileSync } = await import('node:fs');
    const t = testEnv();
    try {
      assert.equal(spawnCli(['sync', FIXTURE, '--base-dir', t.baseDir], t.env).code, 0);
      const hostVars = join(t.baseDir, 'host_vars/pro-dev.yml');
      const line = readFileSync(hostVars, 'utf8').split('\n').length;
      appendFileSync(hostVars, 'instance_devices: {eth1: {type: nic, network: net-ai-tools}}\n');
      // And a managed block edited by hand: what apply would build is not what infra.yml gives.
      const guest = join(t.baseDir, 'host_vars/guest-box.yml');
      writeFileSync(guest, readFileSync(guest, 'utf8').replace('instance_type: lxc', 'instance_type: vm'));
      const bin = join(t.dir, 'bin');
      mkdirSync(bin);
      symlinkSync(process.execPath, join(bin, 'node'));
      symlinkSync('/bin/sh', join(bin, 'sh'));
      const r = spawnCli(['audit', '--infra', FIXTURE, '--base-dir', t.baseDir], { ...t.env, PATH: bin });
      assert.equal(r.code, 1);
      assert.match(r.stdout, /^NOT CHECKED \(ruleset\): nft is not installed \(Debian: apt-get install nftables\)$/m);
      assert.match(r.stdout, /^NOT CHECKED \(connections\): conntrack is not installed \(Debian: apt-get install conntrack\)$/m);
      assert.match(r.stdout, /^NOT CHECKED \(devices\): incus is not installed/m);
      assert.match(r.stdout, /not a clean host$/m);
      assert.doesNotMatch(r.stdout, /^clean/m);
      assert.ok(r.stdout.includes(`FINDING (tree): ${hostVars}:${line}:1: 'instance_devices' is one of anklume's variables, set outside the managed block`), r.stdout);
      assert.match(r.stdout, /^FINDING \(tree\): host_vars\/guest-box\.yml is not what infra\.yml gives: its managed block was edited by hand, or infra\.yml changed since the last sync; apply builds what the file says\n {2}fix: anklume-gen sync .*infra\.yml --base-dir .* \(make sync\)$/m);
      assert.doesNotMatch(r.stdout, /FINDING \(tree\): host_vars\/pro-dev\.yml is not what/, 'the part below the block is not the managed block');
    } finally {
      t.cleanup();
    }
  });
});
