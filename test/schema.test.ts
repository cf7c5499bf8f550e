/**
 * The precompiled validator that the build writes (schemaCompiler.standaloneValidatorCode) must
 * report exactly what the validator compiled at run time reports, on every invalid fixture.
 * The schemas are also what editors show while a user writes infra.yml (or the infra/ layout's
 * files): each example names its schema and validates against it, and the layout's schemas are
 * derived from infra.schema.json, never edited apart from it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import type { Ajv as AjvInstance, ValidateFunction } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_AI_SERVICES, enrich } from '../generator/infra/enrich.ts';
import { LAYOUT_SCHEMA_FILES, layoutSchemas, layoutSchemaText, type InfraSchemaDocument } from '../generator/infra/layoutSchemas.ts';
import type { Infra } from '../generator/core/types.ts';
import { readSources } from '../generator/infra/sources.ts';
import { parsePrecise } from '../generator/infra/load.ts';
import { checkShape } from '../generator/infra/schema.ts';
import { compileValidator, standaloneValidatorCode } from '../generator/infra/schemaCompiler.ts';
import { SCHEMA_TEXT } from '../generator/infra/names.ts';

const INVALID = 'test/fixtures/invalid';

describe('precompiled schema validator', () => {
  it('reports what the run-time compiled validator reports, on every invalid fixture', async () => {
    // Inside the project, so that the module's require('ajv/...') resolves as it does from dist/.
    const dir = mkdtempSync(join(process.cwd(), '.test-validator-'));
    try {
      const file = join(dir, 'infraValidator.cjs');
      writeFileSync(file, standaloneValidatorCode());
      const precompiled = createRequire(import.meta.url)(file) as ValidateFunction & { schemaText: string };
      assert.equal(precompiled.schemaText, SCHEMA_TEXT);
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

const REPO = fileURLToPath(new URL('..', import.meta.url));
const SCHEMA_DIR = join(REPO, 'schema');
const MODELINE = /^# yaml-language-server: \$schema=(\S+)\n/;

/** ajv as the generator sets it up (schemaCompiler.ts): strict, with strict types. */
function strictAjv(): AjvInstance {
  const requireCjs = createRequire(import.meta.url);
  const { Ajv } = requireCjs('ajv') as typeof import('ajv');
  const addFormats = requireCjs('ajv-formats') as typeof import('ajv-formats').default;
  const ajv = new Ajv({ allErrors: true, strictTypes: true });
  addFormats(ajv, ['ipv4']);
  return ajv;
}

const readSchema = (file: string): Record<string, unknown> => JSON.parse(readFileSync(join(SCHEMA_DIR, file), 'utf8')) as Record<string, unknown>;

function ymlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? ymlFiles(join(dir, e.name)) : e.name.endsWith('.yml') ? [join(dir, e.name)] : [])).sort();
}

describe('schemas for editors', () => {
  it('the infra/ layout schemas are exactly their derivation from infra.schema.json (npm run build writes them)', () => {
    const derived = layoutSchemas(readSchema('infra.schema.json') as unknown as InfraSchemaDocument);
    assert.deepEqual(Object.keys(derived).sort(), Object.values(LAYOUT_SCHEMA_FILES).sort());
    for (const [file, schema] of Object.entries(derived)) {
      assert.equal(readFileSync(join(SCHEMA_DIR, file), 'utf8'), layoutSchemaText(schema), `schema/${file} drifted from infra.schema.json: run npm run build`);
    }
  });

  it('every example file names its schema on its first line and validates against it', () => {
    const ajv = strictAjv();
    const files = ymlFiles(join(REPO, 'examples'));
    assert.ok(files.length >= 7, files.join(', '));
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      const line = MODELINE.exec(text);
      assert.ok(line, `${file}: no yaml-language-server modeline on its first line`);
      const schemaPath = resolve(dirname(file), line[1]);
      assert.equal(dirname(schemaPath), SCHEMA_DIR, `${file}: the modeline must name a file of schema/, relative to the example`);
      const id = (readSchema(basename(schemaPath)) as { $id: string }).$id;
      const validate = ajv.getSchema(id) ?? ajv.compile(readSchema(basename(schemaPath)));
      assert.ok(validate(parseYaml(text)), `${file} against ${basename(schemaPath)}: ${ajv.errorsText(validate.errors)}`);
    }
    const layout = files.filter((f) => f.includes('/examples/infra/')).map((f) => MODELINE.exec(readFileSync(f, 'utf8'))![1]);
    assert.deepEqual([...new Set(layout.map((p) => basename(p)))].sort(), Object.values(LAYOUT_SCHEMA_FILES).sort(), 'each layout schema is used by an example');
  });

  it('the layout schemas check their part as infra.schema.json does, where the single-file schema cannot', () => {
    const ajv = strictAjv();
    const infra = ajv.compile(readSchema('infra.schema.json'));
    const [base, domain, policies] = [LAYOUT_SCHEMA_FILES.base, LAYOUT_SCHEMA_FILES.domain, LAYOUT_SCHEMA_FILES.policies].map((f) => ajv.compile(readSchema(f)));
    const domainFile = { work: { subnet_id: 2, machines: { 'work-dev': { ip: '10.120.2.10' } } } };
    const baseFile = { project_name: 'p', global: { base_subnet: '10.120' } };
    const policiesFile = { network_policies: [{ from: 'work', to: 'host', ports: [22] }] };
    assert.equal(infra(domainFile) || infra(baseFile) || infra(policiesFile), false, 'no part of the layout is a whole infra.yml');
    assert.ok(domain(domainFile) && base(baseFile) && policies(policiesFile));
    assert.equal(domain({ work: { subnet_id: 300 } }), false, 'subnet_id out of range');
    assert.equal(domain({ work: { subnet_id: 2, machines: { m: { typo: 1 } } } }), false, 'unknown machine key');
    assert.equal(domain({ 'much-too-long-name': { subnet_id: 2 } }), false, 'domain name over 11 characters');
    assert.equal(base({ global: { base_subnet: '10.120' } }), false, 'base.yml needs project_name');
    assert.equal(base({ ...baseFile, global: { base_subnet: '10.120', ai_access_policy: 'exclusive' } }), false, 'exclusive needs ai_access_default');
    assert.equal(policies({ ...policiesFile, domains: {} }), false, 'policies.yml holds network_policies only');
    assert.equal(policies({ network_policies: [{ from: 'work' }] }), false, 'a policy needs to');
  });

  it('every property and definition of infra.schema.json is described for the user', () => {
    const schema = readSchema('infra.schema.json');
    const missing: string[] = [];
    const visit = (node: unknown, at: string): void => {
      if (typeof node !== 'object' || node === null) return;
      const n = node as Record<string, unknown>;
      for (const [key, child] of Object.entries((n.properties ?? {}) as Record<string, unknown>)) {
        if (typeof (child as { description?: unknown }).description !== 'string') missing.push(`${at}/properties/${key}`);
      }
      // An if names properties to test them, not to describe them.
      for (const [key, child] of Object.entries(n)) if (!['examples', 'default', 'if'].includes(key)) visit(child, `${at}/${key}`);
    };
    visit(schema, '#');
    for (const [name, def] of Object.entries(schema.definitions as Record<string, { description?: unknown }>)) {
      if (typeof def.description !== 'string') missing.push(`#/definitions/${name}`);
    }
    assert.deepEqual(missing, []);
  });

  it('the defaults the schema documents are the ones enrichment applies', () => {
    const schema = readSchema('infra.schema.json') as { properties: Record<string, { default?: unknown }>; definitions: Record<string, { properties: Record<string, { default?: unknown }> }> };
    const d = schema.definitions;
    const given = { project_name: 'p', global: { base_subnet: '10.1' }, domains: { a: { subnet_id: 1, machines: { m: {} } } } } as unknown as Infra;
    const bare = enrich(given).infra;
    const withPolicy = enrich({ ...given, network_policies: [{ from: 'a', to: 'host' }] } as Infra).infra;
    const defaults = {
      gpu_policy: [d.global.properties.gpu_policy.default, bare.global.gpu_policy],
      firewall_mode: [d.global.properties.firewall_mode.default, bare.global.firewall_mode],
      ai_access_policy: [d.global.properties.ai_access_policy.default, bare.global.ai_access_policy],
      ai_services: [d.global.properties.ai_services.default, DEFAULT_AI_SERVICES],
      'domain ephemeral': [d.domain.properties.ephemeral.default, bare.domains.a.ephemeral],
      'machine type': [d.machine.properties.type.default, bare.domains.a.machines!.m.type],
      network_policies: [schema.properties.network_policies.default, bare.network_policies],
      ports: [d.policy.properties.ports.default, withPolicy.network_policies![0].ports],
      protocol: [d.policy.properties.protocol.default, withPolicy.network_policies![0].protocol],
      bidirectional: [d.policy.properties.bidirectional.default, withPolicy.network_policies![0].bidirectional],
    };
    for (const [what, [documented, applied]] of Object.entries(defaults)) {
      assert.notEqual(documented, undefined, `${what}: no default in the schema`);
      assert.deepEqual(documented, applied, what);
    }
  });
});
