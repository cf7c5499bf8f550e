/**
 * Benchmark of ai-switch on the 250-domain synthetic infra (bench/synthetic.ts), in a scratch
 * network namespace created here (never the machine's own namespace); needs root.
 *
 *   network: the revoke batch then the grant batch, each one `nft -f` (target: ≤ 50 ms together)
 *   switch:  a whole `anklume-gen ai-switch --no-flush` with the TEST-ONLY stand-ins for incus and
 *            systemctl first on PATH (test/fixtures/standins), split into ansible start-up (an
 *            empty play, same environment) and the rest
 *
 * `benchAiSwitch()` returns the numbers; `node --import tsx bench/aiSwitch.ts` prints them as JSON.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { ansibleEnv } from '../generator/aiswitch/ansible.ts';
import { enrich } from '../generator/infra/enrich.ts';
import { analyse } from '../generator/infra/infra.ts';
import { renderRuleset, switchBatch } from '../generator/nftables/nftables.ts';
import { StandIns } from '../test/helpers/standins.ts';
import { BENCH_SIZE, syntheticInfraText } from './synthetic.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface AiSwitchBench {
  domains: number;
  /** Median over the runs, milliseconds, each `nft -f` timed as a whole process in the namespace. */
  network: { revokeMs: number; grantMs: number; totalMs: number; targetMs: 50; withinTarget: boolean; runs: number };
  /** One whole --no-flush switch with stand-ins, milliseconds. */
  switch: { totalMs: number; ansibleStartupMs: number; restMs: number; exitCode: number };
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

async function must(argv: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<void> {
  const r = await execa(argv[0], argv.slice(1), { input: opts.input, env: opts.env, extendEnv: opts.env === undefined, reject: false });
  if (r.exitCode !== 0) throw new Error(`${argv.join(' ')} failed (${r.exitCode}): ${String(r.stderr).trim().slice(0, 2000)}`);
}

export async function benchAiSwitch(options: { runs?: number } = {}): Promise<AiSwitchBench> {
  const runs = options.runs ?? 10;
  if (process.getuid?.() !== 0) throw new Error('bench/aiSwitch.ts needs root (ip netns)');
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
    const inNs = (argv: string[]) => ['ip', 'netns', 'exec', ns, ...argv];
    await must(inNs(['nft', '-f', '-']), { input: renderRuleset(infra, 'dom1') });

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
      revokes.push(await timed(() => must(inNs(['nft', '-f', files[`revoke-${from}`]]))));
      grants.push(await timed(() => must(inNs(['nft', '-f', files[`grant-${to}`]]))));
    }
    if (runs % 2 === 1) {
      await must(inNs(['nft', '-f', files['revoke-dom2']]));
      await must(inNs(['nft', '-f', files['grant-dom1']]));
    }
    const revokeMs = median(revokes);
    const grantMs = median(grants);

    // Whole switch: dom1 -> dom3 with --no-flush, stand-ins first on PATH.
    const infraFile = join(dir, 'infra.yml');
    await writeFile(infraFile, text);
    const env = standins.env({ ...process.env, ANKLUME_STATE_FILE: join(dir, 'state'), ANKLUME_LOG_FILE: join(dir, 'log'), ANKLUME_CONF_DIR: join(dir, 'conf'), NO_COLOR: '1' });
    const empty = join(dir, 'empty.yml');
    await writeFile(empty, '- name: Start-up only\n  hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks: []\n');
    const ansibleStartupMs = await timed(() => must(inNs(['ansible-playbook', empty]), { env: ansibleEnv(env, false) }));
    let exitCode = 0;
    const totalMs = await timed(async () => {
      const r = await execa('ip', inNs([process.execPath, '--import', 'tsx', join(ROOT, 'generator/cli/bin.ts'), 'ai-switch', '--infra', infraFile, '--base-dir', join(dir, 'tree'), '--installed-ruleset', join(dir, 'installed.nft'), '--domain', 'dom3', '--no-flush']).slice(1), { env, extendEnv: false, reject: false, cwd: ROOT });
      exitCode = r.exitCode ?? -1;
      if (exitCode !== 0) throw new Error(`ai-switch failed in the bench (${exitCode}): ${String(r.stderr).slice(-2000)}`);
    });
    return {
      domains,
      network: { revokeMs, grantMs, totalMs: revokeMs + grantMs, targetMs: 50, withinTarget: revokeMs + grantMs <= 50, runs },
      switch: { totalMs, ansibleStartupMs, restMs: totalMs - ansibleStartupMs, exitCode },
    };
  } finally {
    await execa('ip', ['netns', 'del', ns], { reject: false });
    standins.cleanup();
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(JSON.stringify({ size: BENCH_SIZE, ...(await benchAiSwitch()) }, null, 2));
}
