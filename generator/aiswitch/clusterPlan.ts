/**
 * ai-switch on an Incus cluster, the pure half: which member does what, the per-step playbook and
 * its variables, how a member's answer is judged, and every text of the cluster's switch (the dry
 * run, the failures). clusterSwitch.ts runs it; aiPlan.ts holds what a cluster shares with one host
 * (the batches, the rulesets, the GPU machines). docs/multi-host.md, "A switch across members".
 */
import { render } from '../core/templates.js';
import { AI_DOMAIN } from '../infra/validate.js';
import { bridgeOf } from '../nftables/nftables.js';
import { domainSubnet } from '../nftables/memberSets.js';
import { describePlan, forgetPairs, label, type SwitchPlan } from './aiPlan.js';
import { HOLDER_RECORD_KEY } from './holderKey.js';
import type { InventoryMismatch } from './clusterInventory.js';
import type { Infra } from '../core/types.js';

/** A step of the switch on members (roles/ai_switch/tasks/member.yml, switch_step.py member-<step>). */
export type MemberStep = 'read' | 'revoke' | 'stop' | 'grant' | 'start' | 'safe';

/**
 * How long a member's step may take (one task: the nft steps take well under a second, but SSH to
 * a member that answers slowly counts too), and the stop step, which flushes GPU memory and runs
 * global.ai_vram_scrub_command, whose time is the user's. The whole ansible-playbook run gets a
 * minute more (its start, connections, the report).
 */
export const MEMBER_STEP_TIMEOUT_S = 30;
export const FLUSH_STEP_TIMEOUT_S = 600;
export const stepTimeoutS = (step: MemberStep): number => (step === 'stop' ? FLUSH_STEP_TIMEOUT_S : MEMBER_STEP_TIMEOUT_S);
export const stepRunTimeoutMs = (step: MemberStep): number => (stepTimeoutS(step) + 60) * 1000;

export interface ClusterPlan {
  /** Every member of global.cluster, as infra.yml names them. */
  members: string[];
  /** The members that run machines of ai-tools (GPU or not): who can be reached there depends on them. */
  aiMembers: string[];
  /** The members that run GPU machines of ai-tools, each with its machines. */
  gpuMembers: { member: string; machines: string[] }[];
  /** The members' inventory that sync wrote (inventory/_cluster.yml under --base-dir). */
  inventory: string;
  /** Each member's own copies of the ruleset (its boot copy: --installed-ruleset). */
  memberPersist: string[];
  /** The copies of the ruleset on the machine that runs anklume-gen (<base-dir>/nftables/anklume.nft). */
  controllerPersist: string[];
  /** After the grant, what every member must read back in each holder set. */
  expectGrant: Record<string, string[]>;
}

/** Whether the infra describes an Incus cluster (global.cluster). */
export const isCluster = (infra: Infra): boolean => infra.global.cluster !== undefined;

/**
 * The cluster's plan around a switch's plan. On a cluster the switch starts from the records (the
 * controller need not be a member, and no one member's set is the truth), so the revoke forgets
 * the tracked connections of every client domain with ai-tools, not only the recorded holder's.
 */
export function planCluster(plan: SwitchPlan, infra: Infra, paths: { inventory: string; installedRuleset: string; baseCopy: string }): ClusterPlan {
  const members = Object.keys(infra.global.cluster?.members ?? {}).sort();
  const machines = infra.domains[AI_DOMAIN]?.machines ?? {};
  const byMember = new Map<string, string[]>();
  for (const name of plan.gpuMachines) {
    const member = machines[name]?.member ?? infra.domains[AI_DOMAIN]?.member;
    if (member) byMember.set(member, [...(byMember.get(member) ?? []), name]);
  }
  const aiMembers = new Set(Object.values(machines).map((m) => m.member ?? infra.domains[AI_DOMAIN]?.member).filter((m): m is string => m !== undefined));
  return {
    members,
    aiMembers: members.filter((m) => aiMembers.has(m)),
    gpuMembers: [...byMember].sort(([a], [b]) => a.localeCompare(b)).map(([member, list]) => ({ member, machines: list })),
    inventory: paths.inventory,
    memberPersist: [paths.installedRuleset],
    controllerPersist: [paths.baseCopy],
    expectGrant: { ai_holder: [bridgeOf(plan.to)], ai_holder_subnet: [domainSubnet(infra, plan.to)] },
  };
}

/**
 * Who holds access on the wire, from every member's holder sets (the read step): a domain or null
 * when every member answered and all say the same (ai_holder and ai_holder_subnet agreeing), else
 * undefined. `seen` says what each member holds, for the messages.
 */
export function liveHolder(infra: Infra, members: string[], answers: Record<string, MemberAnswer | null> | undefined): { holder: string | null | undefined; seen: Record<string, string> } {
  const seen: Record<string, string> = {};
  const holders = members.map((member) => {
    const answer = answers?.[member];
    const sets = judgeAnswer(answer) === undefined ? stepOutput(answer)?.sets : undefined;
    if (!sets || typeof sets !== 'object') {
      seen[member] = 'not read';
      return undefined;
    }
    const ai = (sets as Record<string, unknown>).ai_holder;
    const sub = (sets as Record<string, unknown>).ai_holder_subnet;
    const list = (v: unknown) => (Array.isArray(v) ? v.map(String) : []);
    const [bridges, subnets] = [list(ai), sub === undefined ? undefined : list(sub)];
    let holder: string | null | undefined;
    if (bridges.length === 0 && (subnets?.length ?? 0) === 0) holder = null;
    else if (bridges.length === 1 && bridges[0].startsWith('net-')) {
      const d = bridges[0].slice('net-'.length);
      holder = d !== AI_DOMAIN && d in infra.domains && (subnets === undefined || (subnets.length === 1 && subnets[0] === domainSubnet(infra, d))) ? d : undefined;
    }
    seen[member] = holder === null ? 'nobody' : holder ?? `[${bridges.join(', ')}] [${(subnets ?? []).join(', ')}]`;
    return holder;
  });
  const first = holders[0];
  return { holder: holders.every((h) => h !== undefined && h === first) ? first : undefined, seen };
}

/** A step's JSON output (Ansible may hand it over as a mapping already). */
export function stepOutput(answer: MemberAnswer | null | undefined): Record<string, unknown> | undefined {
  if (!answer?.stdout) return undefined;
  if (typeof answer.stdout === 'object') return answer.stdout;
  try {
    const value = JSON.parse(answer.stdout) as unknown;
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Every client domain's connections with ai-tools, both ways: what a cluster's revoke forgets. */
export const clusterForgetPairs = (infra: Infra): [string, string][] => forgetPairs(infra, undefined);

/** The members a step runs on: every member, or those that run GPU machines (services, flush). */
export function stepHosts(cluster: ClusterPlan, step: MemberStep): string[] {
  return step === 'stop' || step === 'start' ? cluster.gpuMembers.map((g) => g.member) : cluster.members;
}

const TITLES: Record<MemberStep, string> = {
  read: 'Read every member\'s holder sets (read only)',
  revoke: 'Revoke AI access on every member and read every holder set back',
  stop: 'Stop the GPU services and flush GPU memory on the members that run the GPU machines',
  grant: 'Grant AI access on every member and read every holder set back',
  start: 'Start the GPU services on the members that run the GPU machines',
  safe: 'The safe state on every member: every holder set emptied, the no-holder ruleset, read back',
};

export function renderClusterPlaybook(plan: SwitchPlan, cluster: ClusterPlan, step: MemberStep): string {
  return render('ai-switch/cluster-playbook.yml.hbs', {
    infraLabel: plan.infraPath,
    step,
    title: TITLES[step],
    hosts: stepHosts(cluster, step),
    members: cluster.members,
    project: plan.project,
    gpuMembers: cluster.gpuMembers,
    services: plan.services,
    gpuTypes: plan.gpuMachines.map((machine) => ({ machine, type: plan.gpuTypes[machine] ?? 'lxc' })),
    scrubCommand: plan.scrubCommand,
  });
}

/**
 * The per-step variables (`-e @vars.json`): the folder copied to the members, the report's file,
 * and this run's name and the step's number (the fence the safe state records on each member).
 */
export function clusterExtraVars(plan: SwitchPlan, cluster: ClusterPlan, step: MemberStep, files: { memberFiles: string; result: string; run: string; seq: number }): Record<string, unknown> {
  return {
    ai_switch_member_files: files.memberFiles,
    ai_switch_member_timeout: stepTimeoutS(step),
    ai_switch_member_run_id: files.run,
    ai_switch_member_seq: files.seq,
    ai_switch_member_persist: cluster.memberPersist,
    ai_switch_member_expect: cluster.expectGrant,
    ai_switch_forget_pairs: plan.forgetPairs,
    ai_switch_flush: plan.flushes,
    ai_switch_new: plan.to,
    ai_switch_new_bridge: plan.newBridge,
    ai_switch_result_file: files.result,
  };
}

/** What tasks/member.yml keeps of a member's step (ai_switch_member_answer); null: no answer. */
export interface MemberAnswer {
  unreachable?: string;
  error?: string;
  rc?: number | string;
  msg?: string;
  /** The step's JSON output: Ansible hands a string that reads as a mapping over as one. */
  stdout?: string | Record<string, unknown>;
  stderr?: string;
}

const oneLine = (text: string) => text.replace(/\s+/g, ' ').trim();

/** Why a member's step is not confirmed; undefined when it is (the step ran and said so; a failed flush is a failed step). */
export function judgeAnswer(answer: MemberAnswer | null | undefined): string | undefined {
  if (!answer) return 'it gave no answer (ansible-playbook did not report it: not in the inventory, or stopped first)';
  if (answer.unreachable) return `unreachable: ${oneLine(answer.unreachable)}`;
  if (answer.error) return oneLine(answer.error);
  if (Number(answer.rc) !== 0) {
    const failed = stepOutput(answer)?.failed_step;
    const why = oneLine(answer.stderr || answer.msg || `exit ${String(answer.rc)}`);
    return Number(answer.rc) === -1 && !answer.stderr ? `the step did not run${answer.msg ? `: ${oneLine(answer.msg)}` : ''}` : `${typeof failed === 'string' ? `${failed}: ` : ''}${why}`;
  }
  return undefined;
}

/** Each member of `hosts` that did not confirm the step, with why, in the members' order. */
export function unconfirmed(hosts: string[], answers: Record<string, MemberAnswer | null> | undefined): { member: string; why: string }[] {
  return hosts.flatMap((member) => {
    const why = judgeAnswer(answers?.[member]);
    return why === undefined ? [] : [{ member, why }];
  });
}

// texts

const list = (members: string[]) => members.join(', ');

/** The cause of a switch that a signal ended, with the moment it came in (the step it stopped). */
export const interruptedCause = (sig: string, when: string): string => `interrupted by ${sig} ${when}`;

/**
 * The failure of a revoke, or of a grant, on some members. What each failure leaves open is said
 * once the safe state ran (pathsLeft): what it could reach decides it.
 */
export function revokeFailure(failed: { member: string; why: string }[]): string {
  return failed.map(({ member, why }) => `member ${member} could not be revoked (${why})`).join('; ');
}

export function grantFailure(failed: { member: string; why: string }[]): string {
  return failed.map(({ member, why }) => `member ${member} could not be granted (${why})`).join('; ');
}

export function stepFailure(step: MemberStep, failed: { member: string; why: string }[]): string {
  const what = step === 'stop' ? 'could not stop the GPU services or flush GPU memory' : step === 'start' ? 'could not start the GPU services' : `could not ${step}`;
  return failed.map(({ member, why }) => `member ${member} ${what} (${why})`).join('; ');
}

/** After the safe state: the members it could not reach (they keep what they had). */
export function safeStateLeft(failed: { member: string; why: string }[]): string {
  return `the safe state could not be confirmed on ${list(failed.map((f) => f.member))} (${failed.map((f) => `${f.member}: ${f.why}`).join('; ')})`;
}

/**
 * Who may still reach ai-tools once the safe state ran, from what is known: which members read
 * their holder sets back empty, and which members run ai-tools machines. A member in the safe
 * state drops, as sender and as receiver, every packet to ai-tools (the drop rules for packets
 * between members live on both ends); a member that did not answer keeps what it held.
 */
export function pathsLeft(cluster: ClusterPlan, notSafe: string[]): string {
  if (!notSafe.length) return 'Nobody has AI access now on any member (the safe state, read back on every member).';
  const safe = cluster.members.filter((m) => !notSafe.includes(m));
  const open = cluster.aiMembers.filter((m) => notSafe.includes(m));
  const head = `The safe state is confirmed on ${list(safe) || 'no member'}; NOT on ${list(notSafe)}`;
  const check = `check with anklume-gen ai-status once ${notSafe.length > 1 ? 'they answer' : 'it answers'}.`;
  if (!open.length) {
    const guard = cluster.aiMembers.length ? `every member that runs ai-tools machines (${list(cluster.aiMembers)}) is in the safe state and drops what is sent to them` : 'ai-tools has no machine';
    return `${head}: ${notSafe.length > 1 ? 'they run' : 'it runs'} no ai-tools machine and ${guard}: no machine can reach ai-tools; ${check}`;
  }
  const guard = safe.length ? `${list(safe)}, in the safe state, ${safe.length > 1 ? 'drop' : 'drops'} what ${safe.length > 1 ? 'their' : 'its'} own machines send to ai-tools` : 'no member is in the safe state';
  return `${head}: the ai-tools machines on ${list(open)} may still be reached by machines on ${list(notSafe)} (as those members held access before) until ${notSafe.length > 1 ? 'they answer' : 'it answers'}; ${guard}; ${check}`;
}

/** A switch refused: the members' inventory is not the infra's (nothing was run). */
export function inventoryRefusal(inventory: string, mismatch: InventoryMismatch, sync: string): string {
  const what = mismatch.unreadable
    ? [`it cannot be read (${mismatch.unreadable})`]
    : [
      ...(mismatch.missing.length ? [`it lacks ${mismatch.missing.length > 1 ? 'members' : 'member'} ${list(mismatch.missing)}`] : []),
      ...(mismatch.extra.length ? [`it names ${list(mismatch.extra)}, no member of the infra`] : []),
      ...mismatch.moved.map(([m, has, wants]) => `it reaches ${m} at ${has}, the infra says ${wants}`),
    ];
  return `${inventory} is not the infra's cluster: ${what.join('; ')}. The switch reaches every member through it, and a member it cannot reach would be revoked by nobody. Write it again with '${sync}' (make sync). Nothing was changed.`;
}

export function keyWarning(value: string, why: string): string {
  return `could not write the Incus project key ${HOLDER_RECORD_KEY}=${JSON.stringify(value)} on ${AI_DOMAIN} (${oneLine(why)}): the members' holder sets decide access; the key is only a record (anklume-gen ai-status compares it)`;
}

export function keyElsewhere(why: string): string {
  return `the Incus project key ${HOLDER_RECORD_KEY} is not written by this switch: ${oneLine(why)}. The members' holder sets decide access; the key is only the cluster's record (anklume-gen ai-status compares it)`;
}

/** The dry run on a cluster: every member's steps, then the batches that one host's dry run shows. */
export function describeClusterPlan(plan: SwitchPlan, cluster: ClusterPlan): string[] {
  const base = describePlan(plan);
  const changeAt = base.findIndex((l) => l.startsWith('Ruleset change'));
  const head = base.slice(0, changeAt).filter((l) => !l.trimStart().startsWith('Steps:') && !l.trimStart().startsWith('Would write:'));
  const gpu = cluster.gpuMembers.map((g) => `${g.member} (${g.machines.join(', ')})`).join(', ');
  const sets = Object.keys(cluster.expectGrant);
  const steps = [
    `  On an Incus cluster of ${cluster.members.length} members (${list(cluster.members)}), reached through Ansible with ${cluster.inventory}; each step on its members in parallel, with a time limit of ${MEMBER_STEP_TIMEOUT_S} s on each member (the stop and flush: ${FLUSH_STEP_TIMEOUT_S} s); every member is judged by what it answers, never by incus cluster list:`,
    ...(plan.from === plan.to
      ? [`  0 on every member (${list(cluster.members)}), read only: read ${sets.join(' and ')}; all say '${plan.to}', as ${plan.stateFile} does: nothing to do; all name one other holder: the switch starts from it (the batch below is from the state file's '${label(plan.from)}')`]
      : []),
    `  ${plan.from === plan.to ? '  then' : '0'} record nobody: the Incus project key ${HOLDER_RECORD_KEY} on ${plan.project} set to "" (a failed write is a warning; not written when the default incus remote is not this cluster)`,
    `  1 on every member (${list(cluster.members)}): revoke '${label(plan.from)}' (the batch below; else the no-holder ruleset reloaded; else every holder set emptied), read ${sets.join(' and ')} back (empty), forget the tracked connections between ai-tools and every domain, write its boot copy ${list(cluster.memberPersist)} (no holder)`,
    `    then, every member confirmed: ${plan.stateFile} says nobody, ${list(cluster.controllerPersist)} gets the no-holder ruleset`,
    cluster.gpuMembers.length
      ? `  2 on ${gpu}: stop ${plan.services.join(', ') || 'no service'}${plan.flushes ? ', flush GPU memory (as on one host, with that member\'s nvidia-smi, /proc and cgroups)' : ' (no flush)'}`
      : `  2 no member runs a GPU machine: nothing to stop or flush`,
    `  3 on every member (${list(cluster.members)}): grant '${plan.to}' (the batch below), read back ${sets.map((s) => `${s} = [${cluster.expectGrant[s].join(', ')}]`).join(', ')}, write its boot copy (the new ruleset)`,
    `    then, every member confirmed: ${plan.stateFile} says '${plan.to}', ${list(cluster.controllerPersist)} gets the new ruleset, the project key ${HOLDER_RECORD_KEY} = '${plan.to}'`,
    cluster.gpuMembers.length ? `  4 on ${gpu}: start ${plan.services.join(', ') || 'no service'}` : `  4 nothing to start`,
    `  Would append to ${plan.logFile} and its JSON log`,
    `  A member that does not answer (SSH, nft, a set read back wrong, the time limit), or a signal: the safe state on every member (a step still running there killed, every holder set emptied, the no-holder ruleset), nobody in ${plan.stateFile} and the project key, no flush or grant after it, the services started again where they were stopped; the switch fails (exit 1) naming the member`,
  ];
  return [
    ...head,
    ...steps,
    `Ruleset change, step 1 (revoke, on every member):`,
    plan.revokeBatch.trimEnd(),
    `Ruleset change, step 3 (grant, on every member):`,
    plan.grantBatch.trimEnd(),
    ...base.slice(base.findIndex((l, i) => i > changeAt && l.startsWith('Ruleset change')) + 2),
  ];
}
