/**
 * Loading (spec §3, issue 2 item 2): files and infra/ directories, YAML problems, sizes, aliases,
 * and the issue's "bad input to try by hand" list. Every failure is a located message, never a throw.
 */
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { analyse, readRaw } from '../generator/infra/infra.js';
import { MAX_SOURCE_BYTES, readSources } from '../generator/infra/sources.js';
import { KEY_MARKER, parseFast, parsePrecise, type Source } from '../generator/infra/load.js';
import type { Diagnostic } from '../generator/core/types.js';
import { listing, NO_CONTEXT, positionOf, run, single, VALID } from './helpers/infraText.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'anklume-load-'));
}

function located(d: Diagnostic): void {
  assert.ok(d.file, `has a file: ${listing([d])}`);
  assert.ok(typeof d.line === 'number' && d.line >= 1, `has a line: ${listing([d])}`);
  assert.ok(typeof d.column === 'number' && d.column >= 1, `has a column: ${listing([d])}`);
}

/** The issue's list: each input gives one clear, located message (and no model). */
const BAD_BY_HAND: { name: string; text: string; message: RegExp; at?: [string, string?] }[] = [
  { name: 'a tab used for indentation', text: VALID.replace('    subnet_id: 2\n', '\tsubnet_id: 2\n'), message: /^YAML syntax error: .*tab/i },
  { name: 'subnet_id: "3"', text: VALID.replace('subnet_id: 2', 'subnet_id: "3"'), message: /^Domain 'pro': subnet_id must be 0-254, got '3' \(an integer, written without quotes\)/, at: ['subnet_id: "3"', '"3"'] },
  { name: 'ip: 10.100.1.999', text: VALID.replace('ip: "10.100.1.10"', 'ip: 10.100.1.999'), message: /^Machine 'perso-desktop': invalid IP 10\.100\.1\.999 \(/, at: ['ip: 10.100.1.999', '10.'] },
  { name: 'a machine named ../../etc/x', text: VALID.replace('      pro-dev:', '      ../../etc/x:'), message: /^Machine '\.\.\/\.\.\/etc\/x': invalid name/, at: ['../../etc/x:'] },
  { name: 'a domain named verylongdomain', text: VALID.replace('  perso:', '  verylongdomain:'), message: /^Domain 'verylongdomain': name too long \(14 characters, max 11: its bridge 'net-verylongdomain'/, at: ['verylongdomain:'] },
  { name: 'a typo ai_acess_policy', text: VALID.replace('ai_access_policy: exclusive', 'ai_acess_policy: exclusive'), message: /^unknown key 'ai_acess_policy' in global; did you mean 'ai_access_policy'\?/, at: ['ai_acess_policy'] },
  {
    name: 'two machines with the same name in one domain mapping',
    text: VALID.replace('      pro-dev:\n        ip: "10.100.2.10"\n', '      pro-dev:\n        ip: "10.100.2.10"\n      pro-dev:\n        ip: "10.100.2.11"\n'),
    message: /^Machine 'pro-dev': duplicate \(already in 'pro'\)/,
    at: ['pro-dev:\n        ip: "10.100.2.11"'],
  },
  { name: 'network_policies: null with exclusive mode', text: VALID + 'network_policies:\n', message: /^network_policies must be a list of policies, got null/, at: ['network_policies:'] },
  { name: 'ports: []', text: VALID + 'network_policies:\n  - { from: pro, to: ai-tools, ports: [] }\n', message: /^network_policies\[0\]: ports must be a list or 'all', got an empty list/, at: ['ports: []', '[]'] },
];

for (const c of BAD_BY_HAND) {
  test(`bad input by hand: ${c.name}`, () => {
    const result = run(c.text);
    assert.equal(result.errors.length, 1, listing(result.errors));
    assert.equal(result.infra, undefined);
    const [error] = result.errors;
    assert.match(error.message, c.message);
    located(error);
    if (c.at) assert.deepEqual({ line: error.line, column: error.column }, positionOf(c.text, c.at[0], c.at[1]));
  });
}

test('bad input by hand: a 50 MB file is refused from its size, without reading it', async () => {
  const dir = await tempDir();
  try {
    const file = join(dir, 'infra.yml');
    // Sparse: 50 MB of apparent size, no disk used; reading it all would take a visible while.
    const handle = await open(file, 'w');
    await handle.truncate(50 * 1024 * 1024);
    await handle.close();
    const started = performance.now();
    const { sources, errors } = await readSources(file);
    assert.ok(performance.now() - started < 500, 'refused from stat, not after reading');
    assert.deepEqual(sources, []);
    assert.equal(errors.length, 1);
    assert.match(errors[0].message, /file too large \(50\.0 MiB; an infra file may hold at most 16 MiB\)/);
    located(errors[0]);
    // What a caller that goes on anyway gets: an error, not a crash.
    assert.ok(analyse(sources, NO_CONTEXT).errors.length > 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a file just under the size limit is still read', async () => {
  const dir = await tempDir();
  try {
    const file = join(dir, 'infra.yml');
    await writeFile(file, VALID + '#'.repeat(1024) + '\n');
    const { sources, errors } = await readSources(file);
    assert.deepEqual(errors, []);
    assert.equal(sources.length, 1);
    assert.ok(MAX_SOURCE_BYTES > 1024 * 1024);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('bad input by hand: an alias bomb is refused quickly, at the first alias', () => {
  const levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (let i = 1; i < 10; i++) {
    const name = String.fromCharCode(97 + i);
    const prev = String.fromCharCode(96 + i);
    levels.push(`${name}: &${name} [${Array(9).fill(`*${prev}`).join(',')}]`);
  }
  const text = levels.join('\n') + '\n';
  const started = performance.now();
  assert.equal(parseFast(single(text)), undefined, 'the fast reader never expands aliases');
  const result = run(text);
  assert.ok(performance.now() - started < 2000);
  assert.equal(result.errors.length, 1, listing(result.errors));
  assert.match(result.errors[0].message, /^YAML aliases expand too much .*at most 100 alias expansions/);
  assert.deepEqual({ line: result.errors[0].line, column: result.errors[0].column }, positionOf(text, '*a'));
});

test('a few ordinary aliases are accepted and read like their anchors', () => {
  const text = VALID.replace('  pro:\n    subnet_id: 2\n', '  pro:\n    subnet_id: 2\n    profiles:\n      big: &big { config: { limits.cpu: "4" } }\n      big2: *big\n');
  const result = run(text);
  assert.deepEqual(result.errors, [], listing(result.errors));
  const pro = (result.raw?.domains as Record<string, { profiles: Record<string, unknown> }>).pro;
  assert.deepEqual(pro.profiles.big2, pro.profiles.big);
});

test('YAML problems: each is a located message', () => {
  const cases: [string, RegExp][] = [
    ['project_name: t\nglobal: [\n', /^YAML syntax error/],
    ['project_name: "t\n', /^YAML syntax error: Missing closing "quote/],
    ['a: b: c\n', /^YAML syntax error/],
    ['project_name: t\nproject_name: u\n', /^duplicate key 'project_name': each key may appear once/],
    ['', /file is empty/],
    ['# only a comment\n', /file is empty/],
    ['---\n', /file is empty/],
    ['- a\n- b\n', /top level must be a mapping of keys, got a list/],
    ['42\n', /top level must be a mapping of keys, got a number/],
    ['--- {}\n--- {}\n', /YAML syntax error/],
    ['? [a, b]\n: c\n', /./],
    ['project_name: !!binary aGVsbG8=\n', /./],
    ['project_name: !custom t\n', /./],
    // Deep enough to exhaust the parsers' stack: refused before parsing (depth.ts), a message, not a
    // crash. A line of brackets also checks that the fast reader's screening (PRECISE_ONLY) stays linear.
    [`x: ${'['.repeat(100000)}${']'.repeat(100000)}\n`, /^YAML syntax error: the document nests too deeply \(more than 64 levels/],
    [Array.from({ length: 1000 }, (_, i) => `${' '.repeat(i)}k${i}:\n`).join(''), /^YAML syntax error: the document is indented too deeply \(past column 256\)/],
    [`x:\n${'- '.repeat(2000)}a\n`, /^YAML syntax error: the document is indented too deeply/],
    // What js-yaml alone would accept: a key over 1024 characters, an escape past U+10FFFF.
    [`${'k'.repeat(1100)}: 1\n`, /^YAML syntax error: .*at most 1024 chars/],
    ['project_name: "\\U00110000"\n', /^YAML syntax error: Invalid escape sequence/],
  ];
  for (const [text, message] of cases) {
    const result = run(text);
    assert.ok(result.errors.length > 0, `${JSON.stringify(text)} gives errors`);
    assert.ok(result.errors.some((e) => message.test(e.message)), `${JSON.stringify(text)}: ${listing(result.errors)}`);
    for (const e of result.errors.filter((d) => d.file)) located(e);
  }
});

test('the opening quote of an unclosed string is where the error points', () => {
  const text = 'project_name: t\nglobal:\n  base_subnet: "10.100\ndomains: {}\n';
  const [error] = run(text).errors;
  assert.deepEqual({ line: error.line, column: error.column }, { line: 3, column: 16 });
});

test('a byte-order mark and CRLF line endings are accepted, and positions still count lines', () => {
  assert.deepEqual(run('\uFEFF' + VALID).errors, []);
  const crlf = VALID.replace(/\n/g, '\r\n');
  assert.deepEqual(run(crlf).errors, []);
  const bad = crlf.replace('subnet_id: 2', 'subnet_id: 300');
  const [error] = run(bad).errors;
  assert.deepEqual({ line: error.line, column: error.column }, positionOf(bad, 'subnet_id: 300', '300'));
});

test('a missing file, a directory without base.yml, a file with NUL bytes: messages, no throw', async () => {
  const dir = await tempDir();
  try {
    const missing = await readSources(join(dir, 'nope.yml'));
    assert.equal(missing.errors[0].message, 'cannot read (no such file)');
    assert.equal(missing.errors[0].file, join(dir, 'nope.yml'));
    assert.ok(analyse(missing.sources, NO_CONTEXT).errors.length > 0);

    const noBase = await readSources(join(FIXTURES, 'invalid/_dir-no-base'));
    assert.equal(noBase.errors.length, 1, listing(noBase.errors));
    assert.match(noBase.errors[0].message, /^missing or unreadable; an infra\/ directory needs base\.yml/);
    assert.equal(noBase.errors[0].file, join(FIXTURES, 'invalid/_dir-no-base', 'base.yml'));
    assert.ok(analyse(noBase.sources, NO_CONTEXT).errors.length > 0, 'analyse of the rest does not throw');
    assert.ok(readRaw(noBase.sources).errors.length > 0);

    const binary = join(dir, 'bin.yml');
    await writeFile(binary, Buffer.from([0x61, 0x3a, 0x00, 0x0a]));
    const nul = await readSources(binary);
    assert.match(nul.errors[0].message, /binary content/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('infra/ layout: the merged model equals the single-file one', async () => {
  const { sources, errors } = await readSources(join(FIXTURES, 'valid/dir-layout'));
  assert.deepEqual(errors, []);
  assert.deepEqual(sources.map((s) => [s.file.slice(FIXTURES.length), s.role]), [
    ['valid/dir-layout/base.yml', 'base'],
    ['valid/dir-layout/domains/ai-tools.yml', 'domains'],
    ['valid/dir-layout/domains/work.yml', 'domains'],
    ['valid/dir-layout/policies.yml', 'policies'],
  ]);
  const result = analyse(sources, NO_CONTEXT);
  assert.deepEqual(result.errors, []);
  assert.deepEqual(Object.keys(result.infra?.domains ?? {}), ['admin', 'ai-tools', 'pro', 'perso']);
  assert.equal(result.infra?.network_policies?.length, 2);
  // Both readers merge alike.
  assert.deepEqual(parseFast(sources), parsePrecise(sources).raw);
});

test('infra/ layout: a domain defined twice names both files, and is located in the second', async () => {
  const dir = join(FIXTURES, 'invalid/dir-domain-twice');
  const { sources } = await readSources(dir);
  const result = analyse(sources, NO_CONTEXT);
  const lab = result.errors.find((e) => e.message.startsWith("Domain 'lab': defined twice"));
  assert.ok(lab, listing(result.errors));
  assert.ok(lab.message.includes(join(dir, 'domains/lab.yml')) && lab.message.includes(join(dir, 'domains/more.yml')), lab.message);
  assert.equal(lab.file, join(dir, 'domains/more.yml'));
  const pro = result.errors.find((e) => e.message.startsWith("Domain 'pro': defined twice"));
  assert.ok(pro?.message.includes(join(dir, 'base.yml')) && pro.message.includes(join(dir, 'domains/work.yml')), listing(result.errors));
});

test('infra/ layout: errors inside a domain file point at that file', async () => {
  const dir = join(FIXTURES, 'invalid/dir-error-in-domain-file');
  const result = analyse((await readSources(dir)).sources, NO_CONTEXT);
  const ip = result.errors.find((e) => e.message.startsWith("Machine 'dev': IP"));
  assert.equal(ip?.file, join(dir, 'domains/a-pro.yml'));
  assert.equal(ip?.line, 6);
  const sid = result.errors.find((e) => e.message.startsWith("Domain 'lab': subnet_id 1"));
  assert.equal(sid?.file, join(dir, 'domains/b-lab.yml'));
  const ports = result.errors.find((e) => e.message.includes('ports must be'));
  assert.equal(ports?.file, join(dir, 'policies.yml'));
});

test('infra/ layout: policies in two places, and stray keys in policies.yml, are errors', async () => {
  const dir = await tempDir();
  try {
    await mkdir(join(dir, 'domains'));
    await writeFile(join(dir, 'base.yml'), 'project_name: t\nglobal:\n  base_subnet: "10.100"\ndomains:\n  pro: { subnet_id: 1 }\nnetwork_policies: []\n');
    await writeFile(join(dir, 'policies.yml'), 'network_policies: []\n');
    let result = analyse((await readSources(dir)).sources, NO_CONTEXT);
    assert.match(result.errors[0]?.message ?? '', /network_policies is defined in both .*base\.yml and .*policies\.yml/);
    located(result.errors[0]);

    await writeFile(join(dir, 'base.yml'), 'project_name: t\nglobal:\n  base_subnet: "10.100"\ndomains:\n  pro: { subnet_id: 1 }\n');
    await writeFile(join(dir, 'policies.yml'), 'network_policies: []\ndomains: {}\n');
    result = analyse((await readSources(dir)).sources, NO_CONTEXT);
    assert.match(result.errors[0]?.message ?? '', /only the key 'network_policies' is allowed in a policies file/);

    // A domain file that is not a mapping of domains.
    await writeFile(join(dir, 'policies.yml'), 'network_policies: []\n');
    await writeFile(join(dir, 'domains', 'x.yml'), '- pro\n');
    result = analyse((await readSources(dir)).sources, NO_CONTEXT);
    assert.match(result.errors[0]?.message ?? '', /^top level must be a mapping/);
    assert.equal(result.errors[0]?.file, join(dir, 'domains', 'x.yml'));
    located(result.errors[0]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a duplicate key inside a domain file is located in that file', () => {
  const sources: Source[] = [
    { file: 'base.yml', role: 'base', text: 'project_name: t\nglobal:\n  base_subnet: "10.100"\n' },
    { file: 'domains/pro.yml', role: 'domains', text: 'pro:\n  subnet_id: 1\n  machines:\n    dev: {}\n    dev: {}\n' },
  ];
  const result = analyse(sources, NO_CONTEXT);
  assert.equal(result.errors.length, 1, listing(result.errors));
  assert.deepEqual(result.errors[0], {
    file: 'domains/pro.yml',
    line: 5,
    column: 5,
    path: '/domains/pro/machines/dev',
    message: "Machine 'dev': duplicate (already in 'pro')",
  });
});

test('the locator: a value, a key (KEY_MARKER), a missing path falls back to its parent', () => {
  const { locate } = parsePrecise(single(VALID));
  assert.deepEqual(locate(['domains', 'pro', 'subnet_id']), { file: 'infra.yml', ...positionOf(VALID, 'subnet_id: 2', '2') });
  assert.deepEqual(locate(['domains', 'pro', KEY_MARKER]), { file: 'infra.yml', ...positionOf(VALID, '  pro:', 'pro') });
  assert.deepEqual(locate(['domains', 'pro', 'nothing', 'here']), { file: 'infra.yml', ...positionOf(VALID, 'subnet_id: 2') });
});

test('readRaw merges without validating, and fails only on unreadable YAML', () => {
  const raw = readRaw(single('project_name: 42\ncolour: blue\n'));
  assert.deepEqual(raw, { raw: { project_name: 42, colour: 'blue' }, errors: [] });
  const broken = readRaw(single('a: [\n'));
  assert.equal(broken.raw, undefined);
  assert.ok(broken.errors.length > 0);
  located(broken.errors[0]);
});

test('YAML 1.1 booleans and octals are strings in infra.yml (read as YAML 1.2 core)', () => {
  // `ephemeral: yes` is not a boolean here: the user learns it instead of getting a surprise later.
  const result = run(VALID.replace('    subnet_id: 2\n', '    subnet_id: 2\n    ephemeral: yes\n'));
  assert.match(result.errors[0]?.message ?? '', /^Domain 'pro': ephemeral must be a boolean, got 'yes'/);
  assert.deepEqual(parseFast(single('a: 010\nb: 0o10\nc: yes\nd: 1e3\n')), parsePrecise(single('a: 010\nb: 0o10\nc: yes\nd: 1e3\n')).raw);
});

test('numeric-looking keys keep their text in both readers (a domain may be named 010 or 1e3)', () => {
  const text = VALID.replace('  perso:\n    subnet_id: 1\n', '  010:\n    subnet_id: 1\n').replace('perso-desktop', 'd010') + '  1e3:\n    subnet_id: 3\n';
  const fast = parseFast(single(text));
  assert.ok(fast, 'the fast reader accepts it');
  assert.deepEqual(Object.keys(fast.domains as object), ['ai-tools', 'pro', '010', '1e3']);
  assert.deepEqual(fast, parsePrecise(single(text)).raw);
  assert.deepEqual(run(text).errors, []);
});

test('YAML tags: an unknown one is an error; the non-specific `!` reads the same in both readers', () => {
  const unknown = run(VALID.replace('subnet_id: 2', 'subnet_id: !num 2'));
  assert.equal(unknown.errors.length, 1, listing(unknown.errors));
  assert.match(unknown.errors[0].message, /^YAML tag not supported: .*!num/);
  located(unknown.errors[0]);
  const text = VALID.replace('  pro:\n', '  pro:\n    description: !\n');
  assert.equal(parseFast(single(text)), undefined, 'tags go to the precise reader');
  assert.equal((run(text).raw?.domains as Record<string, { description: unknown }>).pro.description, '');
});
