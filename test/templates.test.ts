import assert from 'node:assert/strict';
import { describe, it, test } from 'node:test';
import { nftComment, nftString, pictureText } from '../generator/core/templates.ts';

describe('template helpers', () => {
  it('nftString refuses anything that could leave a quoted nft string', () => {
    assert.equal(nftString('net-pro'), '"net-pro"');
    for (const bad of ['a"b', 'a b', 'a;b', 'a\nb', '', 'x'.repeat(65), '{x}']) {
      assert.throws(() => nftString(bad), /refusing/);
    }
  });

  it("pictureText keeps one line with none of a picture's syntax: no quote, bracket, pipe, or < > that Mermaid would read as HTML", () => {
    assert.equal(pictureText('web <img src=x onerror=alert(1)> "a" [b] |c| {d}\n#e'), 'web img src=x onerror=alert(1) a b c d e');
    assert.equal(pictureText('pro -> ai-tools: tcp 22, 443'), 'pro - ai-tools: tcp 22, 443');
    assert.equal(pictureText(undefined), '');
  });

  it('nftComment keeps one harmless line', () => {
    assert.equal(nftComment('web\n} drop; # "x" {'), 'web drop x');
    assert.equal(nftComment(undefined), '');
    assert.ok(nftComment('y'.repeat(500)).length <= 160);
  });
});

test('the build precompiles every template, and the built module renders them as the compiler does (issue 18)', async () => {
  const { readdirSync, readFileSync } = await import('node:fs');
  const { join, relative } = await import('node:path');
  const root = new URL('..', import.meta.url).pathname;
  const dir = join(root, 'templates');
  const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : e.name.endsWith('.hbs') ? [join(d, e.name)] : []));
  const names = walk(dir).map((f) => relative(dir, f)).sort();
  const { createRequire } = await import('node:module');
  const built = createRequire(import.meta.url)(join(root, 'dist/generator/core/templates.precompiled.cjs')) as { templates: Record<string, { digest: string }> };
  const { templateDigest } = await import('../generator/core/templates.ts');
  assert.deepEqual(Object.keys(built.templates).sort(), names, 'run npm run build: a template is missing from the precompiled set');
  for (const name of names) assert.equal(built.templates[name].digest, templateDigest(readFileSync(join(dir, name), 'utf8')), `${name} changed since the build`);
  const data = { holder: 'pro', project: 'p', title: 'a <b> "c"', nodes: [], edges: [], exceptions: [], published: [] };
  const fromDist = (await import(join(root, 'dist/generator/core/templates.js'))) as { render: (n: string, d: object) => string };
  const fromSource = await import('../generator/core/templates.ts');
  for (const name of ['nftables/switch.nft.hbs', 'managed-block.yml.hbs', 'new-file.yml.hbs']) {
    const sample = { ...data, family: 'inet', table: 'anklume', changes: [], block: 'a: 1\n', vars: { a: [1, 'yes'] }, body: 'x: 1' };
    let a: string | Error;
    let b: string | Error;
    try { a = fromDist.render(name, sample); } catch (e) { a = e as Error; }
    try { b = fromSource.render(name, sample); } catch (e) { b = e as Error; }
    assert.deepEqual(String(a), String(b), name);
    assert.ok(typeof a === 'string' && a.length > 0, `${name} renders: ${String(a)}`);
  }
});

test('a framed template writes its one value between fixed text, so that rendering it once and putting each value between the two sides is the same as rendering it (issue 18)', async () => {
  const { readFileSync } = await import('node:fs');
  const { frame, handlebarsCompiler, render, TEMPLATES_DIR } = await import('../generator/core/templates.ts');
  const { managedBlock, mergeManaged } = await import('../generator/tree/managedBlock.ts');
  type Node = { type: string; path?: { original?: string }; params?: { original?: string }[] };
  for (const [name, key, helper] of [['managed-block.yml.hbs', 'vars', 'yaml'], ['new-file.yml.hbs', 'block', undefined]] as const) {
    // One mustache, of that value (through that helper), and nothing else the data reaches: no
    // block, no partial, no other mustache.
    const body = (handlebarsCompiler().parse(readFileSync(TEMPLATES_DIR + name, 'utf8')) as { body: Node[] }).body;
    const dynamic = body.filter((n) => n.type !== 'ContentStatement' && n.type !== 'CommentStatement');
    assert.equal(dynamic.length, 1, `${name}: ${dynamic.map((n) => n.type).join(', ')}`);
    const [only] = dynamic;
    assert.equal(only.type, 'MustacheStatement', name);
    assert.deepEqual(helper ? [only.path?.original, only.params?.map((p) => p.original)] : [only.path?.original, only.params], helper ? [helper, [key]] : [key, []], name);
    assert.equal(frame(name, key).length, 2);
  }
  for (const vars of [{ a: [1, 'yes'], b: { c: '{{ x }}', d: null } }, {}, { 'odd key': 'a\nb' }]) {
    const block = render('managed-block.yml.hbs', { vars });
    assert.equal(managedBlock(vars), block);
    assert.equal(mergeManaged(undefined, block), render('new-file.yml.hbs', { block: block.replace(/\n$/, '') }));
  }
});
