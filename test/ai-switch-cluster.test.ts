/**
 * ai-switch on an Incus cluster without a cluster (issue 19): the plan (pure), the per-step
 * playbook (ansible-playbook --syntax-check), how a member's answer is judged, the dry run, and the
 * order of the steps with the fail-closed paths.
 *
 * STAND-INS (fast unit tests only): for the order and the failures, `ansible-playbook` and `incus`
 * are recording stand-ins first on PATH: the ansible-playbook stand-in writes, for each step, the
 * answers file the real member_report.yml writes, as every member answering (for the read step,
 * with the holder sets of STANDIN_SETS, else none), or with one member unreachable
 * (STANDIN_FAIL=step:member), or dies without a report (STANDIN_DIE=step); the incus
 * stand-in records the project key's writes. The dry run runs with stand-ins that fail if called.
 * The real thing, on three real Incus members over SSH, is test/cluster-switch-e2e.test.ts.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { ansibleEnv } from '../generator/aiswitch/ansible.ts';
import { planSwitch } from '../generator/aiswitch/aiPlan.ts';
import { clusterExtraVars, clusterForgetPairs, describeClusterPlan, judgeAnswer, planCluster, renderClusterPlaybook, stepHosts, unconfirmed, type MemberStep } from '../generator/aiswitch/clusterPlan.ts';
import { enrich } from '../generator/infra/enrich.ts';
import { analyse } from '../generator/infra/infra.ts';
import type { Infra } from '../generator/core/types.ts';
import { runCli } from './helpers/cli.ts';
import { testEnv, type TestEnv } from './helpers/env.ts';
import { canRunNetns } from './helpers/netns.ts';
import { ForbiddenTools } from './helpers/standins.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLUSTER = join(ROOT, 'examples/cluster.yml');

function infra(): Infra {
  const a = analyse([{ file: CLUSTER, text: readFileSync(CLUSTER, 'utf8'), role: 'single' }], { yolo: false });
  assert.ok(a.infra, JSON.stringify(a.errors));
  return enrich(a.infra).infra;
}

function plans(flush = true) {
  const i = infra();
  const plan = planSwitch({ infra: i, infraPath: CLUSTER, from: 'pro', to: 'perso', flush, stateFile: '/s/state', logFile: '/s/log', persist: ['/etc/nftables.d/anklume.nft', '/t/nftables/anklume.nft'], procRoot: '/proc' });
  plan.forgetPairs = clusterForgetPairs(i);
  return { infra: i, plan, cluster: planCluster(plan, i, { inventory: '/t/inventory/_cluster.yml', installedRuleset: '/etc/nftables.d/anklume.nft', baseCopy: '/t/nftables/anklume.nft' }) };
}

describe('ai-switch on a cluster: the plan (pure)', () => {
  it('every member, the GPU machine\'s member, each member\'s boot copy, what the grant reads back', () => {
    const { cluster, plan } = plans();
    assert.deepEqual(cluster.members, ['desk', 'gpu-box']);
    assert.deepEqual(cluster.gpuMembers, [{ member: 'gpu-box', machines: ['gpu-server'] }]);
    assert.deepEqual(cluster.memberPersist, ['/etc/nftables.d/anklume.nft']);
    assert.deepEqual(cluster.controllerPersist, ['/t/nftables/anklume.nft']);
    assert.deepEqual(cluster.expectGrant, { ai_holder: ['net-perso'], ai_holder_subnet: ['10.100.1.0/24'] });
    assert.deepEqual(stepHosts(cluster, 'revoke'), ['desk', 'gpu-box']);
    assert.deepEqual(stepHosts(cluster, 'stop'), ['gpu-box']);
    assert.deepEqual(stepHosts(cluster, 'start'), ['gpu-box']);
    assert.deepEqual(stepHosts(cluster, 'safe'), ['desk', 'gpu-box']);
    // From the records, not a live set: every client domain's connections with ai-tools are forgotten.
    assert.equal(plan.forgetPairs.length, 2 * (Object.keys(infra().domains).length - 1));
    assert.match(plan.revokeBatch, /delete element inet anklume ai_holder_subnet/);
    assert.match(plan.grantBatch, /add element inet anklume ai_holder_subnet \{\n\t10\.100\.1\.0\/24,/);
  });

  it('the dry run says every member\'s steps, the records and the batches', () => {
    const { cluster, plan } = plans(false);
    const text = describeClusterPlan(plan, cluster).join('\n');
    assert.match(text, /^ai-switch plan \(dry run: nothing is changed\)$/m);
    assert.match(text, /On an Incus cluster of 2 members \(desk, gpu-box\), reached through Ansible with \/t\/inventory\/_cluster\.yml/);
    assert.doesNotMatch(text, /read only/, 'the state file names another holder: nothing is read first');
    assert.match(text, /^ {2}0 record nobody: the Incus project key user\.anklume\.ai_holder on ai-tools set to ""/m, 'a step of its own: no read step before it');
    assert.doesNotMatch(text, /^ {4}then record nobody/m);
    assert.match(text, /^ {2}1 on every member \(desk, gpu-box\): revoke 'pro' .*read ai_holder and ai_holder_subnet back \(empty\).*write its boot copy \/etc\/nftables\.d\/anklume\.nft/m);
    assert.match(text, /^ {4}then, every member confirmed: \/s\/state says nobody/m);
    assert.match(text, /^ {2}2 on gpu-box \(gpu-server\): stop ollama, speaches \(no flush\)$/m);
    assert.match(text, /^ {2}3 on every member \(desk, gpu-box\): grant 'perso' .*ai_holder = \[net-perso\], ai_holder_subnet = \[10\.100\.1\.0\/24\]/m);
    assert.match(text, /the project key user\.anklume\.ai_holder = 'perso'/);
    assert.match(text, /^ {2}4 on gpu-box \(gpu-server\): start ollama, speaches$/m);
    assert.match(text, /, or a signal: the safe state on every member \(a step still running there killed, .*, the services started again where they were stopped; the switch fails \(exit 1\) naming the member/);
    assert.match(text, /^Ruleset change, step 1 \(revoke, on every member\):\n#!\/usr\/sbin\/nft -f/m);
    assert.match(text, /^Ruleset change, step 3 \(grant, on every member\):\n#!\/usr\/sbin\/nft -f/m);
    assert.match(text, /\nSECURITY: --no-flush/);
    assert.doesNotMatch(text, /Steps: 1 revoke/, 'not the one-host step list');
  });

  it('the dry run when the state file names the new holder: the read step 0, then the record of nobody under it', () => {
    const i = infra();
    const plan = planSwitch({ infra: i, infraPath: CLUSTER, from: 'perso', to: 'perso', flush: true, stateFile: '/s/state', logFile: '/s/log', persist: ['/etc/nftables.d/anklume.nft', '/t/nftables/anklume.nft'], procRoot: '/proc' });
    const text = describeClusterPlan(plan, planCluster(plan, i, { inventory: '/t/inventory/_cluster.yml', installedRuleset: '/etc/nftables.d/anklume.nft', baseCopy: '/t/nftables/anklume.nft' })).join('\n');
    assert.match(text, /^ {2}0 on every member \(desk, gpu-box\), read only: .*\n {4}then record nobody: the Incus project key/m);
  });

  it('judges a member by its answer: none, unreachable, a failed task, a failed step, a failed flush, confirmed', () => {
    assert.match(judgeAnswer(null)!, /gave no answer/);
    assert.match(judgeAnswer({ unreachable: 'ssh: connect to host 100.64.1.103 port 22: Connection refused' })!, /^unreachable: ssh: connect/);
    assert.equal(judgeAnswer({ unreachable: '', error: 'The step: The command action failed to execute in the expected time frame (30) and was terminated' }), 'The step: The command action failed to execute in the expected time frame (30) and was terminated');
    assert.equal(judgeAnswer({ unreachable: '', error: '', rc: '1', stdout: '{"failed_step": "Check that nobody holds AI access", "changed": []}', stderr: 'ai_holder_subnet holds [10.1.2.0/24], expected []' }), 'Check that nobody holds AI access: ai_holder_subnet holds [10.1.2.0/24], expected []');
    assert.match(judgeAnswer({ unreachable: '', error: '', rc: '-1', msg: '' })!, /^the step did not run/);
    assert.equal(judgeAnswer({ unreachable: '', error: '', rc: '1', stdout: '{"failed_step": "Flush GPU memory", "changed": []}', stderr: 'gpu-server: a compute process is left' }), 'Flush GPU memory: gpu-server: a compute process is left');
    assert.equal(judgeAnswer({ unreachable: '', error: '', rc: '0', stdout: '{"changed": []}', stderr: '' }), undefined);
    // Ansible hands the step's JSON over as a mapping (a string that reads as one is converted).
    assert.equal(judgeAnswer({ unreachable: '', error: '', rc: 1, stdout: { failed_step: 'Grant AI access to the new holder', changed: [] }, stderr: 'nft -f grant.nft failed (exit 1)' }), 'Grant AI access to the new holder: nft -f grant.nft failed (exit 1)');
    assert.deepEqual(unconfirmed(['a', 'b', 'c'], { a: { rc: 0 }, b: null }), [{ member: 'b', why: judgeAnswer(null) }, { member: 'c', why: judgeAnswer(undefined) }]);
    assert.equal(unconfirmed(['a'], undefined).length, 1, 'no report at all: nobody confirmed');
  });

  it('each step\'s playbook passes ansible-playbook --syntax-check, over the members it names', async () => {
    const t = testEnv('anklume-ai-switch-cluster-syntax-');
    try {
      const { cluster, plan } = plans();
      const inventory = join(t.dir, 'inventory.yml');
      writeFileSync(inventory, 'all:\n  children:\n    anklume_cluster:\n      hosts:\n        desk: {}\n        gpu-box: {}\n');
      writeFileSync(join(t.dir, 'vars.json'), JSON.stringify(clusterExtraVars(plan, cluster, 'revoke', { memberFiles: join(t.dir, 'member'), result: join(t.dir, 'answers.json'), run: 'anklume-ai-switch-test', seq: 1 })));
      for (const step of ['revoke', 'stop', 'grant', 'start', 'safe'] as MemberStep[]) {
        const text = renderClusterPlaybook(plan, cluster, step);
        assert.ok(text.includes(`\n  hosts:\n${stepHosts(cluster, step).map((h) => `    - ${JSON.stringify(h)}\n`).join('')}`), `${step}: its members`);
        assert.match(text, /^ {2}ignore_unreachable: true$/m);
        const file = join(t.dir, `${step}.yml`);
        writeFileSync(file, text);
        const r = await execa('ansible-playbook', [file, '-i', inventory, '-e', `@${join(t.dir, 'vars.json')}`, '--syntax-check'], { env: ansibleEnv(process.env, false), reject: false });
        assert.equal(r.exitCode, 0, `${step}: ${r.stdout}\n${r.stderr}`);
      }
    } finally {
      t.cleanup();
    }
  });
});

const ANSIBLE_LINT_MISSING = (await execa('ansible-lint', ['--version'], { reject: false })).exitCode === undefined ? 'ansible-lint is not installed (Debian package ansible-lint: make deps)' : false;

describe('ai-switch on a cluster: ansible-lint', () => {
  // Without ansible-lint this is reported as skipped, never counted as a pass.
  it('each step\'s playbook passes ansible-lint (production profile) with the role', { skip: ANSIBLE_LINT_MISSING }, async () => {
    const t = testEnv('anklume-ai-switch-cluster-lint-');
    try {
      const { cluster, plan } = plans();
      const files = (['revoke', 'stop', 'grant', 'start', 'safe'] as MemberStep[]).map((step) => {
        writeFileSync(join(t.dir, `${step}.yml`), renderClusterPlaybook(plan, cluster, step));
        return `${step}.yml`;
      });
      const lint = await execa('ansible-lint', ['--nocolor', '--offline', '--profile', 'production', ...files], { cwd: t.dir, env: { ...ansibleEnv(process.env, false), NO_COLOR: '1' }, reject: false });
      assert.equal(lint.exitCode, 0, `${lint.shortMessage}\n${lint.stdout}\n${lint.stderr}`);
    } finally {
      t.cleanup();
    }
  });
});

/**
 * files/member_boot.py alone (python3 -c, its payload on stdin, as tasks/member.yml runs it), with a
 * STAND-IN switch_step.py in its payload (it prints {"changed": []} after STEP_SLEEP seconds): the
 * member's lock, its deadline and the safe state's fence, without nft or Ansible.
 */
describe('ai-switch on a cluster: member_boot.py\'s lock, deadline and fence (a STAND-IN switch_step.py)', () => {
  const BOOT = readFileSync(join(ROOT, 'roles/ai_switch/files/member_boot.py'), 'utf8');
  let t: TestEnv;
  before(() => {
    t = testEnv('anklume-member-boot-');
  });
  after(() => t.cleanup());
  const boot = (step: string, seq: number, opts: { sleep?: number; timeout?: number; run?: string; flush?: object } = {}) => {
    const files: Record<string, string> = {
      'switch_step.py': `import json, time\ntime.sleep(${opts.sleep ?? 0})\nprint(json.dumps({"changed": []}))\n`,
      'revoke.nft': '', 'grant.nft': '', 'ruleset-none.nft': '', 'ruleset-new.nft': '',
      // STAND-IN gpu_flush.py: records its kill step; the machine named "broken" then fails.
      'gpu_flush.py': [
        'import json, os, sys',
        'a = sys.argv',
        'machine, folder = a[a.index("--instance") + 1], a[a.index("--record-dir") + 1]',
        'os.makedirs(folder, exist_ok=True)',
        'json.dump({"killed": ["4242"], "processes": []}, open(os.path.join(folder, machine + ".kill.json"), "w"))',
        'if machine == "broken":',
        '    sys.exit("%s: a compute process is left" % machine)',
        'json.dump({"gpus": []}, open(os.path.join(folder, machine + ".scan.json"), "w"))',
        '',
      ].join('\n'),
    };
    const args = { revoke_batch: 'revoke.nft', grant_batch: 'grant.nft', ruleset_none: 'ruleset-none.nft', ruleset_new: 'ruleset-new.nft' };
    const payload = { files, args, flush: opts.flush ?? {}, timeout: opts.timeout ?? 30, lock: join(t.dir, 'member.lock'), run: opts.run ?? 'run-a', seq };
    return execa('python3', ['-c', BOOT, `member-${step}`], { input: JSON.stringify(payload), reject: false, forceKillAfterDelay: false });
  };

  it('the flush of "stop" answers with what each GPU machine\'s flush recorded (gpu_records), when a flush fails too', async () => {
    const flush = (machines: string[]) => ({ machines, types: {}, project: 'ai-tools', proc_root: '/proc', retries: 0, delay: 0, scrub: [] });
    const ok = await boot('stop', 1, { run: 'run-g', flush: flush(['gpu-a', 'gpu-b']) });
    assert.equal(ok.exitCode, 0, String(ok.stderr));
    const out = JSON.parse(String(ok.stdout)) as { changed: string[]; gpu_records: Record<string, unknown> };
    assert.deepEqual(out.changed, ['flushed gpu-a', 'flushed gpu-b']);
    assert.deepEqual(Object.keys(out.gpu_records), ['gpu-a.kill', 'gpu-a.scan', 'gpu-b.kill', 'gpu-b.scan']);
    assert.deepEqual(out.gpu_records['gpu-a.kill'], { killed: ['4242'], processes: [] });
    const failed = await boot('stop', 1, { run: 'run-h', flush: flush(['broken']) });
    assert.equal(failed.exitCode, 1);
    const answer = JSON.parse(String(failed.stdout)) as { failed_step: string; gpu_records: Record<string, unknown> };
    assert.equal(answer.failed_step, 'Flush GPU memory');
    assert.deepEqual(answer.gpu_records, { 'broken.kill': { killed: ['4242'], processes: [] } });
    assert.match(String(failed.stderr), /broken: a compute process is left/);
  });

  it('a step past its deadline on the member gives up by itself, a little before the task\'s limit, and says so', async () => {
    const started = Date.now();
    const r = await boot('grant', 1, { sleep: 20, timeout: 4 });
    assert.equal(r.exitCode, 1, String(r.stderr));
    assert.ok(Date.now() - started < 4000, `gave up after ${Date.now() - started} ms, before the task's 4 s`);
    assert.equal((JSON.parse(String(r.stdout)) as { failed_step: string }).failed_step, 'The member\'s time limit');
    assert.match(String(r.stderr), /the step passed its time limit on the member \(4 s\): stopped, its processes killed/);
  });

  it('the safe state kills a step that still holds the member\'s lock, then runs', async () => {
    const slow = boot('grant', 2, { sleep: 20 });
    while (!existsSync(join(t.dir, 'member.lock')) || readFileSync(join(t.dir, 'member.lock'), 'utf8') === '') await new Promise((r) => setTimeout(r, 50));
    const started = Date.now();
    const safe = await boot('safe', 3);
    assert.equal(safe.exitCode, 0, String(safe.stderr));
    assert.ok(Date.now() - started < 5000, 'no wait for the holder');
    const killed = await slow;
    assert.equal(killed.signal, 'SIGKILL', 'the holder was killed');
  });

  it('a step of the same switch that starts after its safe state does nothing; a later step, or another switch, runs', async () => {
    const late = await boot('grant', 2);
    assert.equal(late.exitCode, 1);
    assert.equal((JSON.parse(String(late.stdout)) as { failed_step: string }).failed_step, 'Check that the switch has not been closed on this member');
    assert.match(String(late.stderr), /the safe state of this switch already ran on this member \(step 3\); this step \(2\) started after it and does nothing/);
    assert.equal((await boot('start', 4)).exitCode, 0, 'the services started after the safe state');
    assert.equal((await boot('read', 1, { run: 'run-b' })).exitCode, 0, 'the next switch');
  });

  it('a step waits for the lock held by another step, up to its own deadline', async () => {
    const holder = boot('revoke', 1, { run: 'run-c', sleep: 1.5 });
    while (readFileSync(join(t.dir, 'member.lock'), 'utf8') === '') await new Promise((r) => setTimeout(r, 50));
    const waited = await boot('revoke', 1, { run: 'run-d' });
    assert.equal(waited.exitCode, 0, String(waited.stderr));
    assert.equal((await holder).exitCode, 0, 'the holder finished');
    const tooLong = boot('revoke', 1, { run: 'run-e', sleep: 10 });
    while (readFileSync(join(t.dir, 'member.lock'), 'utf8') === '') await new Promise((r) => setTimeout(r, 50));
    const gaveUp = await boot('revoke', 1, { run: 'run-f', timeout: 2 });
    assert.equal(gaveUp.exitCode, 1);
    assert.match(String(gaveUp.stderr), /member\.lock is held by another switch step \(pid and start time: \d+ \d+\) past this step's time limit/);
    // Its whole group (member_boot.py's session): the stand-in step too.
    if (tooLong.pid) process.kill(-tooLong.pid, 'SIGKILL');
    await tooLong;
  });
});

/** The ansible-playbook stand-in: the answers member_report.yml would write, and a journal. */
const ANSIBLE_STANDIN = `#!/usr/bin/env python3
# STAND-IN for ansible-playbook (test/ai-switch-cluster.test.ts): no member is reached.
import json, os, re, sys
args = sys.argv[1:]
playbook = args[0]
variables = json.load(open(args[args.index("-e") + 1][1:]))
step = re.match(r"\\d+-(\\w+)\\.yml$", os.path.basename(playbook)).group(1)
hosts = [json.loads(h) for h in re.search(r"^  hosts:\\n((?:    - .*\\n)+)", open(playbook).read(), re.M).group(1).replace("    - ", "").split()]
with open(os.environ["STANDIN_JOURNAL"], "a") as j:
    j.write("ansible-playbook %s %s -i %s\\n" % (step, ",".join(hosts), args[args.index("-i") + 1]))
if os.environ.get("STANDIN_DIE") == step:
    os._exit(137)
if os.environ.get("STANDIN_SLEEP") == step and not os.path.exists(os.environ["STANDIN_SLEEPING"]):
    open(os.environ["STANDIN_SLEEPING"], "w").close()
    import time; time.sleep(60)
fail = dict(x.split(":") for x in os.environ.get("STANDIN_FAIL", "").split(",") if x)
ok = {"unreachable": "", "error": "", "rc": "0", "msg": "", "stdout": '{"changed": []}', "stderr": ""}
if step == "read" and os.environ.get("STANDIN_SETS"):
    ok = dict(ok, stdout=json.dumps({"changed": [], "sets": json.loads(os.environ["STANDIN_SETS"])}))
answers = {h: (dict(ok, unreachable="ssh: connect to host %s port 22: Connection refused" % h, rc="-1", stdout="") if fail.get(step) == h else ok) for h in hosts}
json.dump(answers, open(variables["ai_switch_result_file"], "w"))
`;

/**
 * The queries that tell whether the default remote is the cluster (aiswitch/clusterRemote.ts): the
 * cluster of examples/cluster.yml, unless STANDIN_REMOTE=single (this machine's own Incus). Not
 * journaled: the journals are of what the switch changes.
 */
const INCUS_QUERIES = String.raw`if [ "$1" = query ]; then
  case "$2" in
    /1.0) if [ "$STANDIN_REMOTE" = single ]; then echo '{"environment":{"server_clustered":false,"server_name":"laptop"}}'; else echo '{"environment":{"server_clustered":true,"server_name":"desk"}}'; fi ;;
    /1.0/cluster/members) echo '["/1.0/cluster/members/desk","/1.0/cluster/members/gpu-box"]' ;;
  esac
  exit 0
fi
`;

const INCUS_STANDIN = `#!/bin/sh
# STAND-IN for incus (test/ai-switch-cluster.test.ts): records the project key's writes; the write
# of STANDIN_KEY_FAILS (a value, or "empty") fails.
${INCUS_QUERIES}echo "incus $*" >> "$STANDIN_JOURNAL"
case "\${STANDIN_KEY_FAILS:-unset}" in
  empty) [ "$5" = "" ] && { echo "Error: stand-in: no quorum" >&2; exit 1; } ;;
  "$5") echo "Error: stand-in: no quorum" >&2; exit 1 ;;
esac
exit 0
`;

describe('ai-switch on a cluster: the order and the fail-closed paths (STAND-INS for ansible-playbook and incus)', () => {
  let t: TestEnv;
  let env: NodeJS.ProcessEnv;
  let journal: string;
  let forbidden: ForbiddenTools;
  before(async () => {
    t = testEnv('anklume-ai-switch-cluster-');
    forbidden = ForbiddenTools.create();
    const bin = join(t.dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'ansible-playbook'), ANSIBLE_STANDIN, { mode: 0o755 });
    writeFileSync(join(bin, 'incus'), INCUS_STANDIN, { mode: 0o755 });
    journal = join(t.dir, 'journal');
    env = { ...t.env, PATH: `${bin}:${process.env.PATH}`, STANDIN_JOURNAL: journal };
    const s = await runCli(['sync', CLUSTER, '--base-dir', t.baseDir, '-q'], t.env);
    assert.equal(s.code, 0, s.stderr);
  });
  after(() => t.cleanup());

  const inventory = () => join(t.baseDir, 'inventory/_cluster.yml');
  const stateFile = () => t.env.ANKLUME_STATE_FILE as string;
  const jsonLog = () => readFileSync((t.env.ANKLUME_LOG_FILE as string).replace(/\.log$/, '.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  /** A switch to pro (the CLI as a real process) whose ansible-playbook sleeps in `step`, SIGTERM there. */
  const interrupt = async (step: MemberStep) => {
    rmSync(journal, { force: true });
    const sleeping = join(t.dir, 'sleeping');
    rmSync(sleeping, { force: true });
    const run = execa(process.execPath, ['--import', 'tsx', join(ROOT, 'generator/cli/bin.ts'), 'ai-switch', '--domain', 'pro', '--infra', CLUSTER, '--base-dir', t.baseDir, '--installed-ruleset', join(t.dir, 'installed.nft')],
      { env: { ...env, STANDIN_SLEEP: step, STANDIN_SLEEPING: sleeping }, extendEnv: false, reject: false, cwd: ROOT, stdin: 'ignore', forceKillAfterDelay: false });
    while (!existsSync(sleeping) && run.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    run.kill('SIGTERM');
    const r = await run;
    return { code: r.exitCode ?? -1, stderr: String(r.stderr), journal: readFileSync(journal, 'utf8').replace(/\n$/, '').split('\n') };
  };
  const switchTo = async (domain: string, extra: NodeJS.ProcessEnv = {}, flags: string[] = []) => {
    rmSync(journal, { force: true });
    const r = await runCli(['ai-switch', '--domain', domain, '--infra', CLUSTER, '--base-dir', t.baseDir, '--installed-ruleset', join(t.dir, 'installed.nft'), ...flags], { ...env, ...extra });
    return { ...r, journal: existsSync(journal) ? readFileSync(journal, 'utf8').replace(/\n$/, '').split('\n') : [] };
  };

  it('--dry-run: nothing runs (ansible-playbook, incus and nft fail if called), every member\'s steps are said', async () => {
    const r = await runCli(['ai-switch', '--domain', 'perso', '--infra', CLUSTER, '--base-dir', t.baseDir, '--dry-run'], forbidden.env(t.env));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ {2}1 on every member \(desk, gpu-box\): revoke 'pro'/m);
    assert.match(r.stdout, /^ {2}3 on every member \(desk, gpu-box\): grant 'perso'/m);
    assert.ok(!existsSync(stateFile()), 'nothing written');
  });

  it('a switch: the key says nobody, revoke on every member, the records, stop and flush on gpu-box, grant on every member, the records and the key, start on gpu-box', async () => {
    const r = await switchTo('perso', {}, ['--json']);
    assert.equal(r.code, 0, r.stderr);
    const inv = inventory();
    assert.deepEqual(r.journal, [
      'incus project set ai-tools user.anklume.ai_holder ',
      `ansible-playbook revoke desk,gpu-box -i ${inv}`,
      `ansible-playbook stop gpu-box -i ${inv}`,
      `ansible-playbook grant desk,gpu-box -i ${inv}`,
      'incus project set ai-tools user.anklume.ai_holder perso',
      `ansible-playbook start gpu-box -i ${inv}`,
    ]);
    assert.equal(readFileSync(stateFile(), 'utf8'), 'perso\n');
    assert.match(readFileSync(join(t.baseDir, 'nftables/anklume.nft'), 'utf8'), /the bridge that holds AI access: perso/);
    const doc = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.equal(doc.status, 'switched');
    assert.deepEqual([doc.members, doc.unconfirmed_members], [['desk', 'gpu-box'], []]);
    assert.deepEqual(jsonLog().at(-1)?.unconfirmed_members, []);
  });

  it("the default incus remote is not the cluster (this machine's own Incus): the switch goes by the members' sets, and the key is not written elsewhere, with a warning that says why", async () => {
    const r = await switchTo('pro', { STANDIN_REMOTE: 'single' }, ['--json']);
    assert.equal(r.code, 0, r.stderr);
    const inv = inventory();
    assert.deepEqual(r.journal, [
      `ansible-playbook revoke desk,gpu-box -i ${inv}`,
      `ansible-playbook stop gpu-box -i ${inv}`,
      `ansible-playbook grant desk,gpu-box -i ${inv}`,
      `ansible-playbook start gpu-box -i ${inv}`,
    ], 'no incus project set');
    const doc = JSON.parse(r.stdout) as { status: string; warnings: { message: string }[] };
    assert.equal(doc.status, 'switched');
    assert.ok(doc.warnings.some((w) => /^the Incus project key user\.anklume\.ai_holder is not written by this switch: the Incus that 'incus' reaches \(its default remote, server 'laptop'\) is not clustered/.test(w.message)), JSON.stringify(doc.warnings));
    assert.equal(readFileSync(stateFile(), 'utf8'), 'pro\n');
    // Back to perso, as the tests below expect.
    assert.equal((await switchTo('perso')).code, 0);
  });

  it('already the holder on every member and in the state file: nothing to do, exit 0, nothing touched but the read', async () => {
    const r = await switchTo('perso', { STANDIN_SETS: JSON.stringify({ ai_holder: ['net-perso'], ai_holder_subnet: ['10.100.1.0/24'] }) });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^AI access is already set to 'perso'\. Nothing to do\.$/m);
    assert.deepEqual(r.journal, [`ansible-playbook read desk,gpu-box -i ${inventory()}`]);
  });

  it('the state file names the new holder but every member\'s sets say nobody: the switch runs, from the members\' sets, with a warning', async () => {
    writeFileSync(stateFile(), 'perso\n');
    const r = await switchTo('perso', { STANDIN_SETS: JSON.stringify({ ai_holder: [], ai_holder_subnet: [] }) }, ['--json']);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { from: string | null; status: string; warnings: { message: string }[] };
    assert.deepEqual([doc.status, doc.from], ['switched', null]);
    assert.match(doc.warnings.map((w) => w.message).join('\n'), /the state file says 'perso' holds AI access, every member's holder sets say nobody: the switch starts from the members' sets/);
    assert.equal(r.journal[0], `ansible-playbook read desk,gpu-box -i ${inventory()}`);
  });

  it('a member that cannot be revoked: the safe state on every member, nobody in the records, no flush or grant, exit 1 naming it', async () => {
    const r = await switchTo('pro', { STANDIN_FAIL: 'revoke:gpu-box' });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^ai-switch failed: member gpu-box could not be revoked \(unreachable: ssh: connect to host gpu-box port 22: Connection refused\)$/m);
    assert.match(r.stderr, /^Nobody has AI access now on any member \(the safe state, read back on every member\)\.$/m, 'the safe state reached gpu-box');
    assert.match(r.stderr, /^Members that did not confirm: gpu-box\.$/m);
    const inv = inventory();
    assert.deepEqual(r.journal, [
      'incus project set ai-tools user.anklume.ai_holder ',
      `ansible-playbook revoke desk,gpu-box -i ${inv}`,
      `ansible-playbook safe desk,gpu-box -i ${inv}`,
      'incus project set ai-tools user.anklume.ai_holder ',
    ], 'no stop, flush or grant; the services were never stopped');
    assert.equal(readFileSync(stateFile(), 'utf8'), '');
    const last = jsonLog().at(-1)!;
    assert.deepEqual([last.status, last.failed_step, last.unconfirmed_members], ['failed', 'revoke', ['gpu-box']]);
  });

  it('a member that cannot be granted: the grant withdrawn (the safe state on every member), the services started again, nobody recorded', async () => {
    const r = await switchTo('pro', { STANDIN_FAIL: 'grant:desk' }, ['--json']);
    assert.equal(r.code, 1, r.stderr);
    const doc = JSON.parse(r.stdout) as { errors: { message: string }[]; unconfirmed_members: string[]; failed_step: string };
    assert.match(doc.errors[0].message, /^ai-switch failed: member desk could not be granted \(unreachable: [^)]*\)$/);
    assert.deepEqual([doc.failed_step, doc.unconfirmed_members], ['grant', ['desk']]);
    const inv = inventory();
    assert.deepEqual(r.journal.slice(2), [
      `ansible-playbook stop gpu-box -i ${inv}`,
      `ansible-playbook grant desk,gpu-box -i ${inv}`,
      `ansible-playbook safe desk,gpu-box -i ${inv}`,
      'incus project set ai-tools user.anklume.ai_holder ',
      `ansible-playbook start gpu-box -i ${inv}`,
    ]);
    assert.equal(readFileSync(stateFile(), 'utf8'), '');
  });

  it('ansible-playbook dies during a step without reporting: every member unconfirmed, the safe state from anklume-gen itself, exit 1', async () => {
    const r = await switchTo('pro', { STANDIN_DIE: 'revoke' });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /member desk could not be revoked \(ansible-playbook ended \(exit 137\) without reporting\)/);
    assert.match(r.stderr, /member gpu-box could not be revoked/);
    assert.equal(r.journal.filter((l) => l.startsWith('ansible-playbook safe desk,gpu-box')).length, 1);
    assert.equal(readFileSync(stateFile(), 'utf8'), '');
    assert.deepEqual(jsonLog().at(-1)?.unconfirmed_members, ['desk', 'gpu-box']);
  });

  it('the safe state that cannot reach the member that runs ai-tools machines says so: the path left open named, no claim that every path is closed', async () => {
    const r = await switchTo('pro', { STANDIN_FAIL: 'revoke:gpu-box,safe:gpu-box' });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^The safe state is confirmed on desk; NOT on gpu-box: the ai-tools machines on gpu-box may still be reached by machines on gpu-box \(as those members held access before\) until it answers; desk, in the safe state, drops what its own machines send to ai-tools; check with anklume-gen ai-status once it answers\.$/m);
    assert.match(r.stderr, /error: the safe state could not be confirmed on gpu-box \(gpu-box: unreachable: [^)]*\)$/m);
    assert.doesNotMatch(r.stderr, /every other path to ai-tools is closed|every path to ai-tools between members is closed/);
  });

  it('the safe state that cannot reach a member without ai-tools machines: no machine can reach ai-tools, since the member that runs them is in the safe state', async () => {
    const r = await switchTo('pro', { STANDIN_FAIL: 'grant:desk,safe:desk' });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^The safe state is confirmed on gpu-box; NOT on desk: it runs no ai-tools machine and every member that runs ai-tools machines \(gpu-box\) is in the safe state and drops what is sent to them: no machine can reach ai-tools; check with anklume-gen ai-status once it answers\.$/m);
  });

  it('a project key that cannot be written back to nobody: the failure says COULD NOT BE WRITTEN and what it may still name', async () => {
    // The key said nobody from step 0 on; the grant failed; the write of "" in the safe state fails.
    const r = await switchTo('pro', { STANDIN_FAIL: 'grant:desk', STANDIN_KEY_FAILS: 'empty' });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /; project key user\.anklume\.ai_holder: COULD NOT BE WRITTEN \(it may still name the holder it named before the switch\); /);
    assert.doesNotMatch(r.stderr, /"" attempted/);
    const ok = await switchTo('pro', { STANDIN_FAIL: 'grant:desk' });
    assert.match(ok.stderr, /; project key user\.anklume\.ai_holder: says nobody; /);
  });

  it('SIGTERM while the members grant: the step stopped, the safe state on every member, exit 1 with the moment as the cause, nobody recorded', async () => {
    const r = await interrupt('grant');
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^ai-switch failed: interrupted by SIGTERM during the grant$/m);
    assert.deepEqual(r.journal.slice(-3), [`ansible-playbook safe desk,gpu-box -i ${inventory()}`, 'incus project set ai-tools user.anklume.ai_holder ', `ansible-playbook start gpu-box -i ${inventory()}`]);
    assert.equal(readFileSync(stateFile(), 'utf8'), '');
    assert.deepEqual([jsonLog().at(-1)?.status, jsonLog().at(-1)?.failed_step], ['failed', 'grant']);
  });

  it('SIGTERM while the services start after a grant: not taken for a failed start; the safe state, exit 1, nobody recorded', async () => {
    const r = await interrupt('start');
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^ai-switch failed: interrupted by SIGTERM while the GPU services were started$/m);
    assert.doesNotMatch(r.stderr, /could not start the GPU services/);
    assert.ok(r.journal.includes(`ansible-playbook safe desk,gpu-box -i ${inventory()}`), r.journal.join('\n'));
    assert.equal(readFileSync(stateFile(), 'utf8'), '');
    assert.equal(readFileSync(join(t.baseDir, 'nftables/anklume.nft'), 'utf8').includes('the bridge that holds AI access: pro'), false, 'the tree\'s ruleset names nobody');
  });

  it('an inventory that lacks a member, names another host or another address: refused before anything runs (dry run too), naming the fix', async () => {
    const saved = readFileSync(inventory(), 'utf8');
    rmSync(journal, { force: true });
    try {
      for (const [text, why] of [
        [saved.replace(/^ {8}desk:.*\n(?: {10}.*\n)*/m, ''), /it lacks member desk/],
        [saved.replace('gpu-box:', 'gpu-box2:'), /it lacks member gpu-box; it names gpu-box2, no member of the infra/],
        [saved.replace('192.168.50.2', '192.168.50.9'), /it reaches gpu-box at 192\.168\.50\.9, the infra says 192\.168\.50\.2/],
      ] as const) {
        assert.notEqual(text, saved);
        writeFileSync(inventory(), text);
        for (const flags of [[], ['--dry-run']]) {
          const r = await runCli(['ai-switch', '--domain', 'perso', '--infra', CLUSTER, '--base-dir', t.baseDir, ...flags], forbidden.env(t.env));
          assert.equal(r.code, 1, `${flags.join(' ')} ${r.stdout}`);
          assert.match(r.stderr, why);
          assert.match(r.stderr, new RegExp(`inventory/_cluster\\.yml is not the infra's cluster: .*Write it again with 'anklume-gen sync ${CLUSTER.replace(/[.]/g, '\\.')} --base-dir ${t.baseDir.replace(/[.]/g, '\\.')}' \\(make sync\\)\\. Nothing was changed\\.`));
          forbidden.assertNoneCalled();
        }
      }
      assert.ok(!existsSync(journal), 'nothing ran');
    } finally {
      writeFileSync(inventory(), saved);
    }
  });

  it('without the members\' inventory: refused before anything runs', async () => {
    rmSync(inventory());
    try {
      const r = await switchTo('perso');
      assert.equal(r.code, 1);
      assert.match(r.stderr, /inventory\/_cluster\.yml does not exist: the switch reaches the members through the inventory sync writes/);
      assert.deepEqual(r.journal, []);
    } finally {
      const s = await runCli(['sync', CLUSTER, '--base-dir', t.baseDir, '-q'], t.env);
      assert.equal(s.code, 0, s.stderr);
    }
  });
});

/**
 * The real member steps (tasks/member.yml, files/member_boot.py, switch_step.py member-*,
 * gpu_flush.py on the GPU machine's member) through the real ansible-playbook, on a real ruleset
 * in a network namespace of its own: both members of examples/cluster.yml are that namespace,
 * reached with Ansible's local connection. STAND-INS: `incus` and `nvidia-smi` (recording, first
 * on PATH; no Incus and no GPU here). Needs root. The real cluster over SSH is
 * test/cluster-switch-e2e.test.ts.
 */
const netns = await canRunNetns();
describe('ai-switch on a cluster: the real member steps through ansible-playbook (a network namespace for the members; STAND-INS for incus and nvidia-smi)', { skip: netns.ok ? false : netns.why }, () => {
  const NS = `aksw-${process.pid}`;
  let t: TestEnv;
  let env: NodeJS.ProcessEnv;
  let journal: string;
  before(async () => {
    t = testEnv('anklume-ai-switch-cluster-members-');
    const bin = join(t.dir, 'bin');
    mkdirSync(bin);
    journal = join(t.dir, 'journal');
    writeFileSync(join(bin, 'incus'), `#!/bin/sh\n# STAND-IN for incus: records its calls.\n${INCUS_QUERIES}echo "incus $*" >> "$STANDIN_JOURNAL"\n`, { mode: 0o755 });
    writeFileSync(join(bin, 'nvidia-smi'), `#!/bin/sh
# STAND-IN for nvidia-smi: one GPU, no compute process; NVML fails when STANDIN_NVML_FAILS is set.
echo "nvidia-smi $*" >> "$STANDIN_JOURNAL"
case "$*" in
  *query-compute-apps*) [ -n "$STANDIN_NVML_FAILS" ] && { echo "nvidia-smi stand-in: NVML failed" >&2; exit 9; } ;;
  *query-gpu*) echo "0, GPU-00000000-0000-0000-0000-000000000000, 10, 24000" ;;
esac
exit 0
`, { mode: 0o755 });
    // Around the real nft: the grant batch writes when it started (STANDIN_GRANT_MARK), then waits
    // STANDIN_GRANT_SLEEP seconds before it is loaded: a member slow in its grant.
    const realNft = (await execa('sh', ['-c', 'command -v nft'])).stdout.trim();
    writeFileSync(join(bin, 'nft'), `#!/bin/sh
# STAND-IN around the real nft (${realNft}): a grant batch that is loaded late when asked to.
case "$*" in
  *grant.nft*) if [ -n "$STANDIN_GRANT_SLEEP" ]; then date +%s.%N >> "$STANDIN_GRANT_MARK"; sleep "$STANDIN_GRANT_SLEEP"; fi ;;
esac
exec ${realNft} "$@"
`, { mode: 0o755 });
    // Around the real ansible-playbook: a member's time limit of STANDIN_MEMBER_TIMEOUT seconds
    // (the last -e wins), so that a test need not wait 30 s.
    const realPlaybook = (await execa('sh', ['-c', 'command -v ansible-playbook'])).stdout.trim();
    writeFileSync(join(bin, 'ansible-playbook'), `#!/bin/sh
# STAND-IN around the real ansible-playbook (${realPlaybook}): a shorter member time limit when asked to.
if [ -n "$STANDIN_MEMBER_TIMEOUT" ]; then exec ${realPlaybook} "$@" -e "{\"ai_switch_member_timeout\": $STANDIN_MEMBER_TIMEOUT}"; fi
exec ${realPlaybook} "$@"
`, { mode: 0o755 });
    env = { ...t.env, PATH: `${bin}:${process.env.PATH}`, STANDIN_JOURNAL: journal, STANDIN_GRANT_MARK: join(t.dir, 'grant-started') };
    const s = await runCli(['sync', CLUSTER, '--base-dir', t.baseDir, '-q'], t.env);
    assert.equal(s.code, 0, s.stderr);
    assert.equal((await execa('ip', ['netns', 'add', NS], { reject: false })).exitCode, 0);
  });
  after(async () => {
    await execa('ip', ['netns', 'del', NS], { reject: false });
    // The members' switch locks (member_boot.py): both members are this machine.
    for (const m of ['desk', 'gpu-box']) for (const f of ['', '.fence']) rmSync(`/run/anklume-ai-switch.${m}.lock${f}`, { force: true });
    t?.cleanup();
  });

  /** Both members are the namespace (local connection); written again before each switch (the switch re-syncs the tree). */
  const members = () => writeFileSync(join(t.baseDir, 'inventory/_cluster.yml'),
    `all:\n  children:\n    anklume_cluster:\n      hosts:\n        desk: { ansible_host: 192.168.50.1, ansible_connection: local, ansible_python_interpreter: ${JSON.stringify(process.env.ANKLUME_PYTHON ?? '/usr/bin/python3')} }\n        gpu-box: { ansible_host: 192.168.50.2, ansible_connection: local, ansible_python_interpreter: ${JSON.stringify(process.env.ANKLUME_PYTHON ?? '/usr/bin/python3')} }\n`);
  const sets = async () => {
    const read = async (set: string) => ((JSON.parse((await execa('ip', ['netns', 'exec', NS, 'nft', '-j', 'list', 'set', 'inet', 'anklume', set])).stdout) as { nftables: { set?: { elem?: unknown[] } }[] }).nftables.find((i) => i.set)?.set?.elem ?? []).map((e) => (typeof e === 'string' ? e : JSON.stringify(e)));
    return [await read('ai_holder'), await read('ai_holder_subnet')];
  };
  const start = (domain: string, extra: NodeJS.ProcessEnv = {}) => {
    members();
    rmSync(journal, { force: true });
    rmSync(env.STANDIN_GRANT_MARK as string, { force: true });
    return execa('ip', ['netns', 'exec', NS, process.execPath, '--import', 'tsx', join(ROOT, 'generator/cli/bin.ts'), 'ai-switch', '--domain', domain, '--infra', CLUSTER, '--base-dir', t.baseDir, '--installed-ruleset', join(t.dir, 'installed.nft')],
      // No SIGKILL 5 s after a test's SIGTERM (execa's default): the switch's safe state takes longer.
      { env: { ...env, ...extra }, extendEnv: false, reject: false, cwd: ROOT, stdin: 'ignore', forceKillAfterDelay: false });
  };
  const finish = async (run: ReturnType<typeof start>) => {
    const r = await run;
    return { code: r.exitCode ?? -1, out: String(r.stdout), err: String(r.stderr), journal: existsSync(journal) ? readFileSync(journal, 'utf8').replace(/\n$/, '').split('\n').filter((l) => !l.includes('--query-')) : [] };
  };
  const switchTo = (domain: string, extra: NodeJS.ProcessEnv = {}) => finish(start(domain, extra));
  /** When the members' grant batches started (the nft stand-in's marks), in ms since the epoch. */
  const grantStarts = () => (existsSync(env.STANDIN_GRANT_MARK as string) ? readFileSync(env.STANDIN_GRANT_MARK as string, 'utf8').trim().split('\n').map((l) => Number(l) * 1000) : []);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

  it('a switch: revoke and grant read back on every member, the services stopped and the GPU flushed on gpu-box only, in that order', async () => {
    const load = await execa('ip', ['netns', 'exec', NS, 'nft', '-f', join(t.baseDir, 'nftables/anklume.nft')], { reject: false });
    assert.equal(load.exitCode, 0, String(load.stderr));
    assert.deepEqual(await sets(), [['net-pro'], [JSON.stringify({ prefix: { addr: '10.100.2.0', len: 24 } })]]);
    const r = await switchTo('perso');
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(r.journal, [
      'incus project set ai-tools user.anklume.ai_holder ',
      'incus exec gpu-server --project ai-tools -- systemctl stop ollama speaches',
      'nvidia-smi --gpu-reset -i GPU-00000000-0000-0000-0000-000000000000',
      'incus project set ai-tools user.anklume.ai_holder perso',
      'incus exec gpu-server --project ai-tools -- systemctl start ollama speaches',
    ]);
    assert.deepEqual(await sets(), [['net-perso'], [JSON.stringify({ prefix: { addr: '10.100.1.0', len: 24 } })]]);
    assert.equal(readFileSync(t.env.ANKLUME_STATE_FILE as string, 'utf8'), 'perso\n');
    assert.match(readFileSync(join(t.dir, 'installed.nft'), 'utf8'), /the bridge that holds AI access: perso/, 'the members\' boot copy');
    // The flush report comes back from the member, as on one host: the output, and the JSON log.
    assert.match(r.out, /^ {2}gpu-server \(lxc, flushed from the host\): killed no process$/m);
    assert.match(r.out, /^ {4}GPU 0 GPU-00000000-0000-0000-0000-000000000000: memory in use 10 MiB before, 10 MiB after \(of 24000 MiB\); reset done$/m);
    const logged = readFileSync((t.env.ANKLUME_LOG_FILE as string).replace(/\.log$/, '.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { gpu: { machine: string; reset: boolean; gpus: { uuid: string; reset: string }[] }[] }).at(-1)!;
    assert.deepEqual(logged.gpu.map((g) => [g.machine, g.reset, g.gpus.map((x) => [x.uuid, x.reset])]), [['gpu-server', true, [['GPU-00000000-0000-0000-0000-000000000000', 'done']]]]);
  });

  it('a flush that fails on the GPU machine\'s member: exit 1 naming it, nothing granted, every holder set empty, the services started again, nobody recorded', async () => {
    const r = await switchTo('pro', { STANDIN_NVML_FAILS: '1' });
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /^ai-switch failed: member gpu-box could not stop the GPU services or flush GPU memory \(Flush GPU memory: .*NVML failed\)$/m);
    assert.deepEqual(r.journal, [
      'incus project set ai-tools user.anklume.ai_holder ',
      'incus exec gpu-server --project ai-tools -- systemctl stop ollama speaches',
      'incus project set ai-tools user.anklume.ai_holder ',
      'incus exec gpu-server --project ai-tools -- systemctl start ollama speaches',
    ]);
    assert.deepEqual(await sets(), [[], []]);
    assert.equal(readFileSync(t.env.ANKLUME_STATE_FILE as string, 'utf8'), '');
  });

  it('a member whose live table holds what the records do not say (records: nobody, the table: perso) is revoked all the same (the sets read back are the judge)', async () => {
    const hold = await execa('ip', ['netns', 'exec', NS, 'nft', 'add', 'element', 'inet', 'anklume', 'ai_holder', '{ "net-perso" }'], { reject: false });
    assert.equal(hold.exitCode, 0, String(hold.stderr));
    const r = await switchTo('pro');
    assert.equal(r.code, 0, r.err);
    assert.deepEqual((await sets())[0], ['net-pro']);
  });

  // The members' temporary folders (their step's files) are in the run folder here (one machine,
  // local connection), which anklume-gen removes when it ends; on a member they are the member's
  // own. Kept, so that a step that outlives the switch still finds its batch, as on a member.
  const KEEP = { ANKLUME_KEEP_RUN_DIR: '1' };
  const dropKept = (err: string) => {
    const kept = /run files kept in (\S+)/.exec(err)?.[1];
    if (kept) rmSync(kept, { recursive: true, force: true });
  };

  it('a member slow in its grant past its time limit: the step gives up on the member, the safe state holds, and no late grant lands (waited past it)', async () => {
    const SLEEP_S = 12;
    const r = await switchTo('perso', { ...KEEP, STANDIN_MEMBER_TIMEOUT: '6', STANDIN_GRANT_SLEEP: String(SLEEP_S) });
    assert.equal(r.code, 1, r.err);
    assert.deepEqual(await sets(), [[], []], 'the safe state');
    const starts = grantStarts();
    assert.equal(starts.length, 2, 'both members started their grant');
    await sleep(Math.max(...starts) + SLEEP_S * 1000 + 1500 - Date.now());
    assert.deepEqual(await sets(), [[], []], 'nothing landed after the safe state');
    dropKept(r.err);
    assert.equal(readFileSync(t.env.ANKLUME_STATE_FILE as string, 'utf8'), '');
    // The member's own answer, before Ansible's time limit: the step gave up (4.5 s of 6).
    assert.match(r.err, /^ai-switch failed: member desk could not be granted \(The member's time limit: the step passed its time limit on the member \(6 s\): stopped, its processes killed\)/m);
  });

  // On the local connection a step not in a session of its own would die with ansible-playbook's
  // process group; member_boot.py's setsid makes it outlive ansible-playbook as a step over SSH
  // does, so only the safe state's kill (through the member's lock) stops it here.
  it('SIGTERM to anklume-gen during a slow grant: the safe state kills the members\' grant (their lock), exit 1, and no late grant lands (waited past it)', async () => {
    const SLEEP_S = 10;
    const run = start('perso', { ...KEEP, STANDIN_GRANT_SLEEP: String(SLEEP_S) });
    while (grantStarts().length < 2 && run.exitCode === null) await sleep(100);
    run.kill('SIGTERM');
    const r = await finish(run);
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /^ai-switch failed: interrupted by SIGTERM during the grant/m);
    assert.match(r.err, /^Nobody has AI access now on any member/m);
    assert.deepEqual(await sets(), [[], []], 'the safe state');
    await sleep(Math.max(...grantStarts()) + SLEEP_S * 1000 + 1500 - Date.now());
    assert.deepEqual(await sets(), [[], []], 'nothing landed after the safe state');
    dropKept(r.err);
    assert.equal(readFileSync(t.env.ANKLUME_STATE_FILE as string, 'utf8'), '');
  });
});
