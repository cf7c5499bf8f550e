/**
 * `anklume-gen ai-switch` (spec §8): move exclusive access to ai-tools to another domain, with the
 * GPU memory flushed in between.
 *
 * The promise: at any moment one domain (or none) reaches ai-tools, and what one domain left in GPU
 * memory is gone before the next gets in. Hence the order: checks → lock → revoke (nobody, and the
 * state file says so) → stop services → flush → grant (live and persisted) → start → record.
 * The host-side steps run in one playbook (roles/ai_switch) whose rescue restores the safe state;
 * when ansible itself dies (signal, crash), this module restores it.
 *
 * The pure half (checks, plan, texts) is aiPlan.ts; this module does the I/O.
 */
import { existsSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { execa } from 'execa';
import { runPlaybook } from './ansible.js';
import { readLiveHolders, type LiveHolders } from './aiStatus.js';
import { systemReason, writeAtomic } from '../core/files.js';
import { acquireLock, type Lock } from './lock.js';
import { catchSignals } from './signals.js';
import { nftApply } from '../nftables/nft.js';
import { gather } from '../infra/gather.js';
import { evaluate } from '../infra/pipeline.js';
import { sync } from '../tree/sync.js';
import {
  checkDomainArgument,
  checkPath,
  checkTarget,
  describePlan,
  extraVars,
  failureLogLine,
  jsonLogPath,
  label,
  planSwitch,
  renderPlaybook,
  securityWarning,
  switchLogLine,
  type RunFiles,
  type SwitchPlan,
} from './aiPlan.js';
import { formatGpuReport, gpuWarnings, readGpuReports, type GpuReport } from './gpuReport.js';
import { RULESET_FILE } from '../nftables/nftables.js';
import { AI_DOMAIN } from '../infra/validate.js';
import type { Diagnostic, Infra } from '../core/types.js';

// =============================================================================================
// I/O

export interface SwitchOptions {
  infraPath: string;
  baseDir: string;
  domain?: string;
  flush: boolean;
  dryRun: boolean;
  stateFile: string;
  logFile: string;
  installedRuleset: string;
  /** How long to wait for another switch to finish (0: fail at once). */
  waitMs: number;
  env: NodeJS.ProcessEnv;
  color: boolean;
  /** Human progress and ansible's output (stderr). */
  progress: (line: string) => void;
  ansibleOutput: (chunk: string) => void;
}

export type SwitchStatus = 'switched' | 'already' | 'planned' | 'failed' | 'refused';

export interface SwitchResult {
  status: SwitchStatus;
  /** Exit code for the CLI. */
  code: 0 | 1 | 2;
  from?: string | null;
  to?: string;
  flush?: boolean;
  messages: string[];
  errors: Diagnostic[];
  warnings: Diagnostic[];
  plan?: SwitchPlan;
  gpu?: GpuReport[];
  failedStep?: string;
  /** After a failure: what the safe state looks like (checked, not assumed). */
  safe?: { nobodyHasAccess: boolean; stateFileSaysNobody: boolean; servicesStarted: boolean | 'unknown' };
  /** On an Incus cluster only: its members, and those that did not confirm a step (none on success). */
  members?: string[];
  unconfirmedMembers?: string[];
}


interface PlaybookReport {
  ok: boolean;
  failed_task?: string;
  message?: string;
  revoked?: boolean;
  services_started?: boolean;
}

const refused = (code: 1 | 2, message: string, extra: Partial<SwitchResult> = {}): SwitchResult => ({ status: 'refused', code, messages: [message], errors: [{ message }], warnings: [], ...extra });

async function loadInfra(options: SwitchOptions): Promise<{ infra?: Infra; errors: Diagnostic[]; warnings: Diagnostic[]; stateProblem?: string }> {
  // The state file decides the enrichment's holder; a broken one must not block the switch that
  // repairs it, so it is read as "nobody" here (the live ruleset says who really has access).
  const env = { ...options.env, ANKLUME_STATE_FILE: options.stateFile };
  const gathered = await gather(options.infraPath, env);
  let prepared = evaluate(gathered);
  let stateProblem: string | undefined;
  const stateErrors = prepared.report.errors.filter((e) => e.file === gathered.stateFile && e.line === undefined);
  if (!prepared.infra && stateErrors.length && stateErrors.length === prepared.report.errors.length) {
    stateProblem = `${stateErrors[0].file}: ${stateErrors[0].message}`;
    prepared = evaluate({ ...gathered, state: { kind: 'none' } });
  }
  return { infra: prepared.infra, errors: prepared.report.errors, warnings: prepared.report.warnings, ...(stateProblem ? { stateProblem } : {}) };
}

function liveFrom(live: LiveHolders & { ok: true }, infra: Infra): string | null | undefined {
  if (live.holders.length === 0) return null;
  const [only] = live.holders;
  return live.holders.length === 1 && only !== AI_DOMAIN && only in infra.domains ? only : undefined;
}

async function writeRunFiles(plan: SwitchPlan): Promise<RunFiles> {
  const dir = await mkdtemp(join(tmpdir(), 'anklume-ai-switch-'));
  const files: RunFiles = {
    dir,
    playbook: join(dir, 'ai-switch.yml'),
    vars: join(dir, 'vars.json'),
    revoke: join(dir, 'revoke.nft'),
    grant: join(dir, 'grant.nft'),
    rulesetNone: join(dir, 'ruleset-none.nft'),
    rulesetNew: join(dir, 'ruleset-new.nft'),
    result: join(dir, 'result.json'),
    gpuRecords: join(dir, 'gpu'),
  };
  await mkdir(join(dir, 'tmp'));
  await Promise.all([
    writeFile(files.playbook, renderPlaybook(plan)),
    writeFile(files.vars, JSON.stringify(extraVars(plan, files), null, 2) + '\n'),
    writeFile(files.revoke, plan.revokeBatch),
    writeFile(files.grant, plan.grantBatch),
    writeFile(files.rulesetNone, plan.rulesetNone),
    writeFile(files.rulesetNew, plan.rulesetNew),
  ]);
  return files;
}

async function readReport(path: string): Promise<PlaybookReport | undefined> {
  try {
    const value = JSON.parse(await readFile(path, 'utf8')) as PlaybookReport;
    return typeof value === 'object' && value !== null && typeof value.ok === 'boolean' ? value : undefined;
  } catch {
    return undefined;
  }
}

export async function appendLog(path: string, line: string): Promise<string | undefined> {
  try {
    await mkdir(dirname(path), { recursive: true });
    await appendFile(path, line + '\n');
    return undefined;
  } catch (err) {
    return `could not append to ${path}: ${systemReason(err)}`;
  }
}

/** The JSON log beside the text log: one object per switch that ran, with its flush report. */
export async function appendJsonLog(plan: SwitchPlan, entry: { status: 'switched' | 'failed'; failed_step?: string; gpu: GpuReport[]; unconfirmed_members?: string[] }): Promise<string | undefined> {
  // unconfirmed_members: on a cluster only (the members that did not confirm a step).
  const line = JSON.stringify({ time: new Date().toISOString(), status: entry.status, from: plan.from, to: plan.to, flush: plan.flushes, ...(entry.failed_step ? { failed_step: entry.failed_step } : {}), gpu: entry.gpu, ...(entry.unconfirmed_members ? { unconfirmed_members: entry.unconfirmed_members } : {}) });
  return appendLog(jsonLogPath(plan.logFile), line);
}

export async function writeState(path: string, content: string): Promise<boolean> {
  try {
    await mkdir(dirname(path), { recursive: true });
    writeAtomic(path, content, { mode: 0o644, durable: true });
    return true;
  } catch {
    return false;
  }
}

async function tool(argv: string[], env: NodeJS.ProcessEnv): Promise<{ ok: boolean; detail: string }> {
  const r = await execa(argv[0], argv.slice(1), { env, extendEnv: false, reject: false, stdin: 'ignore', timeout: 60_000 });
  return { ok: r.exitCode === 0, detail: String(r.stderr || r.shortMessage || '').trim() };
}

/**
 * The safe state, restored from here: after ansible died without its rescue (signal, crash), or
 * to double-check after the rescue ran. Every step is attempted whatever the previous one did.
 */
async function restoreSafeState(plan: SwitchPlan, env: NodeJS.ProcessEnv, rescueRan: boolean): Promise<NonNullable<SwitchResult['safe']> & { problems: string[] }> {
  const problems: string[] = [];
  let live = await readLiveHolders();
  if (!rescueRan || !live.ok || live.holders.length > 0) {
    await nftApply(plan.revokeAllBatch).catch((err: Error) => problems.push(`emptying the holder set failed: ${err.message}`));
    // A partial switch may have left allow elements: replace the table by the no-holder ruleset.
    if (!rescueRan) await nftApply(plan.rulesetNone).catch((err: Error) => problems.push(`reloading the no-holder ruleset failed: ${err.message}`));
    live = await readLiveHolders();
  }
  const nobodyHasAccess = live.ok && live.holders.length === 0;
  if (!live.ok) problems.push(live.error);
  let servicesStarted: boolean | 'unknown' = 'unknown';
  if (!rescueRan) {
    for (const path of plan.persist) {
      if (!(await writeState(path, plan.rulesetNone))) problems.push(`could not write the no-holder ruleset to ${path}`);
    }
    servicesStarted = true;
    if (plan.services.length) {
      for (const machine of plan.gpuMachines) {
        const r = await tool(['incus', 'exec', machine, '--project', plan.project, '--', 'systemctl', 'start', ...plan.services], env);
        if (!r.ok) {
          servicesStarted = false;
          problems.push(`starting the services on ${machine} failed: ${r.detail}`);
        }
      }
    }
  }
  const stateFileSaysNobody = await writeState(plan.stateFile, '');
  if (!stateFileSaysNobody) problems.push(`could not write ${plan.stateFile}`);
  return { nobodyHasAccess, stateFileSaysNobody, servicesStarted, problems };
}

/** Forwards ansible's output line by line (the streams add a newline to each write). */
export function lineSplitter(write: (line: string) => void): { push: (chunk: string) => void; flush: () => void } {
  let pending = '';
  return {
    push(chunk) {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) write(line);
    },
    flush() {
      if (pending) write(pending);
      pending = '';
    },
  };
}

export async function aiSwitch(options: SwitchOptions): Promise<SwitchResult> {
  // 1. Checks: command line, infra, target, paths. Nothing is touched before they all pass.
  const argProblem = checkDomainArgument(options.domain);
  if (argProblem) return refused(2, argProblem);
  const to = options.domain as string;
  const persist = [options.installedRuleset, join(options.baseDir, RULESET_FILE)].map((p) => resolve(p));
  const procRoot = resolve(options.env.ANKLUME_PROC_ROOT || '/proc');
  for (const [what, path] of [['--state-file', options.stateFile], ['--installed-ruleset', persist[0]], ['--base-dir', persist[1]], ['ANKLUME_PROC_ROOT', procRoot]] as const) {
    const bad = checkPath(what, path);
    if (bad) return refused(2, bad);
  }
  const loaded = await loadInfra(options);
  if (!loaded.infra) return { status: 'refused', code: 1, messages: [`${options.infraPath} is not valid: fix it first (anklume-gen validate ${options.infraPath})`], errors: loaded.errors, warnings: loaded.warnings };
  const infra = loaded.infra;
  const targetProblem = checkTarget(infra, to, options.infraPath);
  if (targetProblem) return refused(1, targetProblem, { warnings: loaded.warnings });
  const warnings: Diagnostic[] = [...loaded.warnings];
  if (loaded.stateProblem) warnings.push({ message: `${loaded.stateProblem} (read as "nobody"; this switch rewrites it)` });

  // 2. Lock (not for a dry run: it writes nothing, not even a lock file).
  let lock: Lock | undefined;
  if (!options.dryRun) {
    try {
      lock = await acquireLock(`${options.stateFile}.lock`, { waitMs: options.waitMs });
    } catch (err) {
      return refused(1, (err as Error).message, { warnings });
    }
    if (lock.recovered) options.progress(`NOTE: took over a stale lock left by pid ${lock.recovered.pid} (started ${lock.recovered.startedAt}), which is no longer running`);
  }
  try {
    return await switchLocked(options, infra, to, persist, procRoot, warnings);
  } finally {
    await lock?.release();
  }
}

async function switchLocked(options: SwitchOptions, infra: Infra, to: string, persist: string[], procRoot: string, warnings: Diagnostic[]): Promise<SwitchResult> {
  // An Incus cluster: every member, through Ansible (loaded only there; one host never loads it).
  if (infra.global.cluster) return (await import('./clusterSwitch.js')).switchCluster(options, infra, to, persist, procRoot, warnings);
  const stateEnv = { ...options.env, ANKLUME_STATE_FILE: options.stateFile };
  // Read again under the lock: the switch that held it may have changed both.
  const [gathered, live] = await Promise.all([gather(options.infraPath, stateEnv), readLiveHolders()]);
  const state = gathered.state;
  const stateSays = state.kind === 'domain' ? state.domain : state.kind === 'absent' ? (infra.global.ai_access_default ?? null) : null;
  if (!live.ok && !options.dryRun) return refused(1, live.error, { warnings });

  // 3. Already the holder — on the wire and in the state file: nothing to do, nothing touched.
  if (live.ok && stateSays === to && live.holders.length === 1 && live.holders[0] === to) {
    return { status: 'already', code: 0, from: to, to, messages: [`AI access is already set to '${to}'. Nothing to do.`], errors: [], warnings };
  }
  const from = live.ok ? liveFrom(live, infra) : stateSays;
  if (live.ok && state.kind !== 'corrupt' && !(from === stateSays)) {
    warnings.push({ message: `the state file says ${stateSays === null ? 'nobody' : `'${stateSays}'`} holds AI access, the live ruleset says ${live.holders.length ? live.holders.map((h) => `'${h}'`).join(', ') : 'nobody'}: the switch starts from the live ruleset` });
  }
  const plan = planSwitch({ infra, infraPath: options.infraPath, from, to, flush: options.flush, stateFile: options.stateFile, logFile: options.logFile, persist, procRoot });
  if (!live.ok) plan.notes.push(`NOTE: ${live.error}; the plan starts from the state file`);

  if (options.dryRun) return { status: 'planned', code: 0, from: plan.from, to, flush: plan.flushes, messages: describePlan(plan), errors: [], warnings, plan };

  for (const note of plan.notes) options.progress(note);
  if (!options.flush) options.progress(securityWarning(plan));
  options.progress(`ai-switch: '${label(plan.from)}' -> '${to}' (flush: ${plan.flushes})`);

  const files = await writeRunFiles(plan);
  // From here a signal must not kill us half-way: it stops ansible, then the safe state is restored.
  const signals = catchSignals((sig) => options.progress(`ai-switch: ${sig} received: stopping the switch and restoring the safe state (nobody has AI access)`));
  const out = lineSplitter(options.ansibleOutput);
  try {
    const run = await runPlaybook({ playbook: files.playbook, varsFile: files.vars, env: options.env, color: options.color, onOutput: out.push, signal: signals.abort, tempDir: join(files.dir, 'tmp') });
    out.flush();
    const [report, gpu] = await Promise.all([readReport(files.result), plan.flushes ? readGpuReports(files.gpuRecords, plan.gpuTypes) : []]);
    const interrupted = signals.received;
    if (run.ok && report?.ok && !interrupted) {
      return await finishSuccess(plan, options, warnings, gpu);
    }
    const rescueRan = report !== undefined && report.ok === false;
    const step = interrupted ? `interrupted by ${interrupted}` : report?.failed_task ? `${report.failed_task}` : run.spawnError ? `starting ansible-playbook: ${run.spawnError}` : `ansible-playbook ended (${run.signal ? `signal ${run.signal}` : `exit ${run.exitCode}`}) without reporting`;
    const detail = report?.message ? `: ${report.message}` : '';
    const safe = await restoreSafeState(plan, options.env, rescueRan && !interrupted);
    if (rescueRan && report?.services_started !== undefined) safe.servicesStarted = report.services_started;
    return await finishFailure(options, plan, warnings, `${step}${detail}`, step, safe, gpu);
  } finally {
    signals.dispose();
    if (!options.env.ANKLUME_KEEP_RUN_DIR) await rm(files.dir, { recursive: true, force: true });
    else options.progress(`ai-switch: run files kept in ${files.dir}`);
  }
}

/**
 * The generated tree names the AI holder too (the AI policy in group_vars/all.yml): re-sync an
 * existing tree now, so that no generated file contradicts the state file (the new holder, or
 * nobody after a failure) until the next sync. Access has already been decided: a problem
 * here is a warning, never a different outcome.
 */
export async function refreshTree(options: SwitchOptions, plan: SwitchPlan, warnings: Diagnostic[]): Promise<string[]> {
  if (!existsSync(join(options.baseDir, 'group_vars', 'all.yml'))) return [];
  try {
    const report = await sync({ infraPath: options.infraPath, baseDir: options.baseDir, env: { ...options.env, ANKLUME_STATE_FILE: plan.stateFile } });
    if (report.errors.length) throw new Error(report.errors.map((e) => e.message).join('; '));
    return report.written.length ? [`Ansible tree in ${options.baseDir} updated: ${report.written.join(', ')}`] : [];
  } catch (err) {
    warnings.push({ message: `the Ansible tree in ${options.baseDir} may still name the previous holder (${err instanceof Error ? err.message : String(err)}); run 'anklume-gen sync ${options.infraPath} --base-dir ${options.baseDir}' (make sync)` });
    return [];
  }
}

async function finishSuccess(plan: SwitchPlan, options: SwitchOptions, warnings: Diagnostic[], gpu: GpuReport[]): Promise<SwitchResult> {
  // Trust, but check: the wire and the state file must both name the new holder.
  const [live, state] = await Promise.all([readLiveHolders(), readFile(plan.stateFile, 'utf8').catch(() => undefined)]);
  if (!live.ok || live.holders.length !== 1 || live.holders[0] !== plan.to || state !== `${plan.to}\n`) {
    const safe = await restoreSafeState(plan, options.env, false);
    const seen = live.ok ? (live.holders.join(', ') || 'nobody') : live.error;
    return finishFailure(options, plan, warnings, `final check: the live holder set names ${seen} and the state file holds ${JSON.stringify(state)}`, 'final check', safe, gpu);
  }
  for (const problem of await Promise.all([appendLog(plan.logFile, switchLogLine(new Date(), plan.from, plan.to, plan.flushes)), appendJsonLog(plan, { status: 'switched', gpu })])) {
    if (problem) warnings.push({ message: problem });
  }
  const messages = [`AI access switched: '${label(plan.from)}' -> '${plan.to}' (flush: ${plan.flushes})`];
  messages.push(...(await refreshTree(options, plan, warnings)));
  for (const g of gpu) {
    messages.push(...formatGpuReport(g).map((line) => `  ${line}`));
    warnings.push(...gpuWarnings(g).map((message) => ({ message })));
  }
  return { status: 'switched', code: 0, from: plan.from, to: plan.to, flush: plan.flushes, messages, errors: [], warnings, plan, gpu };
}

async function finishFailure(
  options: SwitchOptions,
  plan: SwitchPlan,
  warnings: Diagnostic[],
  what: string,
  step: string,
  safe: NonNullable<SwitchResult['safe']> & { problems: string[] },
  gpu: GpuReport[],
): Promise<SwitchResult> {
  const logProblems = await Promise.all([appendLog(plan.logFile, failureLogLine(new Date(), plan.from, plan.to, plan.flushes, what)), appendJsonLog(plan, { status: 'failed', failed_step: step, gpu })]);
  const finish = `anklume-gen ai-switch --domain ${plan.to} --infra ${options.infraPath}${options.baseDir === '.' ? '' : ` --base-dir ${options.baseDir}`}${plan.flush ? '' : ' --no-flush'} (make ai-switch DOMAIN=${plan.to}${plan.flush ? '' : ' NO_FLUSH=1'})`;
  const messages = [
    `ai-switch failed: ${what}`,
    safe.nobodyHasAccess ? 'Nobody has AI access now (the safe state).' : 'WARNING: could not confirm that nobody has AI access: check with anklume-gen ai-status.',
    `State file ${plan.stateFile}: ${safe.stateFileSaysNobody ? 'says nobody' : 'COULD NOT BE WRITTEN'}; services: ${safe.servicesStarted === true ? 'started again' : safe.servicesStarted === false ? 'NOT all started (see above)' : 'restart attempted'}.`,
    `To finish, fix the cause and run again: ${finish}`,
  ];
  const errors: Diagnostic[] = [{ message: `ai-switch failed: ${what}` }, ...safe.problems.map((message) => ({ message }))];
  for (const problem of logProblems) if (problem) warnings.push({ message: problem });
  for (const g of gpu) messages.push(...formatGpuReport(g).map((line) => `  ${line}`));
  if (safe.stateFileSaysNobody) messages.push(...(await refreshTree(options, plan, warnings)));
  return { status: 'failed', code: 1, from: plan.from, to: plan.to, flush: plan.flushes, messages, errors, warnings, plan, failedStep: step, safe: { nobodyHasAccess: safe.nobodyHasAccess, stateFileSaysNobody: safe.stateFileSaysNobody, servicesStarted: safe.servicesStarted }, gpu };
}
