/**
 * The package's command, dist/generator/cli/anklume-gen.cjs, runs the one-file build of the CLI
 * (anklume-gen.bundle.cjs) through V8's code cache. It must do exactly what the CLI's modules do
 * (bin.js, tsc's build of the same sources), and the cache may change how fast it starts, never
 * what it does: a cache that is missing, refused by V8, or cannot be written leaves the same output.
 * Both come from `npm run build` (make test builds first).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { testEnv } from './helpers/env.ts';
import { syntheticInfraText } from '../bench/synthetic.ts';

const DIST = join(import.meta.dirname, '..', 'dist');
const COMMAND = join(DIST, 'generator', 'cli', 'anklume-gen.cjs');
const MODULES = join(DIST, 'generator', 'cli', 'bin.js');
const EXAMPLE = join(import.meta.dirname, '..', 'examples', 'infra.yml');
const INVALID = join(import.meta.dirname, 'fixtures', 'invalid');

function run(bin: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): string {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd, env, encoding: 'utf8' });
  return `exit ${r.status}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
}

describe('anklume-gen.cjs (the one-file build through the code cache)', () => {
  const t = testEnv();
  const scratch = mkdtempSync(join(tmpdir(), 'anklume-bundle-'));
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it('is built, with a code cache for this Node', () => {
    assert.ok(existsSync(COMMAND) && existsSync(join(DIST, 'generator', 'cli', 'anklume-gen.bundle.cjs')), 'run npm run build');
    const caches = readdirSync(join(DIST, 'code-cache'));
    assert.equal(caches.filter((f) => f.includes(`-${process.version}-${process.arch}.v8`)).length, 1, `one cache for ${process.version}: ${caches.join(', ')}`);
    const probe = `const { loadBundle } = require(${JSON.stringify(join(DIST, 'generator', 'cli', 'codeCache.cjs'))});
      console.log(loadBundle(${JSON.stringify(join(DIST, 'generator', 'cli', 'anklume-gen.bundle.cjs'))}, [${JSON.stringify(join(DIST, 'code-cache'))}], false).fromCache)`;
    assert.equal(spawnSync(process.execPath, ['-e', probe], { encoding: 'utf8' }).stdout, 'true\n', 'V8 takes it');
  });

  it('answers every command as the modules do: output, messages and exit status', () => {
    const invalid = readdirSync(INVALID).filter((f) => f.endsWith('.yml')).slice(0, 12).map((f) => ['validate', join(INVALID, f)]);
    const cases = [
      ['--help'],
      ['flows', '--help'],
      ['no-such-command'],
      ['validate', EXAMPLE],
      ['resolve', EXAMPLE],
      ['nftables', EXAMPLE],
      ['flows', EXAMPLE],
      ['flows', EXAMPLE, '--json'],
      ['flows', EXAMPLE, '--from', 'perso', '--to', 'ai-tools'],
      ['sync', EXAMPLE, '--base-dir', 'tree', '--dry-run'],
      ...invalid,
    ];
    for (const args of cases) assert.equal(run(COMMAND, args, scratch, t.env), run(MODULES, args, scratch, t.env), args.join(' '));
  });

  it('writes the same tree as the modules, through the writer thread, and finds it unchanged after', () => {
    for (const [bin, dir] of [[COMMAND, 'a'], [MODULES, 'b']]) {
      assert.match(run(bin, ['sync', EXAMPLE, '--base-dir', dir], scratch, t.env), /^exit 0\n[\s\S]*11 file\(s\) written/);
    }
    const files = (dir: string) => readdirSync(join(scratch, dir), { recursive: true, encoding: 'utf8' }).filter((f) => !f.startsWith('.anklume-gen')).sort();
    assert.deepEqual(files('a'), files('b'));
    for (const f of files('a').filter((p) => p.includes('.'))) assert.equal(readFileSync(join(scratch, 'a', f), 'utf8'), readFileSync(join(scratch, 'b', f), 'utf8'), f);
    assert.match(run(COMMAND, ['sync', EXAMPLE, '--base-dir', 'b'], scratch, t.env), /0 file\(s\) written, 11 unchanged/);
  });


  it('loads no module from node_modules on the everyday commands: everything they run is in the bundle, compiled once into the cache', () => {
    // Node's CommonJS loader is what the bundle's require goes through: record where each request leads.
    const recorder = join(scratch, 'record-loads.cjs');
    writeFileSync(recorder, `const Module = require('node:module');
const { writeSync } = require('node:fs');
const load = Module._load;
Module._load = function (request, parent, ...rest) {
  const where = Module.isBuiltin(request) ? 'builtin' : Module._resolveFilename(request, parent);
  writeSync(2, 'LOAD ' + where + '\\n');
  return load.call(this, request, parent, ...rest);
};
`);
    const cases = [
      ['sync', EXAMPLE, '--base-dir', 'loads', '--dry-run'],
      ['sync', EXAMPLE, '--base-dir', 'loads'],
      ['validate', EXAMPLE],
      ['flows', EXAMPLE],
      ['nftables', EXAMPLE],
    ];
    for (const args of cases) {
      const r = spawnSync(process.execPath, ['--require', recorder, COMMAND, ...args], { cwd: scratch, env: t.env, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const loaded = [...r.stderr.matchAll(/^LOAD (.*)$/gm)].map((m) => m[1]);
      assert.ok(loaded.some((where) => where.endsWith('/codeCache.cjs')), `the recorder sees the command's own requires: ${loaded.join(', ')}`);
      const fromPackages = loaded.filter((where) => where.includes('/node_modules/'));
      assert.deepEqual(fromPackages, [], args.join(' '));
    }
  });

  it('writes output larger than a pipe holds whole, to a reader that reads slowly through a non-blocking pipe (EAGAIN hands over to Node\'s stream), and stops quietly when the reader goes (EPIPE)', () => {
    const infra = join(scratch, 'medium.yml');
    writeFileSync(infra, syntheticInfraText({ domains: 30, machinesPerDomain: 10 }));
    const expected = spawnSync(process.execPath, [MODULES, 'flows', infra, '--json'], { env: t.env, encoding: 'utf8', maxBuffer: 1 << 30 });
    assert.equal(expected.status, 0, expected.stderr);
    assert.ok(expected.stdout.length > 1 << 19, 'far more than a pipe holds (64 KiB)');
    const slowReader = `
import os, subprocess, sys, time
r, w = os.pipe()
os.set_blocking(w, False)
p = subprocess.Popen(sys.argv[1:], stdout=w)
os.close(w)
chunks = []
while True:
    time.sleep(0.001)
    b = os.read(r, 65536)
    if not b: break
    chunks.append(b)
sys.stdout.buffer.write(b''.join(chunks))
sys.exit(p.wait())`;
    const slow = spawnSync('python3', ['-c', slowReader, process.execPath, COMMAND, 'flows', infra, '--json'], { env: t.env, encoding: 'utf8', maxBuffer: 1 << 30 });
    assert.equal(slow.status, 0, slow.stderr);
    assert.equal(slow.stdout, expected.stdout);
    const head = spawnSync('bash', ['-c', '"$@" | head -c 100 >/dev/null; exit ${PIPESTATUS[0]}', 'bash', process.execPath, COMMAND, 'flows', infra, '--json'], { env: t.env, encoding: 'utf8' });
    assert.deepEqual([head.status, head.stderr], [0, ''], 'a reader gone is no failure and no message');
  });

  it("ties the sync cache to the bundle: another build of it (or of a template) makes the next sync read everything again", () => {
    const copy = join(scratch, 'pkg-fingerprint');
    for (const part of ['dist', 'schema', 'templates', 'package.json']) cpSync(join(DIST, '..', part), join(copy, part), { recursive: true });
    symlinkSync(join(DIST, '..', 'node_modules'), join(copy, 'node_modules'));
    const command = join(copy, 'dist', 'generator', 'cli', 'anklume-gen.cjs');
    const key = () => (JSON.parse(readFileSync(join(scratch, 'fp', '.anklume-gen', 'cache.json'), 'utf8')) as { key: string }).key;
    const sync = () => assert.match(run(command, ['sync', EXAMPLE, '--base-dir', 'fp'], scratch, t.env), /^exit 0\n/);
    sync();
    const first = key();
    sync();
    assert.equal(key(), first, 'unchanged: the same key');
    const later = new Date(Date.now() + 5000);
    utimesSync(join(copy, 'dist', 'generator', 'cli', 'anklume-gen.bundle.cjs'), later, later);
    sync();
    const second = key();
    assert.notEqual(second, first, 'a new bundle: another key');
    utimesSync(join(copy, 'templates', 'managed-block.yml.hbs'), later, later);
    sync();
    assert.notEqual(key(), second, 'a template changed: another key');
  });

  it("takes the build's cache in a copy (as npm unpacks one: other mtimes, same content); does the same with a cache V8 refuses, one another user could write, or a folder it cannot write; then writes one it takes next time", () => {
    // A copy of the build, so that the test's caches never touch dist/ or the user's cache.
    const copy = join(scratch, 'pkg');
    for (const part of ['dist', 'schema', 'templates', 'package.json', 'examples']) cpSync(join(DIST, '..', part), join(copy, part), { recursive: true });
    symlinkSync(join(DIST, '..', 'node_modules'), join(copy, 'node_modules'));
    const cli = join(copy, 'dist', 'generator', 'cli');
    const command = join(cli, 'anklume-gen.cjs');
    const packageCache = join(copy, 'dist', 'code-cache');
    const userCache = join(scratch, 'xdg');
    const env = { ...t.env, XDG_CACHE_HOME: userCache };
    const expected = run(MODULES, ['flows', EXAMPLE], scratch, t.env);
    const [cacheName] = readdirSync(packageCache);
    assert.match(cacheName, new RegExp(`^anklume-gen\\.bundle-[0-9a-f]{16}-${process.version}-${process.arch}\\.v8$`), 'named after the content');
    /** Whether the launcher's own loader takes the code from a cache, and from which folder. */
    const taken = () => {
      const probe = `const { loadBundle } = require(${JSON.stringify(join(cli, 'codeCache.cjs'))});
        for (const dir of process.argv.slice(1)) if (loadBundle(${JSON.stringify(join(cli, 'anklume-gen.bundle.cjs'))}, [dir], false).fromCache) { console.log(dir); process.exit(0); }
        console.log('none');`;
      return spawnSync(process.execPath, ['-e', probe, packageCache, join(userCache, 'anklume-gen')], { encoding: 'utf8' }).stdout.trim();
    };
    assert.equal(taken(), packageCache, 'the copy takes the cache the build made');

    chmodSync(join(packageCache, cacheName), 0o622);
    assert.equal(taken(), 'none', 'a cache others may write is bytecode others may choose: not taken');
    assert.equal(run(command, ['flows', EXAMPLE], scratch, env), expected, 'without it');
    assert.equal(statSync(join(packageCache, cacheName)).mode & 0o777, 0o600, 'written again, for this user only');
    assert.equal(taken(), packageCache, 'and taken by the next run');

    writeFileSync(join(packageCache, cacheName), 'not a code cache', { mode: 0o600 });
    assert.equal(run(command, ['flows', EXAMPLE], scratch, env), expected, 'refused cache');
    assert.notEqual(readFileSync(join(packageCache, cacheName), 'utf8'), 'not a code cache', 'written again at exit');
    assert.equal(taken(), packageCache, 'and taken by the next run');

    // Caches of other builds: a month unused, removed when a cache is written; recent ones (another install) kept.
    const other = (id: string) => join(packageCache, cacheName.replace(/-[0-9a-f]{16}-/, `-${id}-`));
    writeFileSync(other('0000000000000000'), 'an old build');
    writeFileSync(other('1111111111111111'), 'another install');
    const longAgo = new Date(Date.now() - 40 * 24 * 3600 * 1000);
    utimesSync(other('0000000000000000'), longAgo, longAgo);
    writeFileSync(join(packageCache, cacheName), 'not a code cache', { mode: 0o600 });
    assert.equal(run(command, ['flows', EXAMPLE], scratch, env), expected);
    assert.ok(!existsSync(other('0000000000000000')), 'the old build\'s cache removed');
    assert.ok(existsSync(other('1111111111111111')), 'a recent one kept');

    rmSync(packageCache, { recursive: true });
    writeFileSync(packageCache, 'a file where the folder should be');
    assert.equal(run(command, ['flows', EXAMPLE], scratch, env), expected, "the package's folder cannot be written");
    assert.equal(readFileSync(packageCache, 'utf8'), 'a file where the folder should be');
    assert.equal(taken(), join(userCache, 'anklume-gen'), "the cache went to the user's cache folder");

    writeFileSync(join(cli, 'anklume-gen.bundle.cjs'), readFileSync(join(cli, 'anklume-gen.bundle.cjs'), 'utf8').replace(/^\/\/ anklume-gen build [0-9a-f]{16}\n/, ''));
    assert.equal(taken(), 'none', 'a bundle without its build line runs without a cache');
    assert.equal(run(command, ['flows', EXAMPLE], scratch, env), expected, 'and runs');

    rmSync(join(cli, 'anklume-gen.bundle.cjs'));
    assert.equal(run(command, ['flows', EXAMPLE], scratch, env), expected, 'no bundle: the modules');
  });
});
