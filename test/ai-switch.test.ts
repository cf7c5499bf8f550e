/**
 * ai-switch without a network: the checks and their messages (spec §8), the plan (pure), the lock,
 * the rendered playbook (ansible-playbook --syntax-check, ansible-lint, and --check: what it would
 * change) and the atomic file writer of the role.
 * No nft here: the checks refuse before the live ruleset is read, and while they run
 * ansible-playbook, incus and nft are stand-ins that fail loudly if called (test/helpers/standins.ts,
 * ForbiddenTools: first on the PATH of the CLI and of this process, whose PATH nft.ts uses), so
 * that a broken check fails its test instead of switching this machine's ruleset. The switch
 * itself, against a real ruleset in network namespaces with recording stand-ins, is
 * test/ai-switch-e2e.test.ts.
 */
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { ansibleEnv, ROLES_DIR } from '../generator/aiswitch/ansible.ts';
import { checkDomainArgument, checkPath, describePlan, extraVars, failureLogLine, gpuMachines, planSwitch, renderPlaybook, securityWarning, switchLogLine, type SwitchPlan } from '../generator/aiswitch/aiPlan.ts';
import { agrees, formatStatus, stateHolder } from '../generator/aiswitch/aiStatus.ts';
import { acquireLock, LockBusyError } from '../generator/aiswitch/lock.ts';
import { enrich } from '../generator/infra/enrich.ts';
import { analyse } from '../generator/infra/infra.ts';
import { renderRuleset, switchBatch } from '../generator/nftables/nftables.ts';
import type { Infra } from '../generator/core/types.ts';
import { runCli, spawnCli } from './helpers/cli.ts';
import { testEnv, type TestEnv } from './helpers/env.ts';
import { ForbiddenTools } from './helpers/standins.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURE = join(ROOT, 'test/fixtures/ai-switch/infra.yml');
const VM_SCRUB_FIXTURE = join(ROOT, 'test/fixtures/ai-switch/infra-vm-scrub.yml');
const ANSIBLE_LINT_MISSING = (await execa('ansible-lint', ['--version'], { reject: false })).exitCode === undefined ? 'ansible-lint is not installed (Debian package ansible-lint: make deps)' : false;
export const LOG_LINE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z switched ai-tools access: '([a-z0-9-]+|<none>)' -> '[a-z0-9-]+' flush=(true|false)$/;

async function fixture(file = FIXTURE): Promise<Infra> {
  const text = await readFile(file, 'utf8');
  const a = analyse([{ file, text, role: 'single' }], { yolo: false });
  assert.ok(a.infra, JSON.stringify(a.errors));
  return enrich(a.infra).infra;
}

function plan(infra: Infra, from: string | null | undefined, to: string, flush = true): SwitchPlan {
  return planSwitch({ infra, infraPath: FIXTURE, from, to, flush, stateFile: '/s/state', logFile: '/s/log', persist: ['/etc/nftables.d/anklume.nft', '/t/nftables/anklume.nft'], procRoot: '/proc' });
}

describe('ai-switch checks (messages of spec §8, before anything is touched; ansible-playbook, incus and nft are stand-ins that fail if called)', () => {
  let t: TestEnv;
  let forbidden: ForbiddenTools;
  let restorePath: () => void;
  before(() => {
    t = testEnv('anklume-ai-switch-');
    forbidden = ForbiddenTools.create();
    t.env = forbidden.env(t.env);
    restorePath = forbidden.onProcessPath();
  });
  after(() => {
    restorePath();
    forbidden.cleanup();
    t.cleanup();
  });
  afterEach(() => {
    try {
      forbidden.assertNoneCalled();
    } finally {
      forbidden.reset();
    }
  });

  const run = (...args: string[]) => runCli(['ai-switch', '--infra', FIXTURE, '--base-dir', t.baseDir, '--installed-ruleset', join(t.dir, 'installed.nft'), ...args], t.env);

  it('refuses a missing --domain (usage, exit 2)', async () => {
    const r = await run();
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Missing required --domain argument/);
  });

  it('refuses a name that is not DNS-safe (exit 2), with --json too', async () => {
    for (const bad of ['Perso', 'a_b', '-x', 'x;rm -rf', 'waytoolongname', '../etc']) {
      const r = await run(`--domain=${bad}`);
      assert.equal(r.code, 2, bad);
      assert.ok(r.stderr.includes(`Invalid domain name: ${bad} (must be DNS-safe`), r.stderr);
    }
    assert.match((await run('--domain=Perso')).stderr, /Invalid domain name: Perso \(must be DNS-safe, lowercase; did you mean 'perso'\?\)/);
    const j = await run('--domain', 'Bad!', '--json');
    assert.equal(j.code, 2);
    assert.equal(JSON.parse(j.stdout).status, 'refused');
  });

  it('refuses an unknown domain and ai-tools itself (exit 1)', async () => {
    const unknown = await run('--domain', 'nope');
    assert.equal(unknown.code, 1);
    assert.ok(unknown.stderr.includes(`error: Domain 'nope' not found in ${FIXTURE} (its domains: `), unknown.stderr);
    const typo = await run('--domain', 'prso');
    assert.equal(typo.code, 1);
    assert.ok(typo.stderr.includes(`Domain 'prso' not found in ${FIXTURE}; did you mean 'perso'?\n`), typo.stderr);
    const json = await run('--domain', 'prso', '--json');
    assert.equal(json.code, 1);
    assert.equal((JSON.parse(json.stdout) as { errors: { message: string }[] }).errors[0].message, `Domain 'prso' not found in ${FIXTURE}; did you mean 'perso'?`);
    const self = await run('--domain', 'ai-tools');
    assert.equal(self.code, 1);
    assert.match(self.stderr, /Cannot switch AI access to 'ai-tools' itself/);
  });

  it('refuses an infra that is invalid or not in exclusive mode', async () => {
    const open = join(t.dir, 'open.yml');
    writeFileSync(open, readFileSync(FIXTURE, 'utf8').replace('ai_access_policy: exclusive', 'ai_access_policy: open'));
    const r = await runCli(['ai-switch', '--infra', open, '--domain', 'perso'], t.env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ai_access_policy is not 'exclusive'/);
    const broken = join(t.dir, 'broken.yml');
    writeFileSync(broken, readFileSync(FIXTURE, 'utf8').replace('subnet_id: 1\n', 'subnet_id: 2\n'));
    const b = await runCli(['ai-switch', '--infra', broken, '--domain', 'perso'], t.env);
    assert.equal(b.code, 1);
    assert.match(b.stderr, /subnet_id 2 already used/);
    assert.match(b.stderr, /is not valid/);
  });

  it('refuses paths Ansible would evaluate as Jinja', async () => {
    const r = await run('--domain', 'perso', '--state-file', join(t.dir, '{{ lookup("pipe", "id") }}'));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /which Ansible would evaluate/);
    assert.equal(checkPath('x', '/opt/anklume/ai-access-current'), undefined);
    const proc = await runCli(['ai-switch', '--infra', FIXTURE, '--domain', 'perso'], { ...t.env, ANKLUME_PROC_ROOT: '/tmp/{{ 7 * 7 }}' });
    assert.equal(proc.code, 2);
    assert.match(proc.stderr, /ANKLUME_PROC_ROOT "\/tmp\/\{\{ 7 \* 7 \}\}" contains/);
  });

  // The one test here that reads the live holder set: from an nft stand-in that fails, as nft does
  // without a ruleset, so that the plan starts from the state file and no real nft is asked.
  it('--dry-run --no-flush: the plan on stdout, its SECURITY warning on stderr like every warning', () => {
    const bin = join(t.dir, 'bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'nft'), '#!/bin/sh\necho "nft stand-in: no ruleset" >&2\nexit 1\n', { mode: 0o755 });
    const env = { ...t.env, PATH: `${bin}:${process.env.PATH}` };
    const args = ['ai-switch', '--infra', FIXTURE, '--base-dir', t.baseDir, '--installed-ruleset', join(t.dir, 'installed.nft'), '--domain', 'perso', '--dry-run'];
    const r = spawnCli([...args, '--no-flush'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ai-switch plan \(dry run: nothing is changed\)$/m);
    assert.match(r.stdout, /^ {2}VRAM flush: no$/m);
    assert.doesNotMatch(r.stdout, /SECURITY/);
    assert.match(r.stderr, /^SECURITY: --no-flush: GPU memory is NOT flushed\. 'perso' may read what 'pro' left in VRAM/m);
    const flushing = spawnCli(args, env);
    assert.equal(flushing.code, 0, flushing.stderr);
    assert.doesNotMatch(flushing.stdout + flushing.stderr, /SECURITY/);
    const json = spawnCli([...args, '--no-flush', '--json'], env);
    assert.equal(json.code, 0, json.stderr);
    assert.equal((JSON.parse(json.stdout) as { flush: boolean }).flush, false, 'one JSON document on stdout');
  });

  it('wrote nothing while refusing', () => {
    assert.equal(existsSync(t.env.ANKLUME_STATE_FILE!), false);
    assert.equal(existsSync(t.env.ANKLUME_LOG_FILE!), false);
    assert.equal(existsSync(`${t.env.ANKLUME_STATE_FILE}.lock`), false);
    assert.equal(existsSync(t.baseDir), false);
  });

  it('documents its flags in --help', async () => {
    for (const cmd of ['ai-switch', 'ai-status']) {
      const r = await runCli([cmd, '--help'], t.env);
      assert.equal(r.code, 0);
      for (const flag of cmd === 'ai-switch' ? ['--domain', '--no-flush', '--dry-run', '--json', '--infra', '--base-dir', '--state-file', '--log-file', '--installed-ruleset', '--wait'] : ['--infra', '--json', '--state-file', '--log-file', '--history']) {
        assert.ok(r.stdout.includes(flag), `${cmd} --help lacks ${flag}`);
      }
    }
  });
});

describe('ai-switch plan (pure)', () => {
  let infra: Infra;
  before(async () => {
    infra = await fixture();
  });

  it('checks the --domain argument', () => {
    assert.equal(checkDomainArgument(undefined), 'Missing required --domain argument');
    assert.equal(checkDomainArgument('pro'), undefined);
  });

  it('finds the GPU machine through a gpu profile, and the configured services', () => {
    assert.deepEqual(gpuMachines(infra), ['gpu-server']);
    const p = plan(infra, 'pro', 'perso');
    assert.deepEqual(p.services, ['ollama', 'speaches']);
    assert.equal(p.flushes, true);
    assert.equal(p.newBridge, 'net-perso');
  });

  it('revokes then grants exactly what one switch batch would move', () => {
    const p = plan(infra, 'pro', 'perso');
    assert.equal(p.revokeBatch, switchBatch(infra, 'pro', null));
    assert.equal(p.grantBatch, switchBatch(infra, null, 'perso'));
    assert.equal(p.switchBatch, switchBatch(infra, 'pro', 'perso'));
    assert.match(p.revokeBatch, /delete element inet anklume ai_holder \{\s*"net-pro",\s*\}/);
    assert.doesNotMatch(p.revokeBatch, /add element/);
    assert.match(p.grantBatch, /add element inet anklume ai_holder \{\s*"net-perso",\s*\}/);
    assert.doesNotMatch(p.grantBatch, /delete element/);
    assert.equal(p.rulesetNone, renderRuleset(infra, null));
    assert.equal(p.rulesetNew, renderRuleset(infra, 'perso'));
  });

  it('empties the holder set when the live holder is not one known domain', () => {
    const p = plan(infra, undefined, 'perso');
    assert.equal(p.from, null);
    assert.match(p.revokeBatch, /^flush set inet anklume ai_holder$/m);
  });

  it('skips GPU steps with a note when ai-tools has no GPU machine', () => {
    const noGpu = structuredClone(infra);
    delete noGpu.domains['ai-tools'].machines!['gpu-server'].profiles;
    const p = plan(noGpu, 'pro', 'perso');
    assert.deepEqual(p.gpuMachines, []);
    assert.equal(p.flushes, false);
    assert.ok(p.notes.some((n) => /no machine of 'ai-tools' has GPU access/.test(n)));
  });

  it('describes a dry run: old -> new, flush, the nft change, SECURITY without flush', () => {
    const text = describePlan(plan(infra, 'pro', 'perso')).join('\n');
    assert.match(text, /'pro' -> 'perso'/);
    assert.match(text, /VRAM flush: yes/);
    assert.ok(text.includes(switchBatch(infra, 'pro', null).trimEnd()));
    assert.ok(text.includes(switchBatch(infra, null, 'perso').trimEnd()));
    assert.doesNotMatch(text, /SECURITY/);
    const noFlush = describePlan(plan(infra, null, 'perso', false)).join('\n');
    assert.match(noFlush, /'<none>' -> 'perso'/);
    assert.match(noFlush, /VRAM flush: no/);
    assert.ok(noFlush.includes(securityWarning({ from: null, to: 'perso' })));
    assert.doesNotMatch(noFlush, /scrub|run on the host/);
  });

  it('says where the flush of each GPU machine runs: a container from the host, a VM inside; and the scrub', async () => {
    const lxc = describePlan(plan(infra, 'pro', 'perso')).join('\n');
    assert.match(lxc, /gpu-server \(lxc\): nvidia-smi, kill -9 and the reset run on the host: compute processes whose cgroup \(\/proc\/<pid>\/cgroup\) is gpu-server's are killed/);
    assert.match(lxc, /VRAM scrub: none/);
    const vm = await fixture(VM_SCRUB_FIXTURE);
    const p = plan(vm, 'pro', 'perso');
    assert.deepEqual(p.gpuTypes, { 'gpu-server': 'vm' });
    assert.deepEqual(p.scrubCommand, ['/usr/local/bin/zero-vram', '--pattern', '0x00 {{ not jinja }}']);
    const text = describePlan(p).join('\n');
    assert.match(text, /gpu-server \(vm\): nvidia-smi, kill -9 and the reset run inside the VM \(incus exec gpu-server --project ai-tools -- \.\.\.\)/);
    assert.ok(text.includes("VRAM scrub after the kill, in each GPU machine (its failure fails the switch): /usr/local/bin/zero-vram --pattern '0x00 {{ not jinja }}'"), text);
    const playbook = renderPlaybook(p);
    assert.match(playbook, /ai_switch_gpu_types:\n {6}"gpu-server": "vm"\n/);
    assert.match(playbook, /ai_switch_vram_scrub_command:\n {6}- !unsafe "\/usr\/local\/bin\/zero-vram"\n {6}- !unsafe "--pattern"\n {6}- !unsafe "0x00 \{\{ not jinja \}\}"\n/);
    assert.match(renderPlaybook(plan(infra, 'pro', 'perso')), /ai_switch_gpu_types:\n {6}"gpu-server": "lxc"\n {4}# [^\n]*\n {4}# [^\n]*\n {4}ai_switch_vram_scrub_command: \[\]\n/);
  });

  it('writes the log lines of spec §8', () => {
    const at = new Date('2026-01-02T03:04:05.678Z');
    assert.equal(switchLogLine(at, 'pro', 'perso', true), "2026-01-02T03:04:05.678Z switched ai-tools access: 'pro' -> 'perso' flush=true");
    assert.equal(switchLogLine(at, null, 'perso', false), "2026-01-02T03:04:05.678Z switched ai-tools access: '<none>' -> 'perso' flush=false");
    assert.match(switchLogLine(new Date(), 'a', 'b', true), LOG_LINE);
    const failed = failureLogLine(at, 'pro', 'perso', true, 'Stop the GPU services:\nboom');
    assert.equal(failed.includes('\n'), false);
    assert.match(failed, /FAILED switch of ai-tools access: 'pro' -> 'perso' flush=true: Stop the GPU services: boom; nobody has AI access$/);
  });

  it('passes the per-switch values as JSON, paths baked into the playbook', () => {
    const p = plan(infra, 'pro', 'perso');
    const files = { dir: '/r', playbook: '/r/p.yml', vars: '/r/v.json', revoke: '/r/revoke.nft', grant: '/r/grant.nft', rulesetNone: '/r/n.nft', rulesetNew: '/r/new.nft', result: '/r/result.json', gpuRecords: '/r/gpu' };
    const vars = extraVars(p, files);
    assert.equal(vars.ai_switch_new, 'perso');
    assert.equal(vars.ai_switch_proc_root, '/proc');
    assert.equal(vars.ai_switch_gpu_record_dir, '/r/gpu');
    assert.equal(vars.ai_switch_flush, true);
    const playbook = renderPlaybook(p);
    assert.match(playbook, /ai_switch_gpu_machines:\n {6}- "gpu-server"\n/);
    assert.match(playbook, /ai_switch_services:\n {6}- "ollama"\n {6}- "speaches"\n/);
    const none = renderPlaybook({ ...p, gpuMachines: [], services: [] });
    assert.match(none, /ai_switch_gpu_machines: \[\]\n/);
    assert.match(none, /ai_switch_services: \[\]\n/);
    assert.match(playbook, /ai_switch_new_bridge: "net-perso"/);
    assert.match(playbook, /ai_switch_state_file: "\/s\/state"/);
  });

  it('reads the state file like ai-status does', () => {
    assert.deepEqual(stateHolder({ kind: 'absent' }, infra, '/s').holder, 'pro');
    assert.equal(stateHolder({ kind: 'none' }, infra, '/s').holder, null);
    assert.equal(stateHolder({ kind: 'corrupt', text: 'x y' }, infra, '/s').holder, undefined);
    assert.equal(agrees([], null), true);
    assert.equal(agrees(['pro'], 'pro'), true);
    assert.equal(agrees(['pro', 'perso'], 'pro'), false);
    assert.equal(agrees(['pro'], undefined), false);
    const text = formatStatus({ holder: 'pro', holder_source: 'state file', state_file: '/s', live: { holders: ['perso'], agrees: false }, history: ['h1'], last_flush: null, problems: [] }).join('\n');
    assert.match(text, /AI access holder: pro/);
    assert.match(text, /DISAGREES \(ai_holder: net-perso\)/);
    assert.match(text, /  h1/);
  });
});

describe('ai-switch lock', () => {
  let t: TestEnv;
  before(() => {
    t = testEnv('anklume-lock-');
  });
  after(() => t.cleanup());

  it('lets one holder in at a time, fails fast with who holds it, then frees it', async () => {
    const path = join(t.dir, 'a', 'switch.lock');
    const results = await Promise.allSettled([1, 2, 3, 4, 5].map(() => acquireLock(path)));
    const won = results.filter((r) => r.status === 'fulfilled');
    assert.equal(won.length, 1);
    const lost = results.find((r) => r.status === 'rejected');
    assert.ok(lost && lost.status === 'rejected' && lost.reason instanceof LockBusyError);
    assert.match((lost.reason as Error).message, new RegExp(`Another ai-switch is running \\(pid ${process.pid}, started .*\\); wait for it to finish, or use --wait SECONDS`));
    await (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof acquireLock>>>).value.release();
    assert.equal(existsSync(path), false);
    const again = await acquireLock(path);
    await again.release();
  });

  it('waits for a holder with a bound', async () => {
    const path = join(t.dir, 'b.lock');
    const first = await acquireLock(path);
    const started = Date.now();
    const waiting = acquireLock(path, { waitMs: 5_000, pollMs: 20 });
    setTimeout(() => void first.release(), 200);
    const second = await waiting;
    assert.ok(Date.now() - started >= 150);
    await second.release();
    const held = await acquireLock(path);
    await assert.rejects(acquireLock(path, { waitMs: 150, pollMs: 20 }), LockBusyError);
    await held.release();
  });

  it('takes over a lock whose owner is dead or whose pid was reused', async () => {
    const dead = await new Promise<number>((resolve) => {
      const child = spawn(process.execPath, ['-e', '0']);
      child.on('exit', () => resolve(child.pid!));
    });
    const path = join(t.dir, 'c.lock');
    mkdirSync(t.dir, { recursive: true });
    writeFileSync(path, JSON.stringify({ pid: dead, startedAt: 'earlier', token: 'old' }));
    const lock = await acquireLock(path);
    assert.equal(lock.recovered?.pid, dead);
    await lock.release();
    writeFileSync(path, JSON.stringify({ pid: process.pid, procStart: 'not-this-one', startedAt: 'earlier', token: 'old' }));
    const reused = await acquireLock(path);
    assert.equal(reused.recovered?.procStart, 'not-this-one');
    await reused.release();
  });

  it('never deletes a lock that is not its own', async () => {
    const path = join(t.dir, 'd.lock');
    const lock = await acquireLock(path);
    writeFileSync(path, JSON.stringify({ pid: process.pid, startedAt: 'now', token: 'someone-else' }));
    await lock.release();
    assert.equal(existsSync(path), true);
  });
});

describe('ai-switch playbook and role (real ansible-playbook)', () => {
  let t: TestEnv;
  before(() => {
    t = testEnv('anklume-ai-playbook-');
  });
  after(() => t.cleanup());

  /** The playbook and vars of a pro -> perso switch, as anklume-gen writes them for a run. */
  async function renderRun(file: string, name: string): Promise<string> {
    const infra = await fixture(file);
    const dir = join(t.dir, `${name}-${file.split('/').at(-1)}`);
    mkdirSync(dir, { recursive: true });
    const p = planSwitch({ infra, infraPath: FIXTURE, from: 'pro', to: 'perso', flush: true, stateFile: join(t.dir, 'state'), logFile: join(t.dir, 'log'), persist: [join(t.dir, 'a.nft')], procRoot: '/proc' });
    writeFileSync(join(dir, 'ai-switch.yml'), renderPlaybook(p));
    writeFileSync(join(dir, 'vars.json'), JSON.stringify(extraVars(p, { dir, playbook: '', vars: '', revoke: 'r', grant: 'g', rulesetNone: 'n', rulesetNew: 'w', result: 'x', gpuRecords: 'd' })));
    return dir;
  }

  for (const file of [FIXTURE, VM_SCRUB_FIXTURE]) it(`renders a playbook that passes ansible-playbook --syntax-check with the role (${file.split('/').at(-1)})`, async () => {
    const dir = await renderRun(file, 'syntax');
    const r = await execa('ansible-playbook', ['--syntax-check', join(dir, 'ai-switch.yml'), '-e', `@${join(dir, 'vars.json')}`], { env: ansibleEnv(process.env, false), reject: false });
    assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
  });

  // Without ansible-lint this is reported as skipped, never counted as a pass.
  for (const file of [FIXTURE, VM_SCRUB_FIXTURE]) it(`renders a playbook that passes ansible-lint (production profile) with the role (${file.split('/').at(-1)})`, { skip: ANSIBLE_LINT_MISSING }, async () => {
    const dir = await renderRun(file, 'lint');
    const lint = await execa('ansible-lint', ['--nocolor', '--offline', '--profile', 'production', 'ai-switch.yml'], { cwd: dir, env: { ...ansibleEnv(process.env, false), NO_COLOR: '1' }, reject: false });
    assert.equal(lint.exitCode, 0, `${lint.shortMessage}\n${lint.stdout}\n${lint.stderr}`);
  });

  it('check mode (ansible-playbook --check): each step says what it would change, in the switch\'s order, and nothing is changed (incus and nft must not run)', async () => {
    const dir = await renderRun(FIXTURE, 'check');
    const forbidden = ForbiddenTools.create(['incus', 'nft']);
    try {
      const r = await execa('ansible-playbook', ['--check', join(dir, 'ai-switch.yml'), '-e', `@${join(dir, 'vars.json')}`], { env: { ...ansibleEnv(forbidden.env(process.env), false), ANSIBLE_STDOUT_CALLBACK: 'ansible.posix.json' }, reject: false });
      assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
      forbidden.assertNoneCalled();
      type Result = { stdout?: string; skipped?: boolean; changed?: boolean; results?: Result[] };
      const tasks = (JSON.parse(r.stdout) as { plays: { tasks: { task: { name: string }; hosts: { localhost: Result } }[] }[] }).plays[0].tasks;
      const said = (name: string) => {
        const task = tasks.find((x) => x.task.name === `ai_switch : ${name}`);
        assert.ok(task, `no task ${name}: ${tasks.map((x) => x.task.name).join(', ')}`);
        assert.equal(task.hosts.localhost.changed, true, `${name} would change the host`);
        return (JSON.parse(task.hosts.localhost.stdout!) as { changed: string[] }).changed;
      };
      const state = join(t.dir, 'state');
      const persisted = join(t.dir, 'a.nft');
      assert.deepEqual(said('Revoke AI access, record that nobody holds it, stop the GPU services'), [
        'would run: nft -f r',
        'would run: conntrack -D -s 10.120.2.0/24 -d 10.120.10.0/24',
        'would run: conntrack -D -s 10.120.10.0/24 -d 10.120.2.0/24',
        `would write: ${persisted}`,
        `would write: ${state}`,
        'would run: incus exec gpu-server --project ai-tools -- systemctl stop ollama speaches',
      ]);
      const flush = tasks.find((x) => x.task.name === 'ai_switch : Flush GPU memory')!.hosts.localhost;
      assert.ok(flush.results?.every((item) => item.skipped), 'the flush is skipped in check mode (Ansible says it would run)');
      assert.deepEqual(said('Grant AI access, start the GPU services, record the new holder'), [
        'would run: nft -f g',
        'would run: incus exec gpu-server --project ai-tools -- systemctl start ollama speaches',
        `would write: ${persisted}`,
        `would write: ${state}`,
        'would write: x',
      ]);
      assert.equal(existsSync(state) || existsSync(persisted), false, 'nothing written');
    } finally {
      forbidden.cleanup();
    }
  });

  it('writes files atomically with the role helper (several per call, parents created, unchanged = no change)', async () => {
    const helper = join(ROLES_DIR, 'ai_switch/files/install_atomic.py');
    const src = join(t.dir, 'src.nft');
    writeFileSync(src, 'table inet anklume\n');
    const a = join(t.dir, 'x/y/a.nft');
    const b = join(t.dir, 'b.nft');
    const state = join(t.dir, 's/state');
    const first = await execa('python3', [helper, '--file', src, a, b, '--text', 'perso\n', state]);
    assert.equal(first.stdout.split('\n').length, 3);
    assert.equal(readFileSync(a, 'utf8'), 'table inet anklume\n');
    assert.equal(readFileSync(state, 'utf8'), 'perso\n');
    const second = await execa('python3', [helper, '--file', src, a, b, '--text', '', state]);
    assert.equal(second.stdout, `changed: ${state}`);
    assert.equal(readFileSync(state, 'utf8'), '');
  });
});

describe('hints name the command the user has: anklume-gen, with the make target beside', () => {
  it('a state file that names no client domain: fix it with anklume-gen ai-switch --domain (make ai-switch DOMAIN=)', async () => {
    const t = testEnv('anklume-ai-hint-');
    try {
      mkdirSync(join(t.dir, 'state'), { recursive: true });
      for (const [text, message] of [
        ['Not A Domain!\n', "holds 'Not A Domain!', not a domain name"],
        ['ai-tools\n', "names 'ai-tools' as the AI access holder, but it is not a client domain of the infra"],
      ]) {
        writeFileSync(t.env.ANKLUME_STATE_FILE!, text);
        const r = await runCli(['validate', FIXTURE], t.env);
        assert.equal(r.code, 1);
        assert.ok(r.stderr.includes(`${t.env.ANKLUME_STATE_FILE}: error: ${message}; fix it with 'anklume-gen ai-switch --domain <domain>' (make ai-switch DOMAIN=<domain>)\n`), r.stderr);
      }
    } finally {
      t.cleanup();
    }
  });
});
