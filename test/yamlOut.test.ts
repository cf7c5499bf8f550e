/**
 * What toYaml writes must read back identically with PyYAML, the YAML 1.1 loader Ansible uses
 * (Debian's python3-yaml, run for real). One Python process reads a whole batch.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { toAnsibleYaml, toYaml } from '../generator/core/yamlOut.ts';

/**
 * safe_load, plus what Ansible's loader adds that the generated files use: `!unsafe`, a string
 * (Ansible's AnsibleUnsafeText). Non-finite floats have no JSON form: they come back as their
 * Python repr. With a first argument, also says which values were tagged.
 */
const PYTHON_LOAD = `
import json, math, sys, yaml
class Loader(yaml.SafeLoader):
    pass
tagged = []
def unsafe(loader, node):
    tagged.append(loader.construct_scalar(node))
    return tagged[-1]
Loader.add_constructor('!unsafe', unsafe)
def plain(x):
    if isinstance(x, float) and not math.isfinite(x): return repr(x)
    if isinstance(x, dict): return {k: plain(v) for k, v in x.items()}
    if isinstance(x, list): return [plain(v) for v in x]
    return x
data = plain(yaml.load(sys.stdin, Loader=Loader))
print(json.dumps({'data': data, 'tagged': tagged} if len(sys.argv) > 1 else data))
`;

function pyyamlRead(text: string): unknown {
  return JSON.parse(execFileSync('/usr/bin/python3', ['-c', PYTHON_LOAD], { input: text, encoding: 'utf8', maxBuffer: 1 << 28 }));
}

function pyyamlTagged(text: string): { data: unknown; tagged: string[] } {
  return JSON.parse(execFileSync('/usr/bin/python3', ['-c', PYTHON_LOAD, 'tagged'], { input: text, encoding: 'utf8', maxBuffer: 1 << 28 })) as { data: unknown; tagged: string[] };
}

/** Every string as a value and as a key, in block and nested positions. */
function roundTrips(strings: string[], dump: (value: unknown) => string = toYaml): void {
  const unique = [...new Set(strings)];
  const doc = {
    values: unique,
    keys: Object.fromEntries(unique.map((s, i) => [s, i])),
    nested: [{ deeper: { list: unique.slice(0, 100) } }],
  };
  const back = pyyamlRead(dump(doc)) as typeof doc;
  const wrongValues = unique.filter((s, i) => back.values[i] !== s);
  const wrongKeys = unique.filter((s, i) => back.keys[s] !== i);
  assert.deepEqual(wrongValues, [], 'strings PyYAML read back as something else');
  assert.deepEqual(wrongKeys, [], 'keys PyYAML read back as something else');
  assert.deepEqual(back.nested, doc.nested);
}

/** Each of PyYAML's implicit resolvers, its edges, and YAML's indicators. */
const YAML_1_1_TRAPS = [
  'yes', 'Yes', 'YES', 'no', 'No', 'NO', 'on', 'On', 'ON', 'off', 'Off', 'OFF', 'true', 'False', 'y', 'Y', 'n', 'N',
  '~', 'null', 'Null', 'NULL', '', '=', '<<',
  '1:30', '1:30.5', '190:20:30', '-1:00', '1:60', '12:59', '0:30',
  '012', '0777', '08', '0_7', '0b101', '-0b1_0', '0x1F', '0x_', '1_000', '1_', '+1', '-0', '0o17',
  '1.', '1._', '1.5', '.5', '._5', '1.0e+3', '1.0e3', '1e3', '.inf', '-.INF', '+.Inf', '.NaN', '.nan',
  '2001-12-14', '2001-1-4', '2001-12-14t21:59:43.10-05:00', '2001-12-14 21:59:43.10 -5', '2001-12-14T21:59:43Z',
  'a: b', 'a:b', '#x', 'x #y', 'x#y', '- a', '-', '? x', '?', ':', 'x:', ': x', '[a]', '{a}', 'a, b', '!tag', '&a', '*a',
  '|', '>', '%x', '@x', '`x', "'q'", '"q"', "it's", 'a\nb', 'a\n', '\n', 'a\n\n', ' lead', 'trail ', 'tab\t', '\tlead',
  '\u0085', '\u2028', '\ufeff', 'é😀', '\u0000\u0007', '\r\n', 'limits.cpu', 'images:debian/13', '10.100.1.2',
  '{{ lookup("x") }}', '--- doc', '...', '---',
];

describe('toYaml writes YAML 1.1 that PyYAML reads back identically', () => {
  it('every implicit-resolver trap and indicator, as values and as keys', () => {
    roundTrips(YAML_1_1_TRAPS);
  });

  it('quotes what only a YAML 1.1 reader would take for something else', () => {
    // Plain in YAML 1.2, a number, a float or an error for PyYAML: the quoting schema must catch them.
    for (const text of ['1:30', '1._', '=', '0b101', '2001-1-4 1:02:03']) {
      assert.equal(toYaml({ k: text }), `k: "${text}"\n`, text);
    }
  });

  it('random strings from a YAML-heavy alphabet, as values and as keys', () => {
    const alphabet = fc.constantFrom(...'0123456789._:-+eExXbBoO yYnNtTfF~=<#\'"aA\t\n!&*|>%@`,[]{}?');
    const strings = fc.sample(fc.string({ unit: alphabet, minLength: 0, maxLength: 10 }), 20000);
    roundTrips([...strings, ...fc.sample(fc.string({ unit: 'binary', maxLength: 8 }), 2000)]);
  });

  it('document markers stay content at the top level too, as keys and as the whole document', () => {
    const markers = ['...', '... x', '---', '--- x', '---\tx', '...\t'];
    const doc = Object.fromEntries(markers.map((m, i) => [m, i]));
    assert.deepEqual(pyyamlRead(toYaml(doc)), doc);
    for (const m of markers) assert.equal(pyyamlRead(toYaml(m)), m);
  });

  it('numbers, booleans, null and empty collections keep their type', () => {
    const doc = { ints: [0, -2, 65535, 2 ** 53], floats: [0.5, -1.25, 1e-7, 1.5e300], flags: [true, false], none: null, map: {}, list: [] };
    assert.deepEqual(pyyamlRead(toYaml(doc)), doc);
    // JavaScript prints these without a dot (1e+21), which PyYAML would read as a string.
    assert.deepEqual(pyyamlRead(toYaml([1e21, -1e21, 1e300, 123e25])), [1e21, -1e21, 1e300, 123e25]);
    assert.equal(toYaml(-0), '-0\n', 'the integer a user wrote as -0, not the float -0.0');
    assert.deepEqual(pyyamlRead(toYaml([Infinity, -Infinity, NaN])), ['inf', '-inf', 'nan']);
  });

  it('writes a shared value in full at each place, never as an alias, and leaves undefined out', () => {
    const shared = { a: 1 };
    const text = toYaml({ x: shared, y: shared, z: undefined });
    assert.doesNotMatch(text, /[&*]ref/);
    assert.deepEqual(pyyamlRead(text), { x: { a: 1 }, y: { a: 1 } });
  });
});

describe('toAnsibleYaml: strings Jinja would evaluate are tagged !unsafe', () => {
  const jinja = (s: string) => /\{[{%#]/.test(s);

  it('tags exactly the strings with {{, {% or {#, as values and as keys, and the rest reads back the same', () => {
    const strings = [...YAML_1_1_TRAPS, "{{ lookup('pipe', 'id') }}", 'a {% if x %}b', '{# c #}', 'x{{', '{ {', '{', '%}', 'yes {{'];
    roundTrips(strings, toAnsibleYaml);
    const values = [...new Set(strings)];
    const { tagged } = pyyamlTagged(toAnsibleYaml({ values, keys: Object.fromEntries(values.map((s, i) => [s, i])) }));
    assert.deepEqual([...tagged].sort(), [...values.filter(jinja), ...values.filter(jinja)].sort());
  });

  it('random strings with braces, % and #, as values and as keys', () => {
    const alphabet = fc.constantFrom(...'{}%# :-\'"\nyYnN0123!&*|>');
    roundTrips(fc.sample(fc.string({ unit: alphabet, minLength: 0, maxLength: 8 }), 10000), toAnsibleYaml);
  });

  it('writes what toYaml writes when nothing looks like a template', () => {
    const doc = { a: 'yes', b: ['1:30', { c: 'x # y' }], d: 3 };
    assert.equal(toAnsibleYaml(doc), toYaml(doc));
  });
});

describe("toAnsibleYaml writes a mapping's entries once each, as js-yaml writes the whole mapping (issue 18)", () => {
  /** The same entries in an object that is not plain: toAnsibleYaml writes it whole, with js-yaml alone. */
  const whole = (value: Record<string, unknown>) => {
    const copy = Object.create({ inherited: 1 }) as object;
    // defineProperty, not assignment: a key named __proto__ stays a key.
    for (const [key, v] of Object.entries(value)) Object.defineProperty(copy, key, { value: v, enumerable: true });
    return toAnsibleYaml(copy);
  };
  const trap = fc.constantFrom(...YAML_1_1_TRAPS, '{{ x }}', 'x'.repeat(1100));
  const leaf = fc.oneof(trap, fc.string(), fc.boolean(), fc.integer(), fc.double(), fc.constant(null), fc.constant(undefined), fc.constant(-0), fc.constant(1e21));
  const value = fc.letrec((tie) => ({
    node: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('node'), { maxLength: 3 }), fc.dictionary(fc.oneof(trap, fc.string()), tie('node'), { maxKeys: 3 })),
  })).node;

  it('random mappings (traps, long keys and values, -0, undefined, nesting), twice each: the same text as the whole', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.oneof(trap, fc.constant('__proto__'), fc.string()), value, { maxKeys: 6 }), (doc) => {
        assert.equal(toAnsibleYaml(doc), whole(doc));
        assert.equal(toAnsibleYaml(doc), whole(doc), 'written again from what was kept');
      }),
      { numRuns: 3000 },
    );
  });

  it('strings of the characters written as they are (names, addresses, descriptions, and what resolves), as keys and values: the same text as the whole', () => {
    const plain = fc.constantFrom(...'0123456789._/- aAeEbBoOxXyYnNtTfFlLuU');
    const text = fc.oneof(trap, fc.string({ unit: plain, minLength: 0, maxLength: 12 }), fc.constantFrom('x'.repeat(1024), 'x'.repeat(1025), 'Machine 3 of dom5', '10.100.5.4', '.', '..', './a', '1_2', '1.e5', '0.', 'nuLL'));
    fc.assert(
      fc.property(fc.dictionary(text, text, { maxKeys: 6 }), (doc) => {
        assert.equal(toAnsibleYaml(doc), whole(doc));
      }),
      { numRuns: 20000 },
    );
  });

  it('mappings nested as an inventory nests its hosts, of strings written as they are, null, booleans, integers, lists, and what is not (traps, -0, 1e21, fractions, empty lists and mappings, holes), at any depth: the same text as the whole', () => {
    const plain = fc.constantFrom(...'0123456789._/- aAeEbBoOxXyYnNtTfFlLuU');
    const text = fc.oneof(trap, fc.string({ unit: plain, minLength: 0, maxLength: 12 }), fc.constantFrom('dom3-m0', '10.100.3.1', 'ansible_host', 'x'.repeat(1025)));
    const leaf = fc.oneof(
      { weight: 6, arbitrary: text },
      { weight: 2, arbitrary: fc.constant(null) },
      fc.constant(undefined),
      fc.boolean(),
      fc.integer(),
      fc.constantFrom(-0, 1e21, 2 ** 53, 0.5, -7),
      fc.constant([]),
      fc.constant({}),
      fc.array(text, { maxLength: 2 }),
      fc.array(fc.oneof(text, fc.integer(), fc.constant(null)), { maxLength: 2 }),
    );
    const nested = fc.letrec((tie) => ({
      node: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, fc.dictionary(text, tie('node'), { minKeys: 1, maxKeys: 4 })),
    })).node;
    fc.assert(
      fc.property(fc.dictionary(text, nested, { maxKeys: 4 }), (doc) => {
        assert.equal(toAnsibleYaml(doc), whole(doc));
      }),
      { numRuns: 20000 },
    );
    // eslint-disable-next-line no-sparse-arrays
    const tagged = { [Symbol.toStringTag]: 'X', b: 'c' };
    for (const doc of [{ a: [, 'x'] }, { a: { b: [, 'x'] } }, { a: Object.create({ inherited: 'x' }) as object }, { a: tagged }, { a: { b: tagged } }]) assert.equal(toAnsibleYaml(doc), whole(doc));
    const inventory = { all: { children: { dom3: { hosts: { 'dom3-m0': { ansible_host: '10.100.3.1' }, 'dom3-m1': null } } } } };
    assert.equal(toAnsibleYaml(inventory), 'all:\n  children:\n    dom3:\n      hosts:\n        dom3-m0:\n          ansible_host: 10.100.3.1\n        dom3-m1: null\n');
  });

  it('entries that differ only where JSON would not tell them apart are written apart', () => {
    assert.equal(toAnsibleYaml({ a: 0 }), 'a: 0\n');
    assert.equal(toAnsibleYaml({ a: -0 }), 'a: -0\n');
    assert.equal(toAnsibleYaml({ a: [0] }), 'a:\n  - 0\n');
    assert.equal(toAnsibleYaml({ a: [-0] }), 'a:\n  - -0\n');
    assert.equal(toAnsibleYaml({ a: '1' }), 'a: "1"\n');
    assert.equal(toAnsibleYaml({ a: 1 }), 'a: 1\n');
    assert.equal(toAnsibleYaml({ a: null, b: undefined }), 'a: null\n');
    assert.equal(toAnsibleYaml({}), '{}\n');
    assert.equal(toAnsibleYaml({ b: undefined }), '{}\n');
  });
});
