/**
 * Build step (npm run build / prepare): every template under templates/ precompiled, with the
 * digest of its source, beside templates.js (see there for why and how it is used).
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { COMPILE_OPTIONS, handlebarsCompiler, PRECOMPILED_TEMPLATES, templateDigest, TEMPLATES_DIR } from './templates.js';

function templateFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? templateFiles(join(dir, e.name)) : e.name.endsWith('.hbs') ? [join(dir, e.name)] : []))
    .sort();
}

const compiler = handlebarsCompiler();
const entries = templateFiles(TEMPLATES_DIR).map((file) => {
  const source = readFileSync(file, 'utf8');
  const name = relative(TEMPLATES_DIR, file);
  return `  ${JSON.stringify(name)}: { digest: ${JSON.stringify(templateDigest(source))}, spec: ${compiler.precompile(source, COMPILE_OPTIONS)} },`;
});
writeFileSync(fileURLToPath(new URL(PRECOMPILED_TEMPLATES, import.meta.url)), `'use strict';\nexports.templates = {\n${entries.join('\n')}\n};\n`);
