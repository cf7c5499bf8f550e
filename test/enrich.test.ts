/**
 * Enrichment (spec §5): the auto-created AI policy and its INFO line, the holder, sys-firewall for
 * firewall_mode vm; idempotent (enriching the resolved output adds nothing).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { enrich } from '../generator/infra/enrich.js';
import type { Infra } from '../generator/core/types.js';
import { listing, positionOf, run, VALID } from './helpers/infraText.js';

function valid(text: string): Infra {
  const result = run(text);
  assert.deepEqual(result.errors, [], listing(result.errors));
  assert.ok(result.infra);
  return result.infra;
}

/** What `resolve --json` prints and a user could save as infra.yml: a JSON round trip of the model. */
function resolved(infra: Infra): Infra {
  return JSON.parse(JSON.stringify(infra)) as Infra;
}

const AUTO = {
  description: 'AI access: pro -> ai-tools (auto-created)',
  from: 'pro',
  to: 'ai-tools',
  ports: 'all',
  protocol: 'tcp',
  bidirectional: true,
};

test('exclusive mode with no policy to ai-tools: the policy is auto-created, with its INFO line', () => {
  const { infra, info } = enrich(valid(VALID));
  assert.deepEqual(infra.network_policies, [AUTO]);
  assert.deepEqual(info, ["INFO: ai_access_policy is 'exclusive' — auto-created network policy from 'pro' to 'ai-tools'"]);
});

test('the auto-created policy comes after the user policies, which keep their order', () => {
  const text = VALID + 'network_policies:\n  - { from: perso, to: pro, ports: [22] }\n';
  const { infra } = enrich(valid(text));
  assert.equal(infra.network_policies?.length, 2);
  assert.deepEqual(infra.network_policies?.[0], { from: 'perso', to: 'pro', ports: [22], protocol: 'tcp', bidirectional: false });
  assert.deepEqual(infra.network_policies?.[1], AUTO);
});

test('a user policy to ai-tools (or one of its machines) means nothing is auto-created', () => {
  for (const to of ['ai-tools', 'gpu-server']) {
    const { infra, info } = enrich(valid(VALID + `network_policies:\n  - { from: pro, to: ${to}, ports: [11434] }\n`));
    assert.equal(infra.network_policies?.length, 1, to);
    assert.deepEqual(info, []);
  }
});

test('open mode (or no ai_access_policy): no AI policy is created', () => {
  for (const text of [VALID.replace('ai_access_policy: exclusive', 'ai_access_policy: open'), VALID.replace('  ai_access_policy: exclusive\n  ai_access_default: pro\n', '')]) {
    const { infra, info } = enrich(valid(text));
    assert.deepEqual(infra.network_policies, []);
    assert.deepEqual(info, []);
  }
});

test('idempotent: enriching the resolved output adds nothing and says nothing', () => {
  const texts = [
    VALID,
    VALID + 'network_policies:\n  - { from: perso, to: pro }\n',
    VALID.replace('  ai_access_default: pro\n', '  ai_access_default: pro\n  firewall_mode: vm\n') + '  admin:\n    subnet_id: 0\n',
  ];
  for (const text of texts) {
    for (const holder of [undefined, 'perso', null]) {
      const once = enrich(valid(text), holder);
      const twice = enrich(resolved(once.infra), holder);
      assert.deepEqual(twice.infra, once.infra, `holder ${String(holder)}`);
      assert.deepEqual(twice.info, []);
      // And the resolved output is itself a valid infra.yml.
      assert.deepEqual(run(JSON.stringify(once.infra)).errors, []);
    }
  }
});

test('enrich does not modify the model it is given', () => {
  const infra = valid(VALID.replace('  ai_access_default: pro\n', '  ai_access_default: pro\n  firewall_mode: vm\n') + '  admin:\n    subnet_id: 0\n');
  const before = structuredClone(infra);
  enrich(infra, 'perso');
  assert.deepEqual(infra, before);
});

test('after a switch the holder replaces the default in the auto-created policy', () => {
  const { infra, info } = enrich(valid(VALID), 'perso');
  assert.deepEqual(infra.network_policies, [{ ...AUTO, description: 'AI access: perso -> ai-tools (auto-created)', from: 'perso' }]);
  assert.deepEqual(info, ["INFO: ai_access_policy is 'exclusive' — auto-created network policy from 'perso' to 'ai-tools'"]);
  // Re-enriching an output made for 'pro' once the holder is 'perso' moves it too.
  const later = enrich(resolved(enrich(valid(VALID)).infra), 'perso');
  assert.equal(later.infra.network_policies?.[0].from, 'perso');
  assert.equal(later.infra.network_policies?.[0].description, 'AI access: perso -> ai-tools (auto-created)');
});

test('the holder replaces `from` in a user policy to ai-tools, keeping its own description and ports', () => {
  const text = VALID + 'network_policies:\n  - { description: "LLM API", from: pro, to: ai-tools, ports: [11434] }\n';
  const { infra } = enrich(valid(text), 'perso');
  assert.deepEqual(infra.network_policies, [{ description: 'LLM API', from: 'perso', to: 'ai-tools', ports: [11434], protocol: 'tcp', bidirectional: false }]);
});

test('a policy that names a machine of the holder is kept as narrow as written', () => {
  const text = VALID + 'network_policies:\n  - { from: pro-dev, to: ai-tools }\n';
  const { infra } = enrich(valid(text), 'pro');
  assert.equal(infra.network_policies?.[0].from, 'pro-dev');
  assert.equal(enrich(valid(text), 'perso').infra.network_policies?.[0].from, 'perso');
});

test('no holder (undefined: never switched) means the default', () => {
  assert.equal(enrich(valid(VALID), undefined).infra.network_policies?.[0].from, 'pro');
});

test('defaults become explicit', () => {
  const { infra } = enrich(valid(VALID.replace('    subnet_id: 1\n', '    subnet_id: 1\n    ephemeral: true\n')));
  assert.equal(infra.global.gpu_policy, 'exclusive');
  assert.equal(infra.global.firewall_mode, 'host');
  assert.equal(infra.domains.pro.ephemeral, false);
  assert.equal(infra.domains.pro.machines?.['pro-dev'].type, 'lxc');
  assert.equal(infra.domains.pro.machines?.['pro-dev'].ephemeral, false);
  // A machine inherits its domain's ephemeral flag.
  assert.equal(infra.domains.perso.machines?.['perso-desktop'].ephemeral, true);
});

const VM_MODE = VALID.replace('  ai_access_default: pro\n', '  ai_access_default: pro\n  firewall_mode: vm\n');

test('firewall_mode vm: sys-firewall is added to admin', () => {
  const { infra } = enrich(valid(VM_MODE + '  admin:\n    subnet_id: 0\n'));
  assert.deepEqual(infra.domains.admin.machines?.['sys-firewall'], {
    description: 'Firewall VM (auto-created for firewall_mode: vm)',
    type: 'vm',
    ip: '10.100.0.253',
    config: { 'limits.cpu': '2', 'limits.memory': '2GiB' },
    roles: ['base_system', 'firewall_router'],
    ephemeral: false,
  });
});

test('firewall_mode vm: a user-defined sys-firewall is never overwritten, wherever it is', () => {
  const own = '      sys-firewall:\n        type: vm\n        ip: "10.100.2.20"\n        roles: [my_firewall]\n';
  const text = VM_MODE.replace('        ip: "10.100.2.10"\n', `        ip: "10.100.2.10"\n${own}`) + '  admin:\n    subnet_id: 0\n';
  const { infra } = enrich(valid(text));
  assert.deepEqual(infra.domains.pro.machines?.['sys-firewall'], { type: 'vm', ip: '10.100.2.20', roles: ['my_firewall'], ephemeral: false });
  assert.equal(infra.domains.admin.machines?.['sys-firewall'], undefined);
});

test('firewall_mode vm: no admin domain is an error (unless sys-firewall is defined)', () => {
  const result = run(VM_MODE);
  assert.equal(result.errors.length, 1, listing(result.errors));
  assert.match(result.errors[0].message, /firewall_mode is 'vm' but there is no 'admin' domain/);
  assert.deepEqual({ line: result.errors[0].line, column: result.errors[0].column }, positionOf(VM_MODE, 'firewall_mode: vm', 'vm'));
  const own = VM_MODE.replace('        ip: "10.100.2.10"\n', '        ip: "10.100.2.10"\n      sys-firewall:\n        ip: "10.100.2.20"\n');
  assert.deepEqual(run(own).errors, []);
});

test('firewall_mode vm: the .253 that sys-firewall will take must be free in admin', () => {
  const text = VM_MODE + '  admin:\n    subnet_id: 0\n    machines:\n      tools:\n        ip: "10.100.0.253"\n';
  const result = run(text);
  assert.equal(result.errors.length, 1, listing(result.errors));
  assert.match(result.errors[0].message, /^Machine 'sys-firewall': IP 10\.100\.0\.253 already used by 'tools'/);
});

test('firewall_mode host: nothing is added', () => {
  const { infra } = enrich(valid(VALID + '  admin:\n    subnet_id: 0\n'));
  assert.deepEqual(infra.domains.admin.machines, {});
});
