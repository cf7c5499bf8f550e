/**
 * The layout of generator/ is its architecture (ARCHITECTURE.md): one folder per stage, and a
 * module imports only from its own stage or from the stages before it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const GENERATOR = fileURLToPath(new URL('../generator/', import.meta.url));
const STAGES = ['core', 'infra', 'nftables', 'tree', 'aiswitch', 'audit', 'cli'];
const IMPORT = /(?:from|import\()\s*'(\.{1,2}\/[^']+)'/g;

test('generator/ holds the stage folders and nothing else', () => {
  assert.deepEqual(readdirSync(GENERATOR).sort(), [...STAGES].sort());
});

test('every import goes to the same stage or an earlier one', () => {
  const wrong: string[] = [];
  for (const [rank, stage] of STAGES.entries()) {
    for (const file of readdirSync(join(GENERATOR, stage)).filter((f) => /\.c?ts$/.test(f))) {
      for (const [, spec] of readFileSync(join(GENERATOR, stage, file), 'utf8').matchAll(IMPORT)) {
        const target = spec.startsWith('./') ? stage : /^\.\.\/([a-z]+)\//.exec(spec)?.[1];
        const targetRank = target === undefined ? -1 : STAGES.indexOf(target);
        if (targetRank < 0 || targetRank > rank) wrong.push(`${stage}/${file} imports ${spec}`);
      }
    }
  }
  assert.deepEqual(wrong, []);
});
