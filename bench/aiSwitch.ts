/**
 * Benchmark of ai-switch. Needs root; the whole switches run the built CLI as make and npm's bin do
 * (dist/generator/cli/anklume-gen.cjs: npm run build first).
 *
 *   network:   the revoke batch then the grant batch of the 250-domain synthetic infra
 *              (bench/synthetic.ts), each one `nft -f` in a scratch network namespace created here
 *              (never the machine's own namespace); target: ≤ 50 ms together
 *   stand-ins: whole switches of that infra, in the same namespace, with and without the VRAM
 *              flush, with the TEST-ONLY stand-ins for incus, systemctl and nvidia-smi first on PATH
 *              (test/fixtures/standins)
 *   incus:     whole switches on real Incus containers, with and without the flush (nvidia-smi alone
 *              a stand-in: no GPU here; it lists a real process of the GPU container, which the flush
 *              really kills), when Incus is usable: root, its daemon answering, the test image
 *              (.ci/incus-setup) imported, and nothing of ours in the way (table inet anklume, the
 *              projects ai-tools, pro, perso). What it makes is removed afterwards, failures included.
 *
 * Where a switch's time goes: each Ansible task's duration (ansible.posix.json, the stdout callback
 * set for these runs only), the parts the role's step helpers time inside their task (each nft
 * call, conntrack, each service stop and start, the writes; their `took` output), Ansible's own
 * start-up (an empty play in the same environment, just before each switch: the machine's load
 * varies), and the rest: anklume-gen's own work (Node, the infra, the plan, its checks, the tree's
 * re-sync) and Ansible between tasks. Medians of several runs.
 *
 * `benchAiSwitch()` returns the numbers; `node --import tsx bench/aiSwitch.ts` prints them as JSON.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { ansibleEnv } from '../generator/aiswitch/ansible.ts';
import { enrich } from '../generator/infra/enrich.ts';
import { analyse } from '../generator/infra/infra.ts';
import { renderRuleset, switchBatch } from '../generator/nftables/nftables.ts';
import { STANDINS_BIN, StandIns, instanceCgroup } from '../test/helpers/standins.ts';
import { BENCH_SIZE, syntheticInfraText } from './synthetic.ts';

// What a user runs (package.json's bin, make's GEN): the one-file build.
const CLI = fileURLToPath(new URL('../dist/generator/cli/anklume-gen.cjs', import.meta.url));
const IMAGE = process.env.ANKLUME_TEST_IMAGE ?? 'anklume-test-debian12';

/** Medians of one kind of switch, milliseconds. */
export interface SwitchFigures {
  runs: number;
  /** The whole command, as a user runs it. */
  totalMs: number;
  /** ansible-playbook running an empty play in the same environment, timed just before each switch. */
  ansibleStartupMs: number;
  /**
   * Each Ansible task, in play order (a skipped task costs too), with the parts its step helper
   * timed inside it: each nft call, conntrack, each service stop and start, the writes.
   */
  tasks: { name: string; ms: number; parts: { name: string; ms: number }[] }[];
  /** total − Ansible's start-up − the tasks: anklume-gen's own work and Ansible between tasks. */
  restMs: number;
}

export interface AiSwitchBench {
  domains: number;
  /** Median over the runs, milliseconds, each `nft -f` timed as a whole process in the namespace. */
  network: { revokeMs: number; grantMs: number; totalMs: number; targetMs: 50; withinTarget: boolean; runs: number };
  standIns: { noFlush: SwitchFigures; flush: SwitchFigures };
  incus: { noFlush: SwitchFigures; flush: SwitchFigures } | { skipped: string };
}

const median = (values: number[]): number => {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

async function must(argv: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const r = await execa(argv[0], argv.slice(1), { ...(opts.input === undefined ? { stdin: 'ignore' as const } : { input: opts.input }), env: opts.env, extendEnv: opts.env === undefined, reject: false });
  if (r.exitCode !== 0) throw new Error(`${argv.join(' ')} failed (${r.exitCode}): ${String(r.stderr).trim().slice(-2000)}`);
  return String(r.stdout);
}

// -------------------------------------------------------------------------------------------------
// One switch, and where its time went

interface CallbackResult {
  stdout?: string;
  results?: CallbackResult[];
}
interface CallbackDocument {
  plays: { tasks: { task: { name: string; duration: { start: string; end: string } }; hosts: Record<string, CallbackResult> }[] }[];
}

/** One task of one switch: its duration and the parts its helper timed. */
interface TaskTime {
  name: string;
  ms: number;
  parts: [string, number][];
}

interface OneSwitch {
  totalMs: number;
  startupMs: number;
  tasks: TaskTime[];
}

/** The tasks of one switch, from the JSON document the ansible.posix.json callback printed among the CLI's stderr. */
function readCallback(stderr: string): TaskTime[] {
  const lines = stderr.split('\n');
  const first = lines.indexOf('{');
  const last = lines.lastIndexOf('}');
  if (first < 0 || last < first) throw new Error(`no JSON document of ansible.posix.json in the switch's output:\n${stderr.slice(-2000)}`);
  const doc = JSON.parse(lines.slice(first, last + 1).join('\n')) as CallbackDocument;
  const took = (r: CallbackResult): [string, number][] => [
    ...(r.stdout ?? '').split('\n').filter((line) => line.startsWith('{')).flatMap((line) => Object.entries((JSON.parse(line) as { took?: Record<string, number> }).took ?? {})),
    ...(r.results ?? []).flatMap(took),
  ];
  return doc.plays.flatMap((play) => play.tasks.map(({ task, hosts }) => ({
    name: task.name.replace(/^ai_switch : /, ''),
    ms: Date.parse(task.duration.end) - Date.parse(task.duration.start),
    parts: Object.values(hosts).flatMap(took),
  })));
}

/**
 * Runs one switch with the built CLI (argv before it: `ip netns exec NS` or nothing), after an empty
 * play in the same environment: the machine's load varies, so each switch gets its own start-up.
 */
async function oneSwitch(prefix: string[], args: string[], env: NodeJS.ProcessEnv, emptyPlay: string): Promise<OneSwitch> {
  const startupMs = await timed(() => must([...prefix, 'ansible-playbook', emptyPlay], { env: ansibleEnv(env, false) }));
  const argv = [...prefix, process.execPath, CLI, 'ai-switch', ...args];
  const start = performance.now();
  const r = await execa(argv[0], argv.slice(1), { env: { ...env, ANSIBLE_STDOUT_CALLBACK: 'ansible.posix.json' }, extendEnv: false, reject: false, stdin: 'ignore' });
  const totalMs = performance.now() - start;
  if (r.exitCode !== 0) throw new Error(`ai-switch ${args.join(' ')} failed in the bench (${r.exitCode}): ${String(r.stderr).slice(-3000)}`);
  return { totalMs, startupMs, tasks: readCallback(String(r.stderr)) };
}

/** Medians by name (a name seen twice in a run counts as their sum), in the order names first appear. */
function medians(runs: [string, number][][]): { name: string; ms: number }[] {
  const names = [...new Set(runs.flat().map(([name]) => name))];
  return names.map((name) => ({ name, ms: median(runs.map((run) => run.filter(([n]) => n === name).reduce((sum, [, ms]) => sum + ms, 0))) }));
}

function figures(runs: OneSwitch[]): SwitchFigures {
  const tasks = medians(runs.map((r) => r.tasks.map((t): [string, number] => [t.name, t.ms]))).map((t) => ({
    ...t,
    parts: medians(runs.map((r) => r.tasks.filter((x) => x.name === t.name).flatMap((x) => x.parts))),
  }));
  const totalMs = median(runs.map((r) => r.totalMs));
  const ansibleStartupMs = median(runs.map((r) => r.startupMs));
  return { runs: runs.length, totalMs, ansibleStartupMs, tasks, restMs: totalMs - ansibleStartupMs - tasks.reduce((sum, t) => sum + t.ms, 0) };
}

/** An empty play, whose run is Ansible's start-up (and exit). */
async function writeEmptyPlay(dir: string): Promise<string> {
  const empty = join(dir, 'empty.yml');
  await writeFile(empty, '- name: Start-up only\n  hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks: []\n');
  return empty;
}

// -------------------------------------------------------------------------------------------------
// Real Incus

const INCUS_DOMAINS = ['ai-tools', 'pro', 'perso'];
/** Its own subnet, so that nothing here is taken for what test/incus-apply-e2e.test.ts leaves. */
const INCUS_INFRA = `# ai-switch bench on real Incus (bench/aiSwitch.ts): the GPU machine and two client domains.
project_name: bench-switch
global:
  base_subnet: "10.182"
  default_os_image: ${IMAGE}
  ai_access_policy: exclusive
  ai_access_default: pro
  ai_services: [ollama, speaches]
domains:
  ai-tools:
    subnet_id: 10
    machines:
      gpu-server: { ip: "10.182.10.10", gpu: true, config: { limits.memory: 512MiB } }
  pro:
    subnet_id: 2
  perso:
    subnet_id: 1
`;

async function sh(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await execa(argv[0], argv.slice(1), { stdin: 'ignore', reject: false });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Why the real-Incus switch cannot run here, or undefined. */
async function incusUnusable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root';
  const info = await sh(['incus', 'query', '/1.0']).catch(() => ({ code: -1, stderr: 'incus is not installed' }));
  if (info.code !== 0) return `Incus is not usable (${info.stderr.trim()}): run .ci/incus-setup as root`;
  if ((await sh(['incus', 'image', 'show', IMAGE])).code !== 0) return `the test image ${IMAGE} is not imported: run .ci/incus-setup as root`;
  if ((await sh(['nft', 'list', 'table', 'inet', 'anklume'])).code === 0) return 'table inet anklume is loaded on this machine: the bench would replace it';
  const projects = (JSON.parse(await must(['incus', 'query', '/1.0/projects?recursion=1'])) as { name: string }[]).map((p) => p.name);
  const taken = INCUS_DOMAINS.filter((d) => projects.includes(d));
  if (taken.length) return `Incus projects ${taken.join(', ')} exist (a test running?): the bench would take them over`;
  return undefined;
}

/** Everything the bench made in Incus, and the table; each step tried whatever the previous did. */
async function removeIncusObjects(table: boolean): Promise<void> {
  const instances = JSON.parse((await sh(['incus', 'query', '/1.0/instances?recursion=1&all-projects=true'])).stdout || '[]') as { name: string; project: string }[];
  await Promise.all(instances.filter((i) => INCUS_DOMAINS.includes(i.project)).map((i) => sh(['incus', 'delete', '--force', i.name, '--project', i.project])));
  for (const d of INCUS_DOMAINS) {
    const profiles = JSON.parse((await sh(['incus', 'query', `/1.0/profiles?project=${d}`])).stdout || '[]') as string[];
    for (const p of profiles.map((u) => u.split('/').pop()!.split('?')[0]).filter((n) => n !== 'default')) await sh(['incus', 'profile', 'delete', p, '--project', d]);
    await sh(['incus', 'project', 'delete', d]);
  }
  const networks = JSON.parse((await sh(['incus', 'query', '/1.0/networks?recursion=1'])).stdout || '[]') as { name: string; config: Record<string, string> }[];
  for (const n of networks) if (INCUS_DOMAINS.includes(n.config['user.anklume.domain'] ?? '')) await sh(['incus', 'network', 'delete', n.name]);
  if (table) await sh(['nft', 'delete', 'table', 'inet', 'anklume']);
}

/**
 * The host PID of gpu-server's process whose command line is exactly argv (none: undefined). Its
 * cgroup says it is gpu-server's: a test may run a process of the same command line elsewhere.
 */
function gpuServerPid(argv: string[]): string | undefined {
  const wanted = argv.join('\0') + '\0';
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).find((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8') === wanted && /:\/lxc\.payload\.ai-tools_gpu-server(\/|$)/m.test(readFileSync(`/proc/${p}/cgroup`, 'utf8'));
    } catch {
      return false;
    }
  });
}

async function incusSwitches(runs: number): Promise<AiSwitchBench['incus']> {
  const why = await incusUnusable();
  if (why) return { skipped: why };
  const dir = await mkdtemp(join(tmpdir(), 'anklume-bench-incus-'));
  let tableLoaded = false;
  try {
    const infraFile = join(dir, 'infra.yml');
    const tree = join(dir, 'tree');
    const vars = join(dir, 'vars.json');
    await writeFile(infraFile, INCUS_INFRA);
    // The host's own files stay untouched: the boot copy and configuration live under dir.
    await writeFile(vars, JSON.stringify({
      incus_nftables_install_dir: join(dir, 'etc-nftables.d'),
      incus_nftables_boot_include: false,
      incus_preflight_gpu_device: { type: 'unix-char', source: '/dev/null', path: '/dev/nvidia-standin' },
    }));
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ANKLUME_STATE_FILE: join(dir, 'state'),
      ANKLUME_LOG_FILE: join(dir, 'ai-switch.log'),
      ANKLUME_CONF_DIR: join(dir, 'conf'),
      ANKLUME_INSTALLED_RULESET: join(dir, 'etc-nftables.d', 'anklume.nft'),
      ANKLUME_BOOT_CONF: join(dir, 'nftables.conf'),
      NO_COLOR: '1',
    };
    await must([process.execPath, CLI, 'sync', infraFile, '--base-dir', tree], { env });
    tableLoaded = true;
    await must([process.execPath, CLI, 'apply', '--base-dir', tree, '--', '-e', `@${vars}`], { env });
    const inGpu = (argv: string[]) => ['incus', 'exec', 'gpu-server', '--project', 'ai-tools', '--', ...argv];
    await sh(inGpu(['systemctl', 'is-system-running', '--wait']));
    // ollama and speaches: two small listeners, really stopped and started by each switch. Back to
    // back, the switches start them more often than systemd's default start limit allows (5 in
    // 10 s), and a refused start fails the switch (closed): the bench's units have no limit.
    for (const [unit, port] of [['ollama', 11434], ['speaches', 8000]] as const) {
      const file = join(dir, `${unit}.service`);
      await writeFile(file, `[Unit]\nDescription=ai-switch bench ${unit}\nStartLimitIntervalSec=0\n[Service]\nExecStart=/usr/bin/python3 -m http.server ${port}\n[Install]\nWantedBy=multi-user.target\n`);
      await must(['incus', 'file', 'push', file, `gpu-server/etc/systemd/system/${unit}.service`, '--project', 'ai-tools']);
    }
    await must(inGpu(['systemctl', 'enable', '--now', 'ollama', 'speaches']));

    // The flush: nvidia-smi, alone a stand-in first on PATH, lists one real process of gpu-server.
    const standinDir = join(dir, 'standin');
    const bin = join(standinDir, 'bin');
    await mkdir(bin, { recursive: true });
    for (const f of ['nvidia-smi', 'lib.sh']) await symlink(join(STANDINS_BIN, f), join(bin, f));
    const flushEnv = { ...env, PATH: `${bin}:${process.env.PATH}`, STANDIN_DIR: standinDir };
    // Sleep lengths of this run's own (about ten days), which no other process is likely to have.
    const mark = 900_000 + Math.floor(Math.random() * 90_000);

    // pro holds access after the apply; each switch moves it to the other domain.
    let holder = 'pro';
    const args = () => ['--infra', infraFile, '--base-dir', tree, '--domain', (holder = holder === 'pro' ? 'perso' : 'pro')];
    const noFlush: OneSwitch[] = [];
    const flush: OneSwitch[] = [];
    const empty = await writeEmptyPlay(dir);
    for (let i = 0; i < runs; i++) noFlush.push(await oneSwitch([], [...args(), '--no-flush'], env, empty));
    for (let i = 0; i < runs; i++) {
      const sleeper = ['sleep', String(mark + i)];
      await must(inGpu(['sh', '-c', `setsid ${sleeper.join(' ')} </dev/null >/dev/null 2>&1 &`]));
      let pid: string | undefined;
      for (let wait = 0; pid === undefined && wait < 100; wait++) {
        pid = gpuServerPid(sleeper);
        if (pid === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      if (pid === undefined) throw new Error('the GPU process started in gpu-server never showed on the host');
      await writeFile(join(standinDir, 'host-gpu-apps'), `${pid}, GPU-00000000-0000-0000-0000-0000000000a0, 1024\n`);
      flush.push(await oneSwitch([], args(), flushEnv, empty));
      if (gpuServerPid(sleeper) !== undefined) throw new Error(`the flush left gpu-server's process ${pid} running`);
    }
    return { noFlush: figures(noFlush), flush: figures(flush) };
  } finally {
    await removeIncusObjects(tableLoaded);
    await rm(dir, { recursive: true, force: true });
  }
}

// -------------------------------------------------------------------------------------------------

export async function benchAiSwitch(options: { runs?: number } = {}): Promise<AiSwitchBench> {
  const runs = options.runs ?? 10;
  if (process.getuid?.() !== 0) throw new Error('bench/aiSwitch.ts needs root (ip netns)');
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: npm run build first`);
  const text = syntheticInfraText();
  const analysis = analyse([{ file: 'synthetic.yml', text, role: 'single' }], { yolo: false });
  if (!analysis.infra) throw new Error(`synthetic infra invalid: ${analysis.errors.map((e) => e.message).join('; ')}`);
  const infra = enrich(analysis.infra).infra;
  const domains = Object.keys(infra.domains).length;
  const ns = `akbench${process.pid}`;
  const dir = await mkdtemp(join(tmpdir(), 'anklume-bench-ai-'));
  const standins = StandIns.create();
  try {
    await must(['ip', 'netns', 'add', ns]);
    const inNs = ['ip', 'netns', 'exec', ns];
    await must([...inNs, 'nft', '-f', '-'], { input: renderRuleset(infra, 'dom1') });

    // Network part: alternate dom1 -> dom2 -> dom1 ... so each batch matches the live table.
    const files: Record<string, string> = {};
    for (const [name, batch] of [
      ['revoke-dom1', switchBatch(infra, 'dom1', null)],
      ['grant-dom2', switchBatch(infra, null, 'dom2')],
      ['revoke-dom2', switchBatch(infra, 'dom2', null)],
      ['grant-dom1', switchBatch(infra, null, 'dom1')],
    ] as const) {
      files[name] = join(dir, `${name}.nft`);
      await writeFile(files[name], batch);
    }
    const revokes: number[] = [];
    const grants: number[] = [];
    for (let i = 0; i < runs; i++) {
      const [from, to] = i % 2 === 0 ? ['dom1', 'dom2'] : ['dom2', 'dom1'];
      revokes.push(await timed(() => must([...inNs, 'nft', '-f', files[`revoke-${from}`]])));
      grants.push(await timed(() => must([...inNs, 'nft', '-f', files[`grant-${to}`]])));
    }
    if (runs % 2 === 1) {
      await must([...inNs, 'nft', '-f', files['revoke-dom2']]);
      await must([...inNs, 'nft', '-f', files['grant-dom1']]);
    }
    const revokeMs = median(revokes);
    const grantMs = median(grants);

    // Whole switches with the stand-ins: dom1 -> dom3 -> dom1 ..., without then with the flush.
    const infraFile = join(dir, 'infra.yml');
    await writeFile(infraFile, text);
    const env = standins.env({ ...process.env, ANKLUME_STATE_FILE: join(dir, 'state'), ANKLUME_LOG_FILE: join(dir, 'log'), ANKLUME_CONF_DIR: join(dir, 'conf'), NO_COLOR: '1' });
    const empty = await writeEmptyPlay(dir);
    let holder = 'dom1';
    const args = () => ['--infra', infraFile, '--base-dir', join(dir, 'tree'), '--installed-ruleset', join(dir, 'installed.nft'), '--domain', (holder = holder === 'dom1' ? 'dom3' : 'dom1')];
    const noFlush: OneSwitch[] = [];
    for (let i = 0; i < runs; i++) noFlush.push(await oneSwitch(inNs, [...args(), '--no-flush'], env, empty));
    const flush: OneSwitch[] = [];
    for (let i = 0; i < runs; i++) {
      // One real process of the GPU machine (a `sleep` of ours, in its cgroup by the proc root) to kill.
      standins.hostApps([{ pid: standins.sleeper(), cgroup: instanceCgroup('ai-tools', 'ai-tools-m0') }]);
      flush.push(await oneSwitch(inNs, args(), env, empty));
    }
    return {
      domains,
      network: { revokeMs, grantMs, totalMs: revokeMs + grantMs, targetMs: 50, withinTarget: revokeMs + grantMs <= 50, runs },
      standIns: { noFlush: figures(noFlush), flush: figures(flush) },
      incus: await incusSwitches(runs),
    };
  } finally {
    await execa('ip', ['netns', 'del', ns], { reject: false });
    standins.cleanup();
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(JSON.stringify({ size: BENCH_SIZE, ...(await benchAiSwitch({ runs: Number(process.env.BENCH_RUNS ?? 5) })) }, null, 2));
}
