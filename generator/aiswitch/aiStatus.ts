/**
 * `anklume-gen ai-status`: who holds AI access according to the state file, whether the live
 * ruleset agrees, and the last switches from the log. Also the live read that ai-switch uses.
 */
import { readHolderState, type HolderState } from '../infra/context.js';
import { HOLDER_RECORD_KEY } from './holderKey.js';
import { readIfExists } from '../core/files.js';
import { formatGpuReport, type GpuReport } from './gpuReport.js';
import { readLiveHolders as nftLiveHolders } from '../nftables/nft.js';
import { AI_HOLDER_SET, TABLE_FAMILY, TABLE_NAME } from '../nftables/nftables.js';
import type { Infra } from '../core/types.js';

export type LiveHolders = { ok: true; holders: string[] } | { ok: false; error: string };

/**
 * The live holder set (read-only), as a value rather than an exception: ai-switch and ai-status
 * both have to go on and say what they saw. `nft` is found on the process's PATH (generator/nft.ts).
 */
export async function readLiveHolders(): Promise<LiveHolders> {
  try {
    const holders = await nftLiveHolders();
    if (holders === undefined) return { ok: false, error: `set ${TABLE_FAMILY} ${TABLE_NAME} ${AI_HOLDER_SET} is not loaded (apply the ruleset first: 'anklume-gen apply-nftables', or make nftables)` };
    return { ok: true, holders };
  } catch (err) {
    return { ok: false, error: `cannot read the live holder set: ${(err as Error).message}` };
  }
}

/** What the state file means for the holder: a domain, nobody (null), or the infra default. */
export interface StateHolder {
  /** The holder the host should have: null = nobody; undefined = unknown (corrupt file, no infra). */
  holder: string | null | undefined;
  /** How it was decided. */
  source: 'state file' | 'default (no switch yet)' | 'state file (nobody)' | 'unknown';
  problem?: string;
}

export function stateHolder(state: HolderState, infra: Infra | undefined, stateFile: string): StateHolder {
  switch (state.kind) {
    case 'domain':
      return { holder: state.domain, source: 'state file' };
    case 'none':
      return { holder: null, source: 'state file (nobody)' };
    case 'corrupt':
      return { holder: undefined, source: 'unknown', problem: `${stateFile} holds '${state.text}', not a domain name` };
    case 'absent':
      if (infra?.global.ai_access_default) return { holder: infra.global.ai_access_default, source: 'default (no switch yet)' };
      return { holder: undefined, source: 'unknown', problem: infra ? 'no switch yet and no ai_access_default' : 'no switch yet, and the infra could not be read for the default' };
  }
}

export interface StatusReport {
  holder: string | null;
  holder_source: StateHolder['source'];
  state_file: string;
  live: { holders: string[]; agrees: boolean } | { error: string };
  history: string[];
  /** The flush report of the last switch that flushed (from the JSON log), or null. */
  last_flush: LastFlush | null;
  problems: string[];
  /** On an Incus cluster only: each member's sets and the cluster's record. */
  cluster?: ClusterStatus;
}

export interface LastFlush {
  time: string;
  status: 'switched' | 'failed';
  from: string | null;
  to: string;
  gpu: GpuReport[];
}

/** The last entry of the JSON log with a flush report; lines that do not parse are skipped. */
export function lastFlush(jsonLog: string | undefined): LastFlush | null {
  const lines = (jsonLog ?? '').split('\n').filter((l) => l.trim() !== '');
  for (const line of lines.reverse()) {
    try {
      const entry = JSON.parse(line) as LastFlush;
      if (Array.isArray(entry.gpu) && entry.gpu.length > 0) return entry;
    } catch {
      // A torn or foreign line: the one before it may still say it.
    }
  }
  return null;
}

/** The last `count` non-empty lines of the switch log (oldest first). */
export async function readHistory(logFile: string, count: number): Promise<string[]> {
  const text = readIfExists(logFile) ?? '';
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  return count > 0 ? lines.slice(-count) : [];
}

export function agrees(live: string[], holder: string | null | undefined): boolean {
  if (holder === undefined) return false;
  return holder === null ? live.length === 0 : live.length === 1 && live[0] === holder;
}

export interface ClusterReadings {
  members: Record<string, MemberHolderRead>;
  record: HolderRecord;
  /** A domain's subnet (a.b.c.0/24), what ai_holder_subnet holds for it. */
  subnetOf: (domain: string) => string;
}

/**
 * @param cluster on an Incus cluster, every member's sets and the cluster's record (read by the
 *   caller over Ansible and from Incus): this host's own set is then not read, it may be no member
 */
export async function status(opts: { infra: Infra | undefined; stateFile: string; logFile: string; jsonLogFile: string; history: number; cluster?: ClusterReadings }): Promise<StatusReport> {
  const thisHost = opts.cluster ? Promise.resolve(undefined) : readLiveHolders();
  const [state, live, history] = await Promise.all([readHolderState(opts.stateFile), thisHost, readHistory(opts.logFile, opts.history)]);
  const sh = stateHolder(state, opts.infra, opts.stateFile);
  const problems = sh.problem ? [sh.problem] : [];
  const jsonLog = readIfExists(opts.jsonLogFile);
  const base = {
    holder: sh.holder ?? null,
    holder_source: sh.source,
    state_file: opts.stateFile,
    history,
    last_flush: lastFlush(jsonLog),
  };
  if (!live) {
    const c = opts.cluster!;
    const { history: h, last_flush: f, ...head } = base;
    return clusterStatus({ ...head, live: { error: '' }, history: h, last_flush: f, problems }, sh.holder, c.members, c.record, c.subnetOf, lastUnconfirmed(jsonLog));
  }
  const report: StatusReport = {
    holder: base.holder,
    holder_source: base.holder_source,
    state_file: base.state_file,
    live: live.ok ? { holders: live.holders, agrees: agrees(live.holders, sh.holder) } : { error: live.error },
    history: base.history,
    last_flush: base.last_flush,
    problems,
  };
  if (!live.ok) problems.push(live.error);
  else if (!agrees(live.holders, sh.holder)) {
    problems.push(`the live ruleset gives AI access to ${live.holders.length ? live.holders.map((h) => `'${h}'`).join(', ') : 'nobody'}, the state file says ${sh.holder === undefined ? 'nothing usable' : sh.holder === null ? 'nobody' : `'${sh.holder}'`}; run 'anklume-gen ai-switch --domain <domain>' (make ai-switch DOMAIN=<domain>) to settle it`);
  }
  return report;
}

export function formatStatus(r: StatusReport): string[] {
  const lines = [`AI access holder: ${r.holder ?? '<none>'} (${r.holder_source}: ${r.state_file})`];
  if (r.cluster) lines.push(...formatCluster(r.cluster));
  else if ('error' in r.live) lines.push(`Live ruleset: unknown`);
  else lines.push(`Live ruleset: ${r.live.agrees ? 'agrees' : 'DISAGREES'} (ai_holder: ${r.live.holders.length ? r.live.holders.map((h) => `net-${h}`).join(', ') : 'empty'})`);
  lines.push(r.history.length ? 'Recent switches:' : 'Recent switches: none recorded');
  for (const h of r.history) lines.push(`  ${h}`);
  if (r.last_flush) {
    const f = r.last_flush;
    lines.push(`Last VRAM flush: ${f.time} ('${f.from ?? '<none>'}' -> '${f.to}', ${f.status})`);
    for (const g of f.gpu) lines.push(...formatGpuReport(g).map((l) => `  ${l}`));
  }
  return lines;
}

// On an Incus cluster (docs/multi-host.md#where-the-ai-holder-lives): the truth is every member's
// live holder sets; the records are the state file on this machine and a key of the ai-tools
// project in the cluster's database, which ai-switch writes ("" for nobody).

/** The cluster's record of the holder: project config of the ai-tools project. */
export { HOLDER_RECORD_KEY };

/** The cluster's record: not written (no switch on this cluster yet), a holder or nobody, or unreadable. */
export type HolderRecord = { written: false } | { written: true; holder: string | null } | { error: string };

/** A member's live holder sets, as read over Ansible; undefined: the set is not loaded. */
export type MemberHolderRead = { ok: true; holders: string[] | undefined; subnets: string[] | undefined } | { ok: false; why: string };

export type MemberStatus =
  | { member: string; read: true; ai_holder: string[] | null; ai_holder_subnet: string[] | null; agrees: boolean }
  | { member: string; read: false; error: string };

export interface ClusterStatus {
  members: MemberStatus[];
  record: HolderRecord;
  /** The members the last switch could not confirm (its JSON log line), or null when it confirmed every one. */
  last_switch_unconfirmed: { time: string; status: string; members: string[] } | null;
}

/**
 * The members the last switch of the JSON log did not confirm (ai-switch writes
 * `unconfirmed_members` on a cluster), or null. History, not the truth: the members' live sets
 * say where each stands now, and apply-nftables may have reached them since.
 */
export function lastUnconfirmed(jsonLog: string | undefined): ClusterStatus['last_switch_unconfirmed'] {
  const lines = (jsonLog ?? '').split('\n').filter((l) => l.trim() !== '');
  for (const line of lines.reverse()) {
    try {
      const entry = JSON.parse(line) as { time?: unknown; status?: unknown; unconfirmed_members?: unknown };
      if (typeof entry.time !== 'string') continue;
      const members = Array.isArray(entry.unconfirmed_members) ? entry.unconfirmed_members.filter((m): m is string => typeof m === 'string') : [];
      return members.length ? { time: entry.time, status: String(entry.status), members } : null;
    } catch {
      // A torn or foreign line: the one before it may still say it.
    }
  }
  return null;
}

/** Whether a member's sets say `holder` (null: nobody) holds access: its bridge, and its subnet. */
export function memberAgrees(r: { holders: string[] | undefined; subnets: string[] | undefined }, holder: string | null | undefined, subnetOf: (domain: string) => string): boolean {
  if (holder === undefined || r.holders === undefined || r.subnets === undefined) return false;
  const subnets = holder === null ? [] : [subnetOf(holder)];
  return agrees(r.holders, holder) && r.subnets.length === subnets.length && r.subnets.every((s, i) => s === subnets[i]);
}

const whose = (holder: string | null | undefined) => (holder === undefined ? 'nothing usable' : holder === null ? 'nobody' : `'${holder}'`);
const setText = (items: string[] | null, show: (s: string) => string = (s) => s) => (items === null ? 'not loaded' : items.length ? items.map(show).join(', ') : 'empty');

/**
 * The cluster's part of ai-status: each member's sets against the state file, and the cluster's
 * record against it; every disagreement and every member not read is a problem (exit 1).
 */
export function clusterStatus(report: StatusReport, stateHolderValue: string | null | undefined, members: Record<string, MemberHolderRead>, record: HolderRecord, subnetOf: (domain: string) => string, unconfirmed: ClusterStatus['last_switch_unconfirmed'] = null): StatusReport {
  const statuses = Object.entries(members).map(([member, r]): MemberStatus => (r.ok
    ? { member, read: true, ai_holder: r.holders ?? null, ai_holder_subnet: r.subnets ?? null, agrees: memberAgrees(r, stateHolderValue, subnetOf) }
    : { member, read: false, error: r.why }));
  const problems = [...report.problems];
  for (const s of statuses) {
    if (!s.read) problems.push(`member ${s.member} was not read: ${s.error}`);
    else if (!s.agrees) {
      problems.push(`member ${s.member}: its live ruleset gives AI access to ${s.ai_holder === null ? 'nobody (table inet anklume or its ai_holder set is not loaded)' : s.ai_holder.length ? s.ai_holder.map((h) => `'${h}'`).join(', ') : 'nobody'} (ai_holder_subnet: ${setText(s.ai_holder_subnet)}), the state file says ${whose(stateHolderValue)}; run 'anklume-gen apply-nftables' or 'anklume-gen ai-switch --domain <domain>' to settle it`);
    }
  }
  if ('error' in record) problems.push(`the cluster's record (${HOLDER_RECORD_KEY} on project ai-tools) could not be read: ${record.error}`);
  else if (record.written && stateHolderValue !== undefined && record.holder !== stateHolderValue) {
    problems.push(`the cluster's record (${HOLDER_RECORD_KEY} on project ai-tools) says ${whose(record.holder)}, the state file ${whose(stateHolderValue)}; an ai-switch writes both`);
  }
  const read = statuses.filter((s): s is Extract<MemberStatus, { read: true }> => s.read);
  const live: StatusReport['live'] = read.length
    ? { holders: [...new Set(read.flatMap((s) => s.ai_holder ?? []))].sort(), agrees: read.length === statuses.length && read.every((s) => s.agrees) }
    : { error: 'no member of the cluster could be read' };
  return { ...report, live, problems, cluster: { members: statuses, record, last_switch_unconfirmed: unconfirmed } };
}

/** Whether ai-status found everything in agreement: on a cluster, every member and the record too. */
export function statusAgrees(r: StatusReport): boolean {
  if ('error' in r.live || !r.live.agrees) return false;
  if (!r.cluster) return true;
  const rec = r.cluster.record;
  return !('error' in rec) && (!rec.written || rec.holder === r.holder) && r.problems.length === 0;
}

/** The cluster's lines of ai-status: the record, then each member. */
export function formatCluster(c: ClusterStatus): string[] {
  const rec = c.record;
  const lines = [`Cluster record (${HOLDER_RECORD_KEY} on project ai-tools): ${'error' in rec ? `NOT READ (${rec.error})` : !rec.written ? 'not written (no switch on this cluster yet)' : rec.holder ?? '<none>'}`];
  for (const s of c.members) {
    lines.push(s.read
      ? `Member ${s.member}: ${s.agrees ? 'agrees' : 'DISAGREES'} (ai_holder: ${setText(s.ai_holder, (h) => `net-${h}`)}; ai_holder_subnet: ${setText(s.ai_holder_subnet)})`
      : `Member ${s.member}: NOT READ (${s.error})`);
  }
  const u = c.last_switch_unconfirmed;
  if (u) lines.push(`Last switch (${u.time}, ${u.status}) could not confirm: ${u.members.join(', ')} (the lines above say where each member stands now)`);
  return lines;
}
