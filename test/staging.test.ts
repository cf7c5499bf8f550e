/**
 * Directories a sync creates are written in a staging folder and renamed into place whole
 * (tree/staging.ts): a reader sees no directory or all of it, a failed sync leaves none of it, and
 * what already exists is written file by file, atomically, as before.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { WriteMode } from '../generator/core/files.ts';
import { CACHE_DIR } from '../generator/tree/cache.ts';
import { stagedWriter, stageMissingDirs } from '../generator/tree/staging.ts';
import { sync } from '../generator/tree/sync.ts';
import { inlineWriter, type Writer } from '../generator/tree/writer.ts';
import { testEnv } from './helpers/env.ts';

const EXAMPLE = join(import.meta.dirname, '..', 'examples', 'infra.yml');

/** An inline writer that records how each file was written, and runs a check before it finishes. */
function recording(beforeFinish: () => void = () => undefined, fail = false): Writer & { modes: Map<string, WriteMode> } {
  const inner = inlineWriter();
  const modes = new Map<string, WriteMode>();
  return {
    modes,
    write: (path, content, mode) => {
      modes.set(path, mode);
      inner.write(path, content, mode);
    },
    finish: async () => {
      beforeFinish();
      if (fail) throw new Error('the disk is full');
      return inner.finish();
    },
  };
}

describe('staging of the directories a sync creates', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'anklume-staging-'));
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it('a first sync writes every file fresh in the staging folder; the tree shows no directory until all are written', async () => {
    const base = join(scratch, 'first');
    const targets = ['host_vars/a.yml', 'host_vars/b.yml', 'group_vars/all.yml', 'inventory/deep/x.yml'].map((p) => join(base, p));
    mkdirSync(base);
    const staging = stageMissingDirs(base, targets);
    assert.ok(staging);
    const inner = recording(() => {
      assert.deepEqual(readdirSync(base), [CACHE_DIR], 'nothing of the tree visible before the end');
    });
    const writer = stagedWriter(inner, staging);
    for (const t of targets) writer.write(t, `${t}\n`, 'atomic');
    const stamps = await writer.finish();
    assert.deepEqual([...inner.modes.values()], ['fresh', 'fresh', 'fresh', 'fresh']);
    assert.ok([...inner.modes.keys()].every((p) => p.startsWith(join(base, CACHE_DIR, `staging-${process.pid}`))));
    for (const t of targets) assert.equal(readFileSync(t, 'utf8'), `${t}\n`);
    assert.deepEqual(stamps, targets.map((t) => ({ size: statSync(t).size, mtimeMs: statSync(t).mtimeMs })), 'each stamp, in the order written, is its target\'s own');
    assert.deepEqual([...staging.renamedWhole()].sort(), ['group_vars', 'host_vars', 'inventory'], 'each renamed whole: only this sync\'s files in them');
    assert.deepEqual(readdirSync(join(base, CACHE_DIR)), [], 'the staging folder is gone');
  });

  it('directories that exist are not staged: their files are written atomically, the new ones beside them staged', async () => {
    const base = join(scratch, 'mixed');
    mkdirSync(join(base, 'host_vars'), { recursive: true });
    const targets = [join(base, 'host_vars', 'a.yml'), join(base, 'group_vars', 'all.yml')];
    const staging = stageMissingDirs(base, targets);
    assert.ok(staging);
    const inner = recording();
    const writer = stagedWriter(inner, staging);
    for (const t of targets) writer.write(t, 'x: 1\n', 'durable');
    await writer.finish();
    assert.equal(inner.modes.get(targets[0]), 'durable');
    assert.equal(inner.modes.size, 2);
    assert.equal([...inner.modes.values()][1], 'fresh');
    assert.equal(readFileSync(targets[1], 'utf8'), 'x: 1\n');
    assert.equal(stageMissingDirs(base, targets), undefined, 'all there now: nothing to stage');
  });

  it('a writer that fails leaves no staged directory in the tree and no staging folder', async () => {
    const base = join(scratch, 'failed');
    mkdirSync(base);
    const targets = [join(base, 'host_vars', 'a.yml')];
    const staging = stageMissingDirs(base, targets);
    assert.ok(staging);
    const writer = stagedWriter(recording(() => undefined, true), staging);
    writer.write(targets[0], 'x: 1\n', 'atomic');
    await assert.rejects(writer.finish(), /the disk is full/);
    assert.deepEqual(readdirSync(base), [CACHE_DIR]);
    assert.deepEqual(readdirSync(join(base, CACHE_DIR)), []);
  });

  it('a directory that appears meanwhile gets the files one by one; a dead sync\'s leftover folder is removed, a live one\'s kept', async () => {
    const base = join(scratch, 'race');
    mkdirSync(join(base, CACHE_DIR, 'staging-999999999', 'host_vars'), { recursive: true });
    const live = spawnSync(process.execPath, ['-e', 'console.log(process.ppid)'], { encoding: 'utf8' });
    assert.equal(live.status, 0);
    mkdirSync(join(base, CACHE_DIR, `staging-${process.ppid}`), { recursive: true });
    const targets = [join(base, 'host_vars', 'a.yml')];
    const staging = stageMissingDirs(base, targets);
    assert.ok(staging);
    assert.ok(!existsSync(join(base, CACHE_DIR, 'staging-999999999')), "the dead sync's folder");
    assert.ok(existsSync(join(base, CACHE_DIR, `staging-${process.ppid}`)), 'a running process: kept');
    const writer = stagedWriter(recording(() => {
      mkdirSync(join(base, 'host_vars'));
      writeFileSync(join(base, 'host_vars', 'mine.yml'), 'by hand\n');
    }), staging);
    writer.write(targets[0], 'x: 1\n', 'atomic');
    await writer.finish();
    assert.deepEqual(readdirSync(join(base, 'host_vars')).sort(), ['a.yml', 'mine.yml']);
    assert.deepEqual([...staging.renamedWhole()], [], 'not renamed whole: it holds a file of someone else\'s');
  });

  it('a dangling symlink where a directory goes is not staged (nothing replaces it); a staging folder removed under the sync is an error, not files reported written', async () => {
    const base = join(scratch, 'edges');
    mkdirSync(base);
    symlinkSync(join(scratch, 'nowhere'), join(base, 'host_vars'));
    const linked = stageMissingDirs(base, [join(base, 'host_vars', 'a.yml'), join(base, 'group_vars', 'all.yml')]);
    assert.ok(linked);
    assert.equal(linked.path(join(base, 'host_vars', 'a.yml')), join(base, 'host_vars', 'a.yml'), 'written through the link as before');
    linked.discard();
    const staging = stageMissingDirs(base, [join(base, 'group_vars', 'all.yml')]);
    assert.ok(staging);
    const writer = stagedWriter(recording(() => rmSync(join(base, CACHE_DIR), { recursive: true })), staging);
    writer.write(join(base, 'group_vars', 'all.yml'), 'x: 1\n', 'atomic');
    await assert.rejects(writer.finish(), /cannot write .*group_vars: its staging folder .* was removed during the sync/);
    assert.ok(!existsSync(join(base, 'group_vars')));
  });

  it('sync: orphans are found in a directory that was there before the sync, beside the ones it staged (which it does not read)', async () => {
    const t = testEnv();
    const base = join(scratch, 'orphan-before');
    mkdirSync(join(base, 'host_vars'), { recursive: true });
    writeFileSync(join(base, 'host_vars', 'gone.yml'), 'instance_name: gone\n');
    const report = await sync({ infraPath: EXAMPLE, baseDir: base, env: t.env });
    assert.deepEqual(report.errors, []);
    assert.deepEqual(report.orphans.map((o) => o.path), ['host_vars/gone.yml']);
    const fresh = await sync({ infraPath: EXAMPLE, baseDir: join(scratch, 'orphan-fresh'), env: t.env });
    assert.deepEqual(fresh.orphans, []);
  });

  it('sync: a full sync through the staging folder writes the tree, leaves no staging folder, and the next run finds it unchanged', async () => {
    const t = testEnv();
    const base = join(scratch, 'sync');
    const report = await sync({ infraPath: EXAMPLE, baseDir: base, env: t.env });
    assert.deepEqual(report.errors, []);
    assert.equal(report.written.length, 11);
    assert.deepEqual(readdirSync(join(base, CACHE_DIR)).filter((n) => n.startsWith('staging-')), []);
    const again = await sync({ infraPath: EXAMPLE, baseDir: base, env: t.env });
    assert.equal(again.written.length, 0);
    assert.equal(again.cached, true, 'the stamps recorded are the files\' own');
  });
});
