/**
 * The golden-file switch (test/helpers/golden.ts): only UPDATE_GOLDEN=1 rewrites, never in CI, and
 * no test decides it on its own.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { maybeUpdateGolden, updatingGolden } from './helpers/golden.ts';

describe('golden files', () => {
  it('are rewritten for UPDATE_GOLDEN=1 only', () => {
    for (const value of [undefined, '', '0', 'false', 'no', 'true', 'yes', ' 1']) {
      assert.equal(updatingGolden({ UPDATE_GOLDEN: value }), false, `UPDATE_GOLDEN=${JSON.stringify(value)}`);
    }
    assert.equal(updatingGolden({ UPDATE_GOLDEN: '1' }), true);
    assert.equal(updatingGolden({ UPDATE_GOLDEN: '1', CI: 'false' }), true, 'CI=false is not CI');
  });

  it('are never rewritten in CI: UPDATE_GOLDEN=1 there fails loudly', () => {
    for (const ci of ['true', '1', 'yes']) {
      assert.throws(() => updatingGolden({ UPDATE_GOLDEN: '1', CI: ci }), /never rewritten in CI/, `CI=${ci}`);
    }
    assert.equal(updatingGolden({ UPDATE_GOLDEN: '0', CI: 'true' }), false, 'comparing in CI is the normal case');
  });

  it('maybeUpdateGolden writes the file only when updating', () => {
    const dir = mkdtempSync(join(tmpdir(), 'anklume-golden-'));
    try {
      const path = join(dir, 'sub', 'golden.txt');
      maybeUpdateGolden(path, 'x', { UPDATE_GOLDEN: '0' });
      assert.equal(existsSync(path), false);
      assert.throws(() => maybeUpdateGolden(path, 'x', { UPDATE_GOLDEN: '1', CI: 'true' }), /never rewritten in CI/);
      assert.equal(existsSync(path), false);
      maybeUpdateGolden(path, 'x', { UPDATE_GOLDEN: '1' });
      assert.equal(readFileSync(path, 'utf8'), 'x');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('no test reads UPDATE_GOLDEN itself: every golden write goes through helpers/golden.ts', () => {
    const testDir = fileURLToPath(new URL('.', import.meta.url));
    const readers = readdirSync(testDir, { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts') && f !== join('helpers', 'golden.ts') && f !== 'golden.test.ts')
      .filter((f) => /env\.UPDATE_GOLDEN|\[['"]UPDATE_GOLDEN['"]\]/.test(readFileSync(join(testDir, f), 'utf8')));
    assert.deepEqual(readers, []);
  });
});
