/**
 * Issue 19: every command that acts on the host works on an Incus cluster, none refuses it:
 * apply, apply --check and apply-nftables hand site.yml the members' inventory on a cluster's tree
 * (generator/cli/clusterTree.ts tells one; their real run is test/cluster-apply-e2e.test.ts);
 * ai-switch, ai-status and audit work on every member (each with its run on stand-ins here); sync,
 * validate, flows and nftables keep working on it. ansible-playbook, incus and nft are stand-ins
 * that fail loudly if called, on the CLI's PATH and on this process's (nft.ts spawns with it).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { runCli } from './helpers/cli.ts';
import { testEnv, type TestEnv } from './helpers/env.ts';
import { ForbiddenTools } from './helpers/standins.ts';

const CLUSTER = 'examples/cluster.yml';
const SINGLE = 'examples/infra.yml';

describe('the commands that act on the host, on a cluster (issue 19)', () => {
  let t: TestEnv;
  let forbidden: ForbiddenTools;
  let restorePath: () => void;
  let single: string;

  before(async () => {
    t = testEnv();
    single = join(t.dir, 'single');
    for (const [infra, base] of [[CLUSTER, t.baseDir], [SINGLE, single]]) {
      const r = await runCli(['sync', infra, '--base-dir', base, '-q'], t.env);
      assert.equal(r.code, 0, r.stderr);
    }
    forbidden = ForbiddenTools.create();
    restorePath = forbidden.onProcessPath();
  });
  // A failed test leaves its calls in the journal; the next starts from none.
  afterEach(() => forbidden.reset());
  after(() => {
    restorePath?.();
    forbidden?.cleanup();
    t?.cleanup();
  });


  // apply --check reads Incus and, on one host, nft too: every stand-in it calls fails, and the
  // one ansible-playbook call it makes on a cluster is the members' play under --check.
  for (const command of [['apply'], ['apply', '--check'], ['apply-nftables']]) it(`${command.join(' ')} on a cluster's tree runs site.yml with the inventory of its members (-i inventory/_cluster.yml), for the play of the ruleset on every member; not on one host`, async () => {
    const r = await runCli([...command, '--base-dir', t.baseDir], forbidden.env(t.env));
    assert.equal(r.code, 1, 'the stand-ins fail');
    const playbooks = forbidden.calls().filter((c) => c.tool === 'ansible-playbook').map((c) => c.args);
    assert.equal(playbooks.length, 1, playbooks.join('\n'));
    assert.match(playbooks[0], new RegExp(`-i ${join(t.baseDir, 'inventory/_cluster.yml').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} `));
    if (command.includes('--check')) assert.match(playbooks[0], /--limit anklume_cluster --tags nftables,networks --check /);
    forbidden.reset();
    const one = await runCli([...command, '--base-dir', single], forbidden.env(t.env));
    assert.equal(one.code, 1);
    assert.ok(forbidden.calls().length > 0);
    assert.doesNotMatch(forbidden.calls().map((c) => c.args).join('\n'), /_cluster\.yml/, 'not on one host');
  });

  // ai-switch works on every member (test/ai-switch-cluster.test.ts, and on a real cluster
  // test/cluster-switch-e2e.test.ts): not refused; its dry run says every member's steps and runs nothing.
  it('ai-switch is not refused: its dry run says every member\'s steps and runs nothing', async () => {
    const r = await runCli(['ai-switch', '--domain', 'perso', '--infra', CLUSTER, '--base-dir', t.baseDir, '--dry-run'], forbidden.env(t.env));
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /does not work on an Incus cluster/);
    assert.match(r.stdout, /^ {2}1 on every member \(desk, gpu-box\): revoke 'pro'/m);
    assert.match(r.stdout, /^ {2}3 on every member \(desk, gpu-box\): grant 'perso'/m);
    forbidden.assertNoneCalled();
  });

  // ai-status and audit read every member (test/audit-cluster.test.ts, and on a real cluster
  // test/cluster-apply-e2e.test.ts): not refused, they go through the members' inventory.
  it('ai-status and audit are not refused: they read the members through inventory/_cluster.yml (stand-ins that fail: every member not read, exit 1)', async () => {
    for (const args of [['ai-status', '--infra', CLUSTER, '--base-dir', t.baseDir], ['audit', '--infra', CLUSTER, '--base-dir', t.baseDir]]) {
      const r = await runCli(args, forbidden.env(t.env));
      assert.equal(r.code, 1, r.stderr);
      assert.doesNotMatch(r.stderr, /does not work on an Incus cluster/);
      const playbooks = forbidden.calls().filter((c) => c.tool === 'ansible-playbook').map((c) => c.args);
      assert.ok(playbooks.some((a) => a.includes(`-i ${join(t.baseDir, 'inventory/_cluster.yml')}`)), `${args[0]}: ${playbooks.join('\n')}`);
      assert.match(r.stdout, args[0] === 'audit' ? /^NOT CHECKED \(members\): member desk was not read: /m : /^Member desk: NOT READ \(/m);
      forbidden.reset();
    }
  });

  it('sync, validate, flows and nftables keep working on the cluster infra (nothing host-side is called)', async () => {
    for (const args of [['sync', CLUSTER, '--base-dir', t.baseDir, '--check'], ['validate', CLUSTER], ['flows', CLUSTER, '--from', 'pro-dev', '--to', 'gpu-server'], ['nftables', CLUSTER]]) {
      const r = await runCli(args, forbidden.env(t.env));
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    }
    forbidden.assertNoneCalled();
  });

  it('a tree of one host is not refused: apply --check reaches Incus (here the stand-in that fails loudly)', async () => {
    const r = await runCli(['apply', '--base-dir', single, '--check'], forbidden.env(t.env));
    assert.doesNotMatch(r.stderr, /Incus cluster/);
    assert.ok(forbidden.calls().length > 0, 'it went on to read the host');
  });
});
