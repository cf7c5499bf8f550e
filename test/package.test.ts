/**
 * What an npm user gets: the licence, and a README whose links lead somewhere — every relative
 * link of the README, the docs and the roles' READMEs names a file the package ships (npm's page
 * resolves them against the repository; an installed copy, against the package).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { describe, it } from 'node:test';

const packed = (JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as { files: { path: string }[] }[])[0].files.map((f) => f.path);

describe('the npm package', () => {
  it('ships the AGPL-3.0 text and says where the repository is', () => {
    assert.ok(packed.includes('LICENSE'));
    const license = readFileSync('LICENSE', 'utf8');
    assert.match(license, /^ {20}GNU AFFERO GENERAL PUBLIC LICENSE\n {23}Version 3, 19 November 2007\n/);
    assert.equal(license.split('\n').length - 1, 661, 'the whole text');
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { license: string; repository: { url: string } };
    assert.equal(pkg.license, 'AGPL-3.0-or-later');
    assert.match(pkg.repository.url, /^git\+https:\/\/github\.com\//);
  });

  it("every relative link of the README, the docs and the roles' READMEs names a file or folder the package ships", () => {
    const docs = ['README.md', ...packed.filter((p) => (p.startsWith('docs/') || p.startsWith('roles/')) && p.endsWith('.md'))];
    assert.ok(docs.includes('roles/incus_nftables/README.md'), "the roles' READMEs are shipped");
    const broken: string[] = [];
    for (const doc of docs) {
      for (const [, target] of readFileSync(doc, 'utf8').matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target) || target.startsWith('#')) continue;
        const path = normalize(join(dirname(doc), target.split('#')[0]));
        if (!packed.some((p) => p === path || p.startsWith(`${path}/`))) broken.push(`${doc}: ${target}`);
      }
    }
    assert.deepEqual(broken, []);
  });
});
