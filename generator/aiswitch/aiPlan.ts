/**
 * ai-switch, the pure half: checks, the plan (who, what, which nft batches), the playbook and the
 * texts (log lines, SECURITY warning, dry-run). aiSwitch.ts runs it.
 */
import { DEFAULT_AI_SERVICES } from '../infra/enrich.js';
import { domainNotFound, isDomainName } from '../infra/names.js';
import { bridgeOf, renderRuleset, revokeAllBatch, switchBatch } from '../nftables/nftables.js';
import { domainSubnet } from '../nftables/memberSets.js';
import { render } from '../core/templates.js';
import { AI_DOMAIN, hasGpu } from '../infra/validate.js';
import type { Infra, MachineType, Mapping } from '../core/types.js';

// Checks

/** A problem with the command line itself (exit 2). */
export function checkDomainArgument(domain: string | undefined): string | undefined {
  if (domain === undefined || domain === '') return 'Missing required --domain argument';
  if (!isDomainName(domain)) return `Invalid domain name: ${domain} (must be DNS-safe${isDomainName(domain.toLowerCase()) ? `, lowercase; did you mean '${domain.toLowerCase()}'?` : ''})`;
  return undefined;
}

/** A problem with the target in this infra (exit 1). */
export function checkTarget(infra: Infra, domain: string, infraPath: string): string | undefined {
  if (infra.global.ai_access_policy !== 'exclusive') {
    return `ai_access_policy is not 'exclusive' in ${infraPath}: every domain may reach ai-tools, there is no exclusive access to switch (set global.ai_access_policy: exclusive)`;
  }
  if (domain === AI_DOMAIN) return `Cannot switch AI access to '${AI_DOMAIN}' itself`;
  if (!(domain in infra.domains)) return domainNotFound(domain, Object.keys(infra.domains).filter((name) => name !== AI_DOMAIN), infraPath);
  return undefined;
}

/**
 * Ansible templates every string it reads; a path holding `{{` would run as Jinja. Paths are the
 * only user text that reaches the playbook (names are DNS-safe), so they are refused here.
 */
export function checkPath(label: string, path: string): string | undefined {
  return /\{[{%#]/.test(path) ? `${label} ${JSON.stringify(path)} contains '{{', '{%' or '{#', which Ansible would evaluate; use another path` : undefined;
}

// what the infra says about the AI domain

/** The ai-tools machines with GPU access (one under gpu_policy: exclusive, maybe more if shared). */
export function gpuMachines(infra: Infra): string[] {
  const ai = infra.domains[AI_DOMAIN];
  if (!ai) return [];
  return Object.entries(ai.machines ?? {})
    .filter(([, m]) => hasGpu(m as Mapping, ai as unknown as Mapping))
    .map(([name]) => name)
    .sort();
}

/** Each GPU machine's type: it decides where the VRAM flush runs (lxc: on the host; vm: inside). */
export function gpuMachineTypes(infra: Infra): Record<string, MachineType> {
  const machines = infra.domains[AI_DOMAIN]?.machines ?? {};
  return Object.fromEntries(gpuMachines(infra).map((name) => [name, machines[name].type ?? 'lxc']));
}

export function aiServices(infra: Infra): string[] {
  return infra.global.ai_services ?? DEFAULT_AI_SERVICES;
}

// the plan

export interface PlanInput {
  infra: Infra;
  infraPath: string;
  /** The live holder: a domain, null (nobody), or undefined when the live set is not one known domain. */
  from: string | null | undefined;
  to: string;
  flush: boolean;
  stateFile: string;
  logFile: string;
  persist: string[];
  /** Where the host's processes are read (ANKLUME_PROC_ROOT). */
  procRoot: string;
}

export interface SwitchPlan {
  infraPath: string;
  from: string | null;
  to: string;
  /** Flush requested (no --no-flush). */
  flush: boolean;
  /** A flush will really happen: requested and there is a GPU machine. */
  flushes: boolean;
  project: string;
  gpuMachines: string[];
  gpuTypes: Record<string, MachineType>;
  services: string[];
  /** global.ai_vram_scrub_command, run in each GPU machine after the kill ([]: none). */
  scrubCommand: string[];
  procRoot: string;
  aiBridge: string;
  newBridge: string;
  /** Run first: the live holder's elements out (or, holder unknown, the holder set emptied). */
  revokeBatch: string;
  /**
   * Then [source, destination] subnets whose tracked connections are forgotten: between ai-tools
   * and the old holder (every client domain when the live holder is unknown), so that no tracked
   * connection joins ai-tools to a domain without access.
   */
  forgetPairs: [string, string][];
  /** Run after the flush: the new holder's elements in. */
  grantBatch: string;
  /** The net change, as one transaction (what the two batches add up to). */
  switchBatch: string;
  /** The safe state as one batch, whatever the live table holds: every holder set emptied. */
  revokeAllBatch: string;
  /** Full rulesets: the safe state (nobody) and the target, for the host's persisted copies. */
  rulesetNone: string;
  rulesetNew: string;
  stateFile: string;
  logFile: string;
  persist: string[];
  notes: string[];
}

/** The connections a revoke forgets: the old holder's with ai-tools (none: nobody had any), or every client domain's when unknown. */
export function forgetPairs(infra: Infra, old: string | null | undefined): [string, string][] {
  if (old === null || !(AI_DOMAIN in infra.domains)) return [];
  const clients = old === undefined ? Object.keys(infra.domains).filter((d) => d !== AI_DOMAIN) : [old];
  const ai = domainSubnet(infra, AI_DOMAIN);
  return clients.flatMap((d): [string, string][] => [[domainSubnet(infra, d), ai], [ai, domainSubnet(infra, d)]]);
}

export function planSwitch(input: PlanInput): SwitchPlan {
  const { infra, to } = input;
  const known = input.from === null || (typeof input.from === 'string' && input.from !== AI_DOMAIN && input.from in infra.domains);
  const from = known ? (input.from as string | null) : null;
  const machines = gpuMachines(infra);
  const services = aiServices(infra);
  const notes: string[] = [];
  if (!known) notes.push('the live holder set does not name exactly one known domain: the revoke empties it whatever it holds');
  if (machines.length === 0) notes.push(`NOTE: no machine of '${AI_DOMAIN}' has GPU access: no service to stop or start, no GPU memory to flush; only network access moves`);
  else if (services.length === 0) notes.push('NOTE: global.ai_services is empty: no service is stopped or started');
  return {
    infraPath: input.infraPath,
    from,
    to,
    flush: input.flush,
    flushes: input.flush && machines.length > 0,
    project: AI_DOMAIN,
    gpuMachines: machines,
    gpuTypes: gpuMachineTypes(infra),
    services,
    scrubCommand: infra.global.ai_vram_scrub_command ?? [],
    procRoot: input.procRoot,
    aiBridge: bridgeOf(AI_DOMAIN),
    newBridge: bridgeOf(to),
    revokeBatch: known ? switchBatch(infra, from, null) : revokeAllBatch(infra),
    revokeAllBatch: revokeAllBatch(infra),
    forgetPairs: forgetPairs(infra, known ? from : undefined),
    grantBatch: switchBatch(infra, null, to),
    switchBatch: switchBatch(infra, from, to),
    rulesetNone: renderRuleset(infra, null),
    rulesetNew: renderRuleset(infra, to),
    stateFile: input.stateFile,
    logFile: input.logFile,
    persist: input.persist,
    notes,
  };
}

export function renderPlaybook(plan: SwitchPlan): string {
  return render('ai-switch/playbook.yml.hbs', {
    infraLabel: plan.infraPath,
    project: plan.project,
    gpuMachines: plan.gpuMachines,
    gpuTypes: plan.gpuTypes,
    services: plan.services,
    scrubCommand: plan.scrubCommand,
    aiBridge: plan.aiBridge,
    newBridge: plan.newBridge,
    stateFile: plan.stateFile,
    persist: plan.persist,
  });
}

/** The per-switch variables, passed as one JSON document (`-e @vars.json`). */
export function extraVars(plan: SwitchPlan, files: RunFiles): Record<string, unknown> {
  return {
    ai_switch_new: plan.to,
    ai_switch_old: plan.from ?? '',
    ai_switch_flush: plan.flushes,
    ai_switch_revoke_batch: files.revoke,
    ai_switch_forget_pairs: plan.forgetPairs,
    ai_switch_grant_batch: files.grant,
    ai_switch_ruleset_none: files.rulesetNone,
    ai_switch_ruleset_new: files.rulesetNew,
    ai_switch_result_file: files.result,
    ai_switch_proc_root: plan.procRoot,
    ai_switch_gpu_record_dir: files.gpuRecords,
  };
}

/** How a holder reads in messages and logs: a domain, or <none>. */
export const label = (holder: string | null) => holder ?? '<none>';

export function securityWarning(plan: Pick<SwitchPlan, 'from' | 'to'>): string {
  return `SECURITY: --no-flush: GPU memory is NOT flushed. '${plan.to}' may read what '${label(plan.from)}' left in VRAM (model weights, inference caches, prompts). Use --no-flush only when speed matters more than isolation, between domains that trust each other.`;
}

/** Single-line text for the log (a message from a tool may hold newlines). */
const oneLine = (text: string) => text.replace(/\s+/g, ' ').trim();

export function switchLogLine(at: Date, from: string | null, to: string, flushed: boolean): string {
  return `${at.toISOString()} switched ai-tools access: '${label(from)}' -> '${to}' flush=${flushed}`;
}

/**
 * The detail of a switch, for the JSON log beside the text log (`ai-switch.log` -> `ai-switch.jsonl`):
 * the text log keeps its one line per switch, this one holds the flush report.
 */
export function jsonLogPath(logFile: string): string {
  return `${logFile.replace(/\.log$/, '')}.jsonl`;
}

export function failureLogLine(at: Date, from: string | null, to: string, flush: boolean, what: string): string {
  return `${at.toISOString()} FAILED switch of ai-tools access: '${label(from)}' -> '${to}' flush=${flush}: ${oneLine(what)}; nobody has AI access`;
}

/** The dry-run text: who, flush or not, what the services and GPU steps touch, the exact nft change. */
export function describePlan(plan: SwitchPlan): string[] {
  const lines = [
    `ai-switch plan (dry run: nothing is changed)`,
    `  AI access: '${label(plan.from)}' -> '${plan.to}'`,
    `  GPU machine(s) of ${plan.project}: ${plan.gpuMachines.join(', ') || 'none'}; services: ${plan.services.join(', ') || 'none'}`,
    `  VRAM flush: ${plan.flushes ? "yes (kill the GPU machine's compute processes, verify none left, try nvidia-smi --gpu-reset on each GPU no process uses)" : 'no'}`,
    ...(plan.flushes ? flushSteps(plan) : []),
    ...plan.notes.map((n) => `  ${n}`),
    `  Steps: 1 revoke '${label(plan.from)}' (nobody has access), 2 stop services, ${plan.flushes ? '3 flush GPU memory' : '3 (no flush)'}, 4 grant '${plan.to}', 5 start services, 6 record`,
    `  Would write: ${[...plan.persist, plan.stateFile].join(', ')}; would append to ${plan.logFile} and ${jsonLogPath(plan.logFile)}`,
    `Ruleset change, step 1 (revoke):`,
    plan.revokeBatch.trimEnd(),
    `Ruleset change, step 4 (grant):`,
    plan.grantBatch.trimEnd(),
  ];
  if (!plan.flush) lines.push(securityWarning(plan));
  return lines;
}

/** Where each flush step runs, per GPU machine, for the dry run. */
function flushSteps(plan: SwitchPlan): string[] {
  const lines = plan.gpuMachines.map((m) =>
    plan.gpuTypes[m] === 'vm'
      ? `    ${m} (vm): nvidia-smi, kill -9 and the reset run inside the VM (incus exec ${m} --project ${plan.project} -- ...): its PIDs are its own`
      : `    ${m} (lxc): nvidia-smi, kill -9 and the reset run on the host: compute processes whose cgroup (${plan.procRoot}/<pid>/cgroup) is ${m}'s are killed, the host's and other containers' are reported and left alone; a GPU is reset only when no process uses it`,
  );
  lines.push(
    plan.scrubCommand.length
      ? `    VRAM scrub after the kill, in each GPU machine (its failure fails the switch): ${plan.scrubCommand.map(shellWord).join(' ')}`
      : '    VRAM scrub: none (global.ai_vram_scrub_command is not set)',
  );
  return lines;
}

/** A command word as a shell would need it, so that the dry run shows exactly what runs. */
const shellWord = (w: string) => (/^[A-Za-z0-9_./=:@%+,-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`);

export interface RunFiles {
  dir: string;
  playbook: string;
  vars: string;
  revoke: string;
  grant: string;
  rulesetNone: string;
  rulesetNew: string;
  result: string;
  /** Where the flush steps record what they saw (gpuReport.ts reads it back). */
  gpuRecords: string;
}
