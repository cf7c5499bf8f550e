/**
 * `anklume-gen ai-status`: who holds AI access according to the state file, whether the live
 * ruleset agrees, and the last switches from the log. Also the live read that ai-switch uses.
 */
import { readHolderState, type HolderState } from '../infra/context.js';
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

export async function status(opts: { infra: Infra | undefined; stateFile: string; logFile: string; jsonLogFile: string; history: number }): Promise<StatusReport> {
  const [state, live, history] = await Promise.all([readHolderState(opts.stateFile), readLiveHolders(), readHistory(opts.logFile, opts.history)]);
  const sh = stateHolder(state, opts.infra, opts.stateFile);
  const problems = sh.problem ? [sh.problem] : [];
  const report: StatusReport = {
    holder: sh.holder ?? null,
    holder_source: sh.source,
    state_file: opts.stateFile,
    live: live.ok ? { holders: live.holders, agrees: agrees(live.holders, sh.holder) } : { error: live.error },
    history,
    last_flush: lastFlush(readIfExists(opts.jsonLogFile)),
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
  if ('error' in r.live) lines.push(`Live ruleset: unknown`);
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
