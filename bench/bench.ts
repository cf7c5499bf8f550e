/**
 * npm run bench: the example (the size people run), a synthetic infra of 250 domains × 20
 * machines, and the switch; each beside its floor (`node -e 0`, `cp -r`) and the reference (the
 * Python generator, bench/reference.ts) when it is there. End-to-end figures run the built CLI as
 * a user would (a fresh process each time, so start-up is included); the phase breakdown runs in
 * this process. Medians of several runs. BENCH_RUNS and BENCH_PARTS (small,large,switch) narrow it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { enrich } from '../generator/infra/enrich.ts';
import { ensureDirs, writeFresh } from '../generator/core/files.ts';
import { parseFast } from '../generator/infra/load.ts';
import { mergeManaged } from '../generator/tree/managedBlock.ts';
import { countForwardRules, renderRuleset } from '../generator/nftables/nftables.ts';
import { checkShape } from '../generator/infra/schema.ts';
import { planOutputs } from '../generator/tree/outputs.ts';
import { checkSemantics } from '../generator/infra/validate.ts';
import type { Infra } from '../generator/core/types.ts';
import { benchAiSwitch, type SwitchFigures } from './aiSwitch.ts';
import { forReference, NO_REFERENCE, referenceScript } from './reference.ts';
import { syntheticInfra, syntheticInfraText } from './synthetic.ts';
import { stringify } from 'yaml';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
/** Which parts run: small (the example), large (5,000 machines, nftables), switch; all by default. */
/** cp -r per file above which the disk is in a slow spell (see the note printed at the end). */
const SLOW_COPY_MS_PER_FILE = 0.1;
const PARTS = new Set((process.env.BENCH_PARTS ?? 'small,large,switch').split(','));
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
  const node = process.execPath;
  const rows: [string, string[]][] = [
    ['node -e 0', [node, '-e', '0']],
    ['validate', [node, CLI, 'validate', example]],
    ['sync --dry-run', [node, CLI, example, '--base-dir', base, '--dry-run']],
    ['unchanged re-sync (cache hit)', [node, CLI, example, '--base-dir', base]],
    ['flows (the matrix)', [node, CLI, 'flows', example]],
    ['--help', [node, CLI, '--help']],
  ];
  let reference = referenceScript(env);
  const refBase = join(work, 'small-reference');
  const firstReference = reference ? spawnSync('python3', [reference, example, '--base-dir', refBase], { env, encoding: 'utf8' }) : undefined;
  if (firstReference && firstReference.status !== 0) {
    console.log(`  reference: fails on the example, left out: ${(firstReference.stderr || firstReference.stdout).split('\n')[0]}`);
    reference = undefined;
  }
  if (reference) {
    rows.push(['reference: sync --dry-run', ['python3', reference, example, '--base-dir', refBase, '--dry-run']]);
    rows.push(['reference: unchanged re-sync', ['python3', reference, example, '--base-dir', refBase]]);
  }
  const rounds = RUNS * 2 + 1;
  const times = rows.map(() => [] as number[]);
  for (let round = 0; round < rounds; round++) {
    for (const [i, [, argv]] of rows.entries()) {
      const start = performance.now();
      const r = spawnSync(argv[0], argv.slice(1), { env, encoding: 'utf8' });
      times[i].push(performance.now() - start);
      if (r.status !== 0) throw new Error(`${argv.join(' ')} failed: ${r.stderr}`);
    }
  }
  const medians = new Map(rows.map(([name], i) => [name, median(times[i])]));
  const nodeMs = medians.get('node -e 0') ?? 0;
  console.log(`small infra: the example (3 domains), ${rounds} alternating runs each (median); node -e 0: ${ms(nodeMs)}, target node + 30 ms = ${ms(nodeMs + 30)}`);
  console.log(`  code cache: ${codeCacheTaken() ? 'taken' : 'NOT taken (figures without it)'}`);
  for (const [name, t] of medians) {
    if (name === 'node -e 0') continue;
    const vsNode = name.startsWith('reference') ? '' : `node + ${(t - nodeMs).toFixed(0)} ms${t - nodeMs <= 30 ? '' : ', over the target'}`;
    const ref = name === 'sync --dry-run' ? medians.get('reference: sync --dry-run') : name.startsWith('unchanged') ? medians.get('reference: unchanged re-sync') : undefined;
    const vsRef = ref === undefined ? '' : `; the reference ×${(ref / t).toFixed(2)}`;
    console.log(`  ${name.padEnd(34)} ${ms(t)}${vsNode || vsRef ? `   (${vsNode}${vsRef})` : ''}`);
  }
  if (!firstReference) console.log(`  ${NO_REFERENCE}`);
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
    if (PARTS.has('small')) smallInfra(work, env);
    if (PARTS.has('large')) {
      console.log(`synthetic infra: 250 domains × 20 machines, ${(text.length / 1024 / 1024).toFixed(2)} MB of YAML, ${RUNS} runs each (median)`);
      console.log(`machine: ${execFileSync('nproc', { encoding: 'utf8' }).trim()} cores, node ${process.version}\n`);

      const runs: { full: number; copy: number; resync: number; validate: number; flows: number; refFull?: number; refResync?: number }[] = [];
      let writtenOnResync = -1;
      let treeFiles = 0;
      const reference = referenceScript(env);
      const referenceFile = join(work, 'infra-reference.yml');
      writeFileSync(referenceFile, stringify(forReference(syntheticInfra()), { lineWidth: 0 }));
      const timeReference = (base: string): number => {
        const start = performance.now();
        const r = spawnSync('python3', [reference ?? '', referenceFile, '--base-dir', base], { env, encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`the reference failed: ${r.stderr || r.stdout}`);
        return performance.now() - start;
      };
      for (let run = 0; run < RUNS; run++) {
        // A fresh directory each run: deleting 5,500 files right before would slow the disk down.
        const base = join(work, `tree-${run}`);
        // Flush the previous run's dirty pages first: a user's sync does not start while the kernel
        // is still writing back the 5,500 files of the one before.
        spawnSync('sync');
        const full = timeCli([infraFile, '--base-dir', base], env).ms;
        treeFiles = countFiles(base) - 1;
        // The disk's own cost for the same files in the same minute: the floor a full sync stands on.
        const copyStart = performance.now();
        execFileSync('cp', ['-r', base, `${base}-copy`]);
        const copy = performance.now() - copyStart;
        const before = statSync(join(base, 'host_vars', 'dom1-m1.yml')).mtimeMs;
        const again = timeCli([infraFile, '--base-dir', base, '--json'], env);
        writtenOnResync = (JSON.parse(again.stdout) as { written: string[] }).written.length;
        if (statSync(join(base, 'host_vars', 'dom1-m1.yml')).mtimeMs !== before) throw new Error('re-sync touched a file');
        const validate = timeCli(['validate', infraFile], env).ms;
        const flows = timeCli(['flows', infraFile, '--from', 'dom4-m0', '--to', 'dom5', '--port', '22'], env).ms;
        let refRuns = {};
        if (reference) {
          spawnSync('sync');
          const refBase = join(work, `reference-${run}`);
          refRuns = { refFull: timeReference(refBase), refResync: timeReference(refBase) };
        }
        runs.push({ full, copy, resync: again.ms, validate, flows, ...refRuns });
      }
      // This disk has slow spells (see the note at the end): a run whose cp -r took more than 1.5
      // times the fastest one's was in one, and its figures say more about the disk than the code.
      // Also in absolute terms: a quiet disk here copies a file in about 30 µs, a slow spell takes
      // 300 µs and more; a run wholly in a slow spell has no quick run to be compared with.
      const fastestCopy = Math.min(...runs.map((r) => r.copy));
      const slow = (r: (typeof runs)[number]) => r.copy > 1.5 * fastestCopy || r.copy / treeFiles > SLOW_COPY_MS_PER_FILE;
      const quietRuns = runs.filter((r) => !slow(r));
      const quiet = quietRuns.length ? quietRuns : runs;
      const of = (pick: (r: (typeof runs)[number]) => number | undefined): number => median(quiet.map(pick).filter((x): x is number => x !== undefined));
      const [full, copy, resync] = [of((r) => r.full), of((r) => r.copy), of((r) => r.resync)];
      console.log('end to end (a new process each run, start-up included)');
      const disk = !quietRuns.length
        ? `SLOW SPELL in every run (cp -r ${ms(fastestCopy).trim()} at best, over ${SLOW_COPY_MS_PER_FILE * 1000} µs a file): these figures say more about the disk than the code; run again in five minutes`
        : quietRuns.length === runs.length
          ? `quiet in every run (cp -r within 1.5× its fastest, ${ms(fastestCopy).trim()}, and under ${SLOW_COPY_MS_PER_FILE * 1000} µs a file)`
          : `SLOW SPELL in ${runs.length - quietRuns.length} of ${runs.length} runs (cp -r over 1.5× its fastest, ${ms(fastestCopy).trim()}, or over ${SLOW_COPY_MS_PER_FILE * 1000} µs a file): those runs are left out of the medians`;
      console.log(`  disk: ${disk}`);
      console.log(`  full sync into an empty directory  ${ms(full)}   (${treeFiles} files; ${(full / copy).toFixed(1)}× cp -r, target ≤ 3×)`);
      console.log(`    cp -r of that tree, for scale    ${ms(copy)}   (the disk alone, same minutes)`);
      console.log(`  unchanged re-sync                  ${ms(resync)}   (${writtenOnResync} files written)`);
      console.log(`  validate                           ${ms(of((r) => r.validate))}`);
      console.log(`  flows: one flow (domain side)      ${ms(of((r) => r.flows))}   (about as long as validate)`);
      if (reference) {
        const [refFull, refResync] = [of((r) => r.refFull), of((r) => r.refResync)];
        console.log(`  reference: full sync               ${ms(refFull)}   (anklume-gen ${(refFull / full).toFixed(1)}× faster, target ≥ 8×; the infra without its outside policy, which it does not know)`);
        console.log(`  reference: unchanged re-sync       ${ms(refResync)}   (anklume-gen ${(refResync / resync).toFixed(1)}× faster, target ≥ 20×)`);
      } else console.log(`  ${NO_REFERENCE}`);

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
        // As a full sync writes into directories it creates (tree/staging.ts).
        for (const f of files) writeFresh(join(base, f.path), f.content);
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
    }
    if (PARTS.has('switch')) await aiSwitchFigures();
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
    switchFigures(`${r.domains}-domain infra, scratch namespace, stand-ins for incus/systemctl/nvidia-smi`, r.standIns);
    if ('skipped' in r.incus) console.log(`  real Incus containers: skipped (${r.incus.skipped})`);
    else switchFigures('real Incus containers (3 domains; nvidia-smi a stand-in)', r.incus, { noFlush: 2000, flush: 2500 });
  } catch (err) {
    console.log(`  skipped: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
}

/**
 * A switch with and without the flush: the whole, Ansible's start-up, each Ansible task with the
 * parts its helper timed, then the rest. The targets (issue 18) are those of real Incus.
 */
function switchFigures(where: string, kinds: { noFlush: SwitchFigures; flush: SwitchFigures }, targets?: { noFlush: number; flush: number }): void {
  console.log(`  ${where}`);
  for (const [label, f, target] of [['--no-flush', kinds.noFlush, targets?.noFlush], ['with flush', kinds.flush, targets?.flush]] as const) {
    console.log(`    whole switch ${label.padEnd(21)} ${ms(f.totalMs)}   (${target ? `target ≤ ${target} ms; ` : ''}${f.runs} runs)`);
    console.log(`      ${'ansible-playbook start-up (an empty play, before each)'.padEnd(58)} ${ms(f.ansibleStartupMs)}`);
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
