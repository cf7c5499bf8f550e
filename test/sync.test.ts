import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { CACHE_DIR } from '../generator/tree/cache.ts';
import { holdsUserBytes, managedBlock, mergeManaged } from '../generator/tree/managedBlock.ts';
import { sync } from '../generator/tree/sync.ts';
import { syntheticInfraText } from '../bench/synthetic.ts';
import { maybeUpdateGolden } from './helpers/golden.ts';
import { testEnv, type TestEnv } from './helpers/env.ts';

const EXAMPLE = 'examples/infra.yml';
const TRICKY = 'test/fixtures/sync/tricky.yml';
const GOLDEN = 'test/fixtures/golden/example-tree';

function treeFiles(root: string): string[] {
  const out: string[] = [];
  for (const dir of ['group_vars', 'host_vars', 'inventory']) {
    if (!existsSync(join(root, dir))) continue;
    for (const name of readdirSync(join(root, dir)).sort()) out.push(`${dir}/${name}`);
  }
  return out;
}

function mtimes(root: string): Map<string, number> {
  return new Map(treeFiles(root).map((f) => [f, statSync(join(root, f)).mtimeMs]));
}

/** Ansible reads these files with PyYAML (YAML 1.1): load them the same way. */
function pythonLoad(path: string): unknown {
  const out = execFileSync('/usr/bin/python3', ['-c', 'import sys, json, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))', path], { encoding: 'utf8' });
  return JSON.parse(out);
}

describe('sync writes the Ansible tree', () => {
  // Each test starts from its own freshly synced tree: none may depend on what another left.
  let t: TestEnv;
  let first: Awaited<ReturnType<typeof sync>>;
  beforeEach(async () => {
    t = testEnv();
    first = await sync({ infraPath: EXAMPLE, baseDir: t.baseDir, env: t.env });
  });
  afterEach(() => t.cleanup());

  it('matches the golden files for the bundled example', () => {
    assert.deepEqual(first.errors, []);
    const files = treeFiles(t.baseDir);
    assert.equal(files.length, 10);
    for (const f of files) maybeUpdateGolden(join(GOLDEN, f), readFileSync(join(t.baseDir, f)));
    assert.deepEqual(files, treeFiles(GOLDEN), 'same file list as the golden tree');
    for (const f of files) {
      assert.equal(readFileSync(join(t.baseDir, f), 'utf8'), readFileSync(join(GOLDEN, f), 'utf8'), `${f} differs from its golden file`);
    }
  });

  it('writes nothing on a second run and keeps every mtime', async () => {
    const before = mtimes(t.baseDir);
    const report = await sync({ infraPath: EXAMPLE, baseDir: t.baseDir, env: t.env });
    assert.deepEqual(report.written, []);
    assert.equal(report.unchanged.length, 11);
    assert.deepEqual(mtimes(t.baseDir), before);
  });

  it('the cache directory ignores itself (its own .gitignore): git sees the tree, not the cache', () => {
    assert.equal(readFileSync(join(t.baseDir, CACHE_DIR, '.gitignore'), 'utf8'), '*\n');
    const git = (...args: string[]) => execFileSync('git', ['-C', t.baseDir, ...args], { encoding: 'utf8', env: { ...t.env, GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1' } });
    git('init', '-q');
    const seen = git('status', '--porcelain', '--untracked-files=all').split('\n').filter(Boolean).map((line) => line.slice(3));
    assert.ok(seen.includes('group_vars/all.yml'), seen.join('\n'));
    assert.deepEqual(seen.filter((path) => path.startsWith(CACHE_DIR)), []);
  });

  it('a cache directory an older version made without a .gitignore gets one at the next write', async () => {
    rmSync(join(t.baseDir, CACHE_DIR, '.gitignore'));
    writeFileSync(join(t.baseDir, 'inventory/pro.yml'), '---\n');
    await sync({ infraPath: EXAMPLE, baseDir: t.baseDir, env: t.env });
    assert.equal(readFileSync(join(t.baseDir, CACHE_DIR, '.gitignore'), 'utf8'), '*\n');
  });

  // The run above is answered by the cache: here the files themselves must be compared. The
  // files get an old mtime first, so that a rewrite shows whatever the clock's resolution.
  it('rewrites no file whose content is unchanged: without the cache, and after a touch', async () => {
    const all = [...treeFiles(t.baseDir), 'nftables/anklume.nft'];
    const stamp = (f: string) => statSync(join(t.baseDir, f)).mtimeMs;
    const old = new Date('2020-01-02T03:04:05Z');
    for (const f of all) utimesSync(join(t.baseDir, f), old, old);
    rmSync(join(t.baseDir, CACHE_DIR), { recursive: true });
    const uncached = await sync({ infraPath: EXAMPLE, baseDir: t.baseDir, env: t.env });
    assert.deepEqual(uncached.written, []);
    assert.equal(uncached.unchanged.length, all.length);
    for (const f of all) assert.equal(stamp(f), old.getTime(), `${f} was rewritten with its own content (no cache)`);
    assert.ok(existsSync(join(t.baseDir, CACHE_DIR)), 'the cache is back for the next run');

    const touched = new Date('2021-06-07T08:09:10Z');
    for (const f of ['host_vars/pro-dev.yml', 'nftables/anklume.nft']) utimesSync(join(t.baseDir, f), touched, touched);
    const afterTouch = await sync({ infraPath: EXAMPLE, baseDir: t.baseDir, env: t.env });
    assert.deepEqual(afterTouch.written, []);
    for (const f of all) assert.equal(stamp(f), ['host_vars/pro-dev.yml', 'nftables/anklume.nft'].includes(f) ? touched.getTime() : old.getTime(), `${f} was rewritten with its own content (after a touch)`);
  });

  it('keeps every byte outside the managed block', async () => {
    const file = join(t.baseDir, 'host_vars/pro-dev.yml');
    const original = readFileSync(file, 'utf8');
    const custom = original.replace('# Your custom variables below:\n', '# Your custom variables below:\nmy_var: 42   # mine\n\n# trailing: kept\n');
    const withHeader = `# my header comment\n${custom}`;
    writeFileSync(file, withHeader);
    await sync({ infraPath: EXAMPLE, baseDir: t.baseDir, env: t.env });
    assert.equal(readFileSync(file, 'utf8'), withHeader, 'an untouched block leaves the file as it is');
    writeFileSync(file, withHeader.replace('instance_ip: 10.100.2.10', 'instance_ip: 10.9.9.9'));
    const report = await sync({ infraPath: EXAMPLE, baseDir: t.baseDir, env: t.env });
    assert.deepEqual(report.written, ['host_vars/pro-dev.yml']);
    assert.equal(readFileSync(file, 'utf8'), withHeader, 'the block is restored, the rest kept');
  });

  it('a file written under the old notice (`make sync` alone) has its block replaced in place: the markers are what counts', async () => {
    const file = join(t.baseDir, 'host_vars/pro-dev.yml');
    const current = readFileSync(file, 'utf8');
    const notice = '# Do not edit this section — it will be overwritten by `anklume-gen sync` (make sync)\n';
    assert.ok(current.includes(notice), current);
    const old = current.replace(notice, '# Do not edit this section — it will be overwritten by `make sync`\n');
    assert.equal(holdsUserBytes(old), false, 'the old notice is part of the block, not bytes of the user');
    writeFileSync(file, `# my header\n${old}my_var: 42\n`);
    const report = await sync({ infraPath: EXAMPLE, baseDir: t.baseDir, env: t.env });
    assert.deepEqual(report.written, ['host_vars/pro-dev.yml']);
    assert.equal(readFileSync(file, 'utf8'), `# my header\n${current}my_var: 42\n`);
  });

  it('inserts the block at the top of a file without markers', async () => {
    const file = join(t.baseDir, 'group_vars/perso.yml');
    writeFileSync(file, '---\nmine: true\n');
    await sync({ infraPath: EXAMPLE, baseDir: t.baseDir, env: t.env });
    const text = readFileSync(file, 'utf8');
    assert.match(text, /^---\n# === MANAGED BY infra.yml ===\n/);
    assert.ok(text.endsWith('# === END MANAGED ===\n\nmine: true\n'), text);
  });

  it('lists orphans, protects ephemeral=false ones, and cleans only unprotected ones', async () => {
    writeFileSync(join(t.baseDir, 'host_vars/gone.yml'), '---\ninstance_name: gone\ninstance_ephemeral: true\n');
    writeFileSync(join(t.baseDir, 'group_vars/old.yml'), '---\ndomain_name: old\ndomain_ephemeral: false\n');
    // Unreadable (nested too deeply to parse safely): kept, like any file sync cannot read.
    writeFileSync(join(t.baseDir, 'host_vars/deep.yml'), `x: ${'['.repeat(5000)}${']'.repeat(5000)}\n`);
    const dry = await sync({ infraPath: EXAMPLE, baseDir: t.baseDir, env: t.env, dryRun: true, cleanOrphans: true });
    assert.deepEqual(dry.orphans, [
      { path: 'group_vars/old.yml', protected: true },
      { path: 'host_vars/deep.yml', protected: true },
      { path: 'host_vars/gone.yml', protected: false },
    ]);
    assert.deepEqual(dry.deleted, [], 'dry-run never deletes');
    const clean = await sync({ infraPath: EXAMPLE, baseDir: t.baseDir, env: t.env, cleanOrphans: true });
    assert.deepEqual(clean.deleted, ['host_vars/gone.yml']);
    assert.ok(existsSync(join(t.baseDir, 'group_vars/old.yml')));
    assert.ok(!existsSync(join(t.baseDir, 'host_vars/gone.yml')));
  });
});

describe('the AI access holder of the state file reaches the tree', () => {
  const aiPolicies = (baseDir: string) =>
    ((pythonLoad(join(baseDir, 'group_vars/all.yml')) as { network_policies?: { from: string; to: string }[] }).network_policies ?? []).filter((p) => p.to === 'ai-tools');

  it('names the holder after a switch, and no holder when nobody has access', async () => {
    const t = testEnv();
    try {
      const stateFile = t.env.ANKLUME_STATE_FILE!;
      mkdirSync(join(stateFile, '..'), { recursive: true });
      await sync({ infraPath: EXAMPLE, baseDir: t.baseDir, env: t.env });
      assert.deepEqual(aiPolicies(t.baseDir).map((p) => p.from), ['pro'], 'no switch yet: the default');

      writeFileSync(stateFile, 'perso\n');
      const switched = await sync({ infraPath: EXAMPLE, baseDir: t.baseDir, env: t.env });
      assert.deepEqual(switched.written, ['group_vars/all.yml', 'nftables/anklume.nft']);
      assert.deepEqual(aiPolicies(t.baseDir).map((p) => p.from), ['perso']);

      // A failed switch leaves the state file empty: nobody has access, and no file may say otherwise.
      writeFileSync(stateFile, '');
      const nobody = await sync({ infraPath: EXAMPLE, baseDir: t.baseDir, env: t.env });
      assert.deepEqual(nobody.written, ['group_vars/all.yml', 'nftables/anklume.nft']);
      assert.deepEqual(aiPolicies(t.baseDir), []);
      assert.ok(!('network_policies' in (pythonLoad(join(t.baseDir, 'group_vars/all.yml')) as object)), 'an empty list is no key at all');
      assert.match(readFileSync(join(t.baseDir, 'nftables/anklume.nft'), 'utf8'), /^# AI access holder: none$/m);
    } finally {
      t.cleanup();
    }
  });
});

describe('sync --dry-run and --check', () => {
  it('write nothing, and --check reports what is out of date', async () => {
    const t = testEnv();
    try {
      const dry = await sync({ infraPath: EXAMPLE, baseDir: t.baseDir, env: t.env, dryRun: true });
      assert.equal(dry.written.length, 11);
      assert.ok(!existsSync(t.baseDir), 'dry-run created nothing');
      const check = await sync({ infraPath: EXAMPLE, baseDir: t.baseDir, env: t.env, check: true });
      assert.equal(check.written.length, 11);
      assert.ok(!existsSync(t.baseDir), '--check created nothing');
    } finally {
      t.cleanup();
    }
  });

  it('writes nothing at all when the infra is invalid', async () => {
    const t = testEnv();
    try {
      const bad = join(t.dir, 'bad.yml');
      writeFileSync(bad, readFileSync(EXAMPLE, 'utf8').replace('subnet_id: 2', 'subnet_id: 300'));
      const report = await sync({ infraPath: bad, baseDir: t.baseDir, env: t.env });
      assert.ok(report.errors.some((e) => e.message.includes("subnet_id must be 0-254, got 300")));
      assert.ok(!existsSync(t.baseDir));
    } finally {
      t.cleanup();
    }
  });
});

describe('a large tree (written by the writer thread)', () => {
  it('writes every file, the same bytes as a small sync would, and nothing on the next run', async () => {
    const t = testEnv();
    try {
      const infra = join(t.dir, 'large.yml');
      writeFileSync(infra, syntheticInfraText({ domains: 30, machinesPerDomain: 20 }));
      const first = await sync({ infraPath: infra, baseDir: t.baseDir, env: t.env });
      assert.deepEqual(first.errors, []);
      assert.equal(first.written.length, 1 + 30 * 2 + 600 + 1, 'all.yml, inventory + group_vars per domain, host_vars, ruleset');
      const host = readFileSync(join(t.baseDir, 'host_vars/dom7-m3.yml'), 'utf8');
      assert.match(host, /^instance_name: dom7-m3$/m);
      assert.match(host, /^instance_ip: 10\.100\.7\.4$/m);
      // Every file, whichever thread rendered it (writer.ts offers new files to the writer
      // thread), is what the plan renders, and the cache holds the digest of what was rendered.
      const { evaluate } = await import('../generator/infra/pipeline.ts');
      const { gather } = await import('../generator/infra/gather.ts');
      const { planOutputs } = await import('../generator/tree/outputs.ts');
      const { digest } = await import('../generator/tree/cache.ts');
      const { mergeManaged } = await import('../generator/tree/managedBlock.ts');
      const { infra: model, holder } = evaluate(await gather(infra, t.env));
      assert.ok(model);
      const cache = JSON.parse(readFileSync(join(t.baseDir, '.anklume-gen/cache.json'), 'utf8')) as { files: Record<string, { digest: string }> };
      for (const output of planOutputs(model, holder)) {
        const rendered = output.text();
        assert.equal(readFileSync(join(t.baseDir, output.path), 'utf8'), output.managed ? mergeManaged(undefined, rendered) : rendered, output.path);
        assert.equal(cache.files[output.path]?.digest, digest(rendered), output.path);
      }
      const before = mtimes(t.baseDir);
      const again = await sync({ infraPath: infra, baseDir: t.baseDir, env: t.env });
      assert.deepEqual(again.written, []);
      assert.deepEqual(mtimes(t.baseDir), before);
    } finally {
      t.cleanup();
    }
  });
});

describe('names reach file paths only after validation', () => {
  for (const [label, edit] of [
    ['a machine named ../../x', (t: string) => t.replace('pro-dev:', '../../x:')],
    ['a machine named a/b', (t: string) => t.replace('pro-dev:', 'a/b:')],
    ['a domain named ../up', (t: string) => t.replace('  perso:', '  ../up:')],
  ] as const) {
    it(`refuses ${label} and writes nothing, inside or outside the base dir`, async () => {
      const t = testEnv();
      try {
        const bad = join(t.dir, 'bad.yml');
        writeFileSync(bad, edit(readFileSync(EXAMPLE, 'utf8')));
        const report = await sync({ infraPath: bad, baseDir: t.baseDir, env: t.env });
        assert.ok(report.errors.some((e) => /invalid name/.test(e.message)), JSON.stringify(report.errors));
        assert.deepEqual(readdirSync(t.dir).sort(), ['bad.yml']);
      } finally {
        t.cleanup();
      }
    });
  }
});

describe('generated YAML reads back identically in Ansible (PyYAML, YAML 1.1)', () => {
  it('round-trips quotes, colons, #, newlines and YAML 1.1 booleans', async () => {
    const t = testEnv();
    try {
      const report = await sync({ infraPath: TRICKY, baseDir: t.baseDir, env: t.env });
      assert.deepEqual(report.errors, []);
      const web = pythonLoad(join(t.baseDir, 'host_vars/lab-web.yml')) as Record<string, unknown>;
      assert.equal(web.instance_description, 'yes');
      assert.deepEqual(web.instance_config, { 'limits.cpu': '2', 'user.note': 'on', 'boot.time': '10:20' });
      assert.deepEqual(web.instance_roles, ['base_system', 'web: server']);
      assert.equal(web.instance_ephemeral, true, 'inherits the domain value');
      const db = pythonLoad(join(t.baseDir, 'host_vars/lab-db.yml')) as Record<string, unknown>;
      assert.equal(db.instance_description, 'NO');
      assert.equal(db.instance_ephemeral, false);
      assert.equal(db.instance_os_image, 'images:alpine/3.20');
      const group = pythonLoad(join(t.baseDir, 'group_vars/lab.yml')) as Record<string, unknown>;
      assert.equal(group.domain_description, `Lab domain: "quoted" and 'single' # hash\nsecond line: with colon`);
      assert.deepEqual(group.incus_network, { name: 'net-lab', subnet: '10.100.7.0/24', gateway: '10.100.7.254' });
      const all = pythonLoad(join(t.baseDir, 'group_vars/all.yml')) as Record<string, unknown>;
      assert.equal(all.project_name, 'tricky: project # not a comment');
      assert.deepEqual(all.incus_all_images, ['images:alpine/3.20', 'images:debian/13']);
      assert.ok(!('ansible_connection' in all) && !('ansible_user' in all));
      assert.ok(!('network_policies' in all), 'no policies in the infra: no key');
      const inventory = pythonLoad(join(t.baseDir, 'inventory/lab.yml'));
      assert.deepEqual(inventory, { all: { children: { lab: { hosts: { 'lab-web': { ansible_host: '10.100.7.10' }, 'lab-db': null } } } } });
    } finally {
      t.cleanup();
    }
  });
});

describe('warnings', () => {
  it('keep their place (file, line, column, path) when the cache answers an unchanged sync', async () => {
    const t = testEnv();
    try {
      const infraPath = 'test/fixtures/invalid/gpu-shared.yml';
      const first = await sync({ infraPath, baseDir: t.baseDir, env: t.env });
      assert.equal(first.cached, false);
      const again = await sync({ infraPath, baseDir: t.baseDir, env: t.env });
      assert.equal(again.cached, true, 'nothing parsed');
      assert.equal(again.warnings.length, 1);
      assert.deepEqual(again.warnings, first.warnings);
      assert.deepEqual([again.warnings[0].file, again.warnings[0].line, again.warnings[0].column, again.warnings[0].path], [infraPath, 12, 7, '/domains/ai-tools/machines/trainer']);
    } finally {
      t.cleanup();
    }
  });
});

describe('after a power cut', () => {
  it('a cache from an earlier boot is not trusted: a file emptied behind its stamps is rewritten', async () => {
    const t = testEnv();
    try {
      assert.deepEqual((await sync({ infraPath: EXAMPLE, baseDir: t.baseDir, env: t.env })).errors, []);
      const file = join(t.baseDir, 'host_vars/pro-dev.yml');
      const good = readFileSync(file, 'utf8');
      // What a power cut can leave of a file that was never synced (empty), and a cache written
      // after it that the disk kept: its stamps describe what is there now.
      writeFileSync(file, '');
      const cacheFile = join(t.baseDir, '.anklume-gen/cache.json');
      const cache = JSON.parse(readFileSync(cacheFile, 'utf8')) as { boot: string; files: Record<string, { size: number; mtimeMs: number }> };
      cache.files['host_vars/pro-dev.yml'] = { ...cache.files['host_vars/pro-dev.yml'], size: 0, mtimeMs: statSync(file).mtimeMs };
      writeFileSync(cacheFile, JSON.stringify(cache));
      assert.equal((await sync({ infraPath: EXAMPLE, baseDir: t.baseDir, env: t.env })).cached, true, 'in the same boot the stamps are believed');
      writeFileSync(cacheFile, JSON.stringify({ ...cache, boot: 'an-earlier-boot' }));
      const report = await sync({ infraPath: EXAMPLE, baseDir: t.baseDir, env: t.env });
      assert.equal(report.cached, false);
      assert.deepEqual(report.written, ['host_vars/pro-dev.yml']);
      assert.ok(readFileSync(file, 'utf8').includes(good.slice(good.indexOf('# === MANAGED'), good.indexOf('# === END MANAGED ==='))));
    } finally {
      t.cleanup();
    }
  });

  it('only a file with bytes of the user is rewritten durably (the rest can be regenerated)', () => {
    const block = managedBlock({ a: 1 });
    const fresh = mergeManaged(undefined, block);
    assert.equal(holdsUserBytes(fresh), false);
    assert.equal(holdsUserBytes(fresh + 'mine: 1\n'), true);
    assert.equal(holdsUserBytes(`# header\n${fresh}`), true);
    assert.equal(holdsUserBytes('---\nmine: true\n'), true, 'no markers: all of it is the user\'s');
  });
});
