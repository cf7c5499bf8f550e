/**
 * audit and ai-status on an Incus cluster never wait for ever (generator/aiswitch/readLimit.ts):
 * without quorum the cluster's database never answers, and a member whose SSH or nft hangs would
 * hold the read. STAND-INS (TEST-ONLY), written here: `incus` and `ansible-playbook` that sleep
 * and never answer (a cluster without quorum, an Ansible run stuck on a member), and, for the real
 * ansible-playbook, a member whose shell sleeps before running anything (a hung member) beside one
 * that answers through an `nft` stand-in. Each test has a limit of its own: without the time limits
 * it fails there instead of hanging.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readMembers } from '../generator/audit/memberReader.ts';
import { runCli } from './helpers/cli.ts';
import { testEnv, type TestEnv } from './helpers/env.ts';

const CLUSTER = 'examples/cluster.yml';

/** A stand-in that records its pid (for the test to end it) and sleeps without answering. */
function sleeper(bin: string, name: string, pids: string): void {
  writeFileSync(join(bin, name), `#!/bin/sh\n# STAND-IN (TEST-ONLY): never answers.\necho $$ >> '${pids}'\nexec sleep 600\n`);
  chmodSync(join(bin, name), 0o755);
}

/** Ends whatever stand-in is still sleeping (each by its pid: those the test started). */
function endSleepers(pids: string): void {
  if (!existsSync(pids)) return;
  for (const pid of readFileSync(pids, 'utf8').split('\n').filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // gone already: killed with its group by the time limit
    }
  }
}

describe('audit and ai-status on a cluster: a time limit on every read (stand-ins: incus and ansible-playbook that never answer)', () => {
  let t: TestEnv;
  let env: NodeJS.ProcessEnv;
  let pids: string;
  before(async () => {
    t = testEnv();
    const r = await runCli(['sync', CLUSTER, '--base-dir', t.baseDir, '-q'], t.env);
    assert.equal(r.code, 0, r.stderr);
    const bin = join(t.dir, 'bin');
    mkdirSync(bin);
    pids = join(t.dir, 'pids');
    sleeper(bin, 'incus', pids);
    sleeper(bin, 'ansible-playbook', pids);
    env = { ...t.env, PATH: `${bin}:${t.env.PATH ?? '/usr/bin:/bin'}` };
  });
  after(() => {
    endSleepers(pids);
    t?.cleanup();
  });

  it('ai-status --timeout 2: every member and the record NOT READ (no answer in 2 s), exit 1, within seconds', { timeout: 30_000 }, async () => {
    const started = performance.now();
    const r = await runCli(['ai-status', '--infra', CLUSTER, '--base-dir', t.baseDir, '--timeout', '2'], env);
    const took = (performance.now() - started) / 1000;
    assert.equal(r.code, 1, r.stderr);
    assert.ok(took < 15, `took ${took.toFixed(1)} s`);
    assert.match(r.stdout, /^Cluster record \(user\.anklume\.ai_holder on project ai-tools\): NOT READ \(incus query \/1\.0: no answer in 2 s \(without quorum the cluster's database does not answer\)\)$/m);
    assert.match(r.stdout, /^Member desk: NOT READ \(no answer in 2 s \(ansible-playbook was stopped\)\)$/m);
    assert.match(r.stdout, /^Member gpu-box: NOT READ \(no answer in 2 s \(ansible-playbook was stopped\)\)$/m);
  });

  it('audit --timeout 2 --json: every member not checked, Incus not read (no answer in 2 s), exit 1, within seconds', { timeout: 30_000 }, async () => {
    const started = performance.now();
    const r = await runCli(['audit', '--json', '--infra', CLUSTER, '--base-dir', t.baseDir, '--timeout', '2'], env);
    const took = (performance.now() - started) / 1000;
    assert.equal(r.code, 1, r.stderr);
    assert.ok(took < 15, `took ${took.toFixed(1)} s`);
    const doc = JSON.parse(r.stdout) as { clean: boolean; members: Record<string, string>; unchecked: { check: string; why: string }[]; holder_record: { error?: string } };
    assert.deepEqual([doc.clean, doc.members], [false, { desk: 'not checked', 'gpu-box': 'not checked' }]);
    const why = (check: string) => doc.unchecked.filter((u) => u.check === check).map((u) => u.why);
    assert.deepEqual(why('members'), ['member desk was not read: no answer in 2 s (ansible-playbook was stopped)', 'member gpu-box was not read: no answer in 2 s (ansible-playbook was stopped)']);
    assert.deepEqual(why('devices'), ["incus query /1.0: no answer in 2 s (without quorum the cluster's database does not answer)"]);
    assert.match(why('incus')[0], /^cannot read Incus: no answer in 2 s/);
    assert.match(doc.holder_record.error ?? '', /no answer in 2 s/);
  });

  it('--timeout takes a whole number of seconds', async () => {
    const r = await runCli(['ai-status', '--infra', CLUSTER, '--base-dir', t.baseDir, '--timeout', '0'], env);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--timeout takes a whole number of seconds \(1 or more\), got '0'/);
  });
});

describe("the members' read play (real ansible-playbook, local connection; STAND-INS: a member whose shell never answers, nft on the other)", () => {
  let t: TestEnv;
  let pids: string;
  after(() => {
    endSleepers(pids);
    t?.cleanup();
  });

  it("a member that hangs is stopped by its task's time limit and named (no answer in N s); the other member is still read", { timeout: 60_000 }, async () => {
    t = testEnv();
    const bin = join(t.dir, 'bin');
    mkdirSync(bin);
    pids = join(t.dir, 'pids');
    sleeper(bin, 'hung-sh', pids);
    writeFileSync(join(bin, 'nft'), `#!/bin/sh\n# STAND-IN (TEST-ONLY): the member's holder sets, both empty.\ncase "$*" in *ai_holder_subnet) set=ai_holder_subnet;; *) set=ai_holder;; esac\necho '{"nftables": [{"set": {"family": "inet", "name": "'$set'", "table": "anklume", "elem": []}}]}'\n`);
    chmodSync(join(bin, 'nft'), 0o755);
    const inventory = join(t.dir, 'members.yml');
    writeFileSync(inventory, [
      'all:', '  children:', '    anklume_cluster:', '      hosts:',
      '        up: {ansible_connection: local, ansible_python_interpreter: /usr/bin/python3}',
      `        hung: {ansible_connection: local, ansible_python_interpreter: /usr/bin/python3, ansible_shell_executable: ${join(bin, 'hung-sh')}}`,
      '',
    ].join('\n'));
    const read = await readMembers({ env: { ...t.env, PATH: `${bin}:${t.env.PATH ?? '/usr/bin:/bin'}` }, inventory, members: ['hung', 'up'], vars: {}, parts: ['holders'], seconds: 16 });
    assert.deepEqual(read.hung, { ok: false, why: 'no answer in 8 s (its read was stopped)' });
    assert.ok(read.up.ok, JSON.stringify(read.up));
    assert.deepEqual(read.up.value.holders, { ok: true, value: [] });
  });
});
