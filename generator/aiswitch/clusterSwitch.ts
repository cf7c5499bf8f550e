/**
 * ai-switch on an Incus cluster (docs/multi-host.md, "A switch across members"): the same promise
 * as on one host, kept on every member. The truth is every member's holder sets; the records are
 * the state file here and the Incus project key user.anklume.ai_holder on ai-tools.
 *
 * The order: the key says nobody -> revoke on every member, read every member's sets back -> the
 * records say nobody -> stop the services and flush on the GPU machines' members -> grant on every
 * member, read every member's sets back -> the records name the new holder -> start the services.
 * Each step is one ansible-playbook run over the members' inventory (members in parallel, each
 * task with a time limit), whose last play writes what every member answered. A member is judged
 * by that answer alone (never by `incus cluster list`: a dead member stays ONLINE there ~18 s). A
 * member that does not confirm a step, or a run that dies, ends the switch closed: the safe state
 * on every member that answers, nobody in the records, no flush or grant after it, exit 1 naming
 * the member. The safe state is a run of its own, started from here whatever killed the step.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { existsSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { execa } from 'execa';
import { runPlaybook } from './ansible.js';
import { catchSignals } from './signals.js';
import { checkClusterRemote } from './clusterRemote.js';
import { compareInventory } from './clusterInventory.js';
import { formatGpuReport, gpuReportsFromRecords, gpuWarnings, type GpuReport } from './gpuReport.js';
import { HOLDER_RECORD_KEY } from './holderKey.js';
import { failureLogLine, label, planSwitch, securityWarning, switchLogLine, type SwitchPlan } from './aiPlan.js';
import { appendJsonLog, appendLog, lineSplitter, refreshTree, writeState, type SwitchOptions, type SwitchResult } from './aiSwitch.js';
import {
  clusterExtraVars,
  clusterForgetPairs,
  describeClusterPlan,
  grantFailure,
  interruptedCause,
  inventoryRefusal,
  keyElsewhere,
  keyWarning,
  liveHolder,
  pathsLeft,
  planCluster,
  renderClusterPlaybook,
  revokeFailure,
  safeStateLeft,
  stepFailure,
  stepHosts,
  stepOutput,
  stepRunTimeoutMs,
  unconfirmed,
  type ClusterPlan,
  type MemberAnswer,
  type MemberStep,
} from './clusterPlan.js';
import { gather } from '../infra/gather.js';
import { CLUSTER_INVENTORY } from '../tree/tree.js';
import type { Diagnostic, Infra } from '../core/types.js';

/** How long a write of the project key may take (without quorum it never returns: measured). */
const KEY_TIMEOUT_MS = 10_000;

interface Run {
  dir: string;
  memberFiles: string;
  plan: SwitchPlan;
  cluster: ClusterPlan;
  options: SwitchOptions;
  signal: AbortSignal;
  step: number;
  /** What this run last wrote to the project key; undefined: nothing yet (it names what it named before). */
  key?: string;
  /** Why the key is not written at all: the Incus that `incus` reaches is not this cluster. */
  keyElsewhere?: string;
  /** The flush reports the GPU machines' members brought back (empty until the stop step ran). */
  gpu: GpuReport[];
}

const refused = (message: string, warnings: Diagnostic[]): SwitchResult => ({ status: 'refused', code: 1, messages: [message], errors: [{ message }], warnings });

export async function switchCluster(options: SwitchOptions, infra: Infra, to: string, persist: string[], procRoot: string, warnings: Diagnostic[]): Promise<SwitchResult> {
  const inventory = resolve(options.baseDir, CLUSTER_INVENTORY);
  // The plan starts from the state file (this machine need not be a member, and no one member's
  // set is the truth); where the members' sets are read first, from what they all say.
  const gathered = await gather(options.infraPath, { ...options.env, ANKLUME_STATE_FILE: options.stateFile });
  const state = gathered.state;
  const from = state.kind === 'domain' && state.domain in infra.domains ? state.domain : state.kind === 'absent' ? (infra.global.ai_access_default ?? null) : null;
  const planFrom = (holder: string | null) => planSwitch({ infra, infraPath: options.infraPath, from: holder, to, flush: options.flush, stateFile: options.stateFile, logFile: options.logFile, persist, procRoot });
  let plan = planFrom(from);
  // Until every member's sets say who holds access, every domain's connections with ai-tools are forgotten.
  plan.forgetPairs = clusterForgetPairs(infra);
  const cluster = planCluster(plan, infra, { inventory, installedRuleset: persist[0], baseCopy: persist[1] });
  const base = { members: cluster.members, unconfirmedMembers: [] as string[] };
  const sync = `anklume-gen sync ${options.infraPath} --base-dir ${options.baseDir}`;
  // Before anything runs, dry run too: the members the playbooks name (infra.yml) are the ones
  // the inventory reaches, at their addresses.
  const mismatch = existsSync(inventory) ? await compareInventory(inventory, infra) : undefined;
  if (options.dryRun) {
    if (!existsSync(inventory)) plan.notes.push(`NOTE: ${inventory} does not exist yet: write it with '${sync}' (make sync) first (the switch reaches the members through it)`);
    else if (mismatch) return refused(inventoryRefusal(inventory, mismatch, sync), warnings);
    return { status: 'planned', code: 0, from: plan.from, to, flush: plan.flushes, messages: describeClusterPlan(plan, cluster), errors: [], warnings, plan, ...base };
  }
  if (!existsSync(inventory)) return refused(`${inventory} does not exist: the switch reaches the members through the inventory sync writes ('${sync}', make sync). Nothing was changed.`, warnings);
  if (mismatch) return refused(inventoryRefusal(inventory, mismatch, sync), warnings);

  const dir = await mkdtemp(join(tmpdir(), 'anklume-ai-switch-'));
  const signals = catchSignals((sig) => options.progress(`ai-switch: ${sig} received: stopping the switch and restoring the safe state on every member (nobody has AI access)`));
  try {
    const memberFiles = join(dir, 'member');
    await mkdir(join(dir, 'tmp'), { recursive: true });
    await mkdir(memberFiles);
    const writeMemberFiles = (p: SwitchPlan) => Promise.all([
      writeFile(join(memberFiles, 'revoke.nft'), p.revokeBatch),
      writeFile(join(memberFiles, 'grant.nft'), p.grantBatch),
      writeFile(join(memberFiles, 'ruleset-none.nft'), p.rulesetNone),
      writeFile(join(memberFiles, 'ruleset-new.nft'), p.rulesetNew),
    ]);
    await writeMemberFiles(plan);
    const run: Run = { dir, memberFiles, plan, cluster, options, signal: signals.abort, step: 0, gpu: [] };
    const failed = (what: string, step: string, bad: string[], stopped: boolean) => failClosed(run, warnings, what, step, bad, stopped);
    // A signal at any point ends the switch closed, with the moment it came in as the cause.
    const signalled = (sig: NodeJS.Signals, when: string, step: string, stopped: boolean) => failed(interruptedCause(sig, when), step, [], stopped);

    // When the state file names the new holder, read every member's holder sets first (read
    // only): if they all say it too, there is nothing to do. Otherwise the read would cost a run
    // (4 s on three members) to choose the exact batch, which each member's revoke does not need:
    // it is judged by what its sets read back, and falls back to the no-holder ruleset. A member
    // that cannot be read is no reason to stop: the revoke judges it.
    const read = from === to ? await runStep(run, 'read') : undefined;
    if (signals.received) return { status: 'failed', code: 1, from, to, messages: [`ai-switch: ${interruptedCause(signals.received, 'while reading the members\' holder sets')}. Nothing was changed.`], errors: [{ message: `interrupted by ${signals.received}` }], warnings, ...base };
    const live = read ? liveHolder(infra, cluster.members, read.answers) : { holder: undefined, seen: {} };
    if (live.holder === to && from === to) {
      return { status: 'already', code: 0, from: to, to, messages: [`AI access is already set to '${to}'. Nothing to do.`], errors: [], warnings, ...base };
    }
    if (live.holder !== undefined && live.holder !== from) {
      warnings.push({ message: `the state file says ${from === null ? 'nobody' : `'${from}'`} holds AI access, every member's holder sets say ${live.holder === null ? 'nobody' : `'${live.holder}'`}: the switch starts from the members' sets` });
    }
    if (live.holder !== undefined) {
      // Every member agrees: the batch from that holder, and its connections alone forgotten (as on one host).
      plan = planFrom(live.holder);
      run.plan = plan;
      await writeMemberFiles(plan);
    } else if (read) {
      plan.notes.push(`NOTE: the members' holder sets do not name one holder (${Object.entries(live.seen).map(([m, h]) => `${m}: ${h}`).join('; ')}): the switch starts from the state file, and forgets every domain's connections with ai-tools`);
    }
    for (const note of plan.notes) options.progress(note);
    if (!options.flush) options.progress(securityWarning(plan));
    options.progress(`ai-switch: '${label(plan.from)}' -> '${to}' (flush: ${plan.flushes}) on every member: ${cluster.members.join(', ')}`);

    // The key goes to the Incus that `incus` reaches (its default remote): only when that is this
    // cluster, or the record would be planted in another Incus. The sets decide access either way.
    const remote = await checkClusterRemote(options.env, cluster.members, KEY_TIMEOUT_MS / 1000);
    if (!remote.ok) {
      run.keyElsewhere = remote.why;
      warnings.push({ message: keyElsewhere(remote.why) });
    }
    // 0. The cluster's record says nobody before anything changes.
    await writeKey(run, '', warnings);
    if (signals.received) return await signalled(signals.received, 'before the revoke', 'record nobody', false);
    // 1. Revoke on every member; every member confirms, or the switch ends closed.
    const revoked = await memberStep(run, 'revoke');
    if (signals.received) return await signalled(signals.received, 'during the revoke', 'revoke', false);
    if (revoked.length) return await failed(revokeFailure(revoked), 'revoke', revoked.map((f) => f.member), false);
    const none = await records(plan, cluster, '', plan.rulesetNone);
    if (none) return await failed(none, 'record nobody', [], false);
    if (signals.received) return await signalled(signals.received, 'after the revoke, while nobody was recorded', 'record nobody', false);
    // 2. Services and flush where the GPU machines run.
    const stopping = cluster.gpuMembers.length > 0 && (plan.services.length > 0 || plan.flushes);
    if (stopping) {
      const stop = await runStep(run, 'stop');
      run.gpu = plan.flushes ? flushReports(stop.answers, plan, cluster, warnings) : [];
      const stopped = stop.bad;
      if (signals.received) return await signalled(signals.received, 'while the GPU services were stopped and GPU memory flushed', 'stop services and flush', true);
      if (stopped.length) return await failed(stepFailure('stop', stopped), 'stop services and flush', stopped.map((f) => f.member), true);
    }
    // 3. Grant on every member, then the records, then the services.
    const granted = await memberStep(run, 'grant');
    if (signals.received) return await signalled(signals.received, 'during the grant', 'grant', stopping);
    if (granted.length) return await failed(grantFailure(granted), 'grant', granted.map((f) => f.member), stopping);
    const recorded = await records(plan, cluster, `${to}\n`, plan.rulesetNew);
    if (recorded) return await failed(recorded, 'record the new holder', [], stopping);
    await writeKey(run, to, warnings);
    if (signals.received) return await signalled(signals.received, 'after the grant, while the new holder was recorded', 'record the new holder', stopping);
    if (stopping && plan.services.length) {
      const started = await memberStep(run, 'start');
      if (signals.received) return await signalled(signals.received, 'while the GPU services were started', 'start services', true);
      if (started.length) return await failed(stepFailure('start', started), 'start services', started.map((f) => f.member), true);
    }
    for (const problem of await Promise.all([appendLog(plan.logFile, switchLogLine(new Date(), plan.from, plan.to, plan.flushes)), appendJsonLog(plan, { status: 'switched', gpu: run.gpu, unconfirmed_members: [] })])) {
      if (problem) warnings.push({ message: problem });
    }
    const messages = [`AI access switched: '${label(plan.from)}' -> '${plan.to}' (flush: ${plan.flushes}) on every member: ${cluster.members.join(', ')}`];
    messages.push(...(await refreshTree(options, plan, warnings)));
    for (const g of run.gpu) {
      messages.push(...formatGpuReport(g).map((line) => `  ${line}`));
      warnings.push(...gpuWarnings(g).map((message) => ({ message })));
    }
    return { status: 'switched', code: 0, from: plan.from, to, flush: plan.flushes, messages, errors: [], warnings, plan, gpu: run.gpu, ...base };
  } finally {
    signals.dispose();
    if (!options.env.ANKLUME_KEEP_RUN_DIR) await rm(dir, { recursive: true, force: true });
    else options.progress(`ai-switch: run files kept in ${dir}`);
  }
}

/**
 * One step on its members: one ansible-playbook run with a time limit; what each member answered.
 * Returns the members that did not confirm it (all of them when the run reported nothing).
 */
async function memberStep(run: Run, step: MemberStep, signal: AbortSignal = run.signal): Promise<{ member: string; why: string }[]> {
  return (await runStep(run, step, signal)).bad;
}

/** One step's run: each member's answer (undefined when the run reported nothing), and who did not confirm. */
async function runStep(run: Run, step: MemberStep, signal: AbortSignal = run.signal): Promise<{ bad: { member: string; why: string }[]; answers?: Record<string, MemberAnswer | null> }> {
  const n = ++run.step;
  const playbook = join(run.dir, `${n}-${step}.yml`);
  const vars = join(run.dir, `${n}-${step}.json`);
  const result = join(run.dir, `${n}-${step}.answers.json`);
  await Promise.all([
    writeFile(playbook, renderClusterPlaybook(run.plan, run.cluster, step)),
    writeFile(vars, JSON.stringify(clusterExtraVars(run.plan, run.cluster, step, { memberFiles: run.memberFiles, result, run: basename(run.dir), seq: n }), null, 2) + '\n'),
  ]);
  const limit = new AbortController();
  const timer = setTimeout(() => limit.abort(), stepRunTimeoutMs(step));
  const stop = () => limit.abort();
  signal.addEventListener('abort', stop, { once: true });
  if (signal.aborted) limit.abort();
  const out = lineSplitter(run.options.ansibleOutput);
  const hosts = stepHosts(run.cluster, step);
  try {
    const r = await runPlaybook({
      playbook,
      varsFile: vars,
      extraArgs: ['-i', run.cluster.inventory, '--forks', String(Math.max(5, hosts.length))],
      env: run.options.env,
      color: run.options.color,
      onOutput: out.push,
      signal: limit.signal,
      tempDir: join(run.dir, 'tmp'),
    });
    out.flush();
    const answers = await readAnswers(result);
    const bad = unconfirmed(hosts, answers);
    if (!answers) {
      const why = limit.signal.aborted && !signal.aborted ? `the step's time limit (${stepRunTimeoutMs(step) / 1000} s) passed` : r.spawnError ? `ansible-playbook could not start: ${r.spawnError}` : `ansible-playbook ended (${r.signal ? `signal ${r.signal}` : `exit ${r.exitCode}`}) without reporting`;
      return { bad: hosts.map((member) => ({ member, why })) };
    }
    return { bad, answers };
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', stop);
  }
}

/**
 * The flush reports in the stop step's answers (member_boot.py's gpu_records), one per GPU machine
 * whose flush began, each taken from the member that runs it; a report that cannot be read is a
 * warning (the flush's own success or failure is the step's answer, judged apart).
 */
function flushReports(answers: Record<string, MemberAnswer | null> | undefined, plan: SwitchPlan, cluster: ClusterPlan, warnings: Diagnostic[]): GpuReport[] {
  const reports: GpuReport[] = [];
  for (const { member, machines } of cluster.gpuMembers) {
    const records = new Map<string, unknown>();
    // No output: the member did not answer, or its step failed before the flush.
    const found = stepOutput(answers?.[member])?.gpu_records;
    if (typeof found === 'object' && found !== null && !Array.isArray(found)) for (const [name, record] of Object.entries(found)) records.set(name, record);
    const types = Object.fromEntries(machines.map((m) => [m, plan.gpuTypes[m] ?? 'lxc'] as const));
    const read = gpuReportsFromRecords(records, types);
    reports.push(...read.reports);
    if (read.unreadable.length) warnings.push({ message: `the flush report of ${read.unreadable.join(', ')} from member ${member} could not be read: it is left out (the flush itself is judged by the member's answer)` });
  }
  return reports;
}

async function readAnswers(path: string): Promise<Record<string, MemberAnswer | null> | undefined> {
  try {
    const value = JSON.parse(await readFile(path, 'utf8')) as unknown;
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, MemberAnswer | null>) : undefined;
  } catch {
    return undefined;
  }
}

/** The records on this machine: the state file, and the tree's copy of the ruleset. A problem, or undefined. */
async function records(plan: SwitchPlan, cluster: ClusterPlan, state: string, ruleset: string): Promise<string | undefined> {
  const problems: string[] = [];
  for (const path of cluster.controllerPersist) if (!(await writeState(path, ruleset))) problems.push(`could not write ${path}`);
  if (!(await writeState(plan.stateFile, state))) problems.push(`could not write ${plan.stateFile}`);
  return problems.length ? problems.join('; ') : undefined;
}

/** The project key; a failed or timed-out write is a warning: the sets decide access. */
async function writeKey(run: Run, value: string, warnings: Diagnostic[]): Promise<boolean> {
  if (run.keyElsewhere !== undefined) return false;
  const r = await execa('incus', ['project', 'set', 'ai-tools', HOLDER_RECORD_KEY, value], { env: run.options.env, extendEnv: false, reject: false, stdin: 'ignore', timeout: KEY_TIMEOUT_MS }).catch((err: Error) => ({ exitCode: 1, stderr: err.message, shortMessage: err.message, timedOut: false }));
  if (r.exitCode === 0) {
    run.key = value;
    return true;
  }
  warnings.push({ message: keyWarning(value, r.timedOut ? `no answer in ${KEY_TIMEOUT_MS / 1000} s` : String(r.stderr || r.shortMessage || 'failed')) });
  return false;
}

/**
 * Fail closed: the safe state on every member (its own run, with its own time limit, whatever
 * ended the step: a signal, a dead ansible, a member that did not answer), nobody in both records,
 * the services started again where they were stopped, and the failure logged with the members
 * that did not confirm.
 */
async function failClosed(run: Run, warnings: Diagnostic[], what: string, step: string, bad: string[], stopped: boolean): Promise<SwitchResult> {
  const { plan, cluster, options } = run;
  run.options.progress(`ai-switch: ${what}; restoring the safe state on every member`);
  // A fresh signal: the one that stopped the step must not stop the safe state too.
  const safeLeft = await memberStep(run, 'safe', new AbortController().signal);
  const problems: string[] = [];
  if (safeLeft.length) problems.push(safeStateLeft(safeLeft));
  const recorded = await records(plan, cluster, '', plan.rulesetNone);
  if (recorded) problems.push(recorded);
  const keyBefore = run.key;
  const keyWritten = await writeKey(run, '', warnings);
  let servicesStarted: boolean | 'unknown' = 'unknown';
  if (stopped && plan.services.length) {
    const notStarted = await memberStep(run, 'start', new AbortController().signal);
    servicesStarted = notStarted.length === 0;
    if (notStarted.length) problems.push(stepFailure('start', notStarted));
  } else if (!stopped) servicesStarted = true;
  const unconfirmedMembers = [...new Set([...bad, ...safeLeft.map((f) => f.member)])].sort();
  const logProblems = await Promise.all([
    appendLog(plan.logFile, failureLogLine(new Date(), plan.from, plan.to, plan.flushes, what)),
    appendJsonLog(plan, { status: 'failed', failed_step: step, gpu: run.gpu, unconfirmed_members: unconfirmedMembers }),
  ]);
  for (const problem of logProblems) if (problem) warnings.push({ message: problem });
  const nobodyHasAccess = safeLeft.length === 0;
  const stateFileSaysNobody = !recorded;
  const finish = `anklume-gen ai-switch --domain ${plan.to} --infra ${options.infraPath}${options.baseDir === '.' ? '' : ` --base-dir ${options.baseDir}`}${plan.flush ? '' : ' --no-flush'}`;
  const messages = [
    `ai-switch failed: ${what}`,
    pathsLeft(cluster, safeLeft.map((f) => f.member)),
    `State file ${plan.stateFile}: ${stateFileSaysNobody ? 'says nobody' : 'COULD NOT BE WRITTEN'}; project key ${HOLDER_RECORD_KEY}: ${keyWritten ? 'says nobody' : run.keyElsewhere !== undefined ? 'NOT WRITTEN (the default incus remote is not this cluster)' : `COULD NOT BE WRITTEN (it may still name ${keyBefore === undefined ? 'the holder it named before the switch' : keyBefore ? `'${keyBefore}'` : 'nobody'})`}; services: ${servicesStarted === true ? (stopped ? 'started again' : 'not stopped') : servicesStarted === false ? 'NOT all started (see above)' : 'restart attempted'}.`,
    `Members that did not confirm: ${unconfirmedMembers.join(', ') || 'none'}.`,
    `To finish, fix the cause and run again: ${finish}`,
  ];
  for (const g of run.gpu) messages.push(...formatGpuReport(g).map((line) => `  ${line}`));
  if (stateFileSaysNobody) messages.push(...(await refreshTree(options, plan, warnings)));
  const errors: Diagnostic[] = [{ message: `ai-switch failed: ${what}` }, ...problems.map((message) => ({ message }))];
  return {
    status: 'failed',
    code: 1,
    from: plan.from,
    to: plan.to,
    flush: plan.flushes,
    messages,
    errors,
    warnings,
    plan,
    failedStep: step,
    safe: { nobodyHasAccess, stateFileSaysNobody, servicesStarted },
    gpu: run.gpu,
    members: cluster.members,
    unconfirmedMembers,
  };
}
