/**
 * `anklume-gen sync`: infra → validated, enriched model → Ansible tree on disk (spec §6).
 * Reading and the orchestration happen here; what to write comes from outputs (tree, nftables).
 */
import { mkdirSync, readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { bootId, CACHE_VERSION, filesUntouched, inputKey, loadCache, saveCache } from './cache.js';
import { depthProblem } from '../infra/depth.js';
import { readIfExists } from '../core/files.js';
import { yaml } from '../infra/yamlLibrary.js';
import { gather } from '../infra/gather.js';
import { TREE_DIRS } from './layout.js';
import type { Diagnostic } from '../core/types.js';
import type { Staging } from './staging.js';
import type { Writer } from './writer.js';

export interface SyncOptions {
  infraPath: string;
  baseDir: string;
  dryRun?: boolean;
  check?: boolean;
  cleanOrphans?: boolean;
  /** Also give the unified diff of each file that changes (SyncReport.diffs). */
  diff?: boolean;
  env?: NodeJS.ProcessEnv;
}

export interface Orphan {
  path: string;
  protected: boolean;
}

export interface SyncReport {
  errors: Diagnostic[];
  warnings: Diagnostic[];
  info: string[];
  written: string[];
  unchanged: string[];
  orphans: Orphan[];
  deleted: string[];
  /** With SyncOptions.diff: path → unified diff of what changes (the managed block, or the whole file). */
  diffs: Map<string, string>;
  /** True when the cache proved that nothing changed without reading the infra. */
  cached: boolean;
}

const empty = (): SyncReport => ({ errors: [], warnings: [], info: [], written: [], unchanged: [], orphans: [], deleted: [], diffs: new Map(), cached: false });

/** @param fresh directories this sync made whole (no file in them but its own): not read. */
function findOrphans(baseDir: string, known: Set<string>, fresh: ReadonlySet<string>): Orphan[] {
  const orphans: Orphan[] = [];
  for (const dir of TREE_DIRS) {
    if (fresh.has(dir)) continue;
    let names: string[] = [];
    try {
      names = readdirSync(join(baseDir, dir));
    } catch {
      continue;
    }
    for (const name of names.sort()) {
      const path = `${dir}/${name}`;
      if (name.endsWith('.yml') && !known.has(path) && path !== 'group_vars/all.yml') orphans.push({ path, protected: isProtected(join(baseDir, path)) });
    }
  }
  return orphans;
}

/** A file that says ephemeral: false belongs to something the user wants kept: never delete it. */
function isProtected(path: string): boolean {
  try {
    const text = readIfExists(path) ?? '';
    // Too deep to parse safely: unreadable, so kept.
    if (depthProblem(text)) return true;
    const data = yaml().parse(text, { maxAliasCount: 100 }) as unknown;
    if (typeof data !== 'object' || data === null) return false;
    const vars = data as Record<string, unknown>;
    return vars.domain_ephemeral === false || vars.instance_ephemeral === false;
  } catch {
    // Unreadable: err on the side of keeping it.
    return true;
  }
}

/** Above this many files, a writer thread pays for its start-up. */
const THREAD_WRITER_MIN_FILES = 500;
/** About as many bytes of infra as make THREAD_WRITER_MIN_FILES files (a machine's YAML gives one host_vars file). */
const EARLY_WRITER_MIN_BYTES = 128 * 1024;

export async function sync(options: SyncOptions): Promise<SyncReport> {
  const env = options.env ?? process.env;
  const baseDir = options.baseDir;
  const writes = !options.dryRun && !options.check;
  const gathered = await gather(options.infraPath, env);
  if (gathered.readErrors.length) return { ...empty(), errors: gathered.readErrors };

  const key = await inputKey(gathered.sources, { ctx: gathered.ctx, state: gathered.state });
  const cache = loadCache(baseDir);
  if (cache && cache.key === key && filesUntouched(baseDir, cache)) {
    const report: SyncReport = {
      ...empty(),
      warnings: cache.warnings,
      info: cache.info,
      unchanged: Object.keys(cache.files).sort(),
      cached: true,
    };
    return finish(report, baseDir, new Set(Object.keys(cache.files)), options, writes, new Set());
  }
  // Only now, with something to do: the readers, the checks and the templates (an unchanged run
  // above loads none of them).
  const [{ evaluate }, { outputTargets, planOutputs, processOutputs }, { inlineWriter, threadWriter }, { stageMissingDirs, stagedWriter }] = await Promise.all([
    import('../infra/pipeline.js'),
    import('./outputs.js'),
    import('./writer.js'),
    import('./staging.js'),
  ]);
  // A large infra will write thousands of files: the writer thread starts now, while this thread
  // reads and checks, so that it is ready when the first files are rendered.
  const sourceBytes = gathered.sources.reduce((n, s) => n + s.text.length, 0);
  const early = writes && sourceBytes >= EARLY_WRITER_MIN_BYTES ? threadWriter() : undefined;
  let evaluated: ReturnType<typeof evaluate>;
  try {
    evaluated = evaluate(gathered);
  } catch (err) {
    await early?.finish();
    throw err;
  }
  const { report: checked, infra, holder } = evaluated;
  const report: SyncReport = { ...empty(), ...checked };
  if (report.errors.length || !infra) {
    await early?.finish();
    return report;
  }
  const outputs = planOutputs(infra, holder);
  const targets = outputTargets(outputs, baseDir);
  let writer: Writer | undefined;
  let staging: Staging | undefined;
  if (writes) {
    mkdirSync(baseDir, { recursive: true });
    // Every directory a target needs is there now: staged (made in the staging folder) or already in the tree.
    staging = stageMissingDirs(baseDir, targets);
    const inner = early ?? (outputs.length >= THREAD_WRITER_MIN_FILES ? threadWriter() : undefined) ?? inlineWriter();
    writer = staging ? stagedWriter(inner, staging) : inner;
  }
  let outcome;
  try {
    outcome = await processOutputs(outputs, { targets, cached: cache?.files ?? {}, writer, diff: options.diff });
  } finally {
    staging?.discard();
  }
  report.written = outcome.written.sort();
  report.unchanged = outcome.unchanged.sort();
  report.diffs = new Map([...outcome.diffs].sort(([a], [b]) => (a < b ? -1 : 1)));
  if (writes) saveCache(baseDir, { version: CACHE_VERSION, boot: bootId(), key, files: outcome.files, warnings: report.warnings, info: report.info });
  return finish(report, baseDir, new Set(outputs.map((o) => o.path)), options, writes, staging?.renamedWhole() ?? new Set());
}

function finish(report: SyncReport, baseDir: string, known: Set<string>, options: SyncOptions, writes: boolean, fresh: ReadonlySet<string>): SyncReport {
  report.orphans = findOrphans(baseDir, known, fresh);
  if (options.cleanOrphans && writes) {
    for (const orphan of report.orphans) {
      if (orphan.protected) continue;
      unlinkSync(join(baseDir, orphan.path));
      report.deleted.push(orphan.path);
    }
  }
  return report;
}
