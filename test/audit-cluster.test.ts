/**
 * `anklume-gen audit` and `ai-status` on an Incus cluster (issue 19, item 4), on readings made up
 * here (stand-ins for the members, Incus and the members' play): the judgement of every member
 * (generator/audit/clusterChecks.ts), the parsing of a member's answer (memberReader.ts), ai-status's
 * cluster part (aiStatus.ts). The real cluster, drift made by hand and a member whose sshd is
 * killed, is in test/cluster-apply-e2e.test.ts.
 */
import { after, before, describe, it } from 'node:test';
import { spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { judgeCluster, type ClusterReadings } from '../generator/audit/clusterChecks.ts';
import { memberReadings, readScript, sections, subnetsFromSetJson, type MemberReadings } from '../generator/audit/memberReader.ts';
import { clusterStatus, formatCluster, lastUnconfirmed, statusAgrees, type StatusReport } from '../generator/aiswitch/aiStatus.ts';
import { analyse } from '../generator/infra/infra.ts';
import { enrich } from '../generator/infra/enrich.ts';
import { renderRuleset } from '../generator/nftables/nftables.ts';
import { domainSubnet } from '../generator/nftables/memberSets.ts';
import { runCli } from './helpers/cli.ts';
import { testEnv, type TestEnv } from './helpers/env.ts';
import { ForbiddenTools } from './helpers/standins.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURE = join(ROOT, 'examples/cluster.yml');
const analysis = analyse([{ file: FIXTURE, text: readFileSync(FIXTURE, 'utf8'), role: 'single' }], { yolo: false });
assert.ok(analysis.infra);
const infra = enrich(analysis.infra).infra;
const ruleset = renderRuleset(infra, 'pro');
const CTX = { yolo: false };
const PRO = domainSubnet(infra, 'pro');

/** A member that is what the tree says, holder pro. */
function member(over: Partial<MemberReadings> = {}): MemberReadings {
  return {
    holders: { ok: true, value: ['pro'] },
    holderSubnets: { ok: true, value: [PRO] },
    table: { ok: true, value: true },
    conntrack: { ok: true, value: [] },
    links: { ok: true, value: [{ ifname: 'enp2s0' }, { ifname: 'net-pro' }] },
    ...over,
  };
}

function readings(over: Partial<ClusterReadings> = {}): ClusterReadings {
  return {
    treeText: ruleset,
    expectedText: ruleset,
    installedPath: '/etc/nftables.d/anklume.nft',
    bootConfPath: '/etc/nftables.conf',
    instances: { ok: true, value: [] },
    plan: { ok: true, value: { problems: [], objects: [], orphans: [] } },
    membersPlan: { ok: true, value: { objects: [], read: ['desk', 'gpu-box'] } },
    members: { desk: { ok: true, value: member() }, 'gpu-box': { ok: true, value: member() } },
    record: { written: true, holder: 'pro' },
    ...over,
  };
}
const judged = (over: Partial<ClusterReadings>, holder: string | null = 'pro') => judgeCluster(readings(over), infra, holder, CTX);
const lines = (over: Partial<ClusterReadings>, holder: string | null = 'pro') => {
  const r = judged(over, holder);
  return [...r.findings.map((f) => `${f.check}: ${f.message}`), ...r.unchecked.map((u) => `NOT CHECKED ${u.check}: ${u.why}`)];
};

describe('audit on a cluster: the judgement of every member (stand-in readings)', () => {
  it('a cluster whose members are what the tree says is clean, every member checked, the record read', () => {
    assert.deepEqual(judged({}), { clean: true, holder: 'pro', findings: [], unchecked: [], members: { desk: 'checked', 'gpu-box': 'checked' }, holder_record: { written: true, holder: 'pro' } });
    const neverSwitched = judged({ record: { written: false } });
    assert.equal(neverSwitched.clean, true, 'a record never written is not a finding');
  });

  it("each member's table, boot copy, boot include and routes, from the members' play under --check, named by member", () => {
    const objects = ['ruleset:live@gpu-box', 'ruleset:boot@desk', 'ruleset:boot-conf@desk', 'routes:gpu-box'].map((id) => ({ op: 'update' as const, kind: id.startsWith('routes') ? 'routes' as const : 'ruleset' as const, id, changes: {} }));
    assert.deepEqual(lines({ membersPlan: { ok: true, value: { objects, read: ['desk', 'gpu-box'] } } }), [
      "boot: member desk: /etc/nftables.d/anklume.nft (loaded at boot) is missing or not the tree's ruleset: a reboot would bring back another one, or none",
      'boot: member desk: /etc/nftables.conf does not include /etc/nftables.d: the ruleset is not loaded at boot',
      'ruleset: member gpu-box: its live table inet anklume is not the ruleset of the tree',
      'routes: member gpu-box: its routes to the machines of the other members, IPv4 forwarding, proxy ARP on the domain bridges or what it reads at boot to set them again are not what the tree says: machines on other members are not reached as infra.yml places them, or will not be after a reboot',
    ]);
    const gone = lines({ members: { desk: { ok: true, value: member() }, 'gpu-box': { ok: true, value: member({ table: { ok: true, value: false }, holders: { ok: true, value: undefined }, holderSubnets: { ok: true, value: undefined } }) } }, membersPlan: { ok: true, value: { objects: [objects[0]], read: ['desk', 'gpu-box'] } } });
    assert.deepEqual(gone, ['ruleset: member gpu-box: table inet anklume is not loaded: nothing isolates the domains on it'], 'one finding for a table that is gone, not three');
  });

  it("a member's holder sets against the state file: the bridge set and, on a cluster, the subnet set", () => {
    const flushed = { desk: { ok: true as const, value: member() }, 'gpu-box': { ok: true as const, value: member({ holders: { ok: true, value: [] }, holderSubnets: { ok: true, value: [] } }) } };
    assert.deepEqual(lines({ members: flushed }), ["holder: member gpu-box: its live ai_holder set gives AI access to nobody (ai_holder_subnet: empty), the state file to 'pro'"]);
    const halfFlushed = { desk: { ok: true as const, value: member({ holderSubnets: { ok: true, value: [] } }) }, 'gpu-box': { ok: true as const, value: member() } };
    assert.match(lines({ members: halfFlushed })[0], /^holder: member desk: its live ai_holder set gives AI access to 'pro' \(ai_holder_subnet: empty\)/);
    assert.deepEqual(lines({ members: flushed, record: { written: true, holder: null } }, null).filter((l) => l.includes('desk')), ["holder: member desk: its live ai_holder set gives AI access to 'pro' (ai_holder_subnet: 10.100.2.0/24), the state file to nobody"]);
  });

  it("the holder's records: the cluster's record against the state file; a record that cannot be read is not checked", () => {
    assert.deepEqual(lines({ record: { written: true, holder: 'perso' } }), ["holder: the cluster's record (user.anklume.ai_holder on project ai-tools) says 'perso', the state file 'pro'"]);
    assert.deepEqual(lines({ record: { written: true, holder: null } }), ["holder: the cluster's record (user.anklume.ai_holder on project ai-tools) says nobody, the state file 'pro'"]);
    assert.deepEqual(lines({ record: { error: 'incus query /1.0/projects/ai-tools: Error: boom' } }), ["NOT CHECKED holder: the cluster's record (user.anklume.ai_holder on project ai-tools): incus query /1.0/projects/ai-tools: Error: boom"]);
  });

  it("connections tracked on a member between ai-tools and a domain without access; a bridge port that is no instance's NIC", () => {
    const conn = member({ conntrack: { ok: true, value: [{ protocol: 'tcp', state: 'ESTABLISHED', src: '10.100.1.10', dst: '10.100.10.10', dport: '11434' }] }, links: { ok: true, value: [{ ifname: 'veth9', master: 'net-ai-tools' }] } });
    const found = lines({ members: { desk: { ok: true, value: member() }, 'gpu-box': { ok: true, value: conn } } });
    assert.equal(found.length, 2);
    assert.match(found[0], /^connections: member gpu-box: a tcp connection 10\.100\.1\.10 -> 10\.100\.10\.10:11434 is tracked between ai-tools and perso, which does not hold AI access \('pro' does\)$/);
    assert.match(found[1], /^devices: member gpu-box: interface veth9 is attached to net-ai-tools, the bridge of domain 'ai-tools', but is no NIC of an instance of that domain/);
  });

  it('Incus from here: a member not ONLINE and an instance not on its member are apply\'s plan, read as drift', () => {
    const plan = {
      problems: ["Member 'gpu-box' is OFFLINE in incus cluster list (No heartbeat): a bridge is defined on every member at once, so nothing can be made while one is down. Bring it back, then apply again. Nothing was changed."],
      objects: [{ op: 'update' as const, kind: 'instance' as const, id: 'instance:pro/pro-build', changes: { location: ['desk', 'gpu-box'] as [unknown, unknown] } }],
      orphans: [],
    };
    assert.deepEqual(lines({ plan: { ok: true, value: plan } }), [
      `incus: apply would refuse: ${plan.problems[0]}`,
      'incus: instance pro/pro-build differs from the tree: location "desk" (tree: "gpu-box")',
    ]);
  });

  it('a member that cannot be read is NOT CHECKED, never clean; so is a member the play wrote no record for, or a part that failed', () => {
    const r = judged({ members: { desk: { ok: true, value: member() }, 'gpu-box': { ok: false, why: 'Ansible cannot reach it: ssh: connect to host 192.168.50.2 port 22: Connection refused' } }, membersPlan: { ok: true, value: { objects: [], read: ['desk'] } } });
    assert.equal(r.clean, false);
    assert.deepEqual(r.members, { desk: 'checked', 'gpu-box': 'not checked' });
    assert.deepEqual(r.unchecked, [{ check: 'members', why: 'member gpu-box was not read: Ansible cannot reach it: ssh: connect to host 192.168.50.2 port 22: Connection refused' }]);
    const noRecord = judged({ membersPlan: { ok: true, value: { objects: [], read: ['desk'] } } });
    assert.deepEqual(noRecord.members, { desk: 'checked', 'gpu-box': 'not checked' });
    assert.match(noRecord.unchecked[0].why, /^member gpu-box: its table, boot copy and routes could not be compared with the tree: the members' play under --check wrote no record for it$/);
    const noConntrack = judged({ members: { desk: { ok: true, value: member({ conntrack: { ok: false, why: 'conntrack -L -f ipv4: conntrack is not installed there' } }) }, 'gpu-box': { ok: true, value: member() } } });
    assert.deepEqual(noConntrack.unchecked, [{ check: 'connections', why: 'member desk: conntrack -L -f ipv4: conntrack is not installed there' }]);
    const planFailed = judged({ membersPlan: { ok: false, why: 'the members could not be read (ansible-playbook exit 2): …' } });
    assert.equal(planFailed.unchecked.length, 2, 'each member named');
  });
});

describe("a member's answer (stand-in output of the read)", () => {
  const holderJson = (elem: unknown[]) => JSON.stringify({ nftables: [{ metainfo: {} }, { set: { family: 'inet', name: 'ai_holder', table: 'anklume', type: 'ifname', elem } }] });
  const subnetJson = (elem: unknown[]) => JSON.stringify({ nftables: [{ set: { family: 'inet', name: 'ai_holder_subnet', table: 'anklume', type: 'ipv4_addr', flags: ['interval'], elem } }] });
  const answer = (parts: Record<string, [number, string]>) => Object.entries(parts).map(([name, [rc, text]]) => `@@begin ${name}\r\n${text}\r\n@@end ${name} ${rc}`).join('\r\n');

  it('the script reads each part in its own section, with its exit status; a tty\'s \\r is ignored', () => {
    assert.equal(readScript(['holders']), "echo '@@begin holders'; { nft -j list set inet anklume ai_holder; } 2>&1; echo \"@@end holders $?\"\necho '@@begin subnets'; { nft -j list set inet anklume ai_holder_subnet; } 2>&1; echo \"@@end subnets $?\"");
    assert.deepEqual([...sections(answer({ a: [0, 'x\ny'], b: [1, 'Error'] }))], [['a', { rc: 0, text: 'x\ny' }], ['b', { rc: 1, text: 'Error' }]]);
  });

  it('holder sets, a table that is not loaded, connections and interfaces; a failed part says why', () => {
    const r = memberReadings({
      rc: 0,
      stdout: answer({
        holders: [0, holderJson(['net-pro'])],
        subnets: [0, subnetJson([{ prefix: { addr: '10.100.2.0', len: 24 } }])],
        table: [0, ''],
        conntrack: [0, 'tcp      6 431999 ESTABLISHED src=10.100.2.10 dst=10.100.10.10 sport=1 dport=80 src=10.100.10.10 dst=10.100.2.10 sport=80 dport=1 [ASSURED] mark=0 use=1\nconntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.'],
        links: [0, '[{"ifname":"eth0"},{"ifname":"veth1","master":"net-pro"}]'],
      }),
    });
    assert.deepEqual(r, {
      ok: true,
      value: {
        holders: { ok: true, value: ['pro'] },
        holderSubnets: { ok: true, value: ['10.100.2.0/24'] },
        table: { ok: true, value: true },
        conntrack: { ok: true, value: [{ protocol: 'tcp', state: 'ESTABLISHED', src: '10.100.2.10', dst: '10.100.10.10', dport: '80' }] },
        links: { ok: true, value: [{ ifname: 'eth0' }, { ifname: 'veth1', master: 'net-pro' }] },
      },
    });
    const missing = 'Error: No such file or directory\nlist set inet anklume ai_holder\n             ^^^^^^^';
    const gone = memberReadings({ rc: 0, stdout: answer({ holders: [1, missing], subnets: [1, missing], table: [1, 'Error: No such file or directory'], conntrack: [127, 'sh: 1: conntrack: not found'], links: [1, 'Error: permission denied'] }) });
    assert.ok(gone.ok);
    assert.deepEqual(gone.value.holders, { ok: true, value: undefined });
    assert.deepEqual(gone.value.table, { ok: true, value: false });
    assert.deepEqual(gone.value.conntrack, { ok: false, why: 'conntrack -L -f ipv4: conntrack is not installed there' });
    assert.deepEqual(gone.value.links, { ok: false, why: 'ip -j link show: Error: permission denied' });
    assert.deepEqual(subnetsFromSetJson(subnetJson([])), []);
  });

  // The real script and the real nft, in a network namespace of the test's own (unshare -rn): no table there.
  it('the real read on a member without table inet anklume: not loaded (a finding), not a read that failed', () => {
    const r = spawnSync('unshare', ['-rn', 'sh', '-c', readScript(['holders', 'table'])], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const read = memberReadings({ rc: 0, stdout: r.stdout });
    assert.ok(read.ok);
    assert.deepEqual([read.value.table, read.value.holders, read.value.holderSubnets], [{ ok: true, value: false }, { ok: true, value: undefined }, { ok: true, value: undefined }]);
  });

  it("a member Ansible cannot reach, or whose read gave no answer, is not read, with Ansible's reason", () => {
    assert.deepEqual(memberReadings({ unreachable: true, msg: 'Failed to connect to the host via ssh: ssh: connect to host 100.64.1.102 port 22: Connection refused\n' }),
      { ok: false, why: 'Ansible cannot reach it: Failed to connect to the host via ssh: ssh: connect to host 100.64.1.102 port 22: Connection refused' });
    assert.deepEqual(memberReadings({ rc: 126, stdout: '', msg: 'non-zero return code' }), { ok: false, why: 'its read failed: non-zero return code' });
    assert.deepEqual(memberReadings({ failed: true, msg: 'The ansible.builtin.shell action failed to execute in the expected time frame (30) and was terminated' }),
      { ok: false, why: 'no answer in 30 s (its read was stopped)' }, "the read task's time limit (test/audit-timeout.test.ts runs it)");
  });
});

describe('ai-status on a cluster: every member and the records (stand-in readings)', () => {
  const base: StatusReport = { holder: 'pro', holder_source: 'state file', state_file: '/s', live: { error: '' }, history: [], last_flush: null, problems: [] };
  const subnetOf = (d: string) => domainSubnet(infra, d);
  const agreeing = { ok: true as const, holders: ['pro'], subnets: [PRO] };

  it('every member agrees and the record says the same: exit 0, one line per member', () => {
    const r = clusterStatus(base, 'pro', { desk: agreeing, 'gpu-box': agreeing }, { written: true, holder: 'pro' }, subnetOf);
    assert.ok(statusAgrees(r));
    assert.deepEqual(r.live, { holders: ['pro'], agrees: true });
    assert.deepEqual(formatCluster(r.cluster!), [
      'Cluster record (user.anklume.ai_holder on project ai-tools): pro',
      'Member desk: agrees (ai_holder: net-pro; ai_holder_subnet: 10.100.2.0/24)',
      'Member gpu-box: agrees (ai_holder: net-pro; ai_holder_subnet: 10.100.2.0/24)',
    ]);
    const never = clusterStatus(base, 'pro', { desk: agreeing, 'gpu-box': agreeing }, { written: false }, subnetOf);
    assert.ok(statusAgrees(never), 'a cluster never switched has no record: said, not an error');
    assert.equal(formatCluster(never.cluster!)[0], 'Cluster record (user.anklume.ai_holder on project ai-tools): not written (no switch on this cluster yet)');
  });

  it('a member that disagrees, a record that disagrees, a member not read: each said plainly, exit 1', () => {
    const r = clusterStatus(base, 'pro', { desk: { ok: true, holders: [], subnets: [] }, 'gpu-box': { ok: false, why: 'Ansible cannot reach it: Connection refused' } }, { written: true, holder: null }, subnetOf);
    assert.equal(statusAgrees(r), false);
    assert.deepEqual(r.live, { holders: [], agrees: false });
    assert.deepEqual(formatCluster(r.cluster!), [
      'Cluster record (user.anklume.ai_holder on project ai-tools): <none>',
      'Member desk: DISAGREES (ai_holder: empty; ai_holder_subnet: empty)',
      'Member gpu-box: NOT READ (Ansible cannot reach it: Connection refused)',
    ]);
    assert.deepEqual(r.problems, [
      "member desk: its live ruleset gives AI access to nobody (ai_holder_subnet: empty), the state file says 'pro'; run 'anklume-gen apply-nftables' or 'anklume-gen ai-switch --domain <domain>' to settle it",
      'member gpu-box was not read: Ansible cannot reach it: Connection refused',
      "the cluster's record (user.anklume.ai_holder on project ai-tools) says nobody, the state file 'pro'; an ai-switch writes both",
    ]);
    assert.deepEqual(JSON.parse(JSON.stringify(r.cluster)), {
      members: [
        { member: 'desk', read: true, ai_holder: [], ai_holder_subnet: [], agrees: false },
        { member: 'gpu-box', read: false, error: 'Ansible cannot reach it: Connection refused' },
      ],
      record: { written: true, holder: null },
      last_switch_unconfirmed: null,
    });
    const log = [
      JSON.stringify({ time: '2026-12-06T05:00:00Z', status: 'failed', from: 'pro', to: 'perso', gpu: [], unconfirmed_members: ['gpu-box'] }),
      'torn {',
    ].join('\n');
    const after = clusterStatus(base, 'pro', { desk: agreeing }, { written: true, holder: 'pro' }, subnetOf, lastUnconfirmed(log));
    assert.equal(formatCluster(after.cluster!).at(-1), 'Last switch (2026-12-06T05:00:00Z, failed) could not confirm: gpu-box (the lines above say where each member stands now)');
    assert.ok(statusAgrees(after), 'history, not the truth: the live sets decide');
    assert.equal(lastUnconfirmed(`${log}\n${JSON.stringify({ time: 't', status: 'switched', gpu: [], unconfirmed_members: [] })}`), null, 'a later switch that confirmed every member');
    const none = clusterStatus(base, 'pro', { desk: { ok: false, why: 'x' } }, { written: false }, subnetOf);
    assert.deepEqual(none.live, { error: 'no member of the cluster could be read' });
  });
});

describe('the commands on a cluster, their shapes (stand-ins: ansible-playbook, incus and nft fail when called)', () => {
  let t: TestEnv;
  let forbidden: ForbiddenTools;
  before(async () => {
    t = testEnv();
    const r = await runCli(['sync', 'examples/cluster.yml', '--base-dir', t.baseDir, '-q'], t.env);
    assert.equal(r.code, 0, r.stderr);
    forbidden = ForbiddenTools.create();
  });
  after(() => {
    forbidden?.cleanup();
    t?.cleanup();
  });

  it('audit --json: the one-host document plus members and holder_record; every member not checked, exit 1', async () => {
    const r = await runCli(['audit', '--json', '--infra', 'examples/cluster.yml', '--base-dir', t.baseDir], forbidden.env(t.env));
    assert.equal(r.code, 1, r.stderr);
    const doc = JSON.parse(r.stdout) as { clean: boolean; members: Record<string, string>; unchecked: { check: string; why: string }[]; holder_record: unknown };
    assert.deepEqual(Object.keys(doc), ['clean', 'holder', 'findings', 'unchecked', 'members', 'holder_record']);
    assert.deepEqual([doc.clean, doc.members], [false, { desk: 'not checked', 'gpu-box': 'not checked' }]);
    assert.deepEqual(doc.unchecked.filter((u) => u.check === 'members').map((u) => u.why.split(':')[0]), ['member desk was not read', 'member gpu-box was not read']);
    assert.ok('error' in (doc.holder_record as object), 'the record could not be read from the stand-in incus');
    const calls = forbidden.calls().map((c) => `${c.tool} ${c.args}`);
    assert.ok(calls.some((c) => /^ansible-playbook \S+read-members\.yml -e @\S+ -i \S+inventory\/_cluster\.yml$/.test(c)), calls.join('\n'));
    assert.ok(calls.some((c) => / --limit anklume_cluster --tags nftables,networks --check /.test(c)), "the members' play under --check");
    assert.ok(!calls.some((c) => c.startsWith('nft ')), "this host's nft is not read on a cluster");
    forbidden.reset();
  });

  it('ai-status --json: the one-host document plus cluster (each member, the record); a tree without the inventory is said', async () => {
    const r = await runCli(['ai-status', '--json', '--infra', 'examples/cluster.yml', '--base-dir', t.baseDir], forbidden.env(t.env));
    assert.equal(r.code, 1, r.stderr);
    const doc = JSON.parse(r.stdout) as { live: unknown; cluster: { members: { member: string; read: boolean }[] } };
    assert.deepEqual(Object.keys(doc), ['holder', 'holder_source', 'state_file', 'live', 'history', 'last_flush', 'problems', 'cluster']);
    assert.deepEqual(doc.live, { error: 'no member of the cluster could be read' });
    assert.deepEqual(doc.cluster.members.map((m) => [m.member, m.read]), [['desk', false], ['gpu-box', false]]);
    assert.ok(!forbidden.calls().some((c) => c.tool === 'nft'), "this host's nft is not read on a cluster");
    forbidden.reset();
    const none = await runCli(['ai-status', '--infra', 'examples/cluster.yml', '--base-dir', join(t.dir, 'nowhere')], forbidden.env(t.env));
    assert.equal(none.code, 1);
    assert.match(none.stderr, /inventory\/_cluster\.yml: no inventory of the cluster's members to read their holder sets through; write it with 'anklume-gen sync/);
    forbidden.assertNoneCalled();
  });
});

/**
 * STAND-IN (TEST-ONLY) for `incus`: answers /1.0 and /1.0/cluster/members as INCUS_SERVER and
 * INCUS_MEMBERS say (JSON), journals every call, and answers the ai-tools project with a holder.
 */
const INCUS_STANDIN = `#!/bin/sh
# STAND-IN (TEST-ONLY): an Incus whose identity the test sets.
echo "$*" >> "$STANDIN_JOURNAL"
case "$2" in
  /1.0) echo "$INCUS_SERVER" ;;
  /1.0/cluster/members) echo "$INCUS_MEMBERS" ;;
  /1.0/projects/ai-tools) echo '{"config": {"user.anklume.ai_holder": "perso"}}' ;;
  *) echo "Error: not found" >&2; exit 1 ;;
esac
`;

describe("the holder's record is read only from infra.yml's cluster (stand-in incus; ansible-playbook and nft fail when called)", () => {
  let t: TestEnv;
  let forbidden: ForbiddenTools;
  let bin: string;
  before(async () => {
    t = testEnv();
    const r = await runCli(['sync', 'examples/cluster.yml', '--base-dir', t.baseDir, '-q'], t.env);
    assert.equal(r.code, 0, r.stderr);
    forbidden = ForbiddenTools.create(['ansible-playbook', 'nft']);
    bin = join(t.dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'incus'), INCUS_STANDIN);
    chmodSync(join(bin, 'incus'), 0o755);
  });
  after(() => {
    forbidden?.cleanup();
    t?.cleanup();
  });
  const journal = () => join(t.dir, 'incus-calls');
  const run = (args: string[], server: object, members: string[]) => {
    writeFileSync(journal(), '');
    const env = forbidden.env(t.env);
    return runCli(args, { ...env, PATH: `${bin}:${env.PATH}`, STANDIN_JOURNAL: journal(), INCUS_SERVER: JSON.stringify(server), INCUS_MEMBERS: JSON.stringify(members.map((m) => `/1.0/cluster/members/${m}`)) });
  };
  const calls = () => readFileSync(journal(), 'utf8').trim().split('\n');
  const args = ['ai-status', '--infra', 'examples/cluster.yml', '--base-dir', '', '--json'];

  it("the default remote is not clustered: the record NOT READ with the reason, the project's key never asked", async () => {
    args[4] = t.baseDir;
    const r = await run(args, { environment: { server_clustered: false, server_name: 'laptop' } }, []);
    assert.equal(r.code, 1);
    const doc = JSON.parse(r.stdout) as { cluster: { record: unknown } };
    assert.deepEqual(doc.cluster.record, { error: "the Incus that 'incus' reaches (its default remote, server 'laptop') is not clustered, so it is not the cluster of infra.yml (members desk, gpu-box): point the default remote at a member (incus remote switch)" });
    assert.deepEqual(calls(), ['query /1.0']);
  });

  it("the default remote is another cluster: NOT READ, its members named; infra.yml's cluster: the record read", async () => {
    const other = await run(args, { environment: { server_clustered: true, server_name: 'm1' } }, ['m1', 'm2', 'm3']);
    assert.deepEqual((JSON.parse(other.stdout) as { cluster: { record: unknown } }).cluster.record, { error: "the Incus that 'incus' reaches (its default remote) is a cluster of members m1, m2, m3, not infra.yml's (desk, gpu-box): point the default remote at a member of infra.yml's cluster (incus remote switch), or correct global.cluster" });
    assert.deepEqual(calls(), ['query /1.0', 'query /1.0/cluster/members']);
    const ours = await run(args, { environment: { server_clustered: true, server_name: 'desk' } }, ['gpu-box', 'desk']);
    assert.deepEqual((JSON.parse(ours.stdout) as { cluster: { record: unknown } }).cluster.record, { written: true, holder: 'perso' });
    assert.deepEqual(calls(), ['query /1.0', 'query /1.0/cluster/members', 'query /1.0/projects/ai-tools']);
  });

  it("audit: Incus's instances and the record are not read from another Incus; NOT CHECKED with the reason (apply's plan says it in its own words)", async () => {
    const r = await run(['audit', '--json', '--infra', 'examples/cluster.yml', '--base-dir', t.baseDir], { environment: { server_clustered: false, server_name: 'laptop' } }, []);
    assert.equal(r.code, 1);
    const doc = JSON.parse(r.stdout) as { unchecked: { check: string; why: string }[] };
    assert.match(doc.unchecked.find((u) => u.check === 'devices')?.why ?? '', /^the Incus that 'incus' reaches \(its default remote, server 'laptop'\) is not clustered/);
    assert.match(doc.unchecked.find((u) => u.check === 'holder')?.why ?? '', /is not clustered/);
    assert.ok(!calls().some((c) => c.startsWith('query /1.0/instances') || c.startsWith('query /1.0/projects/ai-tools')), calls().join('\n'));
  });
});
