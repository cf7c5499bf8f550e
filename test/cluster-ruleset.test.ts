/**
 * Issue 19: the ruleset on a cluster, as text and in the kernel (throwaway `unshare -rn`
 * namespaces). The golden file is test/fixtures/nftables/cluster.nft (UPDATE_GOLDEN=1 rewrites it
 * on purpose); packets between members are test/cluster-ruleset-e2e.test.ts's.
 */
import assert from 'node:assert/strict';
import { readFile, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { execa } from 'execa';
import { enrich } from '../generator/infra/enrich.ts';
import { buildRuleset, countForwardRules, renderRuleset, revokeAllBatch, switchBatch, type Ruleset } from '../generator/nftables/nftables.ts';
import { maybeUpdateGolden } from './helpers/golden.ts';
import { listing, run } from './helpers/infraText.ts';
import type { Infra } from '../generator/core/types.ts';

const GOLDEN = 'test/fixtures/nftables/cluster.nft';
const CLUSTER_CLAUSE = `  cluster:\n    member_link: eth1\n    members:\n      m1: { address: 192.168.50.1 }\n      m2: { address: 192.168.50.2, member_link: eth2 }\n`;

function model(text: string): Infra {
  const analysis = run(text);
  assert.ok(analysis.infra, listing(analysis.errors));
  return enrich(analysis.infra).infra;
}

const example = () => model(readFileSync('examples/cluster.yml', 'utf8'));

/** The file through the kernel: loaded in a fresh namespace, then the table listed. */
async function load(text: string): Promise<{ ok: boolean; out: string }> {
  const r = await execa('unshare', ['-rn', 'sh', '-c', 'nft -f - && nft list table inet anklume'], { input: text, reject: false });
  return { ok: r.exitCode === 0, out: r.exitCode === 0 ? String(r.stdout) : String(r.stderr) };
}

/**
 * The same in a named namespace, as root: a user namespace (unshare -r) caps nft's batch below what
 * 250 domains of cluster twins take ('Message too long'); the role loads as root.
 */
async function loadAsRoot(text: string): Promise<{ ok: boolean; out: string }> {
  const ns = `akcr${process.pid}`;
  await execa('ip', ['netns', 'add', ns]);
  try {
    const r = await execa('ip', ['netns', 'exec', ns, 'sh', '-c', 'nft -f - && nft list table inet anklume'], { input: text, reject: false });
    return { ok: r.exitCode === 0, out: r.exitCode === 0 ? String(r.stdout) : String(r.stderr) };
  } finally {
    await execa('ip', ['netns', 'del', ns], { reject: false });
  }
}
const asRoot = { skip: process.getuid?.() === 0 ? false : 'needs root (ip netns)' };

const unshareWorks = (await execa('unshare', ['-rn', 'nft', '-c', '-f', '/dev/null'], { reject: false }).catch(() => ({ exitCode: 1 }))).exitCode === 0;
const kernel = { skip: unshareWorks ? false : 'unshare -rn nft is not available here' };

const elementsOf = (r: Ruleset, name: string) => r.sets.find((s) => s.name === name)?.groups.flatMap((g) => g.elements) ?? [];

describe('the ruleset on a cluster (issue 19)', () => {
  it('is the golden file for examples/cluster.yml', async () => {
    const text = renderRuleset(example(), 'pro');
    maybeUpdateGolden(GOLDEN, text);
    assert.equal(text, await promisify(readFile)(GOLDEN, 'utf8'));
  });

  it('names the member links, the subnets, each bridge with its subnet and the holder\'s subnet', () => {
    const r = buildRuleset(example(), 'pro');
    assert.equal(r.cluster, true);
    assert.deepEqual(elementsOf(r, 'member_links'), ['"enp2s0"', '"enp3s0"']);
    assert.deepEqual(elementsOf(r, 'domain_subnets'), ['10.100.10.0/24', '10.100.2.0/24', '10.100.1.0/24']);
    assert.deepEqual(elementsOf(r, 'bridge_subnet'), ['"net-ai-tools" . 10.100.10.0/24', '"net-pro" . 10.100.2.0/24', '"net-perso" . 10.100.1.0/24']);
    assert.deepEqual(elementsOf(r, 'ai_holder_subnet'), ['10.100.2.0/24']);
    assert.deepEqual(elementsOf(buildRuleset(example(), null), 'ai_holder_subnet'), []);
  });

  it('gives each element of a policy set its twins: the source by subnet or address from a member link, the destination to one', () => {
    const r = buildRuleset(example(), 'pro');
    assert.deepEqual(elementsOf(r, 'allow_addr_pairs_tcp'), ['"net-pro" . 10.100.2.10 . "net-perso" . 10.100.1.10 . 22']);
    assert.deepEqual(elementsOf(r, 'allow_addr_pairs_tcp_in'), ['10.100.2.10 . "net-perso" . 10.100.1.10 . 22']);
    assert.deepEqual(elementsOf(r, 'allow_addr_pairs_tcp_out'), ['"net-pro" . 10.100.2.10 . 10.100.1.10 . 22']);
    assert.deepEqual(elementsOf(r, 'allow_bridges_in'), ['10.100.2.0/24 . "net-ai-tools"', '10.100.10.0/24 . "net-pro"']);
    assert.deepEqual(elementsOf(r, 'allow_bridges_out'), ['"net-pro" . 10.100.10.0/24', '"net-ai-tools" . 10.100.2.0/24']);
  });

  it('passes nft -c for every holder, and in open mode', kernel, async () => {
    const open = model(readFileSync('examples/cluster.yml', 'utf8').replace(/^  ai_access_(policy|default): .*\n/gm, ''));
    for (const [infra, holder] of [[example(), 'pro'], [example(), 'perso'], [example(), null], [open, null]] as const) {
      const r = await load(renderRuleset(infra, holder));
      assert.ok(r.ok, r.out);
    }
  });

  it('fills every policy set and every twin with one policy of each kind, and the kernel takes them', kernel, async () => {
    const kinds = [
      '{ from: a, to: b }', '{ from: a, to: b, ports: [80] }', '{ from: a, to: b1 }', '{ from: a, to: b1, ports: [81] }',
      '{ from: a1, to: b }', '{ from: a1, to: b, ports: [82] }', '{ from: a1, to: b1 }', '{ from: a1, to: b1, ports: [83] }',
      '{ from: a1, to: b1, ports: [84], protocol: udp }', '{ from: outside, to: b }', '{ from: outside, to: b, ports: [85] }',
      '{ from: outside, to: b1 }', '{ from: outside, to: b1, ports: [86] }',
    ];
    const infra = model(`project_name: k\nglobal:\n  base_subnet: "10.3"\n${CLUSTER_CLAUSE}domains:\n  a: { subnet_id: 1, member: m1, machines: { a1: { ip: "10.3.1.10" } } }\n  b: { subnet_id: 2, member: m2, machines: { b1: { ip: "10.3.2.10" } } }\nnetwork_policies:\n${kinds.map((k) => `  - ${k}`).join('\n')}\n`);
    const r = buildRuleset(infra, null);
    const empty = r.sets.filter((set) => set.groups.length === 0).map((set) => set.name);
    assert.deepEqual(empty, [], 'every set has an element');
    const loaded = await load(renderRuleset(infra, null));
    assert.ok(loaded.ok, loaded.out);
  });

  it('without global.cluster there is none of it', () => {
    const single = model(readFileSync('examples/infra.yml', 'utf8'));
    const r = buildRuleset(single, 'pro');
    assert.equal(r.cluster, false);
    assert.deepEqual(r.sets.filter((s) => s.interval || /member|subnet|_in$|_out$/.test(s.name)).map((s) => s.name), []);
    assert.ok(!/member_links|flags interval/.test(renderRuleset(single, 'pro')));
  });

  it('has the same number of rules for 3 domains and for 250, every kind of policy included, and the kernel takes the 250', asRoot, async () => {
    const sized = (n: number): Infra => {
      const domains = Array.from({ length: n }, (_, i) => `  d${i}: { subnet_id: ${i}, member: m${1 + (i % 2)}, machines: { x${i}: { ip: "10.2.${i}.10" }, y${i}: { ip: "10.2.${i}.11", member: m${2 - (i % 2)} } } }`).join('\n');
      const policies = Array.from({ length: n }, (_, i) => {
        const j = (i + 1) % n;
        return [
          `  - { from: d${i}, to: d${j}, ports: [80, 443] }`,
          `  - { from: x${i}, to: d${j} }`,
          `  - { from: d${i}, to: x${j}, bidirectional: true }`,
          `  - { from: y${i}, to: y${j}, ports: [53], protocol: udp }`,
          `  - { from: outside, to: d${i}, ports: [443] }`,
          `  - { from: outside, to: x${i} }`,
        ].join('\n');
      }).join('\n');
      return model(`project_name: s\nglobal:\n  base_subnet: "10.2"\n${CLUSTER_CLAUSE}domains:\n${domains}\nnetwork_policies:\n${policies}\n`);
    };
    const small = renderRuleset(sized(3), null);
    const large = renderRuleset(sized(250), null);
    assert.equal(countForwardRules(small), countForwardRules(large));
    const loaded = await loadAsRoot(large);
    assert.ok(loaded.ok, loaded.out.slice(0, 2000));
    assert.equal(countForwardRules(loaded.out), countForwardRules(large), 'the kernel holds exactly these rules');
  });

  it('a switch moves the holder\'s bridge, its subnet and the twins of the AI policy in one batch', () => {
    const batch = switchBatch(example(), 'pro', 'perso');
    for (const set of ['ai_holder', 'ai_holder_subnet', 'allow_bridges', 'allow_bridges_in', 'allow_bridges_out']) {
      assert.match(batch, new RegExp(`delete element inet anklume ${set} \\{`), set);
      assert.match(batch, new RegExp(`add element inet anklume ${set} \\{`), set);
    }
    assert.match(batch, /add element inet anklume ai_holder_subnet \{\n\t10\.100\.1\.0\/24,/);
  });

  it('the safe state empties every holder set the ruleset has: the bridge and the subnet on a cluster, the bridge on one host', kernel, async () => {
    const cluster = example();
    const onCluster = await load(renderRuleset(cluster, 'pro') + revokeAllBatch(cluster));
    assert.ok(onCluster.ok, onCluster.out);
    assert.match(onCluster.out, /set ai_holder \{\n\t\ttype ifname\n\t\}/, 'ai_holder is empty');
    assert.match(onCluster.out, /set ai_holder_subnet \{\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\}/, 'ai_holder_subnet is empty');
    // One host has no ai_holder_subnet: a batch that named it would fail whole, and empty nothing.
    const single = model(readFileSync('examples/infra.yml', 'utf8'));
    const onHost = await load(renderRuleset(single, 'pro') + revokeAllBatch(single));
    assert.ok(onHost.ok, onHost.out);
    assert.match(onHost.out, /set ai_holder \{\n\t\ttype ifname\n\t\}/, 'ai_holder is empty');
  });
});
