/**
 * sync --diff: the unified diff of each file that would change, checked by the real patch(1): what
 * it prints, applied in the base dir, gives exactly what sync would write.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { unifiedDiff } from '../generator/tree/diff.ts';
import { runCli } from './helpers/cli.ts';
import { testEnv } from './helpers/env.ts';

const EXAMPLE = 'examples/infra.yml';

function patch(dir: string, diff: string): void {
  const r = spawnSync('patch', ['-p0', '-s', '-d', dir], { input: diff, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr + '\n' + diff);
}

describe('unifiedDiff', () => {
  it('any edit of any text: patch(1) turns the old text into the new one', () => {
    const t = testEnv();
    try {
      const line = fc.constantFrom('a', 'b', 'c', 'key: 1', '', '# x');
      const text = fc.array(line, { maxLength: 25 }).map((lines) => lines.join('\n'));
      const ending = fc.constantFrom('\n', '');
      fc.assert(
        fc.property(text, ending, text, ending, (a, endA, b, endB) => {
          const before = a + (a ? endA : '');
          const after = b + (b ? endB : '');
          const diff = unifiedDiff('f.txt', { before, after });
          if (before === after) return diff === '';
          writeFileSync(join(t.dir, 'f.txt'), before);
          patch(t.dir, diff);
          return readFileSync(join(t.dir, 'f.txt'), 'utf8') === after;
        }),
        { numRuns: 150 },
      );
    } finally {
      t.cleanup();
    }
  });

  it('hunks with three lines of context, removals before additions, /dev/null for a new file', () => {
    const before = Array.from({ length: 20 }, (_, i) => `l${i}`).join('\n') + '\n';
    const after = before.replace('l2\n', 'L2\n').replace('l17\n', 'L17\n');
    assert.equal(unifiedDiff('f', { before, after }),
      '--- f\n+++ f\n@@ -1,6 +1,6 @@\n l0\n l1\n-l2\n+L2\n l3\n l4\n l5\n@@ -15,6 +15,6 @@\n l14\n l15\n l16\n-l17\n+L17\n l18\n l19\n');
    assert.equal(unifiedDiff('n', { before: undefined, after: 'x\ny\n' }), '--- /dev/null\n+++ n\n@@ -0,0 +1,2 @@\n+x\n+y\n');
  });
});

describe('sync --diff', () => {
  it('--dry-run --diff writes nothing; the diff is the managed block only, and patch -p0 applies it', async () => {
    const t = testEnv();
    try {
      const fresh = await runCli(['sync', EXAMPLE, '--base-dir', t.baseDir, '--dry-run', '--diff'], t.env);
      assert.equal(fresh.code, 0, fresh.stderr);
      assert.ok(!existsSync(t.baseDir), 'nothing written');
      assert.match(fresh.stdout, /^--- \/dev\/null\n\+\+\+ host_vars\/pro-dev\.yml\n@@ -0,0 \+1,\d+ @@\n\+---$/m, 'a new file: whole');

      assert.equal((await runCli(['sync', EXAMPLE, '--base-dir', t.baseDir], t.env)).code, 0);
      const host = join(t.baseDir, 'host_vars/pro-dev.yml');
      const mine = readFileSync(host, 'utf8').replace('# Your custom variables below:\n', '# Your custom variables below:\nmy_var: 42\n');
      writeFileSync(host, `# my header\n${mine.replace('instance_ip: 10.100.2.10', 'instance_ip: 10.9.9.9')}`);
      mkdirSync(join(t.dir, 'state'), { recursive: true });
      writeFileSync(t.env.ANKLUME_STATE_FILE!, 'perso\n');
      const mtime = statSync(host).mtimeMs;

      const r = await runCli(['sync', EXAMPLE, '--base-dir', t.baseDir, '--dry-run', '--diff', '--json'], t.env);
      assert.equal(r.code, 0, r.stderr);
      const doc = JSON.parse(r.stdout) as { written: string[]; diffs: Record<string, string> };
      assert.deepEqual(Object.keys(doc.diffs), doc.written);
      assert.deepEqual(doc.written, ['group_vars/all.yml', 'host_vars/pro-dev.yml', 'nftables/anklume.nft']);
      assert.match(doc.diffs['host_vars/pro-dev.yml'], /^-instance_ip: 10\.9\.9\.9\n\+instance_ip: 10\.100\.2\.10$/m);
      assert.doesNotMatch(doc.diffs['host_vars/pro-dev.yml'], /my header|my_var/, 'nothing outside the block');
      assert.equal(statSync(host).mtimeMs, mtime, '--dry-run --diff wrote nothing');

      patch(t.baseDir, Object.values(doc.diffs).join(''));
      const check = await runCli(['sync', EXAMPLE, '--base-dir', t.baseDir, '--check'], t.env);
      assert.equal(check.code, 0, `the patched tree is what sync would write:\n${check.stdout}`);
      assert.match(readFileSync(host, 'utf8'), /^# my header\n[^]*my_var: 42\n$/);
    } finally {
      t.cleanup();
    }
  });

  it('sync --diff writes, and prints what it changed', async () => {
    const t = testEnv();
    try {
      const r = await runCli(['sync', EXAMPLE, '--base-dir', t.baseDir, '--diff'], t.env);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^\+\+\+ inventory\/pro\.yml$/m);
      assert.match(r.stdout, /11 file\(s\) written/);
      assert.ok(existsSync(join(t.baseDir, 'inventory/pro.yml')));
      const again = await runCli(['sync', EXAMPLE, '--base-dir', t.baseDir, '--diff'], t.env);
      assert.doesNotMatch(again.stdout, /^(---|\+\+\+) /m, 'nothing changes, no diff');
    } finally {
      t.cleanup();
    }
  });
});
