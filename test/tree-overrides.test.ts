/**
 * anklume's variables set outside a tree file's managed block (tree/treeOverrides.ts), which apply
 * refuses: Ansible reads each file whole and keeps a key's later value, so they would reach Incus
 * without infra.yml's checks. Files in, located problems out; the refusal of the CLI is in
 * test/apply.test.ts.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isAnklumeVariable, treeOverrides } from '../generator/tree/treeOverrides.ts';
import { managedBlock, mergeManaged } from '../generator/tree/managedBlock.ts';
import { buildTree } from '../generator/tree/tree.ts';
import { NO_CONTEXT, run } from './helpers/infraText.ts';

const ROOT = process.cwd();
/** A file as sync writes it: the block, then `# Your custom variables below:`, then what is added. */
const generated = (vars: object, below = '') => mergeManaged(undefined, managedBlock(vars)) + below;
const check = (text: string, path = 'host_vars/pro-dev.yml') => treeOverrides([{ path, text }]);
const places = (text: string) => check(text).map((d) => `${d.line}:${d.column} ${d.message.split(':')[0]}`);

describe('anklume\'s variables outside a managed block', () => {
  const vars = { instance_name: 'pro-dev', instance_ip: '10.100.2.10' };

  it('a file as sync writes it, and one with the user\'s own variables below the block: nothing', () => {
    assert.deepEqual(check(generated(vars)), []);
    assert.deepEqual(check(generated(vars, 'my_app_port: 8080\n# a note\nbackup_paths: [/srv]\n')), []);
  });

  it('a key of the block set again below it, and one of anklume\'s that the block does not set: each located', () => {
    const text = generated(vars, 'instance_ip: 10.100.10.99\nmy_app_port: 8080\ninstance_devices:\n  eth1: {type: nic, network: net-ai-tools}\n');
    const lines = text.split('\n');
    const ip = lines.indexOf('instance_ip: 10.100.10.99') + 1;
    const devices = lines.indexOf('instance_devices:') + 1;
    assert.deepEqual(places(text), [`${ip}:1 'instance_ip' is set again outside the managed block`, `${devices}:1 'instance_devices' is one of anklume's variables, set outside the managed block`]);
    assert.ok(check(text).every((d) => d.file === 'host_vars/pro-dev.yml'));
  });

  it('before the block too; a file without the block (written by hand); a merge key', () => {
    const block = managedBlock(vars);
    assert.deepEqual(places(`---\ndomain_name: pro\n${block}`), ["2:1 'domain_name' is one of anklume's variables, set outside the managed block"]);
    assert.deepEqual(places('---\ninstance_name: pro-dev\nincus_profiles: {}\n'), [
      "2:1 'instance_name' is one of anklume's variables, set outside the managed block",
      "3:1 'incus_profiles' is one of anklume's variables, set outside the managed block",
    ]);
    const merge = generated(vars, 'extra: &x {instance_devices: {eth1: {type: nic, network: net-ai-tools}}}\n<<: *x\n');
    assert.deepEqual(places(merge), [`${merge.split('\n').indexOf('<<: *x') + 1}:1 a merge key (<<) outside the managed block`]);
  });

  it('what reads differently for Ansible (YAML 1.1) than it looks: lines that continue the block\'s last value, an alias, a tag or a YAML 1.1 merge as a key, NEL/LS/PS or a lone CR as a line break, a directive; a file with CRLF line ends is fine', () => {
    const last = { instance_name: 'pro-dev', instance_devices: { eth0: { type: 'nic', network: 'net-pro' } } };
    const continued = generated(last, '  eth1: {type: nic, network: net-ai-tools}\n');
    assert.deepEqual(check(continued).map((d) => d.message.split(':')[0]), ["the lines after the managed block continue the value of its last key ('instance_devices')"]);
    const notPlain = (below: string) => check(generated(vars, below)).map((d) => d.message.split(':')[0]);
    assert.deepEqual(notPlain('name: &k instance_devices\n*k : {eth1: {type: nic, network: net-ai-tools}}\n'), ['a key that is not plain text (an alias, a tag or a merge) outside the managed block']);
    assert.deepEqual(notPlain('!!merge x: {instance_devices: {eth1: {type: nic, network: net-ai-tools}}}\n'), ['a key that is not plain text (an alias, a tag or a merge) outside the managed block']);
    for (const text of [
      `%YAML 1.1\n${generated(vars, '<<: {instance_devices: {}}\n')}`,
      generated(vars, '# note\u0085instance_devices: {eth1: {type: nic, network: net-ai-tools}}\n'),
      generated(vars, '# note\u2028instance_devices: {}\n'),
      generated(vars, '# note\rinstance_devices: {}\n'),
    ]) {
      const found = check(text);
      assert.equal(found.length, 1, JSON.stringify(text));
      assert.match(found[0].message, /^(a YAML directive|a line break that only YAML 1\.1 readers take for one)/);
    }
    assert.deepEqual(check(generated(vars, 'my_app_port: 8080\n').replace(/\n/g, '\r\n')), []);
  });

  it('what Ansible could not read, or only too deep to read safely: refused, located', () => {
    const broken = generated(vars, 'my_list: [a, b\n');
    assert.match(check(broken)[0].message, /^not YAML that Ansible can read/);
    const deep = generated(vars, `x: ${'['.repeat(5000)}${']'.repeat(5000)}\n`);
    assert.equal(check(deep).length, 1);
    assert.equal(check(deep)[0].line, deep.split('\n').length - 1);
  });

  it('every key sync writes, in each kind of file of a full infra and of a cluster, is anklume\'s (the rule holds tree.ts): the inventories\' `all` aside, which only the block sets', () => {
    for (const infraFile of ['test/fixtures/valid/full.yml', 'examples/cluster.yml']) {
      const analysis = run(readFileSync(join(ROOT, infraFile), 'utf8'), NO_CONTEXT, infraFile);
      assert.ok(analysis.infra, infraFile);
      let keys = 0;
      for (const file of buildTree(analysis.infra)) {
        for (const key of Object.keys(file.vars())) {
          keys++;
          if (file.kind === 'inventory') assert.equal(key, 'all');
          else assert.ok(isAnklumeVariable(key), `${file.path}: ${key}`);
        }
      }
      assert.ok(keys > 20, `${infraFile}: the tree's keys were read (${keys})`);
    }
  });
});
