/**
 * `anklume-gen apply-nftables`: the shipped site.yml --tags nftables, run for real by the CLI
 * inside a network namespace this test creates (nft never touches the machine's own), on the
 * ruleset sync wrote. Needs root for the namespace; the refusals run anywhere, with stand-ins for
 * ansible-playbook, incus and nft first on PATH that fail loudly if called (test/helpers/standins.ts,
 * ForbiddenTools): a broken refusal fails the test instead of running site.yml against this machine.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { holderDisagreement } from '../generator/cli/rulesetHolder.ts';
import { runCli } from './helpers/cli.ts';
import { testEnv, type TestEnv } from './helpers/env.ts';
import { canRunNetns, Lab } from './helpers/netns.ts';
import { ForbiddenTools } from './helpers/standins.ts';

const ROOT = process.cwd();
const EXAMPLE = 'examples/infra.yml';
const netns = await canRunNetns();

describe('apply-nftables refuses before running anything (stand-ins for ansible-playbook, incus and nft that fail if called)', () => {
  let forbidden: ForbiddenTools;
  before(() => {
    forbidden = ForbiddenTools.create();
  });
  after(() => forbidden.cleanup());
  beforeEach(() => forbidden.reset());

  /** The CLI with the stand-ins first on PATH; none of them may have been called. */
  const refused = async (args: string[], env: NodeJS.ProcessEnv) => {
    const r = await runCli(args, forbidden.env(env));
    forbidden.assertNoneCalled();
    return r;
  };

  it('no ruleset under the base dir: says to sync first, exit 1; --json too', async () => {
    const t = testEnv();
    try {
      const r = await refused(['apply-nftables', '--base-dir', t.baseDir], t.env);
      assert.equal(r.code, 1);
      assert.equal(r.stderr, `${join(t.baseDir, 'nftables/anklume.nft')}: no ruleset to apply; write it first with 'anklume-gen sync <infra> --base-dir ${t.baseDir}'\n`);
      const j = await refused(['apply-nftables', '--base-dir', t.baseDir, '--json'], t.env);
      assert.equal(j.code, 1);
      assert.equal((JSON.parse(j.stdout) as { applied: boolean }).applied, false);
    } finally {
      t.cleanup();
    }
  });

  it('a ruleset out of step with the state file is refused before ansible starts, by apply-nftables and apply: exit 1', async () => {
    const t = testEnv();
    try {
      assert.equal((await runCli(['sync', EXAMPLE, '--base-dir', t.baseDir], t.env)).code, 0, 'no state file: the default holder, pro');
      const ruleset = join(t.baseDir, 'nftables/anklume.nft');
      mkdirSync(join(t.dir, 'state'), { recursive: true });
      const stateFile = t.env.ANKLUME_STATE_FILE!;
      writeFileSync(stateFile, 'perso\n');
      const fix = `; write it again with 'anklume-gen sync <infra> --base-dir ${t.baseDir}' (sync follows the state file), or switch with 'anklume-gen ai-switch'. Nothing was applied.\n`;
      for (const command of ['apply-nftables', 'apply']) {
        const r = await refused([command, '--base-dir', t.baseDir], t.env);
        assert.equal(r.code, 1, command);
        assert.equal(r.stderr, `${ruleset}: gives AI access to 'pro', but the state file ${stateFile} says 'perso' holds it${fix}`);
      }
      writeFileSync(stateFile, '');
      const nobody = await refused(['apply-nftables', '--base-dir', t.baseDir, '--json'], t.env);
      assert.equal(nobody.code, 1);
      const j = JSON.parse(nobody.stdout) as { applied: boolean; errors: { message: string }[] };
      assert.equal(j.applied, false);
      assert.match(j.errors[0].message, /gives AI access to 'pro', but the state file .* says nobody holds it/);
      assert.equal((await runCli(['sync', EXAMPLE, '--base-dir', t.baseDir], t.env)).code, 0);
      assert.match(readFileSync(ruleset, 'utf8'), /^# AI access holder: none$/m, 'a sync follows the state file');
      writeFileSync(stateFile, 'perso\n');
      const r = await refused(['apply-nftables', '--base-dir', t.baseDir], t.env);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /gives nobody AI access, but the state file .* says 'perso' holds it/);
    } finally {
      t.cleanup();
    }
  });

  it('no refusal where nothing can disagree: open mode (no holder set), no state file yet (holderDisagreement)', async () => {
    const t = testEnv();
    try {
      mkdirSync(join(t.dir, 'state'), { recursive: true });
      const open = (await runCli(['nftables', 'test/fixtures/valid/full.yml'], t.env)).stdout;
      const exclusive = (await runCli(['nftables', EXAMPLE], t.env)).stdout;
      assert.equal(await holderDisagreement(exclusive, t.env), undefined, 'no state file: the default holder applies');
      writeFileSync(t.env.ANKLUME_STATE_FILE!, 'perso\n');
      assert.equal(await holderDisagreement(open, t.env), undefined);
      assert.match((await holderDisagreement(exclusive, t.env))!, /^gives AI access to 'pro', but/);
      writeFileSync(t.env.ANKLUME_STATE_FILE!, 'pro\n');
      assert.equal(await holderDisagreement(exclusive, t.env), undefined);
    } finally {
      t.cleanup();
    }
  });

  it('an argument before -- is a usage error (arguments for ansible-playbook go after --)', async () => {
    const r = await refused(['apply-nftables', 'infra.yml'], process.env);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unexpected argument: infra\.yml \(arguments for ansible-playbook go after --\)/);
  });
});

describe('apply-nftables applies the ruleset through ansible-playbook', { skip: !netns.ok && netns.why }, () => {
  let t: TestEnv;
  let lab: Lab | undefined;
  before(async () => {
    t = testEnv();
    lab = await Lab.create({ base: '10.100', domains: [{ name: 'pro', subnetId: 2, machines: [] }, { name: 'perso', subnetId: 1, machines: [] }] }, { prefix: 'ap' });
  });
  after(async () => {
    await lab?.teardown();
    t.cleanup();
  });

  /** The CLI in the lab's host namespace; the role's host paths point into the test's directory. */
  const apply = async (...args: string[]) => {
    const vars = { incus_nftables_install_dir: join(t.dir, 'nftables.d'), incus_nftables_boot_conf: join(t.dir, 'nftables.conf') };
    const r = await lab!.host(['env', `ANSIBLE_LOCAL_TEMP=${t.dir}/ansible`, `ANSIBLE_REMOTE_TEMP=${t.dir}/ansible-remote`, 'NO_COLOR=1',
      process.execPath, '--import', 'tsx', join(ROOT, 'generator/cli/bin.ts'), 'apply-nftables', '--base-dir', t.baseDir, ...args, '--', '-e', JSON.stringify(vars)]);
    return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr };
  };

  it('applies, then finds nothing to do; --dry-run reports a change and makes none', async () => {
    assert.equal((await runCli(['sync', EXAMPLE, '--base-dir', t.baseDir], t.env)).code, 0);
    writeFileSync(join(t.dir, 'nftables.conf'), '#!/usr/sbin/nft -f\n');
    const ruleset = join(t.baseDir, 'nftables/anklume.nft');

    const first = await apply();
    assert.equal(first.code, 0, first.stdout + first.stderr);
    assert.match(first.stdout, /nftables\/anklume\.nft: applied \(\d+ change\(s\)\)\n$/);
    assert.match(first.stderr, /PLAY RECAP/, "ansible's output goes to stderr");
    assert.equal(readFileSync(join(t.dir, 'nftables.d/anklume.nft'), 'utf8'), readFileSync(ruleset, 'utf8'));
    assert.match(await lab!.nft(['list', 'set', 'inet', 'anklume', 'ai_holder']), /"net-pro"/);

    const again = await apply('--json');
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(JSON.parse(again.stdout), { applied: true, changed: 0, errors: [] });

    mkdirSync(join(t.dir, 'state'), { recursive: true });
    writeFileSync(t.env.ANKLUME_STATE_FILE!, 'perso\n');
    assert.equal((await runCli(['sync', EXAMPLE, '--base-dir', t.baseDir], t.env)).code, 0);
    const dry = await apply('--dry-run');
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /the live table would change/);
    assert.match(await lab!.nft(['list', 'set', 'inet', 'anklume', 'ai_holder']), /"net-pro"/, 'check mode changed nothing');
    assert.ok(existsSync(join(t.dir, 'nftables.d/anklume.nft')));
  });

  it('a ruleset nft refuses is not installed nor loaded: exit 1, the live table and the installed boot copy are the ones applied before', async () => {
    // Its own starting point (it runs alone too): the synced ruleset applied, live and installed.
    assert.equal((await runCli(['sync', EXAMPLE, '--base-dir', t.baseDir], t.env)).code, 0);
    if (!existsSync(join(t.dir, 'nftables.conf'))) writeFileSync(join(t.dir, 'nftables.conf'), '#!/usr/sbin/nft -f\n');
    const good = await apply();
    assert.equal(good.code, 0, good.stdout + good.stderr);
    const installed = join(t.dir, 'nftables.d/anklume.nft');
    const applied = { live: await lab!.nft(['--stateless', 'list', 'table', 'inet', 'anklume']), installed: readFileSync(installed, 'utf8'), boot: readFileSync(join(t.dir, 'nftables.conf'), 'utf8') };
    assert.equal(applied.installed, readFileSync(join(t.baseDir, 'nftables/anklume.nft'), 'utf8'));

    const ruleset = join(t.baseDir, 'nftables/anklume.nft');
    writeFileSync(ruleset, 'table inet anklume { chain forward { type filter hook forward priority -1; nonsense; } }\n');
    const r = await apply();
    assert.equal(r.code, 1);
    assert.match(r.stderr, /anklume-gen apply-nftables: ansible-playbook failed \(exit \d+\); its output is above/);
    assert.equal(await lab!.nft(['--stateless', 'list', 'table', 'inet', 'anklume']), applied.live, 'the live table is the one applied before');
    assert.equal(readFileSync(installed, 'utf8'), applied.installed, 'the installed boot copy is the one applied before');
    assert.equal(readFileSync(join(t.dir, 'nftables.conf'), 'utf8'), applied.boot, 'the boot configuration is unchanged');
    assert.match(r.stderr, /fatal: \[localhost\]: FAILED! => [^\n]*"msg": "failed to validate"[^\n]*syntax error/, 'nft -c refused the copy before it was installed');
  });
});
