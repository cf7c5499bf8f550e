/**
 * lookupNames (enrichment and the ruleset resolve policy endpoints by looking) answers exactly as
 * indexNames (validation's index of every name) on every model: valid and invalid fixtures, the
 * examples, a machine defined twice, and names that are also properties of every object.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { analyseFixture, fixturesIn } from './helpers/infraText.js';
import { endpointDomain, indexNames, lookupNames } from '../generator/infra/validate.ts';
import { fileURLToPath } from 'node:url';
import type { Mapping } from '../generator/core/types.ts';

const PROTOTYPE_NAMES = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf'];

function sameAnswers(model: Mapping, what: string): number {
  const index = indexNames(model);
  const names = lookupNames(model);
  const asked = new Set<string>([...index.domains, ...index.machines.keys(), ...PROTOTYPE_NAMES, 'host', 'outside', 'no-such-name', '']);
  const domains = model.domains && typeof model.domains === 'object' ? (model.domains as Mapping) : {};
  for (const def of Object.values(domains)) {
    if (def && typeof def === 'object' && 'machines' in def && def.machines && typeof def.machines === 'object') for (const name of Object.keys(def.machines)) asked.add(name);
  }
  for (const ref of asked) {
    assert.equal(names.domains.has(ref), index.domains.has(ref), `${what}: domains.has(${ref})`);
    assert.deepEqual(names.machines.get(ref), index.machines.get(ref), `${what}: machines.get(${ref})`);
    assert.equal(endpointDomain(ref, names), endpointDomain(ref, index), `${what}: endpointDomain(${ref})`);
  }
  return asked.size;
}

describe('lookupNames', () => {
  it('answers as indexNames on every fixture and example', async () => {
    let models = 0;
    for (const folder of ['./fixtures/valid/', './fixtures/invalid/', '../examples/']) {
      for (const path of await fixturesIn(fileURLToPath(new URL(folder, import.meta.url)))) {
        const { analysis } = await analyseFixture(path);
        if (!analysis.raw) continue;
        sameAnswers(analysis.raw, path);
        models++;
      }
    }
    assert.ok(models > 50, `models compared: ${models}`);
  });

  it('answers as indexNames where a machine is defined twice (the first definition), where a domain or its machines are not mappings, and for the names every object has', () => {
    const model = {
      domains: {
        pro: { machines: { shared: { ip: '10.0.2.1' }, constructor: { ip: '10.0.2.2' }, broken: 'text' } },
        perso: { machines: { shared: { ip: '10.0.3.1' } } },
        empty: null,
        listed: { machines: ['a', 'b'] },
        constructor: { machines: {} },
      },
    } as unknown as Mapping;
    assert.ok(sameAnswers(model, 'hand-made') > 10);
    assert.equal(endpointDomain('shared', lookupNames(model)), 'pro');
    assert.equal(endpointDomain('broken', lookupNames(model)), undefined);
    assert.equal(endpointDomain('toString', lookupNames(model)), undefined);
  });
});
