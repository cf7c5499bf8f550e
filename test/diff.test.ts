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
import { changeDiff, unifiedDiff } from '../generator/tree/diff.ts';
import { runCli } from './helpers/cli.ts';
import { testEnv } from './helpers/env.ts';

const EXAMPLE = 'examples/infra.yml';

/**
 * Applies a diff with the real patch(1), which must find every hunk exactly where its `@@` line
 * says: no fuzz (-F0), and no offset (patch applies a hunk whose line numbers are off, and only says
 * so: "Hunk #1 succeeded at 12 (offset 1 line)").
 */
function patch(dir: string, diff: string): void {
  const r = spawnSync('patch', ['-p0', '-F0', '-d', dir], { input: diff, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr + '\n' + diff);
  assert.doesNotMatch(r.stdout + r.stderr, /offset|fuzz/i, `the hunks' line numbers are not the file's:\n${r.stdout}${r.stderr}\n${diff}`);
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

  it('a managed block: the hunks carry the line numbers of the whole file, not of the block', () => {
    const file = (ip: string, extra = '') =>
      ['# my header', '# a second line of mine', '---', '# === MANAGED BY infra.yml ===', ...Array.from({ length: 10 }, (_, i) => `k${i}: ${i}`), `instance_ip: ${ip}`, ...extra.split('\n').filter(Boolean), 'z: 1', '# === END MANAGED ===', '', 'my_var: 42', ''].join('\n');
    // instance_ip is line 15 of the file (4 lines before the block's first key, 10 keys); the block
    // ends two lines below it, and the file goes on: two lines of context on each side (patch(1)
    // would take fewer lines below than above for the end of the file).
    assert.equal(changeDiff('h.yml', file('10.0.0.1'), file('10.0.0.2'), true),
      '--- h.yml\n+++ h.yml\n@@ -13,5 +13,5 @@\n k8: 8\n k9: 9\n-instance_ip: 10.0.0.1\n+instance_ip: 10.0.0.2\n z: 1\n # === END MANAGED ===\n');
    assert.equal(changeDiff('h.yml', file('1'), file('1', 'new: 1\n'), true).split('\n')[2], '@@ -14,4 +14,5 @@', 'an added line');
    const top = (v: string) => ['---', '# === MANAGED BY infra.yml ===', `a: ${v}`, ...Array.from({ length: 6 }, (_, i) => `k${i}: ${i}`), '# === END MANAGED ===', ''].join('\n');
    assert.equal(changeDiff('t.yml', `${top('1')}mine: 1\n`, `${top('2')}mine: 1\n`, true).split('\n')[2], '@@ -2,3 +2,3 @@', 'one line above the change in the block (its marker): one line below');
    assert.equal(changeDiff('t.yml', top('1'), top('2'), true).split('\n')[2], '@@ -2,3 +2,3 @@', 'and where the block ends the file');
    const t = testEnv();
    try {
      for (const [before, after] of [[file('10.0.0.1'), file('10.0.0.2', 'new: 1\n')], [`${top('1')}mine: 1\n`, `${top('2')}mine: 1\n`], [top('1'), top('2')]]) {
        writeFileSync(join(t.dir, 'h.yml'), before);
        patch(t.dir, changeDiff('h.yml', before, after, true));
        assert.equal(readFileSync(join(t.dir, 'h.yml'), 'utf8'), after);
      }
    } finally {
      t.cleanup();
    }
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
      const doc = JSON.parse(r.stdout) as { would_write: string[]; diffs: Record<string, string> };
      assert.deepEqual(Object.keys(doc.diffs), doc.would_write);
      assert.deepEqual(doc.would_write, ['group_vars/all.yml', 'host_vars/pro-dev.yml', 'nftables/anklume.nft']);
      assert.match(doc.diffs['host_vars/pro-dev.yml'], /^-instance_ip: 10\.9\.9\.9\n\+instance_ip: 10\.100\.2\.10$/m);
      // Line numbers counted in the file itself: as many lines of context on each side as the
      // block holds below the change (up to three).
      const lines = readFileSync(host, 'utf8').split('\n');
      const changed = lines.indexOf('instance_ip: 10.9.9.9') + 1;
      const context = Math.min(3, lines.indexOf('# === END MANAGED ===') + 1 - changed);
      const hunk = `@@ -${changed - context},${2 * context + 1} +${changed - context},${2 * context + 1} @@`;
      assert.ok(doc.diffs['host_vars/pro-dev.yml'].includes(`\n${hunk}\n`), `${hunk}\n${doc.diffs['host_vars/pro-dev.yml']}`);
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
