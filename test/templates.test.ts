import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nftComment, nftString } from '../generator/core/templates.ts';

describe('template helpers', () => {
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
