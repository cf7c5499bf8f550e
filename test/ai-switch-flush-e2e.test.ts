/**
 * The VRAM flush inside a whole switch: the real CLI and the real ansible-playbook in the host
 * namespace of a network lab (the live ruleset is real; test/helpers/netns.ts), with STAND-INS for
 * what cannot run here: `incus` (whose `exec` plays the GPU machine), `nvidia-smi` and `systemctl`,
 * and a proc root the test builds (the one host GPU process listed is a real `sleep` of the test's).
 *
 * The container case (flushed from the host, only the instance's processes killed, foreign ones
 * reported, reset skipped on a busy GPU, a survivor failing closed) is in test/ai-switch-e2e.test.ts;
 * this file has the VM case and the VRAM scrub, on the same network with gpu-server as a VM
 * (test/fixtures/ai-switch/infra-vm-scrub.yml). Needs root.
 */
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { analyse } from '../generator/infra/infra.ts';
import { enrich } from '../generator/infra/enrich.ts';
import { renderRuleset } from '../generator/nftables/nftables.ts';
import type { Infra } from '../generator/core/types.ts';
import { testEnv, type TestEnv } from './helpers/env.ts';
import { canRunNetns, Lab, labSpecFromInfra } from './helpers/netns.ts';
import { HOST_CGROUP, StandIns, type JournalEntry } from './helpers/standins.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURE = join(ROOT, 'test/fixtures/ai-switch/infra-vm-scrub.yml');
const BIN = join(ROOT, 'generator/cli/bin.ts');
const SCRUB = 'exec gpu-server --project ai-tools -- /usr/local/bin/zero-vram --pattern 0x00 {{ not jinja }}';

const support = await canRunNetns();

describe('VRAM flush end to end (network namespaces, real ansible-playbook, stand-ins for incus/nvidia-smi/systemctl, test-built proc root)', { skip: support.ok ? false : support.why }, () => {
  let lab: Lab | undefined;
  let standins: StandIns | undefined;
  let t: TestEnv;
  let infra: Infra;
  let stateFile: string;
  let logFile: string;

  async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const r = await execa('ip', ['netns', 'exec', lab!.hostNs, process.execPath, '--import', 'tsx', BIN, ...args], { env: standins!.env(t.env), extendEnv: false, reject: false, cwd: ROOT });
    return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  }
  const switchArgs = (...extra: string[]) => ['ai-switch', '--infra', FIXTURE, '--base-dir', t.baseDir, '--installed-ruleset', join(t.dir, 'installed.nft'), ...extra];
  const calls = (journal: JournalEntry[]) => journal.filter((e) => e.tool !== 'nft' && e.tool !== 'systemctl' && e.tool !== 'nvidia-smi@instance').map((e) => `${e.tool} ${e.args}`);

  async function resetTo(holder: string): Promise<void> {
    await lab!.nft(['-f', '-'], renderRuleset(infra, holder));
    mkdirSync(join(t.dir, 'state'), { recursive: true });
    writeFileSync(stateFile, `${holder}\n`);
  }

  before(async () => {
    const text = await readFile(FIXTURE, 'utf8');
    const a = analyse([{ file: FIXTURE, text, role: 'single' }], { yolo: false });
    assert.ok(a.infra, JSON.stringify(a.errors));
    infra = enrich(a.infra).infra;
    t = testEnv('anklume-flush-e2e-');
    stateFile = t.env.ANKLUME_STATE_FILE!;
    logFile = t.env.ANKLUME_LOG_FILE!;
    standins = StandIns.create();
    lab = await Lab.create(labSpecFromInfra(infra), { prefix: 'akfl' });
  });

  after(async () => {
    await lab?.teardown();
    standins?.cleanup();
    t?.cleanup();
  });

  beforeEach(async () => {
    standins!.reset();
    await resetTo('pro');
  });

  it('dry run (stand-ins): says the flush runs inside the VM and shows the scrub command; runs nothing', async () => {
    const r = await cli(switchArgs('--domain', 'perso', '--dry-run', '--json'));
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.deepEqual(j.gpu_machine_types, { 'gpu-server': 'vm' });
    assert.deepEqual(j.vram_scrub_command, ['/usr/local/bin/zero-vram', '--pattern', '0x00 {{ not jinja }}']);
    const text = j.messages.join('\n');
    assert.match(text, /gpu-server \(vm\): nvidia-smi, kill -9 and the reset run inside the VM/);
    assert.ok(text.includes("VRAM scrub after the kill, in each GPU machine (its failure fails the switch): /usr/local/bin/zero-vram --pattern '0x00 {{ not jinja }}'"), text);
    assert.deepEqual(calls(standins!.journal()), []);
  });

  it('VM (stand-ins): every flush step runs inside the VM through incus exec, the scrub after the kill, nothing on the host', async () => {
    standins!.gpuPids(['77', '78']);
    // A host process on the GPU: a VM's flush never looks at the host's processes.
    const host = standins!.sleeper();
    standins!.hostApps([{ pid: host, cgroup: HOST_CGROUP }]);
    const r = await cli(switchArgs('--domain', 'perso', '--json'));
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.status, 'switched');
    assert.equal(j.gpu[0].where, 'instance');
    assert.deepEqual(j.gpu[0].killed, ['77', '78']);
    assert.deepEqual(j.gpu[0].scrub, { command: ['/usr/local/bin/zero-vram', '--pattern', '0x00 {{ not jinja }}'], ok: true, detail: '' });
    assert.deepEqual(j.gpu[0].gpus.map((g: { memory_used_before_mib: number; memory_used_after_mib: number; reset: string }) => [g.memory_used_before_mib, g.memory_used_after_mib, g.reset]), [[2051, 3, 'done']]);
    const seen = calls(standins!.journal());
    assert.deepEqual(seen.filter((c) => c.startsWith('nvidia-smi')), [], 'no host nvidia-smi');
    const kill = seen.indexOf('incus exec gpu-server --project ai-tools -- kill -9 77');
    const scrub = seen.indexOf(`incus ${SCRUB}`);
    const verify = seen.findIndex((c, i) => i > scrub && c.includes('--query-compute-apps'));
    const reset = seen.findIndex((c) => c.includes('--gpu-reset'));
    assert.ok(kill > 0 && kill < scrub && scrub < verify && verify < reset, seen.join('\n'));
    assert.ok(seen.filter((c) => c.startsWith('incus')).every((c) => c.startsWith('incus exec gpu-server --project ai-tools -- ')), seen.join('\n'));
    assert.ok(standins!.alive(host), "the host's GPU process is untouched");
    assert.equal(readFileSync(stateFile, 'utf8'), 'perso\n');
    const detail = JSON.parse(readFileSync(logFile.replace(/\.log$/, '.jsonl'), 'utf8').trimEnd().split('\n').at(-1)!);
    assert.equal(detail.gpu[0].scrub.ok, true);
  });

  it('scrub (stand-ins): its failure fails the switch closed: nobody has access, the state file says so', async () => {
    standins!.fail('zero-vram');
    const r = await cli(switchArgs('--domain', 'perso'));
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /ai-switch failed: Scrub the freed GPU memory/);
    assert.match(r.stderr, /zero-vram --pattern 0x00 \{\{ not jinja \}\} failed in gpu-server/);
    assert.match(r.stderr, /Nobody has AI access now/);
    assert.match(r.stderr, /gpu-server \(vm, flushed from inside the VM\): killed no process; scrub FAILED/);
    assert.equal(readFileSync(stateFile, 'utf8'), '');
    const live = JSON.parse(await lab!.nft(['-j', 'list', 'set', 'inet', 'anklume', 'ai_holder'])) as { nftables: { set?: { elem?: string[] } }[] };
    assert.deepEqual(live.nftables.find((i) => i.set)?.set?.elem ?? [], []);
    const seen = calls(standins!.journal());
    assert.equal(seen.some((c) => c.includes('--gpu-reset')), false, 'the flush stops at the failed scrub');
    assert.ok(seen.indexOf('incus exec gpu-server --project ai-tools -- systemctl start ollama speaches') > seen.indexOf(`FAIL ${SCRUB}`), 'the services are started again');
    const detail = JSON.parse(readFileSync(logFile.replace(/\.log$/, '.jsonl'), 'utf8').trimEnd().split('\n').at(-1)!);
    assert.equal(detail.status, 'failed');
    assert.equal(detail.gpu[0].scrub.ok, false);
  });

  it('--no-flush (stand-ins): no kill, no scrub, no nvidia-smi anywhere', async () => {
    standins!.gpuPids(['77']);
    const r = await cli(switchArgs('--domain', 'perso', '--no-flush'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /SECURITY: --no-flush/);
    const seen = calls(standins!.journal());
    assert.deepEqual(seen.filter((c) => /nvidia-smi|kill|zero-vram/.test(c)), []);
    assert.equal(readFileSync(stateFile, 'utf8'), 'perso\n');
  });
});
