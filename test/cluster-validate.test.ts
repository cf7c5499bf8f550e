/**
 * Issue 19: infra.yml places machines on Incus cluster members (global.cluster, member). The
 * located messages of every rule are in test/fixtures/invalid/cluster-*.yml (run by
 * validate.test.ts); here: the example cluster is valid and resolves each machine's member, a
 * single host gains nothing, and the fix each message proposes makes the infra valid.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { enrich } from '../generator/infra/enrich.ts';
import { listing, run } from './helpers/infraText.ts';
import type { Infra } from '../generator/core/types.ts';

const CLUSTER = readFileSync('examples/cluster.yml', 'utf8');
const SINGLE = readFileSync('examples/infra.yml', 'utf8');

function valid(text: string): Infra {
  const analysis = run(text);
  assert.deepEqual(analysis.errors, [], listing(analysis.errors));
  assert.ok(analysis.infra);
  return analysis.infra;
}

const members = (infra: Infra): Record<string, string | undefined> =>
  Object.fromEntries(Object.values(infra.domains).flatMap((d) => Object.entries(d.machines ?? {}).map(([name, m]) => [name, m.member])));

describe('infra.yml on a cluster (issue 19)', () => {
  it('examples/cluster.yml is valid, without warnings, and every machine gets its member', () => {
    const analysis = run(CLUSTER);
    assert.deepEqual([...analysis.errors, ...analysis.warnings], []);
    const infra = enrich(valid(CLUSTER)).infra;
    assert.deepEqual(members(infra), { 'gpu-server': 'gpu-box', 'pro-dev': 'desk', 'pro-build': 'gpu-box', 'perso-desktop': 'desk' });
  });

  it('a single host gains no member anywhere', () => {
    const infra = enrich(valid(SINGLE)).infra;
    assert.ok(Object.values(members(infra)).length > 0);
    assert.deepEqual(Object.values(members(infra)).filter((m) => m !== undefined), []);
    assert.ok(!JSON.stringify(infra).includes('"member'));
  });

  it("the did-you-mean of an unknown member is the fix", () => {
    const typo = CLUSTER.replace('member: gpu-box          # a machine', 'member: gpubox          # a machine');
    const errors = run(typo).errors;
    assert.equal(errors.length, 1, listing(errors));
    const guess = /did you mean '([^']+)'\?/.exec(errors[0].message)?.[1];
    assert.equal(guess, 'gpu-box');
    valid(typo.replace('member: gpubox', `member: ${guess}`));
  });

  it('member without global.cluster is refused where it is written; without member, the single host is valid again', () => {
    const text = SINGLE.replace('    subnet_id: 2\n', '    subnet_id: 2\n    member: desk\n');
    const errors = run(text).errors;
    assert.equal(errors.length, 1, listing(errors));
    assert.match(errors[0].message, /^Domain 'pro': member: 'desk' needs global\.cluster/);
    assert.equal(text.split('\n')[errors[0].line! - 1].slice(errors[0].column! - 1), 'desk');
    valid(text.replace('    member: desk\n', ''));
  });

  it('in a cluster a machine needs a member and an ip: its domain member is enough for the first', () => {
    const noDomainMember = CLUSTER.replace('    member: desk\n    machines:\n      perso-desktop', '    machines:\n      perso-desktop');
    assert.match(listing(run(noDomainMember).errors), /Machine 'perso-desktop': no member: .*set member on it or on its domain 'perso' \(members: desk, gpu-box\)/);
    const noIp = CLUSTER.replace('      perso-desktop:\n        ip: "10.100.1.10"\n', '      perso-desktop: {}\n');
    assert.match(listing(run(noIp).errors), /Machine 'perso-desktop': no ip: .*subnet 10\.100\.1\.0\/24/);
  });

  it('a member address inside the address plan names the domain whose subnet holds it', () => {
    const text = CLUSTER.replace('address: 192.168.50.2', 'address: 10.100.10.2');
    const errors = run(text).errors;
    assert.equal(errors.length, 1, listing(errors));
    assert.match(errors[0].message, /^Member 'gpu-box': address 10\.100\.10\.2 is inside domain 'ai-tools''s subnet 10\.100\.10\.0\/24/);
  });
});
