/**
 * `anklume-gen init`: the starter infra in both layouts validates and syncs, names a schema that
 * exists relative to each file (the running package's schema/ here, a project's
 * node_modules/anklume-gen when there is one; test/package.test.ts runs it from the packed
 * tarball installed in an empty directory), and nothing is ever overwritten.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { uriRef } from '../generator/core/templates.ts';
import { runCli } from './helpers/cli.ts';
import { testEnv } from './helpers/env.ts';

const ROOT = process.cwd();
const DIR_FILES = ['infra/base.yml', 'infra/domains/ai-tools.yml', 'infra/domains/perso.yml', 'infra/domains/pro.yml', 'infra/policies.yml'];

/** The path a file's first line names as its schema, resolved against the file's directory. */
function schemaOf(file: string): string {
  const first = readFileSync(file, 'utf8').split('\n')[0];
  const ref = /^# yaml-language-server: \$schema=(\S+)$/.exec(first)?.[1];
  assert.ok(ref, `${file}: first line ${JSON.stringify(first)}`);
  return resolve(dirname(file), ref.split('/').map(decodeURIComponent).join('/'));
}

function listing(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort() : [];
}

describe('anklume-gen init', () => {
  it('writes infra.yml (the default layout): it validates without a warning, syncs, and its schema line names schema/infra.schema.json', async () => {
    const t = testEnv();
    try {
      const project = join(t.dir, 'project');
      const r = await runCli(['init', project, '--json'], t.env);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), { written: [join(project, 'infra.yml')] });
      assert.equal(schemaOf(join(project, 'infra.yml')), join(ROOT, 'schema', 'infra.schema.json'));
      const valid = await runCli(['validate', join(project, 'infra.yml'), '--json'], t.env);
      assert.equal(valid.code, 0, valid.stdout);
      assert.deepEqual(JSON.parse(valid.stdout), { errors: [], warnings: [] });
      const sync = await runCli([join(project, 'infra.yml'), '--base-dir', t.baseDir], t.env);
      assert.equal(sync.code, 0, sync.stderr);
      assert.ok(existsSync(join(t.baseDir, 'host_vars', 'gpu-server.yml')));
      assert.match(readFileSync(join(t.baseDir, 'group_vars', 'all.yml'), 'utf8'), /from: pro\n {4}to: ai-tools\n/);
    } finally {
      t.cleanup();
    }
  });

  it('prints what it wrote and what to run next; the cwd is the default DIR', async () => {
    const t = testEnv();
    try {
      mkdirSync(t.dir + '/p');
      const r = await runCli(['init'], t.env, join(t.dir, 'p'));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "Wrote: infra.yml\nNext: edit it, then 'anklume-gen validate infra.yml' and 'anklume-gen infra.yml --dry-run' (what sync would write)\n");
      assert.equal(r.stderr, '');
    } finally {
      t.cleanup();
    }
  });

  it('--layout dir writes infra/base.yml, domains/*.yml and policies.yml, each naming its own schema; the same model as the file layout', async () => {
    const t = testEnv();
    try {
      const single = join(t.dir, 'single');
      const split = join(t.dir, 'split');
      assert.equal((await runCli(['init', single], t.env)).code, 0);
      const r = await runCli(['init', 'split', '--layout', 'dir'], t.env, t.dir);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.split('\n').filter((l) => l.startsWith('Wrote: ')), DIR_FILES.map((f) => `Wrote: ${join('split', f)}`));
      assert.deepEqual(listing(split), ['infra', 'infra/base.yml', 'infra/domains', ...DIR_FILES.slice(1, 4), 'infra/policies.yml']);
      const schemas = { base: 'infra-base.schema.json', domains: 'infra-domain.schema.json', policies: 'infra-policies.schema.json' };
      for (const f of DIR_FILES) {
        const kind = f.split('/')[1].replace(/\.yml$/, '') as keyof typeof schemas;
        assert.equal(schemaOf(join(split, f)), join(ROOT, 'schema', schemas[kind]), f);
      }
      const valid = await runCli(['validate', join(split, 'infra'), '--json'], t.env);
      assert.deepEqual(JSON.parse(valid.stdout), { errors: [], warnings: [] });
      const models = await Promise.all([join(single, 'infra.yml'), join(split, 'infra')].map(async (p) => JSON.parse((await runCli(['resolve', p, '--json'], t.env)).stdout)));
      assert.deepEqual(models[1], models[0]);
      const sync = await runCli([join(split, 'infra'), '--base-dir', t.baseDir, '--json'], t.env);
      assert.equal(sync.code, 0, sync.stdout);
    } finally {
      t.cleanup();
    }
  });

  it("the commented policy example is valid once uncommented", async () => {
    const t = testEnv();
    try {
      assert.equal((await runCli(['init', t.dir], t.env)).code, 0);
      const file = join(t.dir, 'infra.yml');
      const text = readFileSync(file, 'utf8');
      const example = /^# {3}network_policies:\n(?:# {5}.*\n)+/m.exec(text)?.[0];
      assert.ok(example);
      writeFileSync(file, text.replace(/^network_policies: \[\]\n/m, '').replace(example, example.replace(/^# {3}/gm, '')));
      const valid = await runCli(['validate', file, '--json'], t.env);
      assert.deepEqual(JSON.parse(valid.stdout), { errors: [], warnings: [] });
      const flows = await runCli(['flows', file, '--from', 'pro', '--to', 'perso-desktop', '--port', '22'], t.env);
      assert.match(flows.stdout, /^pro -> perso-desktop tcp\/22: allow/);
    } finally {
      t.cleanup();
    }
  });

  it('in a project that installed anklume-gen, names node_modules/anklume-gen/schema (its own, or an ancestor directory\'s)', async () => {
    const t = testEnv();
    try {
      const installed = join(t.dir, 'node_modules', 'anklume-gen', 'schema');
      mkdirSync(installed, { recursive: true });
      for (const s of ['infra.schema.json', 'infra-base.schema.json', 'infra-domain.schema.json', 'infra-policies.schema.json']) writeFileSync(join(installed, s), '{}');
      assert.equal((await runCli(['init'], t.env, t.dir)).code, 0);
      assert.equal(readFileSync(join(t.dir, 'infra.yml'), 'utf8').split('\n')[0], '# yaml-language-server: $schema=node_modules/anklume-gen/schema/infra.schema.json');
      assert.equal((await runCli(['init', 'sub/project', '--layout', 'dir'], t.env, t.dir)).code, 0);
      assert.equal(readFileSync(join(t.dir, 'sub/project/infra/domains/pro.yml'), 'utf8').split('\n')[0], '# yaml-language-server: $schema=../../../../node_modules/anklume-gen/schema/infra-domain.schema.json');
      assert.equal(schemaOf(join(t.dir, 'sub/project/infra/policies.yml')), join(installed, 'infra-policies.schema.json'));
    } finally {
      t.cleanup();
    }
  });

  it('a directory name with a space or a # stays one token in the schema line, and resolves', async () => {
    const t = testEnv();
    try {
      // The running package's schema/ is above this directory: its path climbs out of 'a b#c'.
      const project = join(t.dir, 'a b#c', 'd');
      assert.equal((await runCli(['init', project, '--layout', 'dir'], t.env)).code, 0);
      const first = readFileSync(join(project, 'infra', 'base.yml'), 'utf8').split('\n')[0];
      assert.match(first, /^# yaml-language-server: \$schema=\S+$/);
      assert.equal(schemaOf(join(project, 'infra', 'base.yml')), join(ROOT, 'schema', 'infra-base.schema.json'));
      assert.equal(uriRef('../a b#c/%/x\ny'), '../a%20b%23c/%25/x%0Ay');
    } finally {
      t.cleanup();
    }
  });

  for (const [existing, layout] of [
    ['infra.yml', 'file'],
    ['infra.yml', 'dir'],
    ['infra/base.yml', 'file'],
    ['infra/policies.yml', 'dir'],
    ['infra/domains/lab.yml', 'dir'],
    ['infra/domains/pro.yml', 'file'],
  ] as const) {
    it(`refuses a directory that holds ${existing} (--layout ${layout}): exit 1, the file named, nothing written`, async () => {
      const t = testEnv();
      try {
        mkdirSync(dirname(join(t.dir, existing)), { recursive: true });
        writeFileSync(join(t.dir, existing), 'mine: true\n');
        const before = listing(t.dir);
        const r = await runCli(['init', '--layout', layout], t.env, t.dir);
        assert.equal(r.code, 1);
        assert.equal(r.stderr, `${existing}: error: exists already, and init never overwrites an infra: nothing was written (edit that one, or init another directory)\n`);
        assert.equal(r.stdout, '');
        assert.deepEqual(listing(t.dir), before);
        assert.equal(readFileSync(join(t.dir, existing), 'utf8'), 'mine: true\n');
        const json = await runCli(['init', '--layout', layout, '--json'], t.env, t.dir);
        assert.equal(json.code, 1);
        assert.deepEqual(JSON.parse(json.stdout).errors.map((e: { file: string }) => e.file), [existing]);
      } finally {
        t.cleanup();
      }
    });
  }

  it('usage errors: two directories, an unknown layout (exit 2, nothing written)', async () => {
    const t = testEnv();
    try {
      const two = await runCli(['init', 'a', 'b'], t.env, t.dir);
      assert.equal(two.code, 2);
      assert.match(two.stderr, /^anklume-gen init: expected at most one directory, got 2: a b\nUsage: anklume-gen init \[DIR\] \[--layout file\|dir\]/);
      const layout = await runCli(['init', '--layout', 'tree'], t.env, t.dir);
      assert.equal(layout.code, 2);
      assert.match(layout.stderr, /--layout must be file or dir, not 'tree'/);
      assert.deepEqual(listing(t.dir), []);
    } finally {
      t.cleanup();
    }
  });
});

describe('init: bad input read as a person would', () => {
  it('a link to nothing where infra.yml goes is an infra already there; a directory it cannot write says so (nothing written, exit 1)', async () => {
    const { mkdtempSync, symlinkSync, readdirSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'anklume-init-link-'));
    try {
      symlinkSync(join(dir, 'nowhere'), join(dir, 'infra.yml'));
      const r = await runCli(['init', dir], process.env);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /infra\.yml: error: exists already, and init never overwrites an infra/);
      assert.deepEqual(readdirSync(dir), ['infra.yml']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
