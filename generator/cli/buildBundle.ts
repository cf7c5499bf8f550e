/**
 * Build step (npm run build / prepare), after tsc and the precompiled validator and templates:
 * the CLI in one CommonJS file (anklume-gen.bundle.cjs) and its V8 code cache, warmed up by
 * running the everyday commands on the bundled example in a scratch folder, so that the cache
 * holds the bytecode of what they run (see codeCache.cts).
 */
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { main } from './main.js';
import type { LoadedBundle } from './codeCache.cjs';
import { packagePath } from '../core/packageRoot.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const bundleFile = join(here, 'anklume-gen.bundle.cjs');
const cacheDir = packagePath('dist', 'code-cache');

// The CLI, and the precompiled validator and templates that the build wrote (required only when
// first needed, as from their files).
const entry = `
export * from './generator/cli/main.ts';
import { bundled } from './generator/core/bundled.ts';
bundled.validator = () => require('./dist/generator/infra/infraValidator.cjs');
bundled.templates = () => require('./dist/generator/core/templates.precompiled.cjs');
bundled.handlebarsRuntime = () => require('handlebars/runtime');
`;

await build({
  stdin: { contents: entry, resolveDir: packagePath(), sourcefile: 'anklume-gen.bundle.ts', loader: 'ts' },
  outfile: bundleFile,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  // Less to read at every start; names are kept, so messages and stack traces still name them.
  minifyWhitespace: true,
  logLevel: 'warning',
  // Every module of the bundle resolves its files as the module in cli/ would: the stages are
  // sibling folders, so `../infra/…` and `../../schema` lead where they lead from the build.
  define: { 'import.meta.url': '__anklumeModuleUrl' },
  // ESM is strict code: the bundle stays so ('use strict' first, above the banner's line).
  banner: { js: "'use strict';\nconst __anklumeModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
});

const { buildLine, loadBundle } = createRequire(import.meta.url)('./codeCache.cjs') as typeof import('./codeCache.cjs');
// The bundle's first line names its content (codeCache.cts names the cache after it).
const code = readFileSync(bundleFile, 'utf8');
writeFileSync(bundleFile, buildLine(createHash('sha256').update(code).digest('hex').slice(0, 16)) + code);

rmSync(cacheDir, { recursive: true, force: true });
const bundle = loadBundle<{ main: typeof main }>(bundleFile, [cacheDir], false) as LoadedBundle<{ main: typeof main }>;

const example = packagePath('examples', 'infra.yml');
const scratch = mkdtempSync(join(tmpdir(), 'anklume-gen-warm-up-'));
const silent = { out: () => undefined, err: () => undefined, color: false };
const warmUp = [
  ['--help'],
  ['sync', '--help'],
  ['validate', example],
  ['resolve', example],
  ['nftables', example],
  ['sync', example, '--base-dir', scratch, '--dry-run'],
  ['sync', example, '--base-dir', scratch, '--json'],
  ['sync', example, '--base-dir', scratch],
  ['sync', example, '--base-dir', scratch, '--check'],
  ['flows', example],
  ['flows', example, '--json'],
  ['flows', example, '--from', 'pro', '--to', 'ai-tools'],
];
try {
  for (const args of warmUp) await bundle.exports.main({ args, env: { ...process.env, NO_COLOR: '1' }, streams: silent, cwd: scratch });
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
bundle.save();
if (readdirSync(cacheDir).length !== 1) throw new Error(`the code cache was not written in ${cacheDir}`);
