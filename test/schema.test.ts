/**
 * The precompiled validator that the build writes (schemaCompiler.standaloneValidatorCode) must
 * report exactly what the validator compiled at run time reports, on every invalid fixture.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { ValidateFunction } from 'ajv';
import { readSources } from '../generator/infra.ts';
import { parsePrecise } from '../generator/load.ts';
import { checkShape } from '../generator/schema.ts';
import { compileValidator, schemaDigest, standaloneValidatorCode } from '../generator/schemaCompiler.ts';

const INVALID = 'test/fixtures/invalid';

describe('precompiled schema validator', () => {
  it('reports what the run-time compiled validator reports, on every invalid fixture', async () => {
    // Inside the project, so that the module's require('ajv/...') resolves as it does from dist/.
    const dir = mkdtempSync(join(process.cwd(), '.test-validator-'));
    try {
      const file = join(dir, 'infraValidator.cjs');
      writeFileSync(file, standaloneValidatorCode());
      const precompiled = createRequire(import.meta.url)(file) as ValidateFunction & { schemaDigest: string };
      assert.equal(precompiled.schemaDigest, schemaDigest());
      const runtime = compileValidator();
      let compared = 0;
      for (const name of readdirSync(INVALID).filter((n) => n.endsWith('.yml')).sort()) {
        const { sources } = await readSources(join(INVALID, name));
        const { raw } = parsePrecise(sources);
        if (!raw) continue;
        assert.deepEqual(checkShape(raw, precompiled), checkShape(raw, runtime), name);
        compared++;
      }
      assert.ok(compared > 30, `compared ${compared} fixtures`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
