/**
 * ai-switch end to end: the real CLI runs the real ansible-playbook inside the host namespace of a
 * network lab (test/helpers/netns.ts: bridges net-<domain>, one namespace per machine, the generated
 * ruleset loaded), so every nft call acts on the lab, never on this machine's own namespace.
 *
 * STAND-INS: `incus`, `nvidia-smi` and `systemctl` cannot run here; recording stand-ins
 * (test/fixtures/standins/, test/helpers/standins.ts) are first on PATH, plus a wrapper around the
 * real nft that journals its calls. The GPU processes the host nvidia-smi stand-in lists are real
 * `sleep` processes of the test's own, which the flush really kills from the host; whose each one
 * is comes from a proc root the test builds. gpu-server is a container: its VRAM flush runs on the
 * host (the VM variant and the scrub are in test/ai-switch-flush-e2e.test.ts; real containers in
 * test/incus-apply-e2e.test.ts). Every journal line carries the live holder set at that moment,
 * so the order "revoke before stop/flush, grant after" is checked against the kernel's state.
 * Who reaches whom is proven with real TCP connections. Each test sets the state it starts from
 * (fresh() or resetTo()), so any one of them runs alone (--test-name-pattern). Needs root.
 */
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { analyse } from '../generator/infra/infra.ts';
import { enrich } from '../generator/infra/enrich.ts';
import { renderRuleset, switchBatch } from '../generator/nftables/nftables.ts';
import type { Infra } from '../generator/core/types.ts';
import { runCli } from './helpers/cli.ts';
import { testEnv, type TestEnv } from './helpers/env.ts';
import { canRunNetns, Lab, labSpecFromInfra, type ProbeResult } from './helpers/netns.ts';
import { GPU0, HOST_CGROUP, instanceCgroup, StandIns, type JournalEntry } from './helpers/standins.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURE = join(ROOT, 'test/fixtures/ai-switch/infra.yml');
const BIN = join(ROOT, 'generator/cli/bin.ts');
const AI_PORT = 11434;
const GPU1 = 'GPU-00000000-0000-0000-0000-0000000000a1';
const LOG_LINE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z switched ai-tools access: '([a-z0-9-]+|<none>)' -> '([a-z0-9-]+)' flush=(true|false)$/;
const FAILED_LINE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z FAILED switch of ai-tools access: '[^']+' -> 'perso' flush=(true|false): .*; nobody has AI access$/;

/** Name (cut at 15 characters) and parent of a process, from /proc; undefined when it is gone. */
function procStat(pid: string): { comm: string; ppid: number } | undefined {
  if (!/^\d+$/.test(pid)) return undefined;
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = text.lastIndexOf(')');
    return { comm: text.slice(text.indexOf('(') + 1, close), ppid: Number(text.slice(close + 2).split(' ')[1]) };
  } catch {
    return undefined;
  }
}

async function fixture(): Promise<Infra> {
  const text = await readFile(FIXTURE, 'utf8');
  const a = analyse([{ file: FIXTURE, text, role: 'single' }], { yolo: false });
  assert.ok(a.infra, JSON.stringify(a.errors));
  return enrich(a.infra).infra;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

const support = await canRunNetns();

describe('ai-switch end to end (network namespaces, real ansible-playbook, stand-ins for incus/nvidia-smi/systemctl)', { skip: support.ok ? false : support.why }, () => {
  let lab: Lab | undefined;
  let standins: StandIns | undefined;
  let t: TestEnv;
  let infra: Infra;
  let installed: string;
  let baseCopy: string;
  let stateFile: string;
  let logFile: string;

  /** The CLI as a real process inside the lab's host namespace, stand-ins first on PATH. */
  function start(args: string[], tag?: string): ResultPromise<{ reject: false; extendEnv: false; env: NodeJS.ProcessEnv }> {
    const env = standins!.env(t.env, tag);
    return execa('ip', ['netns', 'exec', lab!.hostNs, process.execPath, '--import', 'tsx', BIN, ...args], { env, extendEnv: false, reject: false, cwd: ROOT });
  }

  async function cli(args: string[], tag?: string): Promise<Run> {
    const r = await start(args, tag);
    return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  const switchArgs = (...extra: string[]) => ['ai-switch', '--infra', FIXTURE, '--base-dir', t.baseDir, '--installed-ruleset', installed, ...extra];

  /** Who reaches the inference port of gpu-server, plus one unrelated flow that must never change. */
  async function wire(): Promise<{ pro: ProbeResult; perso: ProbeResult; guest: ProbeResult; unrelated: ProbeResult }> {
    const [pro, perso, guest, unrelated] = await lab!.probeMany([
      { from: 'pro-dev', to: 'gpu-server', port: AI_PORT },
      { from: 'perso-desktop', to: 'gpu-server', port: AI_PORT },
      { from: 'guest-box', to: 'gpu-server', port: AI_PORT },
      { from: 'pro-dev', to: 'guest-box', port: 80 },
    ]);
    return { pro, perso, guest, unrelated };
  }

  async function liveHolders(): Promise<string[]> {
    const out = await lab!.nft(['-j', 'list', 'set', 'inet', 'anklume', 'ai_holder']);
    const set = (JSON.parse(out) as { nftables: { set?: { elem?: string[] } }[] }).nftables.find((i) => i.set)?.set;
    return set?.elem ?? [];
  }

  /** The kernel's listing of a ruleset loaded alone in a throwaway namespace (inside the lab). */
  async function listing(text: string): Promise<string> {
    const file = join(t.dir, 'listing.nft');
    writeFileSync(file, text);
    const r = await lab!.host(['unshare', '--net', '--', 'sh', '-c', 'nft -f "$1" && nft -s list table inet anklume', 'sh', file]);
    assert.equal(r.exitCode, 0, r.stderr);
    return r.stdout;
  }

  /** Before any switch: no state file, log, lock or installed copy; the tree just synced; pro holds access by default. */
  async function fresh(): Promise<void> {
    for (const path of [stateFile, logFile, logFile.replace(/\.log$/, '.jsonl'), `${stateFile}.lock`, installed]) rmSync(path, { force: true });
    await lab!.nft(['-f', '-'], renderRuleset(infra, 'pro'));
    const synced = await runCli(['sync', FIXTURE, '--base-dir', t.baseDir], t.env);
    assert.equal(synced.code, 0, synced.stderr);
    standins!.reset();
  }

  /**
   * `holder` holds access, in the kernel, in the state file and in the tree (synced, so that it
   * follows the state file: a test run alone finds it too), without an ansible run.
   */
  async function resetTo(holder: string): Promise<void> {
    await lab!.nft(['-f', '-'], renderRuleset(infra, holder));
    mkdirSync(join(t.dir, 'state'), { recursive: true });
    writeFileSync(stateFile, `${holder}\n`);
    const synced = await runCli(['sync', FIXTURE, '--base-dir', t.baseDir], t.env);
    assert.equal(synced.code, 0, synced.stderr);
    assert.equal(readFileSync(baseCopy, 'utf8'), renderRuleset(infra, holder), 'the synced ruleset follows the state file');
    standins!.reset();
  }

  /** Temporary files of the switches (ansible's included) that outlived them. */
  function leftovers(): string[] {
    const ansibleTmp = join(t.env.HOME!, '.ansible', 'tmp');
    // tsx-*: the cache of tsx, which runs the CLI here.
    return [...readdirSync(t.env.TMPDIR!).filter((n) => !n.startsWith('tsx-')), ...(existsSync(ansibleTmp) ? readdirSync(ansibleTmp).map((n) => `~/.ansible/tmp/${n}`) : [])];
  }

  /** Waits until the journal has an entry that `pred` accepts. */
  async function journaled(pred: (e: JournalEntry) => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 20_000;
    while (!standins!.journal().some(pred)) {
      assert.ok(Date.now() < deadline, `the switch never reached ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** The safe state after a failed switch: nobody on the wire or in the set, nor on disk. */
  async function assertSafeState(): Promise<void> {
    assert.deepEqual(await wire(), { pro: 'timeout', perso: 'timeout', guest: 'timeout', unrelated: 'open' });
    assert.deepEqual(await liveHolders(), []);
    assert.equal(readFileSync(stateFile, 'utf8'), '', 'the state file says nobody');
    assert.equal(readFileSync(installed, 'utf8'), renderRuleset(infra, null), 'the boot copy gives nobody access');
    assert.equal(readFileSync(baseCopy, 'utf8'), renderRuleset(infra, null), 'so does the ruleset of the Ansible tree');
    assert.match(readFileSync(logFile, 'utf8').trimEnd().split('\n').at(-1)!, FAILED_LINE);
  }

  const index = (journal: JournalEntry[], pred: (e: JournalEntry) => boolean, what: string): number => {
    const i = journal.findIndex(pred);
    assert.ok(i >= 0, `no journal entry for ${what}:\n${journal.map((e) => `${e.tool} ${e.args}`).join('\n')}`);
    return i;
  };
  const isCall = (tool: string, fragment: string) => (e: JournalEntry) => e.tool === tool && e.args.includes(fragment);
  const GPU_TOOLS = new Set(['incus', 'systemctl', 'nvidia-smi', 'nvidia-smi@instance']);
  const MINE = instanceCgroup('ai-tools', 'gpu-server');

  before(async () => {
    infra = await fixture();
    t = testEnv('anklume-ai-e2e-');
    installed = join(t.dir, 'etc-nftables.d', 'anklume.nft');
    baseCopy = join(t.baseDir, 'nftables', 'anklume.nft');
    stateFile = t.env.ANKLUME_STATE_FILE!;
    logFile = t.env.ANKLUME_LOG_FILE!;
    // The switches' own temp dir and home, so that what a killed ansible leaves behind shows.
    t.env.TMPDIR = join(t.dir, 'tmp');
    t.env.HOME = join(t.dir, 'home');
    mkdirSync(t.env.TMPDIR);
    mkdirSync(t.env.HOME);
    standins = StandIns.create();
    lab = await Lab.create(labSpecFromInfra(infra), { prefix: 'akai' });
    await lab.listen([AI_PORT, 80]);
  });

  after(async () => {
    await lab?.teardown();
    standins?.cleanup();
    t?.cleanup();
  });

  beforeEach(() => standins!.reset());

  it('starts with pro holding AI access (default), perso and guest shut out', async () => {
    await fresh();
    assert.deepEqual(await wire(), { pro: 'open', perso: 'timeout', guest: 'timeout', unrelated: 'open' });
    const status = await cli(['ai-status', '--infra', FIXTURE, '--json']);
    assert.equal(status.code, 0, status.stderr);
    const s = JSON.parse(status.stdout);
    assert.equal(s.holder, 'pro');
    assert.equal(s.holder_source, 'default (no switch yet)');
    assert.deepEqual(s.live, { holders: ['pro'], agrees: true });
  });

  it('--dry-run changes nothing and prints old -> new, flush, the exact nft change (and SECURITY with --no-flush)', async () => {
    await fresh();
    const synced = readFileSync(baseCopy, 'utf8');
    const r = await cli(switchArgs('--domain', 'perso', '--dry-run'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /'pro' -> 'perso'/);
    assert.match(r.stdout, /VRAM flush: yes/);
    assert.ok(r.stdout.includes(switchBatch(infra, 'pro', null).trimEnd()), r.stdout);
    assert.ok(r.stdout.includes(switchBatch(infra, null, 'perso').trimEnd()), r.stdout);
    const nf = await cli(switchArgs('--domain', 'perso', '--dry-run', '--no-flush', '--json'));
    assert.equal(nf.code, 0, nf.stderr);
    const j = JSON.parse(nf.stdout);
    assert.equal(j.status, 'planned');
    assert.equal(j.from, 'pro');
    assert.equal(j.flush, false);
    assert.equal(j.revoke_batch, switchBatch(infra, 'pro', null));
    assert.ok(j.messages.some((m: string) => m.startsWith('SECURITY: --no-flush')));
    for (const path of [stateFile, logFile, installed, `${stateFile}.lock`]) assert.equal(existsSync(path), false, `${path} was written`);
    assert.equal(readFileSync(baseCopy, 'utf8'), synced, 'the synced ruleset of the tree is unchanged');
    assert.deepEqual(await liveHolders(), ['net-pro']);
    assert.deepEqual(standins!.journal().filter((e) => e.tool !== 'nft' || !e.args.startsWith('-j list')), [], 'only reads');
  });

  /**
   * The host's GPUs and compute processes for a flush: two real processes of gpu-server (the
   * container), one of the host, one of another container (the test's own `sleep`s); resets fail.
   */
  function gpuScene(): { mine: string[]; host: string; other: string } {
    const gpu = { mine: [standins!.sleeper(), standins!.sleeper()], host: standins!.sleeper(), other: standins!.sleeper() };
    standins!.hostGpus([{ index: '0', uuid: GPU0, total: 81559 }, { index: '1', uuid: GPU1, total: 81559 }]);
    standins!.hostApps([
      { pid: gpu.mine[0], mib: 30000, cgroup: MINE },
      { pid: gpu.mine[1], mib: 2000, cgroup: MINE },
      { pid: gpu.host, gpu: GPU1, mib: 500, cgroup: HOST_CGROUP },
      { pid: gpu.other, gpu: GPU1, mib: 800, cgroup: '0::/lxc.payload.lab_trainer\n' },
    ]);
    standins!.resetFails(true);
    return gpu;
  }

  it('switches to perso: revoke, stop, flush, grant, start — on the wire, in the journal, on disk', async () => {
    await fresh();
    const gpu = gpuScene();
    const held = await lab!.hold('pro-dev', 'gpu-server', AI_PORT);
    try {
      assert.equal((await held.ping()).echoed, true, 'pro has a working connection before the switch');
      const r = await cli(switchArgs('--domain', 'perso'));
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /AI access switched: 'pro' -> 'perso' \(flush: true\)/);
      assert.ok(r.stdout.includes(`gpu-server (lxc, flushed from the host): killed ${gpu.mine.join(', ')}; left alone (not the instance's): pid ${gpu.host} (the host, 500 MiB), pid ${gpu.other} (container lab_trainer, 800 MiB)`), r.stdout);
      assert.match(r.stdout, /GPU 0 \S+: memory in use 32003 MiB before, 3 MiB after \(of 81559 MiB\); reset failed/);
      assert.ok(r.stdout.includes(`: memory in use 1303 MiB before, 1303 MiB after (of 81559 MiB); reset skipped (in use by pid ${gpu.host} (the host), pid ${gpu.other} (container lab_trainer))`), r.stdout);
      assert.match(r.stderr, /WARNING: nvidia-smi --gpu-reset failed on gpu-server \(GPU 0 /, 'a failed reset is a warning');
      assert.match(r.stderr, /WARNING: GPU reset skipped on gpu-server \(GPU 1 /);
      assert.deepEqual(gpu.mine.filter((pid) => standins!.alive(pid)), [], "gpu-server's processes were really killed");
      assert.ok(standins!.alive(gpu.host) && standins!.alive(gpu.other), 'the foreign processes are still there');

      assert.deepEqual(await wire(), { pro: 'timeout', perso: 'open', guest: 'timeout', unrelated: 'open' });
      const after = await held.ping(400);
      assert.equal(after.echoed, false, "pro's connection opened before the switch carries nothing after it");
      assert.equal(await lab!.received('gpu-server', after.token, 300), false, 'not even one way: the data does not reach ai-tools');
    } finally {
      held.close();
    }

    const journal = standins!.journal();
    const revoke = index(journal, isCall('nft', '-f revoke.nft rc=0'), 'the revoke');
    const stop = index(journal, isCall('incus', 'systemctl stop ollama speaches'), 'stop');
    // The kill (a pidfd signal, not a command) falls between the kill step's listing and the verification's.
    const [query, verify] = journal.flatMap((e, i) => (isCall('nvidia-smi', '--query-compute-apps=pid,gpu_uuid,used_memory')(e) ? [i] : []));
    assert.ok(query >= 0 && verify > query, 'the host pid query, then the verification');
    const reset = index(journal, isCall('nvidia-smi', `--gpu-reset -i ${GPU0}`), 'the reset');
    assert.equal(journal.filter(isCall('nvidia-smi', '--gpu-reset')).length, 1, 'no reset of the GPU that foreign processes use');
    const grant = index(journal, isCall('nft', '-f grant.nft rc=0'), 'the grant');
    const startAt = index(journal, isCall('incus', 'systemctl start ollama speaches'), 'start');
    assert.ok(revoke < stop && stop < query && query < verify && verify < reset && reset < grant && grant < startAt, `order: ${[revoke, stop, query, verify, reset, grant, startAt]}`);
    assert.deepEqual(journal[revoke].holders, [], 'the holder set is empty right after the revoke');
    for (const e of journal.slice(0, grant).filter((x) => GPU_TOOLS.has(x.tool))) assert.deepEqual(e.holders, [], `nobody holds access during ${e.tool} ${e.args}`);
    assert.deepEqual(journal[grant].holders, ['net-perso']);
    assert.deepEqual(journal[startAt].holders, ['net-perso']);
    assert.ok(journal.every((e) => e.tool !== 'incus' || e.args.startsWith('exec gpu-server --project ai-tools -- systemctl ')), 'only the services are handled in the container; the flush runs on the host');

    assert.equal(readFileSync(stateFile, 'utf8'), 'perso\n');
    const log = readFileSync(logFile, 'utf8').trimEnd().split('\n');
    assert.equal(log.length, 1);
    assert.match(log[0], LOG_LINE);
    assert.ok(log[0].endsWith("switched ai-tools access: 'pro' -> 'perso' flush=true"));
    const detail = readFileSync(logFile.replace(/\.log$/, '.jsonl'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
    assert.equal(detail.length, 1);
    assert.equal(detail[0].status, 'switched');
    assert.deepEqual(detail[0].gpu[0].gpus.map((g: { memory_used_before_mib: number; memory_used_after_mib: number }) => [g.memory_used_before_mib, g.memory_used_after_mib]), [[32003, 3], [1303, 1303]]);
    const expected = renderRuleset(infra, 'perso');
    assert.equal(readFileSync(installed, 'utf8'), expected, 'the installed copy agrees');
    assert.equal(readFileSync(baseCopy, 'utf8'), expected, '<base-dir>/nftables/anklume.nft agrees');
    assert.match(readFileSync(join(t.baseDir, 'group_vars', 'all.yml'), 'utf8'), /from: perso\n {4}to: ai-tools/, 'group_vars/all.yml names the new holder at once');
    const live = await lab!.nft(['-s', 'list', 'table', 'inet', 'anklume']);
    assert.equal(live, await listing(expected), 'the live table is exactly a fresh load of the ruleset for perso');
  });

  it('after a switch to perso, a later sync keeps perso in nftables/anklume.nft; ai-status agrees and shows the history', async () => {
    await fresh();
    const gpu = gpuScene();
    const switched = await cli(switchArgs('--domain', 'perso'));
    assert.equal(switched.code, 0, switched.stderr);
    const s = await runCli(['sync', FIXTURE, '--base-dir', t.baseDir], t.env);
    assert.equal(s.code, 0, s.stderr);
    assert.equal(readFileSync(baseCopy, 'utf8'), renderRuleset(infra, 'perso'));
    const status = await cli(['ai-status', '--infra', FIXTURE]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /AI access holder: perso \(state file/);
    assert.match(status.stdout, /Live ruleset: agrees \(ai_holder: net-perso\)/);
    assert.match(status.stdout, /switched ai-tools access: 'pro' -> 'perso' flush=true/);
    assert.ok(new RegExp(`Last VRAM flush: \\S+ \\('pro' -> 'perso', switched\\)\n {2}gpu-server \\(lxc, flushed from the host\\): killed ${gpu.mine.join(', ')};`).test(status.stdout), status.stdout);
    assert.match(status.stdout, /GPU 0 \S+: memory in use 32003 MiB before, 3 MiB after/);
    const json = JSON.parse((await cli(['ai-status', '--infra', FIXTURE, '--json'])).stdout);
    assert.deepEqual(json.last_flush.gpu[0].killed, gpu.mine);
  });

  it('already the holder: says so, exits 0, touches nothing', async () => {
    await resetTo('perso');
    const log = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : undefined);
    const before = { state: statSync(stateFile).mtimeMs, log: log() };
    const r = await cli(switchArgs('--domain', 'perso'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /AI access is already set to 'perso'\. Nothing to do\./);
    assert.equal(statSync(stateFile).mtimeMs, before.state);
    assert.equal(log(), before.log);
    assert.deepEqual(standins!.journal().filter((e) => e.tool !== 'nft' || !e.args.startsWith('-j list')), []);
  });

  it('--no-flush skips every flush call, warns SECURITY, logs flush=false; a stale lock is taken over, a corrupt state file repaired', async () => {
    await resetTo('perso');
    const dead = await new Promise<number>((resolve) => {
      const child = spawn(process.execPath, ['-e', '0']);
      child.on('exit', () => resolve(child.pid!));
    });
    writeFileSync(`${stateFile}.lock`, JSON.stringify({ pid: dead, startedAt: 'earlier', token: 'stale' }));
    writeFileSync(stateFile, 'Not A Domain!\n');
    const r = await cli(switchArgs('--domain', 'pro', '--no-flush'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /holds 'Not A Domain!', not a domain name.*read as "nobody"/);
    assert.equal(readFileSync(stateFile, 'utf8'), 'pro\n');
    assert.match(r.stderr, /SECURITY: --no-flush: GPU memory is NOT flushed/);
    assert.match(r.stderr, new RegExp(`took over a stale lock left by pid ${dead}`));
    const journal = standins!.journal();
    assert.equal(journal.filter((e) => e.tool.startsWith('nvidia-smi') || e.args.includes('nvidia-smi') || e.args.includes('kill')).length, 0, 'no flush call, on the host or in the machine');
    assert.ok(journal.some(isCall('incus', 'systemctl stop')) && journal.some(isCall('incus', 'systemctl start')), 'services still stopped and started');
    assert.deepEqual(await wire(), { pro: 'open', perso: 'timeout', guest: 'timeout', unrelated: 'open' });
    assert.ok(readFileSync(logFile, 'utf8').trimEnd().split('\n').at(-1)!.endsWith("switched ai-tools access: 'perso' -> 'pro' flush=false"));
    assert.equal(existsSync(`${stateFile}.lock`), false, 'the lock is released');
  });

  // A failing stand-in (or nft) at each step after the revoke: nobody keeps access, the services
  // are started again, the state file says nobody, the failure is logged, the message says how to finish.
  const failures: { step: string; setup: (s: StandIns) => void; task: RegExp }[] = [
    { step: 'stop', setup: (s) => s.fail('systemctl stop'), task: /Stop the GPU services/ },
    { step: 'pid query', setup: (s) => s.fail('--query-compute-apps'), task: /Kill the GPU compute processes of the GPU machine/ },
    {
      step: 'verify',
      setup: (s) => {
        const [killed, listed] = [s.sleeper(), s.sleeper()];
        s.hostApps([{ pid: killed, cgroup: MINE }, { pid: listed, cgroup: MINE }]);
        s.sticky([listed]);
      },
      task: /Verify that no GPU compute process is left.*still on the GPU: pid \d+ \(the instance\)/,
    },
    { step: 'start', setup: (s) => s.fail('systemctl start'), task: /Start the GPU services/ },
    { step: 'nft grant', setup: (s) => s.fail('-f grant.nft'), task: /Grant AI access to the new holder/ },
  ];
  for (const f of failures) {
    it(`a failure at ${f.step} leaves nobody with access and a truthful state file`, async () => {
      await resetTo('pro');
      f.setup(standins!);
      const r = await cli(switchArgs('--domain', 'perso'));
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, f.task);
      assert.match(r.stderr, /Nobody has AI access now/);
      assert.match(r.stderr, /To finish, fix the cause and run again: anklume-gen ai-switch --domain perso --infra \S+ --base-dir \S+ (--no-flush )?\(make ai-switch DOMAIN=perso( NO_FLUSH=1)?\)/);
      assert.deepEqual(await wire(), { pro: 'timeout', perso: 'timeout', guest: 'timeout', unrelated: 'open' });
      assert.deepEqual(await liveHolders(), []);
      assert.equal(readFileSync(stateFile, 'utf8'), '', 'the state file says nobody');
      assert.equal(readFileSync(installed, 'utf8'), renderRuleset(infra, null), 'the boot copy gives nobody access');
      assert.equal(readFileSync(baseCopy, 'utf8'), renderRuleset(infra, null), 'so does the ruleset of the Ansible tree');
      const policies = readFileSync(join(t.baseDir, 'group_vars', 'all.yml'), 'utf8');
      assert.doesNotMatch(policies, /to: ai-tools/, 'group_vars/all.yml names no AI access holder');
      assert.match(policies, /from: pro\n {4}to: guest/, 'and keeps the other policies');
      assert.match(readFileSync(logFile, 'utf8').trimEnd().split('\n').at(-1)!, FAILED_LINE);
      const journal = standins!.journal();
      // A verification fails without a FAIL line: at the second listing (the first is the kill's).
      const listings = journal.flatMap((e, i) => (isCall('nvidia-smi', '--query-compute-apps')(e) ? [i] : []));
      const failedAt = f.step === 'verify' ? listings[1] : index(journal, (e) => e.tool === 'FAIL', 'the failure');
      assert.ok(failedAt >= 0, `the failure in the journal:\n${journal.map((e) => `${e.tool} ${e.args}`).join('\n')}`);
      const restarted = journal.findIndex((e, i) => i > failedAt && isCall('incus', 'systemctl start')(e));
      assert.ok(restarted > failedAt, 'the services are started again after the failure');
      assert.deepEqual(journal[restarted].holders, [], 'and nobody holds access when they come back');
      const status = await cli(['ai-status', '--infra', FIXTURE, '--json']);
      const s = JSON.parse(status.stdout);
      assert.equal(s.holder, null);
      assert.equal(s.live.agrees, true);
    });
  }

  it('SIGTERM during the switch: ansible is stopped and the safe state restored', async () => {
    await resetTo('pro');
    standins!.slow(5, 'systemctl stop');
    const child = start(switchArgs('--domain', 'perso'));
    // Whatever fails below, this switch ends before the next test starts one.
    try {
      await journaled(isCall('incus', 'systemctl stop'), 'the stop step');
      // The playbook's own record: from the revoke on, the disk says nobody, before anything can fail.
      assert.equal(readFileSync(stateFile, 'utf8'), '', 'the state file says nobody while the services stop');
      assert.equal(readFileSync(installed, 'utf8'), renderRuleset(infra, null), 'and so does the boot copy');
      const signalled = Date.now() / 1000;
      child.kill('SIGTERM');
      const r = await child;
      assert.equal(r.exitCode, 1, String(r.stderr));
      assert.match(String(r.stderr), /interrupted by SIGTERM/);
      assert.deepEqual(await wire(), { pro: 'timeout', perso: 'timeout', guest: 'timeout', unrelated: 'open' });
      assert.equal(readFileSync(stateFile, 'utf8'), '');
      assert.match(readFileSync(logFile, 'utf8').trimEnd().split('\n').at(-1)!, /FAILED .*interrupted by SIGTERM/);
      assert.ok(standins!.journal().some((e) => e.t > signalled && isCall('incus', 'systemctl start')(e)), 'services started again after the signal');
      assert.equal(existsSync(`${stateFile}.lock`), false);
      assert.deepEqual(leftovers(), [], 'the interrupted ansible left no temporary file');
    } finally {
      await child;
    }
  });

  it('ansible-playbook killed during the revoke: no rescue runs, anklume-gen restores the safe state itself', async () => {
    await resetTo('pro');
    standins!.slow(10, '-f revoke.nft');
    const child = start(switchArgs('--domain', 'perso'));
    // Whatever fails below, this switch ends before the next test starts one.
    try {
      await journaled(isCall('SLOW', '-f revoke.nft'), 'the revoke');
      assert.equal(readFileSync(stateFile, 'utf8'), 'pro\n', 'nothing recorded yet');
      // ansible-playbook runs in its own process group, a child of the CLI (ip netns exec execs it).
      const ansible = readdirSync('/proc').find((p) => {
        const stat = procStat(p);
        return stat !== undefined && stat.ppid === child.pid && stat.comm.startsWith('ansible-playboo');
      });
      assert.ok(ansible, 'ansible-playbook is running');
      process.kill(-Number(ansible), 'SIGKILL');
      const r = await child;
      assert.equal(r.exitCode, 1, String(r.stderr));
      assert.match(String(r.stderr), /ansible-playbook ended \(signal SIGKILL\) without reporting/);
      assert.match(String(r.stderr), /Nobody has AI access now/);
      await assertSafeState();
      const journal = standins!.journal();
      assert.equal(journal.some(isCall('nft', '-f revoke.nft')), false, 'the killed revoke never reached nft');
      assert.ok(journal.some(isCall('nft', '-f - rc=0')), 'anklume-gen revoked through nft itself');
      assert.ok(journal.some(isCall('incus', 'systemctl start')), 'and started the services');
      assert.deepEqual(leftovers(), [], 'the killed ansible left no temporary file');
    } finally {
      await child;
    }
  });

  it('the revoke batch fails: the no-holder ruleset is reloaded instead, and the switch goes on', async () => {
    await resetTo('pro');
    standins!.fail('-f revoke.nft');
    const r = await cli(switchArgs('--domain', 'perso'));
    assert.equal(r.code, 0, r.stderr);
    const journal = standins!.journal();
    const failed = index(journal, isCall('FAIL', '-f revoke.nft'), 'the failed batch');
    const reload = index(journal, isCall('nft', '-f ruleset-none.nft rc=0'), 'the reload');
    const stop = index(journal, isCall('incus', 'systemctl stop'), 'stop');
    assert.ok(failed < reload && reload < stop, `order: ${[failed, reload, stop]}`);
    assert.deepEqual(journal[reload].holders, [], 'the reload alone revoked');
    assert.equal(journal.some(isCall('nft', 'flush set')), false, 'the last fallback was not needed');
    assert.deepEqual(await wire(), { pro: 'timeout', perso: 'open', guest: 'timeout', unrelated: 'open' });
    assert.equal(readFileSync(stateFile, 'utf8'), 'perso\n');
    // The reload also removed pro's allow elements, which emptying the set alone would leave.
    assert.equal(await lab!.nft(['-s', 'list', 'table', 'inet', 'anklume']), await listing(renderRuleset(infra, 'perso')));
  });

  it('the batch and the reload fail: emptying the holder set still revokes, and the switch goes on', async () => {
    await resetTo('pro');
    standins!.fail('-f revoke.nft', '-f ruleset-none.nft');
    const r = await cli(switchArgs('--domain', 'perso'));
    assert.equal(r.code, 0, r.stderr);
    const journal = standins!.journal();
    const reloadFailed = index(journal, isCall('FAIL', '-f ruleset-none.nft'), 'the failed reload');
    const emptied = index(journal, isCall('nft', 'flush set inet anklume ai_holder rc=0'), 'emptying the set');
    const stop = index(journal, isCall('incus', 'systemctl stop'), 'stop');
    assert.ok(index(journal, isCall('FAIL', '-f revoke.nft'), 'the failed batch') < reloadFailed && reloadFailed < emptied && emptied < stop);
    for (const e of journal.slice(emptied, index(journal, isCall('nft', '-f grant.nft rc=0'), 'the grant'))) assert.deepEqual(e.holders, [], `nobody holds access during ${e.tool} ${e.args}`);
    assert.deepEqual(await wire(), { pro: 'timeout', perso: 'open', guest: 'timeout', unrelated: 'open' });
    assert.equal(readFileSync(stateFile, 'utf8'), 'perso\n');
  });

  it('every way to revoke fails: the rescue records nobody before it restarts the services, anklume-gen empties the set', async () => {
    await resetTo('pro');
    standins!.fail('-f revoke.nft', '-f ruleset-none.nft', 'flush set');
    standins!.slow(2, 'systemctl start');
    const child = start(switchArgs('--domain', 'perso'));
    // Whatever fails below, this switch ends before the next test starts one.
    try {
      await journaled(isCall('incus', 'systemctl start'), "the rescue's restart of the services");
      // If anklume-gen died now, the disk would already tell the truth: the rescue wrote it.
      assert.equal(readFileSync(stateFile, 'utf8'), '', 'the rescue recorded nobody');
      assert.equal(readFileSync(installed, 'utf8'), renderRuleset(infra, null), 'and the boot copy');
      assert.deepEqual(await liveHolders(), ['net-pro'], 'pro still holds the set: only anklume-gen can empty it now');
      const r = await child;
      assert.equal(r.exitCode, 1, String(r.stderr));
      assert.match(String(r.stderr), /ai-switch failed: Revoke by emptying the holder set/);
      await assertSafeState();
      const journal = standins!.journal();
      const restarted = index(journal, isCall('incus', 'systemctl start'), 'the restart');
      assert.ok(journal.findIndex((e, i) => i > restarted && isCall('nft', '-f - rc=0')(e)) > restarted, 'anklume-gen emptied the set after the rescue');
    } finally {
      await child;
    }
  });

  it('the final check finds the holder set changed under the switch: it fails closed, the state file says nobody', async () => {
    await resetTo('pro');
    standins!.slow(2, 'systemctl start');
    const child = start(switchArgs('--domain', 'perso'));
    // Whatever fails below, this switch ends before the next test starts one.
    try {
      await journaled(isCall('incus', 'systemctl start'), 'the start step');
      await lab!.nft(['add', 'element', 'inet', 'anklume', 'ai_holder', '{ "net-guest" }']);
      const r = await child;
      assert.equal(r.exitCode, 1, String(r.stderr));
      assert.match(String(r.stderr), /ai-switch failed: final check: the live holder set names [^\n]*guest[^\n]* and the state file holds "perso\\n"/);
      await assertSafeState();
    } finally {
      await child;
    }
  });

  it('two concurrent switches never interleave: one waits (--wait), one without --wait fails fast', async () => {
    await resetTo('pro');
    standins!.slow(1, 'systemctl stop');
    const a = start(switchArgs('--domain', 'perso'), 'A');
    const deadline = Date.now() + 20_000;
    while (!existsSync(`${stateFile}.lock`)) {
      assert.ok(Date.now() < deadline, 'A never took the lock');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const b = start(switchArgs('--domain', 'guest', '--wait', '120'), 'B');
    const c = await cli(switchArgs('--domain', 'guest'), 'C');
    assert.equal(c.code, 1);
    assert.match(c.stderr, /Another ai-switch is running \(pid \d+, started [^)]+\); wait for it to finish, or use --wait SECONDS/);
    const [ra, rb] = await Promise.all([a, b]);
    assert.equal(ra.exitCode, 0, String(ra.stderr));
    assert.equal(rb.exitCode, 0, String(rb.stderr));
    const journal = standins!.journal();
    const ofA = journal.filter((e) => e.tag === 'A');
    const ofB = journal.filter((e) => e.tag === 'B');
    assert.ok(ofA.length > 5 && ofB.length > 5);
    assert.equal(journal.filter((e) => e.tag === 'C').length, 0, 'the refused switch touched nothing');
    assert.ok(Math.max(...ofA.map((e) => e.t)) < Math.min(...ofB.map((e) => e.t)), 'every call of A happened before every call of B');
    assert.deepEqual(await wire(), { pro: 'timeout', perso: 'timeout', guest: 'open', unrelated: 'open' });
    assert.equal(readFileSync(stateFile, 'utf8'), 'guest\n');
    const last = readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-2);
    assert.ok(last[0].endsWith("'pro' -> 'perso' flush=true") && last[1].endsWith("'perso' -> 'guest' flush=true"), last.join('\n'));
  });

  it('ai-status says when the live ruleset disagrees with the state file', async () => {
    await resetTo('guest');
    await lab!.nft(['-f', '-'], switchBatch(infra, 'guest', 'pro'));
    const r = await cli(['ai-status', '--infra', FIXTURE]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /AI access holder: guest/);
    assert.match(r.stdout, /Live ruleset: DISAGREES \(ai_holder: net-pro\)/);
  });
});
