/**
 * The VRAM flush report of an ai-switch: what each GPU machine's flush saw and did, per GPU
 * (memory in use before and after, reset done, failed or skipped), which processes were killed
 * and which were left alone because they are not the instance's.
 *
 * The flush steps (roles/ai_switch/files/gpu_flush.py) record one JSON file per machine and step
 * in the run directory; this module reads them back, whether the switch succeeded or failed half
 * way, and words the report for the CLI, the JSON log and ai-status.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MachineType } from '../core/types.js';

export type ProcessOwner = 'instance' | 'host' | 'container' | 'unknown';

export interface GpuProcess {
  pid: string;
  gpu_uuid: string;
  used_memory_mib: number | null;
  owner: ProcessOwner;
  /** The other Incus container(s), as their cgroup names them (`<project>_<name>`). */
  container?: string;
}

export type ResetOutcome = 'done' | 'failed' | 'skipped' | 'not tried';

export interface GpuDevice {
  index: string;
  uuid: string;
  memory_total_mib: number | null;
  memory_used_before_mib: number | null;
  memory_used_after_mib: number | null;
  reset: ResetOutcome;
  /** Why a reset was skipped (the processes on that GPU), or what nvidia-smi said. */
  reset_detail: string;
}

export interface GpuReport {
  machine: string;
  type: MachineType;
  /** Where nvidia-smi and kill ran: on the host (container) or inside the machine (VM). */
  where: 'host' | 'instance';
  killed: string[];
  /** GPU processes of others (the host, other containers): never killed, reported. */
  foreign: GpuProcess[];
  /** Processes of the instance (or of unknown owner) still there at the last check. */
  left: GpuProcess[];
  gpus: GpuDevice[];
  /** Every GPU was reset. */
  reset: boolean;
  scrub: { command: string[]; ok: boolean; detail: string } | null;
  /** Memory in use after the flush, one `<used> MiB, <total> MiB` per GPU. */
  memory: string[];
}

/** What the flush steps record (gpu_flush.py): one object per step, absent when it did not run. */
export interface FlushRecords {
  kill?: { gpus_before?: RecordedGpu[]; processes?: GpuProcess[]; killed?: string[] };
  scrub?: { command: string[]; rc: number; detail: string };
  verify?: { processes: GpuProcess[]; left: GpuProcess[] };
  reset?: { gpus: { uuid: string; index: string; reset: 'done' | 'failed' | 'skipped'; detail: string }[] };
  scan?: { gpus: RecordedGpu[] };
}

interface RecordedGpu {
  index: string;
  uuid: string;
  memory_used_mib: number | null;
  memory_total_mib: number | null;
}

export const FLUSH_STEPS = ['kill', 'scrub', 'verify', 'reset', 'scan'] as const;

export function buildGpuReport(machine: string, type: MachineType, records: FlushRecords): GpuReport {
  const before = records.kill?.gpus_before ?? [];
  const after = records.scan?.gpus ?? [];
  const resets = records.reset?.gpus ?? [];
  const uuids = [...new Set([...before, ...after].map((g) => g.uuid))];
  const gpus = uuids.map((uuid): GpuDevice => {
    const b = before.find((g) => g.uuid === uuid);
    const a = after.find((g) => g.uuid === uuid);
    const r = resets.find((g) => g.uuid === uuid);
    return {
      index: (a ?? b)!.index,
      uuid,
      memory_total_mib: a?.memory_total_mib ?? b?.memory_total_mib ?? null,
      memory_used_before_mib: b?.memory_used_mib ?? null,
      memory_used_after_mib: a?.memory_used_mib ?? null,
      reset: r?.reset ?? 'not tried',
      reset_detail: r?.detail ?? '',
    };
  });
  // The last listing says best who was still there; the kill's listing names those who left since.
  const seen = new Map<string, GpuProcess>();
  for (const p of [...(records.kill?.processes ?? []), ...(records.verify?.processes ?? [])]) seen.set(p.pid, p);
  const scrub = records.scrub ? { command: records.scrub.command, ok: records.scrub.rc === 0, detail: records.scrub.detail } : null;
  return {
    machine,
    type,
    where: type === 'vm' ? 'instance' : 'host',
    killed: records.kill?.killed ?? [],
    foreign: [...seen.values()].filter((p) => p.owner === 'host' || p.owner === 'container'),
    left: records.verify?.left ?? [],
    gpus,
    reset: gpus.length > 0 && gpus.every((g) => g.reset === 'done'),
    scrub,
    memory: after.map((g) => `${mibText(g.memory_used_mib)}, ${mibText(g.memory_total_mib)}`),
  };
}

const mibText = (n: number | null) => (n === null ? '?' : `${n} MiB`);

/** One report per GPU machine whose flush began, from what each flush step recorded (undefined: it did not run). */
function reportsOf(machines: Record<string, MachineType>, recorded: (machine: string, step: string) => unknown): GpuReport[] {
  const reports: GpuReport[] = [];
  for (const [machine, type] of Object.entries(machines)) {
    const records: FlushRecords = {};
    for (const step of FLUSH_STEPS) {
      const record = recorded(machine, step);
      if (record !== undefined) (records as Record<string, unknown>)[step] = record;
    }
    if (Object.keys(records).length) reports.push(buildGpuReport(machine, type, records));
  }
  return reports;
}

/** The flush reports of the run directory, one per GPU machine whose flush began. */
export async function readGpuReports(dir: string, machines: Record<string, MachineType>): Promise<GpuReport[]> {
  const found = new Map<string, unknown>();
  for (const machine of Object.keys(machines)) {
    for (const step of FLUSH_STEPS) {
      try {
        found.set(`${machine}.${step}`, JSON.parse(await readFile(join(dir, `${machine}.${step}.json`), 'utf8')));
      } catch {
        // This step did not run (the flush stopped before it, or --no-flush).
      }
    }
  }
  return reportsOf(machines, (machine, step) => found.get(`${machine}.${step}`));
}

/**
 * The flush reports a member brought back (member_boot.py's gpu_records: "<machine>.<step>" ->
 * record), one per GPU machine whose flush began. A member's output is read, not trusted: a record
 * that is not what gpu_flush.py writes leaves its machine out, named in `unreadable`.
 */
export function gpuReportsFromRecords(records: ReadonlyMap<string, unknown>, machines: Record<string, MachineType>): { reports: GpuReport[]; unreadable: string[] } {
  const reports: GpuReport[] = [];
  const unreadable: string[] = [];
  for (const [machine, type] of Object.entries(machines)) {
    try {
      const built = reportsOf({ [machine]: type }, (m, step) => {
        const record = records.get(`${m}.${step}`);
        if (record === undefined) return undefined;
        if (typeof record !== 'object' || record === null || Array.isArray(record)) throw new Error('not a record');
        return record;
      });
      // Worded once here: a field of the wrong shape fails now, not in the switch's messages.
      for (const report of built) {
        formatGpuReport(report);
        gpuWarnings(report);
      }
      reports.push(...built);
    } catch {
      unreadable.push(machine);
    }
  }
  return { reports, unreadable };
}

export function describeProcess(p: GpuProcess): string {
  const who = p.owner === 'container' ? `container ${p.container ?? '?'}` : p.owner === 'instance' ? 'the instance' : p.owner === 'host' ? 'the host' : 'owner unknown';
  return `pid ${p.pid} (${who}${p.used_memory_mib === null ? '' : `, ${p.used_memory_mib} MiB`})`;
}

/** One line per machine, then one per GPU: for the switch's output and ai-status. */
export function formatGpuReport(r: GpuReport): string[] {
  const lines = [
    `${r.machine} (${r.type}, flushed from ${r.where === 'host' ? 'the host' : 'inside the VM'}): killed ${r.killed.length ? r.killed.join(', ') : 'no process'}` +
      (r.foreign.length ? `; left alone (not the instance's): ${r.foreign.map(describeProcess).join(', ')}` : '') +
      (r.left.length ? `; STILL THERE: ${r.left.map(describeProcess).join(', ')}` : '') +
      (r.scrub ? `; scrub ${r.scrub.ok ? 'done' : 'FAILED'}` : ''),
  ];
  for (const g of r.gpus) {
    const reset = g.reset === 'done' ? 'reset done' : g.reset === 'not tried' ? 'no reset tried' : `reset ${g.reset}${g.reset_detail ? ` (${g.reset_detail})` : ''}`;
    lines.push(`  GPU ${g.index} ${g.uuid}: memory in use ${mibText(g.memory_used_before_mib)} before, ${mibText(g.memory_used_after_mib)} after (of ${mibText(g.memory_total_mib)}); ${reset}`);
  }
  return lines;
}

/** What a person must know although the switch succeeded: resets that did not happen, foreign processes. */
export function gpuWarnings(r: GpuReport): string[] {
  const warnings: string[] = [];
  for (const g of r.gpus) {
    if (g.reset === 'failed') warnings.push(`nvidia-smi --gpu-reset failed on ${r.machine} (GPU ${g.index} ${g.uuid}): the compute processes were killed, but their freed GPU memory was not cleared by a reset${g.reset_detail ? `: ${g.reset_detail}` : ''}`);
    if (g.reset === 'skipped') warnings.push(`GPU reset skipped on ${r.machine} (GPU ${g.index} ${g.uuid}): ${g.reset_detail}; the freed GPU memory was not cleared by a reset`);
  }
  if (r.foreign.length) warnings.push(`GPU processes that are not ${r.machine}'s were left running: ${r.foreign.map(describeProcess).join(', ')}`);
  return warnings;
}
