/**
 * The nesting screen that runs before either YAML reader (generator/infra/depth.ts): texts deep enough to
 * exhaust a parser's stack are refused; what an infra file holds is never mistaken for depth.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import fc from 'fast-check';
import { depthProblem, MAX_FLOW_DEPTH, MAX_INDENT, scanDepth } from '../generator/infra/depth.ts';
import { syntheticInfraText } from '../bench/synthetic.ts';

const nested = (levels: number) => `x: ${'['.repeat(levels)}1${']'.repeat(levels)}\n`;

test('every bundled example, fixture and the benchmark infra pass', () => {
  const files = ['examples/infra.yml', 'examples/network-policies.yml', 'examples/infra/base.yml', 'test/fixtures/valid/full.yml', 'test/fixtures/sync/tricky.yml', 'test/fixtures/ai-switch/infra.yml'];
  for (const file of files) assert.equal(depthProblem(readFileSync(file, 'utf8')), undefined, file);
  assert.equal(depthProblem(syntheticInfraText({ domains: 20, machinesPerDomain: 5 })), undefined);
});

test(`flow collections: ${MAX_FLOW_DEPTH} levels pass, one more is refused at the bracket that goes too deep`, () => {
  assert.equal(depthProblem(nested(MAX_FLOW_DEPTH)), undefined);
  const problem = depthProblem(nested(MAX_FLOW_DEPTH + 1));
  assert.equal(problem?.offset, 'x: '.length + MAX_FLOW_DEPTH);
  assert.match(problem?.message ?? '', /nests too deeply/);
  assert.ok(depthProblem(`a:\n  - {b: [${'{c: ['.repeat(40)}1${']}'.repeat(40)}]}\n`), 'mappings and sequences both count');
  assert.ok(depthProblem(`${'[\n'.repeat(100)}${']\n'.repeat(100)}`), 'a flow collection spanning lines');
});

test('deep flow nesting is found behind a tab, an anchor, a tag or an explicit key, and below a stray quote', () => {
  const deep = '['.repeat(1000);
  for (const text of [`a:\t${deep}`, `a: &x ${deep}`, `a: !!seq ${deep}`, `a: &x !!seq ${deep}`, `? ${deep}`, `- ${deep}`, `a: rock 'n roll\nb: ${deep}\nc: it's\n`]) {
    assert.match(depthProblem(text)?.message ?? 'nothing found', /nests too deeply/, JSON.stringify(text.slice(0, 30)));
  }
  assert.match(depthProblem(`${'? '.repeat(1000)}x\n`)?.message ?? 'nothing found', /indented too deeply/, 'explicit keys on one line');
});

test('brackets that open nothing are not depth: in quotes, comments, plain scalars and block scalars', () => {
  const brackets = '['.repeat(200);
  assert.equal(depthProblem(`a: "${brackets}"\nb: '${brackets}'\nc: x ${brackets}\n# ${brackets}\nd: see[1${brackets}\n`), undefined);
  assert.equal(depthProblem(`a: "escaped \\" ${brackets}"\nb: 'it''s ${brackets}'\n`), undefined);
  assert.equal(depthProblem(`a: [ "${brackets}", '${brackets}', x ]\n`), undefined, 'quoted inside a flow collection');
  assert.equal(depthProblem(`a: l'accès ${'[ '.repeat(10)}\nb: 1\n`), undefined, 'an apostrophe inside a word opens no quote');
});

test('a # starts a comment only at the start of a line or after a blank: inside a key, a flow collection or quotes it hides nothing', () => {
  const deep = '['.repeat(1000);
  for (const text of [
    `a#b: ${deep}`,
    `- a#b: ${deep}`,
    `a:\n  b#c: ${deep}`,
    `a: [x#y, ${deep}`,
    `a: [x,#y ${deep}`,
    `a: {k#: ${deep}`,
    `[a#b, ${deep}`,
    `"a #b": ${deep}`,
    `'a #b': ${deep}`,
    `a: ["x #", ${deep}`,
    `a: {'k #': ${deep}`,
  ]) {
    assert.match(depthProblem(text)?.message ?? 'nothing found', /nests too deeply/, JSON.stringify(text.slice(0, 16)));
  }
  assert.equal(depthProblem(`a#b: ${'['.repeat(MAX_FLOW_DEPTH + 1)}`)?.offset, 'a#b: '.length + MAX_FLOW_DEPTH, 'the offset of the bracket past the limit');
  // After a blank (a space, a tab, a line break, the start of the text) it is a comment.
  assert.equal(depthProblem(`# ${deep}\na: 1 # ${deep}\nb: 2\t# ${deep}\nc: [1, # ${deep}\n  2]\n`), undefined);
});

test('a document may start on the line of its marker, or after a byte order mark: its brackets count', () => {
  const deep = '['.repeat(1000);
  for (const text of [`--- ${deep}`, `---\t${deep}`, `--- &a !!seq ${deep}`, `\ufeff${deep}`, `\ufeff--- ${deep}`, `a: 1\n--- ${deep}`]) {
    assert.match(depthProblem(text)?.message ?? 'nothing found', /nests too deeply/, JSON.stringify(text.slice(0, 16)));
  }
  assert.equal(depthProblem(`--- ${'['.repeat(MAX_FLOW_DEPTH)}`), undefined);
  assert.equal(depthProblem(`a: x--- ${deep}\nb: ---${deep}\nc: ---- ${deep}\n`), undefined, 'a plain scalar holds no marker');
});

test(`indentation: column ${MAX_INDENT} passes, deeper is refused; compact sequences count`, () => {
  assert.equal(depthProblem(`a:\n${' '.repeat(MAX_INDENT)}b: 1\n`), undefined);
  assert.equal(depthProblem(`a:\n${' '.repeat(MAX_INDENT + 1)}b: 1\n`)?.offset, 3 + MAX_INDENT);
  assert.ok(depthProblem(`a:\n${'- '.repeat(MAX_INDENT)}b\n`));
  assert.equal(depthProblem(`a: |\n  ${'- '.repeat(10)}text\n`), undefined);
  assert.equal(depthProblem(`a: 1\n${' '.repeat(300)}\n${' '.repeat(300)}# note\nb: 2\n`), undefined, 'blank and comment lines do not count');
  assert.ok(depthProblem(`a:\n${'- '.repeat(MAX_INDENT / 2 + 1)}# note\n`), 'sequence indicators before a comment still nest');
});

// The timeout is a guard, not a measure: these lines take milliseconds in one pass, and minutes if
// any step rescanned what it had read (a file of up to 16 MiB must not hang the validator).
test('one pass over lines of brackets, quotes and spaces', { timeout: 30000 }, () => {
  assert.equal(depthProblem('[]'.repeat(500000)), undefined);
  assert.equal(depthProblem(` ${'"'.repeat(1000001)}`), undefined);
  assert.equal(depthProblem(`a:${' '.repeat(1000000)}[`), undefined);
  assert.equal(depthProblem(`a: ${' ['.repeat(50)}${' '.repeat(1000000)}`), undefined);
  assert.ok(depthProblem(`a: ${'['.repeat(1000000)}`));
});

test('the two searches that spare most files the scan never hide a problem the scan finds, nor report one it does not', () => {
  const unit = fc.constantFrom(...'\n#"\'[]{} -?:,ab\t\r'.split(''), '\ufeff');
  const indentation = fc.constantFrom(' ', '- ', '? ', '-\t', '\t');
  // Lines indented up to past the limit, with or without brackets, quotes that run over lines, comments.
  const line = fc.tuple(fc.nat(MAX_INDENT + 20), indentation, fc.string({ unit, maxLength: 10 })).map(([n, indent, rest]) => indent.repeat(Math.ceil(n / indent.length)) + rest);
  const text = fc.oneof(fc.string({ unit, maxLength: 400 }), fc.array(line, { maxLength: 5 }).map((lines) => lines.join('\n')));
  let problems = 0;
  fc.assert(
    fc.property(text, (t) => {
      const expected = scanDepth(t);
      if (expected) problems++;
      assert.deepEqual(depthProblem(t), expected, JSON.stringify(t));
    }),
    { numRuns: 30000 },
  );
  assert.ok(problems > 1000, `problems found: ${problems}`);
  // A continuation of a quoted scalar indented past the limit is content, not indentation.
  const quoted = `a: "x\n${' '.repeat(MAX_INDENT + 5)}y"\n`;
  assert.equal(depthProblem(quoted), undefined);
  assert.ok(depthProblem(`a:\n${' '.repeat(MAX_INDENT + 5)}b: 1\n`));
});
