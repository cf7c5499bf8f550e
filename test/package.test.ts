/**
 * What an npm user gets: the licence, a README whose links lead somewhere — every relative
 * link of the README, the docs and the roles' READMEs names a file the package ships (npm's page
 * resolves them against the repository; an installed copy, against the package) — and the
 * README's first lines for npm users, run from the packed tarball (dist/ as built: make test
 * builds it first) installed in an empty directory.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, normalize, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { testEnv } from './helpers/env.ts';

const packed = (JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as { files: { path: string }[] }[])[0].files.map((f) => f.path);

describe('the npm package', () => {
  it('ships the AGPL-3.0 text and says where the repository is', () => {
    assert.ok(packed.includes('LICENSE'));
    const license = readFileSync('LICENSE', 'utf8');
    assert.match(license, /^ {20}GNU AFFERO GENERAL PUBLIC LICENSE\n {23}Version 3, 19 November 2007\n/);
    assert.equal(license.split('\n').length - 1, 661, 'the whole text');
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { license: string; repository: { url: string } };
    assert.equal(pkg.license, 'AGPL-3.0-or-later');
    assert.match(pkg.repository.url, /^git\+https:\/\/github\.com\//);
  });

  it("every relative link of the README, the docs and the roles' READMEs names a file or folder the package ships", () => {
    const docs = ['README.md', ...packed.filter((p) => (p.startsWith('docs/') || p.startsWith('roles/')) && p.endsWith('.md'))];
    assert.ok(docs.includes('roles/incus_nftables/README.md'), "the roles' READMEs are shipped");
    const broken: string[] = [];
    for (const doc of docs) {
      for (const [, target] of readFileSync(doc, 'utf8').matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target) || target.startsWith('#')) continue;
        const path = normalize(join(dirname(doc), target.split('#')[0]));
        if (!packed.some((p) => p === path || p.startsWith(`${path}/`))) broken.push(`${doc}: ${target}`);
      }
    }
    assert.deepEqual(broken, []);
  });
});

/** The path a file's first line names as its schema, resolved against the file's directory. */
function schemaOf(file: string): string {
  const ref = /^# yaml-language-server: \$schema=(\S+)\n/.exec(readFileSync(file, 'utf8'))?.[1];
  assert.ok(ref, `${file} names no schema on its first line`);
  return resolve(dirname(file), ref.split('/').map(decodeURIComponent).join('/'));
}

describe("the README's first screen", () => {
  it('says how to install what its first lines run on a fresh Debian 12 (Node from NodeSource, git and make)', () => {
    const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');
    const firstScreen = readme.slice(0, readme.indexOf('\n## '));
    const install = firstScreen.split('\n').find((l) => l.includes('apt-get install') && l.includes('nodejs'));
    assert.ok(install, 'an apt-get line that installs Node');
    for (const tool of ['git', 'make', 'curl']) assert.match(install, new RegExp(`\\b${tool}\\b`), `${tool} is installed by the README's line`);
    assert.match(firstScreen, /make deps && make test/);
  });
});

describe('the built CLI', () => {
  it('is executable, as npx in a clone runs it (the build makes it so: tsc writes files without the x bit)', async () => {
    const { statSync } = await import('node:fs');
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { bin: Record<string, string> };
    assert.deepEqual(pkg.bin, { 'anklume-gen': 'dist/generator/cli/anklume-gen.cjs' }, 'the command is the one-file build through the code cache');
    for (const file of ['anklume-gen.cjs', 'bin.js']) {
      const bin = join(import.meta.dirname, '..', 'dist', 'generator', 'cli', file);
      assert.equal(statSync(bin).mode & 0o111, 0o111, `${bin} is not executable: run npm run build`);
      assert.match(readFileSync(bin, 'utf8').split('\n')[0], /^#!\/usr\/bin\/env node$/);
    }
  });
});

describe('the packed package, installed in an empty directory', () => {
  it("runs the README's lines for npm users: init writes an infra.yml whose schema line names node_modules/anklume-gen/schema/infra.schema.json, and the dry run passes; init --layout dir too", { timeout: 180_000 }, () => {
    const tmp = mkdtempSync(join(tmpdir(), 'anklume-pack-'));
    const t = testEnv();
    try {
      const [{ filename }] = JSON.parse(execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as { filename: string }[];
      const project = join(tmp, 'project');
      mkdirSync(project);
      writeFileSync(join(project, 'package.json'), '{ "name": "my-infra", "private": true }\n');
      const [install, firstRun, ...rest] = [...readFileSync('README.md', 'utf8').matchAll(/^```sh\n([\s\S]*?)^```$/gm)][1][1].split('\n').filter(Boolean).map((l) => l.replace(/\s+#\s.*$/, ''));
      assert.deepEqual([install, rest], ['npm install anklume-gen', []], 'the README installs from npm, then runs one line');
      // The tarball stands for the registry's copy; dependencies come from npm's cache when it has them.
      execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--ignore-scripts', join(tmp, filename)], { cwd: project, stdio: ['ignore', 'ignore', 'pipe'] });
      const r = spawnSync('bash', ['-euc', firstRun], { cwd: project, env: t.env, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^Wrote: infra\.yml$/m);
      assert.match(r.stdout, /^Would write: group_vars\/all\.yml$/m);
      const infra = join(project, 'infra.yml');
      assert.equal(readFileSync(infra, 'utf8').split('\n')[0], '# yaml-language-server: $schema=node_modules/anklume-gen/schema/infra.schema.json');
      assert.ok(existsSync(schemaOf(infra)), 'the schema it names is there');

      const split = spawnSync('npx', ['anklume-gen', 'init', 'split', '--layout', 'dir', '--json'], { cwd: project, env: t.env, encoding: 'utf8' });
      assert.equal(split.status, 0, split.stderr);
      const written = (JSON.parse(split.stdout) as { written: string[] }).written;
      assert.equal(written.length, 5);
      for (const file of written) {
        const schema = schemaOf(join(project, file));
        assert.ok(schema.startsWith(join(project, 'node_modules', 'anklume-gen', 'schema') + '/') && existsSync(schema), `${file}: ${schema}`);
      }
      const valid = spawnSync('npx', ['anklume-gen', 'validate', 'split/infra'], { cwd: project, env: t.env, encoding: 'utf8' });
      assert.equal(valid.status, 0, valid.stderr);
      assert.equal(valid.stdout, 'split/infra: valid\n');
    } finally {
      t.cleanup();
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
