/**
 * npm run bench: the generator on a synthetic infra of 250 domains × 20 machines.
 * End-to-end figures run the built CLI as a user would (a fresh process each time, so start-up is
 * included); the phase breakdown runs in this process. Medians of several runs.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { enrich } from '../generator/infra/enrich.ts';
import { ensureDirs, writeAtomic } from '../generator/core/files.ts';
import { parseFast } from '../generator/infra/load.ts';
import { mergeManaged } from '../generator/tree/managedBlock.ts';
import { countForwardRules, renderRuleset } from '../generator/nftables/nftables.ts';
import { checkShape } from '../generator/infra/schema.ts';
import { planOutputs } from '../generator/tree/outputs.ts';
import { checkSemantics } from '../generator/infra/validate.ts';
import type { Infra } from '../generator/core/types.ts';
import { benchAiSwitch, type SwitchFigures } from './aiSwitch.ts';
import { syntheticInfraText } from './synthetic.ts';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
// The package's command, as npm and make run it: the one-file build through V8's code cache.
const CLI = join(import.meta.dirname, '..', 'dist', 'generator', 'cli', 'anklume-gen.cjs');

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const ms = (x: number): string => `${x.toFixed(0).padStart(6)} ms`;

function timeCli(args: string[], env: NodeJS.ProcessEnv): { ms: number; stdout: string } {
  const start = performance.now();
  const r = spawnSync(process.execPath, [CLI, ...args], { env, encoding: 'utf8' });
  const elapsed = performance.now() - start;
  if (r.status !== 0) throw new Error(`anklume-gen ${args.join(' ')} failed: ${r.stderr}`);
  return { ms: elapsed, stdout: r.stdout };
}

function countFiles(dir: string): number {
  let n = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) n += entry.isDirectory() ? countFiles(join(dir, entry.name)) : 1;
  return n;
}

/**
 * The size people run: the bundled example (three domains). Start-up is most of it, so each figure
 * stands beside Node's own (`node -e 0`) and the target, Node + 30 ms. The runs alternate (node,
 * then each command, round after round), so that a slow minute weighs on all of them alike.
 */
function smallInfra(work: string, env: NodeJS.ProcessEnv): void {
  const example = join(import.meta.dirname, '..', 'examples', 'infra.yml');
  const base = join(work, 'small');
  timeCli([example, '--base-dir', base], env);
  const rows: [string, string[]][] = [
    ['node -e 0', ['-e', '0']],
    ['validate', [CLI, 'validate', example]],
    ['sync --dry-run', [CLI, example, '--base-dir', base, '--dry-run']],
    ['unchanged re-sync (cache hit)', [CLI, example, '--base-dir', base]],
    ['flows (the matrix)', [CLI, 'flows', example]],
    ['--help', [CLI, '--help']],
  ];
  const rounds = RUNS * 2 + 1;
  const times = rows.map(() => [] as number[]);
  for (let round = 0; round < rounds; round++) {
    for (const [i, [, args]] of rows.entries()) {
      const start = performance.now();
      const r = spawnSync(process.execPath, args, { env, encoding: 'utf8' });
      times[i].push(performance.now() - start);
      if (r.status !== 0) throw new Error(`node ${args.join(' ')} failed: ${r.stderr}`);
    }
  }
  const [node, ...commands] = times.map(median);
  console.log(`small infra: the example (3 domains), ${rounds} alternating runs each (median); node -e 0: ${ms(node)}, target node + 30 ms = ${ms(node + 30)}`);
  console.log(`  code cache: ${codeCacheTaken() ? 'taken' : 'NOT taken (figures without it)'}`);
  for (const [i, t] of commands.entries()) {
    console.log(`  ${rows[i + 1][0].padEnd(34)} ${ms(t)}   (node + ${(t - node).toFixed(0)} ms${t - node <= 30 ? '' : ', over the target'})`);
  }
  console.log('');
}

/** Whether V8 takes the build's code cache for the bundle, as the command does (loaded here without running it). */
function codeCacheTaken(): boolean {
  const cli = join(import.meta.dirname, '..', 'dist', 'generator', 'cli');
  const probe = `const { loadBundle } = require(${JSON.stringify(join(cli, 'codeCache.cjs'))});
    console.log(loadBundle(${JSON.stringify(join(cli, 'anklume-gen.bundle.cjs'))}, [${JSON.stringify(join(cli, '..', '..', 'code-cache'))}], false).fromCache)`;
  return spawnSync(process.execPath, ['-e', probe], { encoding: 'utf8' }).stdout.trim() === 'true';
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'anklume-bench-'));
  try {
    const text = syntheticInfraText();
    const infraFile = join(work, 'infra.yml');
    writeFileSync(infraFile, text);
    const env = { ...process.env, ANKLUME_CONF_DIR: join(work, 'etc'), ANKLUME_STATE_FILE: join(work, 'state'), NO_COLOR: '1' };
    smallInfra(work, env);
    console.log(`synthetic infra: 250 domains × 20 machines, ${(text.length / 1024 / 1024).toFixed(2)} MB of YAML, ${RUNS} runs each (median)`);
    console.log(`machine: ${execFileSync('nproc', { encoding: 'utf8' }).trim()} cores, node ${process.version}\n`);

    const full: number[] = [];
    const resync: number[] = [];
    const validate: number[] = [];
    const flows: number[] = [];
    const copy: number[] = [];
    let writtenOnResync = -1;
    let treeFiles = 0;
    for (let run = 0; run < RUNS; run++) {
      // A fresh directory each run: deleting 5,500 files right before would slow the disk down.
      const base = join(work, `tree-${run}`);
      // Flush the previous run's dirty pages first: a user's sync does not start while the kernel
      // is still writing back the 5,500 files of the one before.
      spawnSync('sync');
      full.push(timeCli([infraFile, '--base-dir', base], env).ms);
      treeFiles = countFiles(base) - 1;
      // The disk's own cost for the same files in the same minute: the floor a full sync stands on.
      const copyStart = performance.now();
      execFileSync('cp', ['-r', base, `${base}-copy`]);
      copy.push(performance.now() - copyStart);
      const before = statSync(join(base, 'host_vars', 'dom1-m1.yml')).mtimeMs;
      const again = timeCli([infraFile, '--base-dir', base, '--json'], env);
      resync.push(again.ms);
      writtenOnResync = (JSON.parse(again.stdout) as { written: string[] }).written.length;
      if (statSync(join(base, 'host_vars', 'dom1-m1.yml')).mtimeMs !== before) throw new Error('re-sync touched a file');
      validate.push(timeCli(['validate', infraFile], env).ms);
      flows.push(timeCli(['flows', infraFile, '--from', 'dom4-m0', '--to', 'dom5', '--port', '22'], env).ms);
    }
    console.log('end to end (a new process each run, start-up included)');
    console.log(`  full sync into an empty directory  ${ms(median(full))}   (${treeFiles} files; target ≤ 1500 ms)`);
    console.log(`    cp -r of that tree, for scale    ${ms(median(copy))}   (the disk alone, same minutes)`);
    console.log(`  unchanged re-sync                  ${ms(median(resync))}   (${writtenOnResync} files written; target ≤ 700 ms, 0 files)`);
    console.log(`  validate                           ${ms(median(validate))}   (target ≤ 800 ms)`);
    console.log(`  flows: one flow (domain side)      ${ms(median(flows))}   (about as long as validate)`);

    const phases = { parse: [] as number[], validate: [] as number[], render: [] as number[], write: [] as number[] };
    for (let run = 0; run < RUNS; run++) {
      let t = performance.now();
      const lap = (into: number[]) => {
        const now = performance.now();
        into.push(now - t);
        t = now;
      };
      const raw = parseFast([{ file: infraFile, text, role: 'single' }]);
      if (!raw) throw new Error('synthetic infra did not parse');
      lap(phases.parse);
      if (checkShape(raw).length || checkSemantics(raw, { yolo: false }).errors.length) throw new Error('synthetic infra is invalid');
      lap(phases.validate);
      const infra = enrich(raw as unknown as Infra).infra;
      const files = planOutputs(infra, undefined).map((o) => ({ path: o.path, content: o.managed ? mergeManaged(undefined, o.text()) : o.text() }));
      lap(phases.render);
      const base = join(work, `phase-${run}`);
      ensureDirs(files.map((f) => join(base, f.path)));
      for (const f of files) writeAtomic(join(base, f.path), f.content);
      lap(phases.write);
    }
    console.log('\nwhere a full sync spends its time (in-process)');
    for (const [name, xs] of Object.entries(phases)) console.log(`  ${name.padEnd(34)} ${ms(median(xs))}`);

    const rulesetTimes: number[] = [];
    let ruleset = '';
    const raw = parseFast([{ file: infraFile, text, role: 'single' }]);
    const infra = enrich(raw as unknown as Infra).infra;
    for (let run = 0; run < RUNS; run++) {
      const start = performance.now();
      ruleset = renderRuleset(infra, 'dom1');
      rulesetTimes.push(performance.now() - start);
    }
    console.log('\nnftables');
    console.log(`  render the ruleset                 ${ms(median(rulesetTimes))}   (${(ruleset.length / 1024).toFixed(0)} KiB, ${countForwardRules(ruleset)} rules in the forward chain)`);
    console.log(`  nft -f in a scratch namespace      ${nftLoad(ruleset, work)}`);
    await aiSwitchFigures();
  } finally {
    rmSync(work, { recursive: true, force: true });
    console.log(`\nNote: ext4 without a journal (this machine's disk) skips inodes deleted in the last 1-5 minutes
when it creates a file, so creating files is several times slower for a few minutes after a large
deletion (this benchmark's own clean-up included): wait 5 minutes between two benchmark runs.`);
  }
}

async function aiSwitchFigures(): Promise<void> {
  console.log('\nai-switch (needs root; whole switches run the built CLI; medians)');
  try {
    const r = await benchAiSwitch({ runs: RUNS });
    console.log(`  network part (revoke + grant)      ${ms(r.network.totalMs)}   (${r.domains}-domain ruleset in a scratch namespace: revoke ${r.network.revokeMs.toFixed(1)} ms, grant ${r.network.grantMs.toFixed(1)} ms; target ≤ ${r.network.targetMs} ms)`);
    console.log(`  ansible-playbook start-up          ${ms(r.ansibleStartupMs)}   (an empty play)`);
    switchFigures(`${r.domains}-domain infra, scratch namespace, stand-ins for incus/systemctl/nvidia-smi`, r.standIns);
    if ('skipped' in r.incus) console.log(`  real Incus containers: skipped (${r.incus.skipped})`);
    else switchFigures('real Incus containers (3 domains; nvidia-smi a stand-in)', r.incus);
  } catch (err) {
    console.log(`  skipped: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
}

/** A switch with and without the flush: the whole, then each Ansible task with the parts its helper timed, then the rest. */
function switchFigures(where: string, kinds: { noFlush: SwitchFigures; flush: SwitchFigures }): void {
  console.log(`  ${where}`);
  for (const [label, f, target] of [['--no-flush', kinds.noFlush, 2000], ['with flush', kinds.flush, 2500]] as const) {
    console.log(`    whole switch ${label.padEnd(21)} ${ms(f.totalMs)}   (target ≤ ${target} ms; ${f.runs} runs)`);
    for (const t of f.tasks) {
      console.log(`      ${t.name.slice(0, 58).padEnd(58)} ${ms(t.ms)}`);
      for (const p of t.parts) console.log(`        ${p.name.slice(0, 56).padEnd(56)} ${ms(p.ms)}`);
    }
    console.log(`      ${'the rest: anklume-gen itself, Ansible between tasks'.padEnd(58)} ${ms(f.restMs)}`);
  }
}

/** Loads the ruleset with nft inside a network namespace of its own (unshare): never the host's. */
function nftLoad(ruleset: string, work: string): string {
  const file = join(work, 'anklume.nft');
  writeFileSync(file, ruleset);
  const times: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const r = spawnSync('unshare', ['-n', 'sh', '-c', 'start=$(date +%s%N); nft -f "$1" || exit 1; end=$(date +%s%N); echo $(( (end - start) / 1000000 ))', 'sh', file], { encoding: 'utf8' });
    if (r.status !== 0) return `skipped (${(r.stderr || r.error?.message || 'unshare -n failed').trim().split('\n')[0]}; needs root and nft)`;
    times.push(Number(r.stdout.trim()));
  }
  return ms(median(times));
}

await main();
