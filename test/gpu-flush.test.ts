/**
 * The VRAM flush steps (roles/ai_switch/files/gpu_flush.py) and their report (generator/aiswitch/gpuReport.ts).
 *
 * The cgroup matching that decides whose a GPU process is, as a pure function (Python, the one
 * place it lives), then each step run for real against STAND-INS: a host `nvidia-smi` that reports
 * the host PIDs of real `sleep` processes the test started (the host kill is real: a SIGKILL through
 * a pidfd), an `incus` whose `exec` plays the VM, and a proc root built by the test in which those
 * PIDs belong to the GPU instance, another container or the host. No process but the test's own is
 * read as a GPU process or signalled. The whole switch with these stand-ins and real ansible is
 * test/ai-switch-e2e.test.ts (container) and test/ai-switch-flush-e2e.test.ts (VM); with real Incus
 * containers, test/incus-apply-e2e.test.ts.
 */
import { after, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { ROLES_DIR } from '../generator/aiswitch/ansible.ts';
import { jsonLogPath } from '../generator/aiswitch/aiPlan.ts';
import { lastFlush } from '../generator/aiswitch/aiStatus.ts';
import { buildGpuReport, formatGpuReport, gpuReportsFromRecords, gpuWarnings, readGpuReports, type FlushRecords } from '../generator/aiswitch/gpuReport.ts';
import { GPU0, HOST_CGROUP, instanceCgroup, STANDINS_BIN, StandIns } from './helpers/standins.ts';

const HELPER = join(ROLES_DIR, 'ai_switch/files/gpu_flush.py');
const GPU1 = 'GPU-00000000-0000-0000-0000-0000000000a1';

async function owner(text: string, project: string, instance: string): Promise<[string, string | null]> {
  const code = 'import json, sys; sys.path.insert(0, sys.argv[1]); import gpu_flush; a = json.loads(sys.argv[2]); print(json.dumps(gpu_flush.cgroup_owner(*a)))';
  // PYTHONDONTWRITEBYTECODE: importing the role's module must not leave a __pycache__ in the role.
  const r = await execa('python3', ['-c', code, join(ROLES_DIR, 'ai_switch/files'), JSON.stringify([text, project, instance])], { env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } });
  return JSON.parse(r.stdout) as [string, string | null];
}

describe('whose GPU process is it: cgroup matching (pure, gpu_flush.cgroup_owner)', () => {
  const cases: [string, string, string, string, [string, string | null]][] = [
    ['cgroup v1, Incus 6.0 (measured)', '8:pids:/lxc.payload.tproj_tgpu\n', 'tproj', 'tgpu', ['instance', null]],
    ['cgroup v1, every hierarchy, one at the root', '12:memory:/lxc.payload.tproj_tgpu\n8:pids:/lxc.payload.tproj_tgpu\n3:rdma:/\n1:name=systemd:/lxc.payload.tproj_tgpu/init.scope\n0::/lxc.payload.tproj_tgpu\n', 'tproj', 'tgpu', ['instance', null]],
    ['cgroup v2', '0::/lxc.payload.tproj_tgpu\n', 'tproj', 'tgpu', ['instance', null]],
    ['cgroup v2, nested below the payload', '0::/lxc.payload.tproj_tgpu/system.slice/ollama.service\n', 'tproj', 'tgpu', ['instance', null]],
    ['default project: no project part', '0::/lxc.payload.tgpu/init.scope\n', 'default', 'tgpu', ['instance', null]],
    ['default-project container seen from another project', '0::/lxc.payload.tgpu\n', 'tproj', 'tgpu', ['container', 'tgpu']],
    ['a longer name is another container', '0::/lxc.payload.tproj_tgpu2\n', 'tproj', 'tgpu', ['container', 'tproj_tgpu2']],
    ['a shorter name is another container', '0::/lxc.payload.tproj_tgpu\n', 'tproj', 'tgp', ['container', 'tproj_tgpu']],
    ['another container of the same project', '0::/lxc.payload.tproj_other/system.slice/x.service\n', 'tproj', 'tgpu', ['container', 'tproj_other']],
    ["a cgroup named like the instance's, below another container's", '0::/lxc.payload.other_x/lxc.payload.tproj_tgpu\n', 'tproj', 'tgpu', ['container', 'other_x']],
    ["a cgroup named like another container's, below the instance's", '0::/lxc.payload.tproj_tgpu/lxc.payload.other_x\n', 'tproj', 'tgpu', ['instance', null]],
    ['the host', '0::/user.slice/user-1000.slice/session-2.scope\n', 'tproj', 'tgpu', ['host', null]],
    ['the root cgroup', '0::/\n', 'tproj', 'tgpu', ['host', null]],
    ["the instance's Incus monitor runs on the host, outside the payload", '0::/lxc.monitor.tproj_tgpu\n', 'tproj', 'tgpu', ['host', null]],
    ['instance and another container at once: unknown', '8:pids:/lxc.payload.tproj_tgpu\n0::/lxc.payload.other_x\n', 'tproj', 'tgpu', ['unknown', null]],
    ['nothing readable: unknown', 'garbage\n', 'tproj', 'tgpu', ['unknown', null]],
    ['empty: unknown', '', 'tproj', 'tgpu', ['unknown', null]],
  ];
  for (const [what, text, project, instance, expected] of cases) {
    it(what, async () => assert.deepEqual(await owner(text, project, instance), expected));
  }
});

describe('flush steps with stand-ins (host nvidia-smi listing real test processes, incus; test-built proc root)', () => {
  const s = StandIns.create();
  const records = mkdtempSync(join(tmpdir(), 'anklume-gpu-records-'));
  after(() => {
    s.cleanup();
    rmSync(records, { recursive: true, force: true });
  });
  beforeEach(() => {
    s.reset();
    rmSync(records, { recursive: true, force: true });
  });

  const step = async (name: string, type: 'lxc' | 'vm', extra: string[] = []) => {
    const r = await execa('python3', [HELPER, name, '--type', type, '--project', 'ai-tools', '--instance', 'gpu-server', '--proc-root', s.procRoot, '--record-dir', records, ...extra], { env: s.env(process.env), reject: false, timeout: 60_000 });
    return { code: r.exitCode, out: r.stdout ? JSON.parse(r.stdout) : undefined, stderr: r.stderr };
  };
  const mine = instanceCgroup('ai-tools', 'gpu-server');

  /** GPU0: two processes of the instance; GPU1: one of the host, one of another container. */
  function twoGpus(): { mine: string[]; host: string; other: string } {
    const p = { mine: [s.sleeper(), s.sleeper()], host: s.sleeper(), other: s.sleeper() };
    s.hostGpus([{ index: '0', uuid: GPU0, total: 81559 }, { index: '1', uuid: GPU1, total: 81559 }]);
    s.hostApps([
      { pid: p.mine[0], mib: 20000, cgroup: mine },
      { pid: p.mine[1], mib: 1000, cgroup: `12:pids:/lxc.payload.ai-tools_gpu-server\n0::/lxc.payload.ai-tools_gpu-server/system.slice/speaches.service\n` },
      { pid: p.host, gpu: GPU1, mib: 500, cgroup: HOST_CGROUP },
      { pid: p.other, gpu: GPU1, mib: 700, cgroup: '0::/lxc.payload.lab_trainer/init.scope\n' },
    ]);
    return p;
  }

  /** Until the killed processes are reaped (their parent is this test process). */
  const gone = async (pids: string[]) => {
    for (let i = 0; i < 100 && pids.some((pid) => s.alive(pid)); i++) await new Promise((r) => setTimeout(r, 20));
    return pids.filter((pid) => s.alive(pid));
  };

  it('stand-in guard: the nvidia-smi the steps run is the recording stand-in, first on PATH; there is no kill stand-in', async () => {
    // The lookup subprocess does in gpu_flush.py: the first executable of that name on PATH.
    const r = await execa('python3', ['-c', 'import shutil; print(shutil.which("nvidia-smi")); print(shutil.which("kill"))'], { env: s.env(process.env) });
    const [nvidiaSmi, kill] = r.stdout.split('\n');
    assert.equal(nvidiaSmi, join(STANDINS_BIN, 'nvidia-smi'));
    assert.notEqual(kill, join(STANDINS_BIN, 'kill'));
  });

  it('container (stand-ins): lists on the host, kills only the instance\'s processes, for real from the host, reports the others', async () => {
    const p = twoGpus();
    const k = await step('kill', 'lxc');
    assert.equal(k.code, 0, k.stderr);
    assert.deepEqual(k.out.killed, p.mine);
    assert.deepEqual(k.out.gpus_before.map((g: { memory_used_mib: number }) => g.memory_used_mib), [21003, 1203]);
    assert.deepEqual(Object.fromEntries(k.out.processes.map((x: { pid: string; owner: string }) => [x.pid, x.owner])), { [p.mine[0]]: 'instance', [p.mine[1]]: 'instance', [p.host]: 'host', [p.other]: 'container' });
    assert.deepEqual(await gone(p.mine), [], "the instance's processes are really dead");
    assert.ok(s.alive(p.host) && s.alive(p.other), "the host process and the other container's are untouched");
    assert.equal(s.journal().filter((e) => e.tool === 'incus').length, 0, 'nothing runs in the container');
    const v = await step('verify', 'lxc');
    assert.equal(v.code, 0, v.stderr);
    assert.deepEqual(v.out.left, []);
    assert.deepEqual(v.out.processes.map((x: { pid: string }) => x.pid), [p.host, p.other], 'foreign processes do not fail the verification');
  });

  it('container (stand-ins): a listed process that has exited by the kill is not reported killed; the step goes on', async () => {
    const [early, late] = [s.sleeper(), s.sleeper()];
    s.hostApps([{ pid: early, cgroup: mine }, { pid: late, cgroup: mine }]);
    s.sticky([early]);
    process.kill(Number(early), 'SIGKILL');
    assert.deepEqual(await gone([early]), []);
    const k = await step('kill', 'lxc');
    assert.equal(k.code, 0, k.stderr);
    assert.deepEqual(k.out.processes.map((x: { pid: string }) => x.pid), [early, late], 'both listed (the driver still names the dead one)');
    assert.deepEqual(k.out.killed, [late]);
  });

  it('container (stand-ins): the kill reads the cgroup again and signals only a process that is the instance\'s then (Machine.kill)', async () => {
    // What the listing said does not count at the kill: a PID that went to a host process in
    // between is judged as that process.
    const pid = s.sleeper();
    const cgroup = join(s.procRoot, pid, 'cgroup');
    const code = [
      'import sys, types; sys.path.insert(0, sys.argv[1]); import gpu_flush',
      'args = types.SimpleNamespace(type="lxc", project="ai-tools", instance="gpu-server", proc_root=sys.argv[2], record_dir=sys.argv[2])',
      'print(gpu_flush.Machine(args).kill(sys.argv[3]))',
    ].join('\n');
    const kill = async () => (await execa('python3', ['-c', code, join(ROLES_DIR, 'ai_switch/files'), s.procRoot, pid], { env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' }, timeout: 20_000 })).stdout;
    mkdirSync(join(s.procRoot, pid), { recursive: true });
    writeFileSync(cgroup, HOST_CGROUP);
    assert.equal(await kill(), 'False');
    assert.ok(s.alive(pid), 'a host process is not signalled');
    writeFileSync(cgroup, mine);
    assert.equal(await kill(), 'True');
    assert.deepEqual(await gone([pid]), [], 'the instance\'s process is really killed');
    assert.equal(await kill(), 'False', 'a process that is gone is not reported killed');
  });

  it('container (stand-ins): the reset runs on the host, only for a GPU no process uses; skipped with the reason otherwise', async () => {
    const p = twoGpus();
    await step('kill', 'lxc');
    assert.deepEqual(await gone(p.mine), []);
    const r = await step('reset', 'lxc');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.out.gpus.map((g: { uuid: string; reset: string }) => [g.uuid, g.reset]), [[GPU0, 'done'], [GPU1, 'skipped']]);
    assert.equal(r.out.gpus[1].detail, `in use by pid ${p.host} (the host), pid ${p.other} (container lab_trainer)`);
    assert.deepEqual(s.journal().filter((e) => e.args.includes('--gpu-reset')).map((e) => `${e.tool} ${e.args}`), [`nvidia-smi --gpu-reset -i ${GPU0}`]);
    s.resetFails(true);
    const failed = await step('reset', 'lxc');
    assert.equal(failed.code, 0, 'a refused reset is not a failure of the step');
    assert.equal(failed.out.gpus[0].reset, 'failed');
    assert.match(failed.out.gpus[0].detail, /primary GPU/);
  });

  it('container (stand-ins): no reset at all while an instance process is still listed, and the verification fails', async () => {
    const p = twoGpus();
    s.sticky([p.mine[1]]);
    await step('kill', 'lxc');
    assert.deepEqual(await gone(p.mine), []);
    const v = await step('verify', 'lxc');
    assert.equal(v.code, 3);
    assert.match(v.stderr, new RegExp(`gpu-server: still on the GPU: pid ${p.mine[1]} \\(the instance\\)`));
    assert.deepEqual(v.out.left.map((x: { pid: string }) => x.pid), [p.mine[1]]);
    const r = await step('reset', 'lxc');
    assert.deepEqual(r.out.gpus.map((g: { reset: string }) => g.reset), ['skipped', 'skipped']);
    assert.equal(s.journal().filter((e) => e.args.includes('--gpu-reset')).length, 0);
  });

  it('container (stand-ins): a process whose cgroup cannot be read is neither killed nor let pass', async () => {
    const pid = s.sleeper();
    s.hostApps([{ pid }]);
    const k = await step('kill', 'lxc');
    assert.deepEqual(k.out.killed, []);
    assert.equal(k.out.processes[0].owner, 'unknown');
    const v = await step('verify', 'lxc');
    assert.equal(v.code, 3);
    assert.match(v.stderr, new RegExp(`pid ${pid} \\(owner unknown\\)`));
    assert.ok(s.alive(pid), 'not signalled');
  });

  it('a kill that fails fails the step (VM, stand-ins); nvidia-smi failing too (container)', async () => {
    s.gpuPids(['77', '78']);
    s.fail('kill -9 78');
    const k = await step('kill', 'vm');
    assert.equal(k.code, 1);
    assert.match(k.stderr, /kill -9 78 failed/);
    assert.deepEqual(JSON.parse(readFileSync(join(records, 'gpu-server.kill.json'), 'utf8')).killed, ['77'], 'the record says what was done before the failure');
    s.fail('--query-compute-apps');
    const v = await step('verify', 'lxc');
    assert.equal(v.code, 1);
    assert.match(v.stderr, /nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader,nounits failed/);
  });

  it('VM (stand-ins): nvidia-smi, kill and reset run inside the VM through incus exec, none on the host', async () => {
    s.gpuPids(['77', '78']);
    const k = await step('kill', 'vm');
    assert.equal(k.code, 0, k.stderr);
    assert.deepEqual(k.out.killed, ['77', '78']);
    assert.equal(k.out.where, 'instance');
    assert.equal((await step('verify', 'vm')).code, 0);
    const r = await step('reset', 'vm');
    assert.equal(r.out.gpus[0].reset, 'done');
    const journal = s.journal();
    assert.deepEqual(journal.filter((e) => e.tool === 'nvidia-smi'), [], 'no host nvidia-smi');
    const incus = journal.filter((e) => e.tool === 'incus').map((e) => e.args);
    assert.ok(incus.every((a) => a.startsWith('exec gpu-server --project ai-tools -- ')), incus.join('\n'));
    assert.ok(incus.includes('exec gpu-server --project ai-tools -- kill -9 77'));
    assert.ok(incus.includes(`exec gpu-server --project ai-tools -- nvidia-smi --gpu-reset -i ${GPU0}`));
  });

  it('scrub (stand-ins): runs in the GPU machine, arguments as given; its failure fails the step', async () => {
    const ok = await step('scrub', 'lxc', ['--', '/opt/zero-vram', '--all', 'a b']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(s.journal().map((e) => `${e.tool} ${e.args}`), ['incus exec gpu-server --project ai-tools -- /opt/zero-vram --all a b']);
    s.fail('zero-vram');
    const bad = await step('scrub', 'lxc', ['--', '/opt/zero-vram']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /\/opt\/zero-vram failed in gpu-server \(exit 1\)/);
    assert.equal(bad.out.rc, 1);
  });

  it('the records read back as one report per machine (gpuReport.readGpuReports)', async () => {
    const p = twoGpus();
    await step('kill', 'lxc');
    assert.deepEqual(await gone(p.mine), []);
    for (const name of ['verify', 'reset', 'scan']) await step(name, 'lxc');
    const [r] = await readGpuReports(records, { 'gpu-server': 'lxc' });
    assert.equal(r.where, 'host');
    assert.deepEqual(r.killed, p.mine);
    assert.deepEqual(r.foreign.map((x) => x.pid), [p.host, p.other]);
    assert.deepEqual(r.gpus.map((g) => [g.index, g.memory_used_before_mib, g.memory_used_after_mib, g.reset]), [['0', 21003, 3, 'done'], ['1', 1203, 1203, 'skipped']]);
    assert.deepEqual(r.memory, ['3 MiB, 81559 MiB', '1203 MiB, 81559 MiB']);
    assert.deepEqual(await readGpuReports(join(records, 'none'), { 'gpu-server': 'lxc' }), [], 'no record, no report');
  });

  // The step the role runs: all of the above in one process (one Ansible task per GPU machine).
  it('flush (stand-ins): kill, scrub, verify, reset, scan in that order in one process, each recorded; one JSON line says what changed and what each step took', async () => {
    s.gpuPids(['77', '78']);
    const r = await step('flush', 'vm', ['--retries', '3', '--delay', '0.1', '--', '/opt/zero-vram']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.out.changed, true);
    assert.equal(r.out.failed_step, undefined);
    assert.deepEqual(Object.keys(r.out.took), ['kill', 'scrub', 'verify', 'reset', 'scan'].map((n) => `gpu-server: ${n}`));
    const calls = s.journal().filter((e) => e.tool === 'incus').map((e) => e.args.replace('exec gpu-server --project ai-tools -- ', ''));
    const at = (fragment: string, after = -1) => calls.findIndex((c, i) => i > after && c.includes(fragment));
    const [kill, scrub] = [at('kill -9 77'), at('/opt/zero-vram')];
    const verify = at('--query-compute-apps', scrub);
    assert.ok(kill >= 0 && kill < scrub && scrub < verify && verify < at('--gpu-reset'), calls.join('\n'));
    const [report] = await readGpuReports(records, { 'gpu-server': 'vm' });
    assert.deepEqual(report.killed, ['77', '78']);
    assert.equal(report.scrub?.ok, true);
    assert.deepEqual(report.gpus.map((g) => g.reset), ['done']);
  });

  it('flush (stand-ins): a process left after the retries fails it at verify, named as the step; no reset; nothing changed is said as such', async () => {
    const pid = s.sleeper();
    s.hostApps([{ pid }]);
    const r = await step('flush', 'lxc', ['--retries', '2', '--delay', '0.1']);
    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.out.failed_step, 'Verify that no GPU compute process is left in the GPU machine');
    assert.equal(r.out.changed, false, 'nothing was killed');
    assert.equal(s.journal().filter((e) => e.args.includes('--query-compute-apps')).length, 4, 'one listing for the kill, three for verify: the first look and two more');
    assert.match(r.stderr, new RegExp(`still on the GPU: pid ${pid} \\(owner unknown\\)`));
    assert.equal(s.journal().some((e) => e.args.includes('--gpu-reset')), false, 'the flush stops at the failed step');
    s.reset();
    s.fail('--query-compute-apps');
    const k = await step('flush', 'lxc');
    assert.equal(k.code, 1);
    assert.equal(k.out.failed_step, 'Kill the GPU compute processes of the GPU machine');
    assert.match(k.stderr, /nvidia-smi --query-compute-apps=\S+ --format=csv,noheader,nounits failed/);
  });

  it('flush: a failed read of the memory after the flush is said on stderr, and does not fail it (the scan replaced by one that fails)', async () => {
    // The kill reads the same memory first, so the stand-in cannot fail the scan alone.
    const r = await execa('python3', ['-c', [
      'import sys; sys.path.insert(0, sys.argv[1]); import gpu_flush',
      'def scan(m, args): raise gpu_flush.StepError("nvidia-smi went away")',
      'gpu_flush.STEPS["scan"] = scan',
      'sys.exit(gpu_flush.main(sys.argv[2:]))',
    ].join('\n'), join(ROLES_DIR, 'ai_switch/files'), 'flush', '--type', 'vm', '--project', 'ai-tools', '--instance', 'gpu-server', '--record-dir', records], { env: { ...s.env(process.env), PYTHONDONTWRITEBYTECODE: '1' }, reject: false });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stderr, /gpu-server: nvidia-smi went away/);
    assert.equal(JSON.parse(r.stdout).failed_step, undefined);
  });
});

describe('flush report (pure, gpuReport.ts) and the JSON log', () => {
  const records: FlushRecords = {
    kill: {
      gpus_before: [{ index: '0', uuid: GPU0, memory_used_mib: 4099, memory_total_mib: 81559 }],
      processes: [
        { pid: '1', gpu_uuid: GPU0, used_memory_mib: 4096, owner: 'instance' },
        { pid: '2', gpu_uuid: GPU0, used_memory_mib: null, owner: 'container', container: 'x_y' },
      ],
      killed: ['1'],
    },
    verify: { processes: [{ pid: '2', gpu_uuid: GPU0, used_memory_mib: null, owner: 'container', container: 'x_y' }], left: [] },
    reset: { gpus: [{ uuid: GPU0, index: '0', reset: 'skipped', detail: 'in use by pid 2 (container x_y)' }] },
    scan: { gpus: [{ index: '0', uuid: GPU0, memory_used_mib: 3, memory_total_mib: 81559 }] },
  };

  it('per GPU: memory before and after, the reset and why; killed and foreign processes', () => {
    const r = buildGpuReport('gpu-server', 'lxc', records);
    assert.deepEqual(r.gpus, [{ index: '0', uuid: GPU0, memory_total_mib: 81559, memory_used_before_mib: 4099, memory_used_after_mib: 3, reset: 'skipped', reset_detail: 'in use by pid 2 (container x_y)' }]);
    assert.equal(r.reset, false);
    assert.deepEqual(r.foreign.map((p) => p.pid), ['2']);
    assert.deepEqual(formatGpuReport(r), [
      'gpu-server (lxc, flushed from the host): killed 1; left alone (not the instance\'s): pid 2 (container x_y)',
      `  GPU 0 ${GPU0}: memory in use 4099 MiB before, 3 MiB after (of 81559 MiB); reset skipped (in use by pid 2 (container x_y))`,
    ]);
    const warnings = gpuWarnings(r);
    assert.equal(warnings.length, 2);
    assert.match(warnings[0], /^GPU reset skipped on gpu-server \(GPU 0 /);
    assert.match(warnings[1], /not gpu-server's were left running: pid 2/);
  });

  it('a flush stopped half way still reports what it saw', () => {
    const r = buildGpuReport('gpu-server', 'vm', { kill: records.kill, verify: { processes: [], left: [{ pid: '1', gpu_uuid: GPU0, used_memory_mib: 9, owner: 'instance' }] } });
    assert.equal(r.where, 'instance');
    assert.deepEqual(r.left.map((p) => p.pid), ['1']);
    assert.equal(r.gpus[0].memory_used_after_mib, null);
    assert.equal(r.gpus[0].reset, 'not tried');
    assert.match(formatGpuReport(r)[0], /STILL THERE: pid 1 \(the instance, 9 MiB\)/);
  });

  it('the JSON log lies beside the text log; ai-status reads its last flush', () => {
    assert.equal(jsonLogPath('/var/log/anklume/ai-switch.log'), '/var/log/anklume/ai-switch.jsonl');
    assert.equal(jsonLogPath('/tmp/switches'), '/tmp/switches.jsonl');
    const report = buildGpuReport('gpu-server', 'lxc', records);
    const lines = [
      JSON.stringify({ time: 't1', status: 'switched', from: 'pro', to: 'perso', flush: true, gpu: [report] }),
      JSON.stringify({ time: 't2', status: 'switched', from: 'perso', to: 'pro', flush: false, gpu: [] }),
      '{"torn',
    ];
    assert.equal(lastFlush(lines.join('\n') + '\n')?.time, 't1');
    assert.equal(lastFlush(undefined), null);
  });
});

describe("the flush reports a cluster's member brings back (member_boot.py's gpu_records), read, not trusted", () => {
  const kill = { gpus_before: [{ index: '0', uuid: 'GPU-a', memory_used_mib: 10, memory_total_mib: 100 }], processes: [], killed: ['42'] };
  it('a report per GPU machine whose flush began; records of the wrong shape leave their machine out, named', () => {
    const records = new Map<string, unknown>([
      ['good.kill', kill],
      ['good.scan', { gpus: [{ index: '0', uuid: 'GPU-a', memory_used_mib: 0, memory_total_mib: 100 }] }],
      ['numbers.kill', { gpus_before: 5 }],
      ['nulls.kill', { gpus_before: [null] }],
      ['text.kill', { ...kill, killed: 'x' }],
      ['list.kill', [kill]],
    ]);
    const read = gpuReportsFromRecords(records, { good: 'lxc', numbers: 'lxc', nulls: 'lxc', text: 'lxc', list: 'vm', silent: 'lxc' });
    assert.deepEqual(read.reports.map((r) => [r.machine, r.killed, r.gpus.map((g) => [g.memory_used_before_mib, g.memory_used_after_mib])]), [['good', ['42'], [[10, 0]]]]);
    assert.deepEqual(read.unreadable, ['numbers', 'nulls', 'text', 'list']);
  });
});
