/**
 * The nftables ruleset: pure unit tests (data, golden text, switch diff, live-state parsing) and
 * kernel checks in throwaway user+network namespaces (`unshare -rn`), never in this machine's own.
 * UPDATE_GOLDEN=1 rewrites test/fixtures/nftables/anklume.nft on purpose.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { analyse } from '../generator/infra/infra.ts';
import { maybeUpdateGolden } from './helpers/golden.ts';
import { enrich } from '../generator/infra/enrich.ts';
import {
  buildRuleset,
  countForwardRules,
  diffRulesets,
  holdersFromSetJson,
  liveHolderMatches,
  renderRuleset,
  RULESET_FILE,
  rulesetForSync,
  switchBatch,
  type Ruleset,
  type SetName,
} from '../generator/nftables/nftables.ts';
import type { Infra } from '../generator/core/types.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURE = join(ROOT, 'test/fixtures/nftables/infra.yml');
const GOLDEN = join(ROOT, 'test/fixtures/nftables/anklume.nft');

function model(text: string, holder?: string | null): Infra {
  const a = analyse([{ file: 'infra.yml', text, role: 'single' }], { yolo: false });
  assert.ok(a.infra, JSON.stringify(a.errors));
  return enrich(a.infra, holder).infra;
}

async function fixture(): Promise<Infra> {
  return model(await readFile(FIXTURE, 'utf8'));
}

function elements(r: Ruleset, name: SetName): string[] {
  return r.sets.find((s) => s.name === name)?.groups.flatMap((g) => g.elements) ?? [];
}

const SMALL = (policies: string, extraGlobal = '') => `
project_name: t
global:
  base_subnet: "10.1"
${extraGlobal}
domains:
  a: { subnet_id: 1, machines: { a1: { ip: "10.1.1.10" }, a2: {} } }
  b: { subnet_id: 2, machines: { b1: { ip: "10.1.2.10" } } }
network_policies:
${policies}
`;

/** Runs nft in a fresh user+network namespace (no privilege needed, nothing shared). */
async function scratch(files: string[], list: boolean): Promise<{ ok: boolean; out: string }> {
  const script = `for f; do nft -f "$f" || exit 1; done${list ? '; nft -s list table inet anklume' : ''}`;
  const r = await execa('unshare', ['-rn', 'sh', '-c', script, 'sh', ...files], { reject: false });
  return { ok: r.exitCode === 0, out: r.exitCode === 0 ? String(r.stdout) : String(r.stderr) };
}

async function withFiles<T>(texts: string[], fn: (files: string[]) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'anklume-nft-'));
  try {
    const files = texts.map((_, i) => join(dir, `${i}.nft`));
    await Promise.all(texts.map((t, i) => writeFile(files[i], t)));
    return await fn(files);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const check = (text: string) => withFiles([text], async (f) => (await execa('unshare', ['-rn', 'nft', '-c', '-f', f[0]], { reject: false })));
const listing = (...texts: string[]) => withFiles(texts, (f) => scratch(f, true));

const unshareWorks = (await execa('unshare', ['-rn', 'nft', '-c', '-f', '/dev/null'], { reject: false }).catch(() => ({ exitCode: 1 }))).exitCode === 0;
const kernel = { skip: unshareWorks ? false : 'unshare -rn nft is not available here' };

describe('ruleset data', () => {
  it('ports all: every protocol between the two bridges; a port list: that protocol and ports', () => {
    const r = buildRuleset(model(SMALL(`  - { from: a, to: b }\n  - { from: b, to: a, ports: [53, 5353], protocol: udp }`)), null);
    assert.deepEqual(elements(r, 'allow_bridges'), ['"net-a" . "net-b"']);
    assert.deepEqual(elements(r, 'allow_bridge_ports'), ['"net-b" . "net-a" . udp . 53', '"net-b" . "net-a" . udp . 5353']);
  });

  it('bidirectional adds the reverse elements', () => {
    const r = buildRuleset(model(SMALL(`  - { from: a, to: b, ports: [80], bidirectional: true }`)), null);
    assert.deepEqual(elements(r, 'allow_bridge_ports'), ['"net-a" . "net-b" . tcp . 80', '"net-b" . "net-a" . tcp . 80']);
  });

  it('a machine reference opens that machine address only', () => {
    const r = buildRuleset(model(SMALL(`  - { from: a, to: b1 }\n  - { from: a1, to: b, ports: [22] }\n  - { from: a1, to: b1, ports: [443], bidirectional: true }\n  - { from: b1, to: a1, ports: [53], protocol: udp }`)), null);
    assert.deepEqual(elements(r, 'allow_bridges'), []);
    assert.deepEqual(elements(r, 'allow_to_addr'), ['"net-a" . "net-b" . 10.1.2.10']);
    assert.deepEqual(elements(r, 'allow_from_addr_ports'), ['"net-a" . 10.1.1.10 . "net-b" . tcp . 22']);
    assert.deepEqual(elements(r, 'allow_addr_pairs_tcp'), ['"net-a" . 10.1.1.10 . "net-b" . 10.1.2.10 . 443', '"net-b" . 10.1.2.10 . "net-a" . 10.1.1.10 . 443']);
    assert.deepEqual(elements(r, 'allow_addr_pairs_udp'), ['"net-b" . 10.1.2.10 . "net-a" . 10.1.1.10 . 53']);
  });

  it('host policies and machines without an address make no element, and say so', () => {
    const infra = model(SMALL(`  - { from: host, to: a }\n  - { from: b, to: host, ports: [22] }`));
    // Validation refuses a policy naming a machine without an ip; the generator stays safe anyway.
    infra.network_policies = [...(infra.network_policies ?? []), { from: 'b', to: 'a2', ports: 'all', protocol: 'tcp', bidirectional: false }];
    const r = buildRuleset(infra, null);
    assert.ok(r.sets.every((s) => s.name === 'intra' || s.name === 'domain_bridges' || s.groups.length === 0));
    assert.match(r.notes[0].outcome, /host policy: not a forward rule/);
    assert.match(r.notes[1].outcome, /host policy/);
    assert.match(r.notes[2].outcome, /machine 'a2' has no ip/);
  });

  it('every domain bridge is in domain_bridges: any other interface is outside', () => {
    assert.deepEqual(elements(buildRuleset(model(SMALL('  []')), null), 'domain_bridges'), ['"net-a"', '"net-b"']);
  });

  it('policies from outside: only the destination is a key; the way back is outbound, so bidirectional adds nothing', () => {
    const r = buildRuleset(model(SMALL([
      '  - { from: outside, to: a }',
      '  - { from: outside, to: b, ports: [443, 8443], bidirectional: true }',
      '  - { from: outside, to: b1 }',
      '  - { from: outside, to: a1, ports: [53], protocol: udp }',
    ].join('\n'))), null);
    assert.deepEqual(elements(r, 'allow_outside'), ['"net-a"']);
    assert.deepEqual(elements(r, 'allow_outside_ports'), ['"net-b" . tcp . 443', '"net-b" . tcp . 8443']);
    assert.deepEqual(elements(r, 'allow_outside_to_addr'), ['"net-b" . 10.1.2.10']);
    assert.deepEqual(elements(r, 'allow_outside_to_addr_ports'), ['"net-a" . 10.1.1.10 . udp . 53']);
    for (const name of ['allow_bridges', 'allow_bridge_ports', 'allow_from_addr', 'allow_to_addr'] as SetName[]) assert.deepEqual(elements(r, name), [], name);
    assert.equal(r.notes[1].outcome, 'allow_outside_ports (the way back is outbound, always open)');
  });

  it('a switch leaves the outside policies alone', async () => {
    const infra = await fixture();
    const changed = diffRulesets(buildRuleset(infra, 'pro'), buildRuleset(infra, 'perso')).map((c) => c.set);
    assert.ok(changed.every((set) => !set.startsWith('allow_outside') && set !== 'domain_bridges'), changed.join(', '));
  });

  it('duplicate elements are kept once (first policy wins)', () => {
    const r = buildRuleset(model(SMALL(`  - { from: a, to: b }\n  - { from: b, to: a, bidirectional: true }`)), null);
    assert.deepEqual(elements(r, 'allow_bridges'), ['"net-a" . "net-b"', '"net-b" . "net-a"']);
  });

  it('open mode: no ai_holder set, no guard, the holder is ignored', async () => {
    const infra = await fixture();
    const open = { ...infra, global: { ...infra.global, ai_access_policy: 'open' as const } };
    const r = buildRuleset(open, 'perso');
    assert.equal(r.exclusive, false);
    assert.ok(!r.sets.some((s) => s.name === 'ai_holder'));
    assert.ok(elements(r, 'allow_bridge_ports').includes('"net-pro" . "net-ai-tools" . tcp . 11434'));
    assert.doesNotMatch(renderRuleset(open, null), /@ai_holder/);
  });

  it('exclusive mode: the holder replaces the AI policy source; null means nobody', async () => {
    const infra = await fixture();
    const perso = buildRuleset(infra, 'perso');
    assert.deepEqual(elements(perso, 'ai_holder'), ['"net-perso"']);
    assert.ok(elements(perso, 'allow_bridge_ports').includes('"net-perso" . "net-ai-tools" . tcp . 11434'));
    assert.ok(!elements(perso, 'allow_bridge_ports').some((e) => e.startsWith('"net-pro" . "net-ai-tools"')));
    const nobody = buildRuleset(infra, null);
    assert.deepEqual(elements(nobody, 'ai_holder'), []);
    assert.ok(!elements(nobody, 'allow_bridge_ports').some((e) => e.includes('ai-tools')));
    assert.throws(() => buildRuleset(infra, 'nowhere'), /not a domain/);
    assert.throws(() => buildRuleset(infra, 'ai-tools'), /cannot be 'ai-tools'/);
  });

  it('the auto-created AI policy (ports all, both ways) follows the holder', () => {
    const infra = model(SMALL('  []', '  ai_access_policy: exclusive\n  ai_access_default: a').replace('domains:\n', 'domains:\n  ai-tools: { subnet_id: 9 }\n'));
    assert.deepEqual(elements(buildRuleset(infra, 'b'), 'allow_bridges'), ['"net-b" . "net-ai-tools"', '"net-ai-tools" . "net-b"']);
  });
});

describe('rendered ruleset', () => {
  it('matches the golden file', async () => {
    const text = renderRuleset(await fixture(), 'pro');
    maybeUpdateGolden(GOLDEN, text);
    assert.equal(text, await readFile(GOLDEN, 'utf8'));
  });

  it('replaces one table atomically, forward hook priority -1, policy accept, never flushes', async () => {
    const text = renderRuleset(await fixture(), 'pro');
    const statements = text.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
    assert.deepEqual(statements.slice(0, 3), ['table inet anklume', 'delete table inet anklume', 'table inet anklume {']);
    assert.match(text, /chain forward \{\n\t\ttype filter hook forward priority -1; policy accept;/);
    assert.ok(!statements.some((l) => /flush|^\s*table (?!inet anklume)/.test(l)));
  });

  it('rulesetForSync names the file sync writes', async () => {
    const infra = await fixture();
    assert.deepEqual(rulesetForSync(infra, 'pro'), { path: RULESET_FILE, text: renderRuleset(infra, 'pro') });
    assert.equal(RULESET_FILE, 'nftables/anklume.nft');
  });

  it('passes nft -c', kernel, async () => {
    const infra = await fixture();
    for (const holder of ['pro', 'perso', null]) {
      const r = await check(renderRuleset(infra, holder));
      assert.equal(r.exitCode, 0, String(r.stderr));
    }
  });

  it('the chain has the same number of rules for 3 domains and for 250, with policies from outside', kernel, async () => {
    const sized = (n: number): Infra => {
      const domains = Array.from({ length: n }, (_, i) => `  d${i}: { subnet_id: ${i}, machines: { m${i}: { ip: "10.2.${i}.10" } } }`).join('\n');
      const policies = Array.from({ length: n }, (_, i) => {
        const j = (i + 1) % n;
        return [
          `  - { from: d${i}, to: d${j}, ports: [80, 443] }`,
          `  - { from: m${i}, to: d${j} }`,
          `  - { from: d${i}, to: m${j}, bidirectional: true }`,
          `  - { from: outside, to: d${i}, ports: [443] }`,
          `  - { from: outside, to: m${i} }`,
        ].join('\n');
      }).join('\n');
      return model(`project_name: s\nglobal: { base_subnet: "10.2" }\ndomains:\n${domains}\nnetwork_policies:\n${policies}\n`);
    };
    const small = renderRuleset(sized(3), null);
    const large = renderRuleset(sized(250), null);
    const counts = { small: countForwardRules(small), large: countForwardRules(large) };
    console.log(`# forward chain rules: 3 domains = ${counts.small}, 250 domains = ${counts.large}`);
    assert.equal(counts.small, counts.large);
    assert.ok(large.split('\n').length > 10 * small.split('\n').length, 'the large ruleset does hold many more elements');
    const loaded = await listing(large);
    assert.ok(loaded.ok, loaded.out);
    assert.equal(countForwardRules(loaded.out), counts.large, 'the kernel holds exactly these rules');
  });
});

describe('comments cannot break out', () => {
  const NASTY = 'line one\n}\n; flush ruleset # {"quoted"} \'single\' `tick` $(x) \\ \r\n\ttable inet filter { chain x { } }';

  it('a hostile description becomes one harmless comment line', async () => {
    const text = renderRuleset(model(SMALL(`  - { from: a, to: b, ports: [80], description: ${JSON.stringify(NASTY)} }`)), null);
    const line = text.split('\n').find((l) => l.includes('line one'));
    assert.ok(line);
    assert.match(line, /^\t*# policy 0: line one flush ruleset/);
    assert.doesNotMatch(line.replace(/^\t*#/, ''), /["'{};#`$\\]/);
    for (const l of text.split('\n')) if (/flush|table inet filter/.test(l)) assert.match(l, /^\s*#/);
  });

  it('the ruleset still loads and means exactly the same', kernel, async () => {
    const hostile = renderRuleset(model(SMALL(`  - { from: a, to: b, ports: [80], description: ${JSON.stringify(NASTY)} }`)), null);
    const plain = renderRuleset(model(SMALL(`  - { from: a, to: b, ports: [80], description: plain }`)), null);
    const [h, p] = await Promise.all([listing(hostile), listing(plain)]);
    assert.ok(h.ok, h.out);
    assert.ok(p.ok, p.out);
    assert.equal(h.out, p.out);
    assert.match(h.out, /"net-a" \. "net-b" \. tcp \. 80/);
  });
});

describe('switching AI access', () => {
  it('is a diff of set elements: ai_holder and the elements that carry the holder', async () => {
    const infra = await fixture();
    const changes = diffRulesets(buildRuleset(infra, 'pro'), buildRuleset(infra, 'perso'));
    assert.deepEqual(changes, [
      { set: 'ai_holder', remove: ['"net-pro"'], add: ['"net-perso"'] },
      {
        set: 'allow_bridge_ports',
        remove: ['"net-pro" . "net-ai-tools" . tcp . 11434', '"net-ai-tools" . "net-pro" . tcp . 11434'],
        add: ['"net-perso" . "net-ai-tools" . tcp . 11434', '"net-ai-tools" . "net-perso" . tcp . 11434'],
      },
    ]);
    const batch = switchBatch(infra, 'pro', 'perso');
    assert.match(batch, /^delete element inet anklume ai_holder \{\n\t"net-pro",\n\}$/m);
    assert.match(batch, /^add element inet anklume allow_bridge_ports \{\n\t"net-perso" \. "net-ai-tools" \. tcp \. 11434,\n\t"net-ai-tools" \. "net-perso" \. tcp \. 11434,\n\}$/m);
    assert.ok(batch.indexOf('delete element') < batch.indexOf('add element'));
  });

  it('from and to nobody; nothing to do when the holder does not change', async () => {
    const infra = await fixture();
    assert.doesNotMatch(switchBatch(infra, 'pro', null), /add element/);
    assert.doesNotMatch(switchBatch(infra, null, 'perso'), /delete element/);
    assert.doesNotMatch(switchBatch(infra, 'pro', 'pro'), /element/);
    const open = { ...infra, global: { ...infra.global, ai_access_policy: 'open' as const } };
    assert.throws(() => switchBatch(open, 'pro', 'perso'), /not 'exclusive'/);
  });

  it('full(old) + switch batch = full(new), as the kernel lists it', kernel, async () => {
    const infra = await fixture();
    // A machine-level AI policy too: the elements that move are then address elements.
    const machineLevel: Infra = {
      ...infra,
      network_policies: (infra.network_policies ?? []).map((p) => (p.to === 'ai-tools' ? { ...p, to: 'gpu-server', bidirectional: true } : p)),
    };
    for (const m of [infra, machineLevel]) {
      for (const [from, to] of [['pro', 'perso'], ['pro', null], [null, 'guest']] as const) {
        const [switched, fresh] = await Promise.all([listing(renderRuleset(m, from), switchBatch(m, from, to)), listing(renderRuleset(m, to))]);
        assert.ok(switched.ok, switched.out);
        assert.equal(switched.out, fresh.out, `${from} -> ${to}`);
      }
    }
  });

  it('a batch that does not fit the live table is refused as a whole', kernel, async () => {
    const infra = await fixture();
    const r = await listing(renderRuleset(infra, 'guest'), switchBatch(infra, 'pro', 'perso'));
    assert.equal(r.ok, false);
  });
});

describe('live state', () => {
  const json = (elem?: string[]) =>
    JSON.stringify({
      nftables: [
        { metainfo: { version: '1.0.6', release_name: 'Lester Gooch #5', json_schema_version: 1 } },
        { set: { family: 'inet', name: 'ai_holder', table: 'anklume', type: 'ifname', handle: 2, ...(elem ? { elem } : {}) } },
      ],
    });

  it('reads the holder from nft -j list set inet anklume ai_holder', () => {
    assert.deepEqual(holdersFromSetJson(json(['net-pro'])), ['pro']);
    assert.deepEqual(holdersFromSetJson(json()), []);
    assert.equal(liveHolderMatches(json(['net-pro']), 'pro'), true);
    assert.equal(liveHolderMatches(json(['net-pro']), 'perso'), false);
    assert.equal(liveHolderMatches(json(['net-pro']), null), false);
    assert.equal(liveHolderMatches(json(), null), true);
    assert.equal(liveHolderMatches(json(['net-pro', 'net-perso']), 'pro'), false);
    assert.throws(() => holdersFromSetJson('{"foo":1}'), /not the JSON output of nft/);
    assert.throws(() => holdersFromSetJson('{"nftables":[]}'), /no set ai_holder/);
    assert.throws(() => holdersFromSetJson(json(['eth0'])), /unexpected/);
  });

  it('agrees with what the kernel prints for a loaded ruleset', kernel, async () => {
    const infra = await fixture();
    await withFiles([renderRuleset(infra, 'perso')], async ([f]) => {
      const r = await execa('unshare', ['-rn', 'sh', '-c', 'nft -f "$1" && nft -j list set inet anklume ai_holder', 'sh', f], { reject: false });
      assert.equal(r.exitCode, 0, String(r.stderr));
      assert.deepEqual(holdersFromSetJson(String(r.stdout)), ['perso']);
    });
  });
});
