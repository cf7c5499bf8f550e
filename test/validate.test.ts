/**
 * Validation (spec §4): one failing fixture per row of the table, each asserting the key phrase and
 * the file:line:column of the offending node, and nothing else (a fixture lists every diagnostic it
 * expects, so a spurious extra error or warning fails the test too).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Diagnostic } from '../generator/core/types.js';
import { analyseFixture, expectationsIn, fixturesIn, listing, NO_CONTEXT, positionOf, run, VALID, withContextDir, type Expectation } from './helpers/infraText.js';

const INVALID = fileURLToPath(new URL('./fixtures/invalid/', import.meta.url));

function matches(d: Diagnostic, e: Expectation): boolean {
  return d.message.includes(e.phrase) && d.file === e.file && d.line === e.line && d.column === e.column;
}

/** Pairs every expectation with a distinct diagnostic; reports what is missing and what is extra. */
function compare(kind: string, actual: Diagnostic[], expected: Expectation[]): void {
  const left = [...actual];
  const missing: Expectation[] = [];
  for (const e of expected) {
    const i = left.findIndex((d) => matches(d, e));
    if (i < 0) missing.push(e);
    else left.splice(i, 1);
  }
  if (missing.length || left.length) {
    assert.fail(
      `${kind}s differ.\nexpected but not found:\n${missing.map((e) => `  ${e.file}:${e.line}:${e.column} ${e.phrase}`).join('\n') || '  (none)'}\n` +
        `unexpected:\n${left.map((d) => `  ${listing([d])}`).join('\n') || '  (none)'}\nall ${kind}s:\n${listing(actual)}`,
    );
  }
}

const fixtures = await fixturesIn(INVALID);

for (const path of fixtures) {
  const name = path.slice(INVALID.length);
  test(`invalid fixture ${name}`, async () => {
    const { analysis, expected } = await analyseFixture(path);
    assert.ok(expected.length > 0, `${name} carries no expectation`);
    const errors = expected.filter((e) => e.kind === 'error');
    const warnings = expected.filter((e) => e.kind === 'warning');
    compare('error', analysis.errors, errors);
    compare('warning', analysis.warnings, warnings);
    if (errors.length) assert.equal(analysis.infra, undefined, 'an invalid document yields no model');
    for (const d of [...analysis.errors, ...analysis.warnings]) {
      assert.ok(!/\n\s+at /.test(d.message), `no stack trace in a message: ${d.message}`);
    }
  });
}

/**
 * Every key phrase of the §4 table, as a pattern over the fixtures' expectations: a row without a
 * fixture fails here, so the table and the tests cannot drift apart silently.
 */
const TABLE: [string, RegExp][] = [
  ['project_name, global or domains missing', /^Missing required key: /],
  ['ai_access_policy invalid', /^global\.ai_access_policy must be 'exclusive' or 'open', got '/],
  ['exclusive without ai_access_default', /^global\.ai_access_default is required when ai_access_policy is 'exclusive'/],
  ['ai_access_default is ai-tools', /^global\.ai_access_default cannot be 'ai-tools' \(must be a client domain\)/],
  ['ai_access_default unknown', /^global\.ai_access_default '.+' is not a known domain/],
  ['exclusive without ai-tools', /^ai_access_policy is 'exclusive' but no 'ai-tools' domain exists/],
  ['more than one policy targets ai-tools', /^ai_access_policy is 'exclusive' but \d+ network_policies target ai-tools \(max 1 allowed\)/],
  ['policy from ai-tools', /^network_policies\[\d+\]: goes from ai-tools/],
  ['policy from outside to ai-tools (issue 8)', /^network_policies\[\d+\]: goes from outside to ai-tools/],
  ['to: outside (issue 8)', /^network_policies\[\d+\]: 'to: outside' is not needed/],
  ['from: outside to host (issue 8)', /^network_policies\[\d+\]: 'from: outside' to 'host' is the host's own input/],
  ['reserved endpoint name (issue 8)', /^(Domain|Machine) '(outside|host)': invalid name \('(outside|host)' is reserved/],
  ['gpu_policy invalid', /^global\.gpu_policy must be 'exclusive' or 'shared', got '/],
  ['firewall_mode invalid', /^global\.firewall_mode must be 'host' or 'vm', got '/],
  ['bad domain name', /^Domain '.+': invalid name \(lowercase alphanumeric \+ hyphen\)/],
  ['domain name too long', /^Domain '.+': name too long/],
  ['subnet_id missing', /^Domain '.+': missing subnet_id/],
  ['subnet_id out of range', /^Domain '.+': subnet_id must be 0-254, got /],
  ['subnet_id reused', /^Domain '.+': subnet_id \d+ already used by '.+'/],
  ['domain ephemeral', /^Domain '.+': ephemeral must be a boolean/],
  ['machine ephemeral', /^Machine '.+': ephemeral must be a boolean/],
  ['machine duplicate', /^Machine '.+': duplicate \(already in '.+'\)/],
  ['bad machine name', /^Machine '.+': invalid name/],
  ['machine type', /^Machine '.+': type must be 'lxc' or 'vm', got '/],
  ['IP reused', /^Machine '.+': IP \S+ already used by '.+'/],
  ['IP outside subnet', /^Machine '.+': IP \S+ not in subnet \d+\.\d+\.\d+\.0\/24/],
  ['IP invalid', /^Machine '.+': invalid IP /],
  ['profile undefined', /^Machine '.+': profile '.+' not defined in domain '.+'/],
  ['privileged LXC', /^Machine '.+': security\.privileged=true on LXC is forbidden when vm_nested=false/],
  ['privileged LXC under yolo', /^YOLO: /],
  ['GPU exclusive', /^GPU policy is 'exclusive' but \d+ instances have GPU access: /],
  ['GPU shared', /^GPU policy is 'shared'/],
  ['policy not a mapping', /^network_policies\[\d+\]: must be a mapping/],
  ['policy from/to missing', /^network_policies\[\d+\]: missing '(from|to)'/],
  ['policy reference unknown', /^network_policies\[\d+\]: '(from|to): .+' is not a known domain, machine, or 'host'/],
  ['bad port', /^network_policies\[\d+\]: invalid port .+ \(must be 1-65535\)/],
  ['ports not a list', /^network_policies\[\d+\]: ports must be a list or 'all'/],
  ['bad protocol', /^network_policies\[\d+\]: protocol must be 'tcp' or 'udp', got '/],
  ['NIC on another domain\'s bridge (issue 15)', /^(Machine '[^']+'|Domain '[^']+': profile '[^']+'): device '[^']+' puts .+ on 'net-[^']+' \((network|parent)\), the bridge of domain '/],
  ['NIC on a bridge of no domain (issue 15)', /: device '[^']+' puts .+ on 'net-[^']+' \((network|parent)\), which is the bridge of no domain/],
  ['NIC on a network that is no domain bridge (issue 15)', /: device '[^']+' puts .+ on '[^']+' \((network|parent)\), which is not a domain bridge/],
  ['NIC type that skips the bridge (issue 15)', /: device '[^']+' is a NIC of type '(macvlan|ipvlan|physical|sriov|routed|p2p|ovn)', which does not go through the domain's bridge/],
  ['infiniband (issue 15)', /: device '[^']+' is an InfiniBand interface/],
  ['NIC without network or parent (issue 15)', /: device '[^']+' is a NIC without 'network' or 'parent'/],
  ['proxy device in ai-tools, exclusive (issue 15)', /: device '[^']+' is a proxy device in ai-tools under ai_access_policy 'exclusive'/],
  ['proxy bind: instance into another domain (issue 15)', /: device '[^']+' is a proxy with bind: instance that makes the host connect to .+, in domain '/],
  ['proxy address (issue 15)', /: device '[^']+': (listen|connect) .+ is not an Incus proxy address/],
  ['privileged or raw.* in ai-tools, exclusive (issue 15)', /: (security\.privileged=true|raw\.\w+ hands settings).*refused on ai-tools under ai_access_policy 'exclusive'/],
  ['privileged or raw.* elsewhere, a warning (issue 15)', /: (security\.privileged=true|raw\.\w+ hands settings).*keep it for machines you trust/],
  ['proxy relaying another domain from inside the machine (issue 15)', /: device '[^']+' is a proxy that connects, from inside .*, to .* in domain '/],
  ["Incus's socket or state given to a machine (issue 15)", /: device '[^']+' gives .* \((connect|source)\), Incus's own socket or state/],
  ['host hardware passed through (issue 15)', /: device '[^']+' passes host hardware through \(type: (pci|usb)\)/],
  ['NIC on its own bridge with the source filter turned off, a warning', /: device '[^']+' sets security\.ipv4_filtering to .+: (the machine|the profile's machines) can then send from any address of net-/],
  ['NIC parent without nictype, or network with nictype (issue 15)', /: device '[^']+' is a NIC with (both 'network' and 'nictype'|'parent' but no 'nictype')/],
  ['shared folder between domains (issue 15)', /: device '[^']+' mounts .+ and machine '[^']+' of domain '[^']+' mounts .+: a shared folder is a channel between the two domains/],
  ['device shape (issue 15)', /: (devices must be a mapping|device '[^']+' must be a mapping|device '[^']+' has no type|device '[^']+': unknown device type)/],
  ['member without global.cluster (issue 19)', /^(Machine|Domain) '.+': member: '.+' needs global\.cluster/],
  ['member not in the cluster (issue 19)', /^(Machine|Domain) '.+': member '.+' is not in global\.cluster\.members/],
  ['machine without member in a cluster (issue 19)', /^Machine '.+': no member/],
  ['machine without ip in a cluster (issue 19)', /^Machine '.+': no ip/],
  ['two members with one address (issue 19)', /^Member '.+': address \S+ already used by '.+'/],
  ["member address in a domain's subnet or the address plan (issue 19)", /^Member '.+': address \S+ is inside (domain '.+''s subnet|anklume's address plan)/],
  ['member link named like a domain bridge, or that is not a link between members (issue 19)', /member_link '.+' (has the name of a domain bridge|is (Incus's default bridge|the loopback interface))/],
  ['member named like a domain, a machine or Ansible (issue 19)', /^Member '.+': (has the name of a (domain|machine)|invalid name)/],
  ['unknown key', /^unknown key '.+'/],
  ['did you mean', /did you mean '.+'\?/],
  ['YAML syntax error', /^YAML syntax error/],
  ['duplicate key', /^duplicate key /],
  ['empty file', /file is empty/],
  ['non-mapping root', /top level must be a mapping/],
];

test('every row of the §4 table has a fixture', async () => {
  // The fixtures' own expectations, read here: the fixture tests check that they hold.
  const phrasesCovered = (await Promise.all(fixtures.map(async (path) => (await analyseFixture(path)).expected))).flat().map((e) => e.phrase);
  const missing = TABLE.filter(([, pattern]) => !phrasesCovered.some((p) => pattern.test(p))).map(([row]) => row);
  assert.deepEqual(missing, []);
});

test('a fixture expectation parser sanity check (caret under the node)', () => {
  const text = 'a:\n  b: 300\n#    ^ here\n#    ^ warning: also\n# @1:1 top\n';
  assert.deepEqual(expectationsIn('f.yml', text).expected, [
    { kind: 'error', phrase: 'here', file: 'f.yml', line: 2, column: 6 },
    { kind: 'warning', phrase: 'also', file: 'f.yml', line: 2, column: 6 },
    { kind: 'error', phrase: 'top', file: 'f.yml', line: 1, column: 1 },
  ]);
});

test('the valid base document used by the tests is valid', () => {
  const result = run(VALID);
  assert.deepEqual(result.errors, []);
  assert.deepEqual(result.warnings, []);
  assert.ok(result.infra);
});

test('all errors are reported in one run, sorted by position', async () => {
  const { analysis } = await analyseFixture(join(INVALID, 'many-problems.yml'));
  assert.ok(analysis.errors.length >= 10, listing(analysis.errors));
  const lines = analysis.errors.map((e) => e.line ?? 0);
  assert.deepEqual(lines, [...lines].sort((a, b) => a - b));
  for (const e of analysis.errors) assert.ok(e.path?.startsWith('/'), `path is a pointer: ${e.path}`);
});

test('messages say what would be right, not only what is wrong', () => {
  const cases: [string, string, RegExp][] = [
    ['    subnet_id: 1\n', '    subnet_id: "3"\n', /integer|number|quotes/],
    ['        ip: "10.100.1.10"\n', '        ip: 10.100.1.999\n', /0-255|four numbers/],
    ['  ai-tools:\n', '  verylongdomain:\n', /bridge|15/],
  ];
  for (const [from, to, hint] of cases) {
    const result = run(VALID.replace(from, to));
    assert.ok(result.errors.some((e) => hint.test(e.message)), `${to.trim()}: ${listing(result.errors)}`);
  }
});

test('ai_access_policy open: no AI-access rules apply', () => {
  const text = VALID.replace('ai_access_policy: exclusive', 'ai_access_policy: open') +
    'network_policies:\n  - { from: pro, to: ai-tools }\n  - { from: perso, to: gpu-server }\n  - { from: ai-tools, to: perso }\n';
  const result = run(text);
  assert.deepEqual(result.errors, [], listing(result.errors));
});

test('a policy from ai-tools to ai-tools itself, or to host, is not a bypass', () => {
  const text = VALID + 'network_policies:\n  - { from: pro, to: ai-tools }\n  - { from: gpu-server, to: ai-tools }\n  - { from: ai-tools, to: host }\n';
  const result = run(text);
  assert.deepEqual(result.errors.filter((e) => /goes from ai-tools/.test(e.message)), [], listing(result.errors));
});

test('the privileged error needs vm_nested=false: unknown (absent) or true means a warning (issue 15: root in it is root on the host)', async () => {
  const text = VALID.replace('      pro-dev:\n', '      pro-dev:\n        config: { security.privileged: "true" }\n');
  const contexts: Record<string, string>[] = [{}, { vm_nested: 'true' }];
  for (const files of contexts) {
    await withContextDir(files, (ctx) => {
      const result = run(text, ctx);
      assert.deepEqual(result.errors, [], `${JSON.stringify(files)}: ${listing(result.errors)}`);
      assert.equal(result.warnings.length, 1, listing(result.warnings));
      assert.match(result.warnings[0].message, /^Machine 'pro-dev': security\.privileged=true: root in the container is root on the host/);
    });
  }
  await withContextDir({ vm_nested: 'false' }, (ctx) => {
    const result = run(text, ctx);
    assert.equal(result.errors.length, 1, listing(result.errors));
    assert.deepEqual({ line: result.errors[0].line, column: result.errors[0].column }, positionOf(text, 'security.privileged: "true"', '"true"'));
  });
});

test('a boolean security.privileged: true counts as privileged too', async () => {
  const text = VALID.replace('      pro-dev:\n', '      pro-dev:\n        config: { security.privileged: true }\n');
  await withContextDir({ vm_nested: 'false' }, (ctx) => {
    assert.equal(run(text, ctx).errors.length, 1);
  });
});

test('warnings are exactly the kinds of the table (and issue 15: host-root settings, shared folders)', async () => {
  // Everything that could plausibly warn, minus what the table makes a warning: nothing.
  const quiet = run(VALID.replace('gpu: true', 'gpu: false') + 'network_policies: []\n', NO_CONTEXT);
  assert.deepEqual(quiet.warnings, []);
  const text = VALID.replace('  ai_access_default: pro\n', '  ai_access_default: pro\n  gpu_policy: shared\n').replace(
    '      pro-dev:\n',
    '      pro-dev:\n        gpu: true\n        config: { security.privileged: "true" }\n',
  );
  await withContextDir({ vm_nested: 'false', yolo: 'true' }, (ctx) => {
    const result = run(text, ctx);
    assert.deepEqual(result.errors, [], listing(result.errors));
    assert.equal(result.warnings.length, 2, listing(result.warnings));
    assert.ok(result.warnings.some((w) => w.message.startsWith('YOLO: ')));
    assert.ok(result.warnings.some((w) => /shared/.test(w.message) && /VRAM/.test(w.message)));
  });
});

test('the examples are valid', async () => {
  const examples = fileURLToPath(new URL('../examples/', import.meta.url));
  for (const path of await fixturesIn(examples)) {
    const { analysis } = await analyseFixture(path);
    assert.deepEqual(analysis.errors, [], `${path}:\n${listing(analysis.errors)}`);
    assert.ok(analysis.infra, path);
  }
});

test('the valid fixtures are valid', async () => {
  const valid = fileURLToPath(new URL('./fixtures/valid/', import.meta.url));
  for (const path of await fixturesIn(valid)) {
    const { analysis } = await analyseFixture(path);
    assert.deepEqual(analysis.errors, [], `${path}:\n${listing(analysis.errors)}`);
    assert.ok(analysis.infra, path);
    const text = path.endsWith('.yml') ? await readFile(path, 'utf8') : '';
    assert.ok(!text.includes('^ '), 'a valid fixture carries no expectation');
  }
});
