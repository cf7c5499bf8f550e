/**
 * The schema validator, compiled by ajv. Compiling costs about 70 ms at every start, and loading
 * ajv itself about 45 ms, so the build also writes the validator as standalone code
 * (dist/generator/infra/infraValidator.cjs, see buildValidator.ts), stamped with the text of the
 * schema it was made from; schema.ts uses it when the stamp is the schema on disk and compiles at
 * run time otherwise (sources run through tsx, a schema edited after the build). The text itself,
 * not a digest: comparing 30 KB costs nothing, and hashing would load node:crypto for `validate`.
 * ajv is therefore loaded only by the functions that compile.
 */
import type { Ajv as AjvInstance, ValidateFunction } from 'ajv';
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

export function compileValidator(): ValidateFunction {
  return newAjv(false).compile(infraSchema);
}

/** The CommonJS module that buildValidator.ts writes: the validator, and the schema's text. */
export function standaloneValidatorCode(): string {
  const ajv = newAjv(true);
  const standaloneCode = requireCjs('ajv/dist/standalone/index.js') as typeof import('ajv/dist/standalone/index.js').default;
  const code = standaloneCode(ajv, ajv.compile(infraSchema));
  return `${code}\nmodule.exports.schemaText = ${JSON.stringify(SCHEMA_TEXT)};\n`;
}
