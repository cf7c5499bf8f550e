/** core/paths.ts: the shortcuts give what node:path gives, for any string (issue 18). */
import assert from 'node:assert/strict';
import { basename, dirname, join } from 'node:path';
import { it } from 'node:test';
import fc from 'fast-check';
import { nameOf, parentOf, treeBase, under } from '../generator/core/paths.ts';

const pathLike = fc.string({ unit: fc.constantFrom('a', 'b', '.', '/', '-', '_', 'é'), maxLength: 12 });

it('under(treeBase(base), rel) is join(base, rel), for plain names and for anything else', () => {
  fc.assert(fc.property(pathLike, pathLike.filter((rel) => rel !== ''), (base, rel) => assert.equal(under(treeBase(base), rel), join(base, rel))), { numRuns: 20000 });
  for (const [base, rel] of [['.', 'host_vars/a.yml'], ['/', 'x'], ['t/', 'group_vars/all.yml'], ['a//b/', 'c'], ['', 'x'], ['..', 'x'], ['a', '../b'], ['a', './b'], ['a', 'b//c']]) {
    assert.equal(under(treeBase(base), rel), join(base, rel), `${base} + ${rel}`);
  }
});

it('parentOf and nameOf are dirname and basename', () => {
  fc.assert(fc.property(pathLike, (path) => {
    assert.equal(parentOf(path), dirname(path));
    assert.equal(nameOf(path), basename(path));
  }), { numRuns: 20000 });
});
