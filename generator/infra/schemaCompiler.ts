/**
 * The schema validator, compiled by ajv. Compiling costs about 70 ms at every start, and loading
 * ajv itself about 45 ms, so the build also writes the validator as standalone code
 * (dist/generator/infraValidator.cjs, see buildValidator.ts), stamped with the digest of the
 * schema it was made from; schema.ts uses it when the stamp matches the schema on disk and
 * compiles at run time otherwise (sources run through tsx, a schema edited after the build).
 * ajv is therefore loaded only by the functions that compile.
 */
import type { Ajv as AjvInstance, ValidateFunction } from 'ajv';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { infraSchema, SCHEMA_TEXT } from './names.js';

export const PRECOMPILED_FILE = 'infraValidator.cjs';

// ajv and ajv-formats are CommonJS: require loads them synchronously, when first needed.
const requireCjs = createRequire(import.meta.url);

function newAjv(source: boolean): AjvInstance {
  const { Ajv } = requireCjs('ajv') as typeof import('ajv');
  const addFormats = requireCjs('ajv-formats') as typeof import('ajv-formats').default;
  const ajv = new Ajv({ allErrors: true, verbose: true, strictTypes: true, code: { source } });
  addFormats(ajv, ['ipv4']);
  return ajv;
}

export function schemaDigest(): string {
  return createHash('sha1').update(SCHEMA_TEXT).digest('hex');
}

export function compileValidator(): ValidateFunction {
  return newAjv(false).compile(infraSchema);
}

/** The CommonJS module that buildValidator.ts writes: the validator, and the schema's digest. */
export function standaloneValidatorCode(): string {
  const ajv = newAjv(true);
  const standaloneCode = requireCjs('ajv/dist/standalone/index.js') as typeof import('ajv/dist/standalone/index.js').default;
  const code = standaloneCode(ajv, ajv.compile(infraSchema));
  return `${code}\nmodule.exports.schemaDigest = ${JSON.stringify(schemaDigest())};\n`;
}
