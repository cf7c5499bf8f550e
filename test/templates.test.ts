import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { stringify } from 'yaml';
import { nftComment, nftString, toYaml } from '../generator/templates.ts';

describe('template helpers', () => {
  it('toYaml (one shared document, no tag handles) writes what yaml.stringify writes for YAML 1.1', () => {
    const tricky = ['2024-01-01', '0x1F', '~', 'null', '1e3', 'yes', 'NO', 'on', 'Y', '10:20', '.inf', '0777', '<<', '-', '!tag', '&x', '*x', '%x', '@x', '`x', 'a: b', 'c #d', '', ' lead', 'trail ', 'two\nlines', 'quote "x"', "it's"];
    const values: unknown[] = [
      { list: tricky, n: null, t: true, f: false, num: 1.5, int: 10, nested: { 'key: x': { y: [1, { z: 'w' }] } } },
      { instance_name: 'a', instance_config: { 'limits.cpu': '2', 'security.privileged': 'true' } },
      [],
      {},
    ];
    for (const value of values) {
      assert.equal(toYaml(value), stringify(value, { version: '1.1', lineWidth: 0, aliasDuplicateObjects: false }));
    }
  });

  it('nftString refuses anything that could leave a quoted nft string', () => {
    assert.equal(nftString('net-pro'), '"net-pro"');
    for (const bad of ['a"b', 'a b', 'a;b', 'a\nb', '', 'x'.repeat(65), '{x}']) {
      assert.throws(() => nftString(bad), /refusing/);
    }
  });

  it('nftComment keeps one harmless line', () => {
    assert.equal(nftComment('web\n} drop; # "x" {'), 'web drop x');
    assert.equal(nftComment(undefined), '');
    assert.ok(nftComment('y'.repeat(500)).length <= 160);
  });
});
