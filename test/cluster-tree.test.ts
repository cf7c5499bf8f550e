/**
 * Issue 19: what sync writes for a cluster. Each machine's host_vars name its member
 * (instance_target, for incus --target); inventory/_cluster.yml lists the members, only while
 * global.cluster is set, and is an orphan like any other file once the key is gone.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { sync } from '../generator/tree/sync.ts';
import { maybeUpdateGolden } from './helpers/golden.ts';
import { testEnv, type TestEnv } from './helpers/env.ts';

const CLUSTER = 'examples/cluster.yml';
const GOLDEN = 'test/fixtures/golden/cluster-tree';

function treeFiles(root: string): string[] {
  return ['group_vars', 'host_vars', 'inventory'].flatMap((dir) => (existsSync(join(root, dir)) ? readdirSync(join(root, dir)).sort().map((n) => `${dir}/${n}`) : []));
}

/** Ansible reads these files with PyYAML (YAML 1.1): load them the same way. */
function pythonLoad(path: string): unknown {
  return JSON.parse(execFileSync('/usr/bin/python3', ['-c', 'import sys, json, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))', path], { encoding: 'utf8' }));
}

/** The same infra on one host: the cluster key and every member key removed. */
function singleHost(text: string): string {
  return text.replace(/^  cluster:\n(?: {4}.*\n)+/m, '').replace(/^ *member: .*\n/gm, '').replace(/, member: [a-z-]+/g, '');
}

describe('sync on a cluster (issue 19)', () => {
  let t: TestEnv;
  beforeEach(() => {
    t = testEnv();
  });
  afterEach(() => t.cleanup());

  it('writes the golden tree: instance_target in host_vars, the members in inventory/_cluster.yml', async () => {
    const report = await sync({ infraPath: CLUSTER, baseDir: t.baseDir, env: t.env });
    assert.deepEqual(report.errors, []);
    const files = treeFiles(t.baseDir);
    for (const f of files) maybeUpdateGolden(join(GOLDEN, f), readFileSync(join(t.baseDir, f)));
    assert.deepEqual(files, treeFiles(GOLDEN), 'same file list as the golden tree');
    for (const f of files) assert.equal(readFileSync(join(t.baseDir, f), 'utf8'), readFileSync(join(GOLDEN, f), 'utf8'), `${f} differs from its golden file`);

    assert.deepEqual(pythonLoad(join(t.baseDir, 'inventory/_cluster.yml')), {
      all: { children: { anklume_cluster: { hosts: {
        desk: { ansible_host: '192.168.50.1', anklume_member_link: 'enp2s0' },
        'gpu-box': { ansible_host: '192.168.50.2', anklume_member_link: 'enp3s0' },
      } } } },
    });
    const target = (m: string) => (pythonLoad(join(t.baseDir, `host_vars/${m}.yml`)) as Record<string, unknown>).instance_target;
    assert.deepEqual(['gpu-server', 'pro-dev', 'pro-build', 'perso-desktop'].map(target), ['gpu-box', 'desk', 'gpu-box', 'desk']);
  });

  it("is read by Ansible: the members are the hosts of group anklume_cluster, beside the domains' groups", { skip: existsSync('/usr/bin/ansible-inventory') ? false : 'ansible-inventory is not installed' }, async () => {
    await sync({ infraPath: CLUSTER, baseDir: t.baseDir, env: t.env });
    const inventory = JSON.parse(execFileSync('/usr/bin/ansible-inventory', ['-i', join(t.baseDir, 'inventory'), '--list'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as Record<string, { hosts?: string[] }> & { _meta: { hostvars: Record<string, unknown> } };
    assert.deepEqual(inventory.anklume_cluster.hosts, ['desk', 'gpu-box']);
    assert.deepEqual(inventory._meta.hostvars['gpu-box'], { ansible_host: '192.168.50.2', anklume_member_link: 'enp3s0' });
    assert.deepEqual(inventory.pro.hosts, ['pro-dev', 'pro-build']);
  });

  it('writes nothing when a cluster key is wrong: member without global.cluster', async () => {
    const report = await sync({ infraPath: 'test/fixtures/invalid/cluster-member-without-cluster.yml', baseDir: t.baseDir, env: t.env });
    assert.match(report.errors.map((e) => e.message).join('\n'), /member: 'desk' needs global\.cluster/);
    assert.deepEqual(report.written, []);
    assert.equal(existsSync(t.baseDir), false);
  });

  it('without global.cluster: no _cluster.yml, no instance_target; the old one is an orphan that --clean-orphans removes', async () => {
    await sync({ infraPath: CLUSTER, baseDir: t.baseDir, env: t.env });
    const single = join(t.dir, 'single.yml');
    writeFileSync(single, singleHost(readFileSync(CLUSTER, 'utf8')));
    const dry = await sync({ infraPath: single, baseDir: t.baseDir, env: t.env, dryRun: true });
    assert.deepEqual(dry.errors, []);
    assert.deepEqual(dry.orphans, [{ path: 'inventory/_cluster.yml', protected: false }]);
    assert.ok(dry.written.includes('host_vars/pro-dev.yml'), 'instance_target leaves the host_vars');

    const clean = await sync({ infraPath: single, baseDir: t.baseDir, env: t.env, cleanOrphans: true });
    assert.deepEqual(clean.deleted, ['inventory/_cluster.yml']);
    assert.ok(!existsSync(join(t.baseDir, 'inventory/_cluster.yml')));
    for (const f of treeFiles(t.baseDir)) assert.ok(!readFileSync(join(t.baseDir, f), 'utf8').includes('instance_target'), f);
    assert.deepEqual((await sync({ infraPath: single, baseDir: t.baseDir, env: t.env })).orphans, []);
  });
});
