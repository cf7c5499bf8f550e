/**
 * The schema validator, compiled by ajv. Compiling costs about 70 ms at every start, so the build
 * also writes it as standalone code (dist/generator/infraValidator.cjs, see buildValidator.ts),
 * stamped with the digest of the schema it was made from; schema.ts uses it when the stamp
 * matches the schema on disk and compiles at run time otherwise (sources run through tsx, a
 * schema edited after the build).
 */
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import standaloneCode from 'ajv/dist/standalone/index.js';
import { createHash } from 'node:crypto';
import { infraSchema, SCHEMA_TEXT } from './names.js';

export const PRECOMPILED_FILE = 'infraValidator.cjs';

function newAjv(source: boolean): Ajv {
  const ajv = new Ajv({ allErrors: true, verbose: true, strictTypes: true, code: { source } });
  addFormats.default(ajv, ['ipv4']);
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
  const code = standaloneCode.default(ajv, ajv.compile(infraSchema));
  return `${code}\nmodule.exports.schemaDigest = ${JSON.stringify(schemaDigest())};\n`;
}
