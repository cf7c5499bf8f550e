/**
 * Property tests (spec §10): whatever the input, `analyse` returns a model without errors or a
 * non-empty list of errors, never throws, and every error from a file says where. And the two
 * readers (js-yaml for speed, `yaml` for positions) read valid documents identically.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { analyse } from '../generator/infra/infra.js';
import { needsPreciseReader, parseFast, parsePrecise, type Source } from '../generator/infra/load.js';
import type { Context } from '../generator/core/types.js';
import { single, VALID } from './helpers/infraText.js';

const CONTEXTS: Context[] = [
  { vmNested: undefined, yolo: false },
  { vmNested: false, yolo: false },
  { vmNested: false, yolo: true },
];

/** The invariant of the whole loader/validator. */
function checkAnalysis(sources: Source[], ctx: Context): void {
  const result = analyse(sources, ctx);
  if (result.errors.length === 0) {
    assert.ok(result.infra, 'no errors means a model');
  } else {
    assert.equal(result.infra, undefined, 'errors mean no model');
  }
  for (const d of [...result.errors, ...result.warnings]) {
    assert.equal(typeof d.message, 'string');
    assert.ok(d.message.length > 0, 'a message says something');
    assert.ok(!d.message.includes('undefined'), `no 'undefined' in: ${d.message}`);
    if (d.file !== undefined) {
      assert.ok(Number.isInteger(d.line) && (d.line ?? 0) >= 1, `a line: ${JSON.stringify(d)}`);
      assert.ok(Number.isInteger(d.column) && (d.column ?? 0) >= 1, `a column: ${JSON.stringify(d)}`);
    }
  }
}

// --- (a) random text and random values -----------------------------------------------------------

/** Pieces that mean something to YAML or to infra.yml, so random text hits the interesting paths. */
const YAMLISH = fc.constantFrom(
  ' ', '  ', '\n', '\t', ':', ': ', '- ', '#', '"', "'", '[', ']', '{', '}', ',', '&a ', '*a', '!!str ', '!x ', '? ', '|', '>',
  '---', '...', '~', 'null', 'true', 'yes', '0x1F', '1e3', '010', '-1', '254', '300', '10.100', '10.100.1.10', 'é', '💥', '\\', '%',
  'project_name', 'global', 'domains', 'network_policies', 'base_subnet', 'subnet_id', 'machines', 'ip', 'gpu', 'type', 'profiles',
  'ai_access_policy', 'ai_access_default', 'exclusive', 'open', 'ai-tools', 'pro', 'from', 'to', 'ports', 'all', 'protocol', 'config',
  'security.privileged', 'ephemeral', 'firewall_mode', 'vm', 'lxc', 'admin', 'sys-firewall', 'gpu_policy', 'shared', '__proto__',
);

const yamlishText = fc.array(YAMLISH, { maxLength: 60 }).map((parts) => parts.join(''));

test('(a) random YAML-ish text: a model or errors, never a throw', () => {
  fc.assert(
    fc.property(yamlishText, fc.constantFrom(...CONTEXTS), (text, ctx) => checkAnalysis(single(text), ctx)),
    { numRuns: 250 },
  );
});

test('(a) random values serialised to YAML: a model or errors, never a throw', () => {
  const value = fc.oneof(
    fc.jsonValue({ maxDepth: 4 }),
    fc.dictionary(fc.constantFrom('project_name', 'global', 'domains', 'network_policies', 'x'), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 }),
  );
  fc.assert(
    fc.property(value, fc.constantFrom(...CONTEXTS), (v, ctx) => checkAnalysis(single(stringify(v)), ctx)),
    { numRuns: 150 },
  );
});

test('(a) random text in an infra/ directory layout: never a throw', () => {
  fc.assert(
    fc.property(yamlishText, yamlishText, (domains, policies) => {
      const sources: Source[] = [
        { file: 'base.yml', role: 'base', text: 'project_name: t\nglobal:\n  base_subnet: "10.100"\ndomains:\n  pro: { subnet_id: 1 }\n' },
        { file: 'domains/x.yml', role: 'domains', text: domains },
        { file: 'policies.yml', role: 'policies', text: policies },
      ];
      checkAnalysis(sources, CONTEXTS[0]);
    }),
    { numRuns: 200 },
  );
});

// --- (b) mutations of valid documents ------------------------------------------------------------

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const LETTERS = [...'abcdefghijklmnopqrstuvwxyz'];
const INNER = [...'abcdefghijklmnopqrstuvwxyz0123456789-'];
const LAST = [...'abcdefghijklmnopqrstuvwxyz0123456789'];

/** DNS-safe names, built from characters (fc.stringMatching is correct but slow here). */
function dnsName(maxLength: number): fc.Arbitrary<string> {
  return fc
    .tuple(fc.constantFrom(...LETTERS), fc.array(fc.constantFrom(...INNER), { maxLength: maxLength - 2 }), fc.constantFrom(...LAST))
    .map(([first, inner, last]) => first + inner.join('') + last);
}

/** Valid infra documents with a few domains, machines and policies (names unique, IPs in subnet). */
const validInfra: fc.Arbitrary<{ [key: string]: Json }> = fc
  .record({
    domainNames: fc.uniqueArray(dnsName(11), { minLength: 1, maxLength: 4 }),
    exclusive: fc.boolean(),
    machines: fc.array(fc.uniqueArray(dnsName(20), { maxLength: 3 }), { minLength: 4, maxLength: 4 }),
    policies: fc.array(fc.record({ from: fc.nat(), to: fc.nat(), ports: fc.oneof(fc.constant('all'), fc.array(fc.integer({ min: 1, max: 65535 }), { minLength: 1, maxLength: 3 })) }), { maxLength: 3 }),
  })
  .map(({ domainNames, exclusive, machines, policies }) => {
    const names = domainNames.filter((d) => d !== 'ai-tools');
    const seen = new Set<string>(['gpu-server']);
    const domains: { [key: string]: Json } = {};
    names.forEach((name, i) => {
      const ms: { [key: string]: Json } = {};
      machines[i].filter((m) => !seen.has(m)).forEach((m, j) => {
        seen.add(m);
        ms[m] = { ip: `10.100.${i + 1}.${j + 1}`, type: j % 2 ? 'vm' : 'lxc' };
      });
      domains[name] = { subnet_id: i + 1, machines: ms };
    });
    const global: { [key: string]: Json } = { base_subnet: '10.100' };
    if (exclusive && names.length > 0) {
      domains['ai-tools'] = { subnet_id: 200, machines: { 'gpu-server': { ip: '10.100.200.1', gpu: true } } };
      global.ai_access_policy = 'exclusive';
      global.ai_access_default = names[0];
    }
    const network_policies: Json[] = names.length < 2 ? [] : policies
      .map((p) => ({ from: names[p.from % names.length], to: names[p.to % names.length], ports: p.ports }))
      .filter((p) => p.from !== p.to);
    return { project_name: 'p', global, domains, network_policies };
  });

test('(b) the generated documents are valid (so the mutations start from valid input)', () => {
  fc.assert(
    fc.property(validInfra, (doc) => {
      const result = analyse(single(stringify(doc)), CONTEXTS[0]);
      assert.deepEqual(result.errors, []);
    }),
    { numRuns: 100 },
  );
});

/** Structural mutations on the value, before serialisation. */
function mutateValue(doc: Json, path: number[], op: number, replacement: Json): Json {
  const copy = structuredClone(doc);
  let node: Json = copy;
  let parent: Json | undefined;
  let key: string | number | undefined;
  for (const step of path) {
    const children: (string | number)[] = Array.isArray(node) ? node.map((_, i) => i) : node && typeof node === 'object' ? Object.keys(node) : [];
    if (children.length === 0) break;
    parent = node;
    key = children[step % children.length];
    node = (node as Record<string | number, Json>)[key];
  }
  if (parent === undefined || key === undefined) return replacement;
  const container = parent as Record<string | number, Json>;
  switch (op % 4) {
    case 0: // delete the key
      if (Array.isArray(parent)) parent.splice(Number(key), 1);
      else delete container[key];
      break;
    case 1: // change its type
      container[key] = replacement;
      break;
    case 2: // rename it
      if (!Array.isArray(parent)) {
        container[`${String(key)}x`] = container[key];
        delete container[key];
      }
      break;
    default: // duplicate it (a list item, or the value under a sibling key)
      if (Array.isArray(parent)) parent.push(structuredClone(node));
      else container[`${String(key)}-2`] = structuredClone(node);
  }
  return copy;
}

/** Textual mutations: what a hurried edit does to a file. */
function mutateText(text: string, line: number, op: number, garbage: string): string {
  const lines = text.split('\n');
  const i = line % lines.length;
  switch (op % 5) {
    case 0:
      lines.splice(i, 1);
      break;
    case 1:
      lines.splice(i, 0, lines[i]);
      break;
    case 2:
      lines.splice(i, 0, garbage);
      break;
    case 3:
      lines[i] = lines[i].replace(/^(\s*)/, '$1 ');
      break;
    default:
      lines[i] = lines[i].replace(/:.*$/, `: ${garbage}`);
  }
  return lines.join('\n');
}

test('(b) structural mutations of valid documents: a model or errors, never a throw', () => {
  fc.assert(
    fc.property(
      validInfra,
      fc.array(fc.nat(), { minLength: 1, maxLength: 5 }),
      fc.nat(),
      fc.jsonValue({ maxDepth: 2 }),
      fc.constantFrom(...CONTEXTS),
      (doc, path, op, replacement, ctx) => checkAnalysis(single(stringify(mutateValue(doc, path, op, replacement as Json))), ctx),
    ),
    { numRuns: 300 },
  );
});

test('(b) textual mutations of valid documents (delete, duplicate, garbage lines): never a throw', () => {
  fc.assert(
    fc.property(
      fc.oneof(validInfra.map((d) => stringify(d)), fc.constant(VALID)),
      fc.array(fc.tuple(fc.nat(), fc.nat(), yamlishText), { minLength: 1, maxLength: 3 }),
      fc.constantFrom(...CONTEXTS),
      (text, edits, ctx) => {
        const mutated = edits.reduce((t, [line, op, garbage]) => mutateText(t, line, op, garbage), text);
        checkAnalysis(single(mutated), ctx);
      },
    ),
    { numRuns: 300 },
  );
});

// --- (c) the two readers agree -------------------------------------------------------------------

/** Strings that YAML readers disagree about when they are not quoted carefully. */
const tricky = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.array(
    fc.constantFrom(
      'a', 'Z', ' ', ':', ': ', ' #', '#', '"', "'", '\\', '\n', '\t', '-', '- ', '?', '&x', '*x', '!', '%', '@', '`', '|', '>', ',', '[', ']', '{', '}',
      'é', 'ß', '日本', '💥', '\u00a0', '\u2028', 'yes', 'no', 'on', 'off', 'y', 'n', 'true', 'False', 'null', '~', 'NULL', '.inf', '-.Inf', '.nan',
      '0', '010', '0o17', '0x1F', '0b101', '1_000', '1e3', '+1', '-0', '3.', '1:20', '1:20:30', '10.100', '10.100.1.10', '2025-01-01', '<<', '=',
    ),
    { maxLength: 8 },
  ).map((parts) => parts.join('')),
);

const trickyInfra = fc.record({
  project: tricky,
  domains: fc.array(fc.record({ description: tricky, machines: fc.array(fc.record({ description: tricky, roles: fc.array(tricky, { maxLength: 2 }), os: tricky }), { maxLength: 2 }) }), { minLength: 1, maxLength: 3 }),
  policies: fc.array(fc.record({ description: tricky, ports: fc.array(fc.integer({ min: 1, max: 65535 }), { maxLength: 2 }) }), { maxLength: 2 }),
}).map(({ project, domains, policies }) => {
  const out: { [key: string]: Json } = {};
  domains.forEach((d, i) => {
    const machines: { [key: string]: Json } = {};
    d.machines.forEach((m, j) => {
      machines[`m${i}-${j}`] = { description: m.description, roles: m.roles, os_image: m.os, config: { 'user.note': m.description, 'limits.cpu': String(j + 1) } };
    });
    out[`d${i}`] = { description: d.description, subnet_id: i, machines };
  });
  return {
    project_name: project,
    global: { base_subnet: '10.100', default_user: project },
    domains: out,
    network_policies: policies.map((p) => ({ description: p.description, from: 'd0', to: 'host', ports: p.ports.length ? p.ports : 'all' })),
  };
});

function agree(text: string): boolean {
  const sources = single(text);
  const fast = parseFast(sources);
  const precise = parsePrecise(sources);
  if (fast === undefined) return false;
  assert.deepEqual(precise.errors, [], 'what the fast reader accepts, the precise one accepts');
  assert.deepEqual(fast, precise.raw);
  return true;
}

test('(c) the readers agree on serialised documents with tricky strings', () => {
  let compared = 0;
  fc.assert(
    fc.property(trickyInfra, fc.constantFrom<'PLAIN' | 'QUOTE_DOUBLE' | 'QUOTE_SINGLE'>('PLAIN', 'QUOTE_DOUBLE', 'QUOTE_SINGLE'), fc.boolean(), (doc, style, flow) => {
      const text = stringify(doc, { defaultStringType: style, defaultKeyType: 'PLAIN', collectionStyle: flow ? 'flow' : 'block', lineWidth: 0 });
      if (agree(text)) compared++;
    }),
    { numRuns: 600 },
  );
  // Texts with anchors, tags, multi-line quoted strings, `<<`, an unclosed `[`... go to the precise
  // reader only (load.ts, needsPreciseReader), and these documents hold many such strings: about a
  // quarter of them are still read by both readers and compared.
  assert.ok(compared > 100, `compared ${compared} of 600`);
});

test('(c) the readers agree on hand-written plain scalars, or one of them refuses', () => {
  // What users type: unquoted values. When both readers accept the text, they must read the same.
  let compared = 0;
  fc.assert(
    fc.property(tricky, tricky, (a, b) => {
      const line = (s: string) => s.replace(/\n/g, ' ');
      const text = `project_name: ${line(a)}\nglobal:\n  base_subnet: "10.100"\n  default_user: ${line(b)}\ndomains:\n  pro:\n    subnet_id: 1\n    description: ${line(b)} ${line(a)}\n`;
      const sources = single(text);
      const fast = parseFast(sources);
      const precise = parsePrecise(sources);
      if (fast === undefined || precise.errors.length > 0) return;
      compared++;
      assert.deepEqual(fast, precise.raw, text);
    }),
    { numRuns: 500 },
  );
  assert.ok(compared > 50, `compared ${compared}`);
});

test('(c) whatever text the fast reader accepts, the precise reader accepts and reads the same', () => {
  // The fast reader decides alone on valid files: a text it accepts but the precise reader refuses
  // (or reads differently) would be used without a message. Such texts must go to the precise reader.
  const piece = fc.oneof(YAMLISH, fc.constantFrom('\r', '\u00a0', '\ufeff', '%YAML 1.2', '<<', '"\\', "''", '|-1', '>2', '@', '`', '=', 'x', 'b'));
  // Mostly `indent key: value` lines, so that many texts are YAML that one reader or both accept.
  const key = fc.oneof({ weight: 3, arbitrary: fc.stringMatching(/^[a-z_]{1,8}$/) }, { weight: 1, arbitrary: fc.array(piece, { minLength: 1, maxLength: 3 }).map((p) => p.join('')) });
  const line = fc.tuple(fc.constantFrom('', '', '  ', '    ', '- ', '  - '), key, fc.constantFrom(': ', ': ', ':', ' '), fc.array(piece, { maxLength: 4 }))
    .map(([indent, k, colon, value]) => `${indent}${k}${colon}${value.join('')}`);
  const text = fc.array(line, { minLength: 1, maxLength: 6 }).map((lines) => lines.join('\n'));
  let accepted = 0;
  fc.assert(
    fc.property(text, (t) => {
      const sources = single(t);
      const fast = parseFast(sources);
      if (fast === undefined) return;
      accepted++;
      const precise = parsePrecise(sources);
      assert.deepEqual(precise.errors, [], 'the precise reader accepts it too');
      assert.deepEqual(fast, precise.raw, 'and reads the same');
    }),
    { numRuns: 40000 },
  );
  assert.ok(accepted > 1000, `the fast reader accepted ${accepted} texts`);
});

test('(c) known disagreements of YAML readers are settled the same way by both', () => {
  const cases = ['010', '0o17', '0x1F', '1_000', '1:20', '+1', '.inf', 'yes', 'No', 'on', '~', 'null', 'Null', '2025-01-01', '1e3', '3.', '-0', '0b101', '<<'];
  for (const value of cases) {
    const text = `project_name: ${value}\nglobal: { base_subnet: "10.100", default_user: ${value} }\ndomains: {}\n`;
    const sources = single(text);
    const fast = parseFast(sources);
    if (fast === undefined) continue;
    assert.deepEqual(fast, parsePrecise(sources).raw, value);
  }
});

test('(c) scalars that resolve, written as String() writes them back or not, as keys and as values, alone in a file or beside the other kind: both readers read the same', () => {
  const canonical = ['3', '-7', '0.5', 'true', 'false', 'null'];
  const rewritten = ['010', '0o17', '0x1F', '+1', '1.0', '1e3', '3.', '-0', '-0.0', '.5', '.inf', '-.Inf', '.nan', 'True', 'FALSE', 'Null', 'NULL', '~'];
  const read = (text: string) => {
    const sources = single(text);
    const fast = parseFast(sources);
    assert.ok(fast, text);
    assert.deepEqual(fast, parsePrecise(sources).raw, text);
    return fast;
  };
  for (const group of [canonical, rewritten, [...canonical, ...rewritten]]) {
    const asKeys = read(group.map((s, i) => `${s}: k${i}`).join('\n') + '\n');
    assert.deepEqual(Object.keys(asKeys), group, 'each key as it was written');
    const asValues = read(group.map((s, i) => `k${i}: ${s}`).join('\n') + '\n');
    assert.ok(Object.values(asValues).every((v) => typeof v !== 'string' && (typeof v !== 'object' || v === null)), 'values resolved, no wrapper left');
    read(`nested:\n  list: [${group.join(', ')}]\n  map:\n${group.map((s, i) => `    ${s}: ${group[group.length - 1 - i]}`).join('\n')}\n`);
  }
});

test('(c) texts the property above once found, kept as cases: the fast reader leaves them to the precise one', () => {
  // An empty sequence item with a comment lets js-yaml dedent the next item; the yaml library refuses.
  for (const text of ['_: \n  - #%YAML 1.2: \n- a: ', 'a:\n  - # note\n- b: 1\n']) {
    assert.equal(parseFast(single(text)), undefined, JSON.stringify(text));
    assert.ok(parsePrecise(single(text)).errors.length > 0, JSON.stringify(text));
  }
});

test('(c) what only the precise reader reads: the fast patterns (each starts with the characters its match needs) answer as the plain ones they were written from', () => {
  // The patterns as first written, one alternation tried at every offset: the specification.
  const plain = new RegExp(
    [
      /(^|[\s[{,:-])([&*][^\s,\]}]|!|\?(\s|$)|"([^"\\\n]|\\.)*\\?$|'([^'\n]|'')*$|[|>][-+]?[0-9])/,
      /\r|\ufeff|\\U/,
      /<<|['"[\]{}]#/,
      /[[{][^[\]{}\n]*$|,[ \t]*$|^[ \t]*[\]}]|[\]}][ \t]*:|[[{,][ \t]*:/,
      /^ *\t|^ *-[ \t]*(?:#.*)?$/,
      /^%|^\.\.\.|^---(?![ \t]+#|[ \t]*$)/,
    ]
      .map((part) => part.source)
      .join('|'),
    'm',
  );
  const unit = fc.constantFrom(...'&*!?"\'|>[]{},:-#%.\t\n\r \\Ua10+<e'.split(''), '\ufeff', '\u0085', '\u2028', '\u2029', '\v', '\f', '\u00a0');
  let precise = 0;
  fc.assert(
    fc.property(fc.oneof(fc.string({ unit, maxLength: 30 }), fc.array(fc.string({ unit, maxLength: 12 }), { maxLength: 6 }).map((lines) => lines.join('\n'))), (text) => {
      const expected = plain.test(text);
      if (expected) precise++;
      assert.equal(needsPreciseReader(text), expected, JSON.stringify(text));
    }),
    { numRuns: 200000 },
  );
  assert.ok(precise > 20000 && precise < 190000, `both answers seen: ${precise} precise`);
});
