/**
 * Durable atomic writes, seen in the system calls themselves (strace): a durable write syncs the
 * file before the rename and the directory after it; a plain one syncs nothing.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

const ROOT = process.cwd();
const hasStrace = spawnSync('strace', ['-V']).status === 0;

/** The fsync/rename calls of one writeAtomic in a fresh process, in order, with their paths. */
function traced(dir: string, durable: boolean): string[] {
  const script = `const { writeAtomic } = await import(${JSON.stringify(`${ROOT}/generator/core/files.ts`)});
writeAtomic(${JSON.stringify(join(dir, 'state'))}, 'pro\\n', { durable: ${durable} });`;
  const log = join(dir, `trace-${durable}`);
  const r = spawnSync('strace', ['-f', '-y', '-o', log, '-e', 'trace=fsync,fdatasync,rename,renameat,renameat2',
    process.execPath, '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return readFileSync(log, 'utf8').split('\n')
    .filter((line) => line.includes(dir) && /(fsync|fdatasync|rename\w*)\(/.test(line))
    .map((line) => line.replace(/^\d+\s+/, ''));
}

describe('writeAtomic', () => {
  it('durable: fsync of the file, rename, fsync of the directory, in that order', { skip: !hasStrace && 'strace is not installed (make deps)' }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'anklume-files-'));
    try {
      const calls = traced(dir, true);
      const kinds = calls.map((c) => /^(\w+)\(/.exec(c)?.[1]);
      const rename = kinds.findIndex((k) => k?.startsWith('rename'));
      assert.ok(rename > 0, calls.join('\n'));
      assert.match(calls[rename - 1], new RegExp(`^f(data)?sync\\(\\d+<${dir}/state\\.[^>]*\\.tmp>\\)`), 'the temporary file is synced before the rename');
      assert.match(calls[rename + 1] ?? '', new RegExp(`^f(data)?sync\\(\\d+<${dir}>\\)`), 'the directory is synced after it');
      assert.equal(readFileSync(join(dir, 'state'), 'utf8'), 'pro\n');
      assert.deepEqual(traced(dir, false).map((c) => /^(\w+)\(/.exec(c)?.[1]).filter((k) => k?.includes('sync')), [], 'a plain write syncs nothing');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the ai_switch role's install_atomic.py: the same order", { skip: !hasStrace && 'strace is not installed (make deps)' }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'anklume-files-'));
    try {
      const log = join(dir, 'trace');
      const r = spawnSync('strace', ['-f', '-y', '-o', log, '-e', 'trace=fsync,fdatasync,rename,renameat,renameat2',
        'python3', `${ROOT}/roles/ai_switch/files/install_atomic.py`, '--text', 'pro\n', join(dir, 'state')], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const calls = readFileSync(log, 'utf8').split('\n').filter((line) => line.includes(dir)).map((line) => line.replace(/^\d+\s+/, ''));
      const rename = calls.findIndex((c) => c.startsWith('rename'));
      assert.ok(rename > 0, calls.join('\n'));
      assert.match(calls[rename - 1], /^f(data)?sync\(\d+<[^>]*\.tmp>\)/);
      assert.match(calls[rename + 1] ?? '', new RegExp(`^f(data)?sync\\(\\d+<${dir}>\\)`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
