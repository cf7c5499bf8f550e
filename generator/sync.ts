/**
 * `anklume-gen sync`: infra → validated, enriched model → Ansible tree on disk (spec §6).
 * Reading and writing happen here; deciding what to write is pure (tree, managedBlock).
 */
import { readdir, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { digest, filesUntouched, inputKey, loadCache, saveCache, statEntry, type SyncCache } from './cache.js';
import { readContext, readHolderState, stateFilePath, type HolderState } from './context.js';
import { enrich } from './enrich.js';
import { ensureDirs, inParallel, listDirs, readIfExists, readListed, writeAtomic } from './files.js';
import { analyse, readSources } from './infra.js';
import { managedBlock, mergeManaged } from './managedBlock.js';
import { renderRuleset, RULESET_FILE } from './nftables.js';
import { buildTree, TREE_DIRS } from './tree.js';
import { AI_DOMAIN } from './validate.js';
import type { Source } from './load.js';
import type { Context, Diagnostic, Infra } from './types.js';

export interface SyncOptions {
  infraPath: string;
  baseDir: string;
  dryRun?: boolean;
  check?: boolean;
  cleanOrphans?: boolean;
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
  /** True when the cache proved that nothing changed without reading the infra. */
  cached: boolean;
}

/**
 * A file of the output: a managed block inside a user-editable file, or a whole generated file.
 * Rendering is deferred to the moment the file is compared, so that CPU work overlaps file I/O.
 */
export interface Output {
  path: string;
  managed: boolean;
  text: () => string;
}

function once(produce: () => string): () => string {
  let value: string | undefined;
  return () => (value ??= produce());
}

export function managedOutput(path: string, vars: object): Output {
  return { path, managed: true, text: once(() => managedBlock(vars)) };
}

export function wholeFileOutput(path: string, produce: () => string): Output {
  return { path, managed: false, text: once(produce) };
}

const empty = (): SyncReport => ({ errors: [], warnings: [], info: [], written: [], unchanged: [], orphans: [], deleted: [], cached: false });

/**
 * The AI access holder the outputs must reflect: the state file's word, checked against the infra.
 * Returns undefined when no switch ever happened (the default applies), null when nobody has access.
 */
export function resolveHolder(infra: Infra, state: HolderState, stateFile: string): { holder?: string | null; error?: Diagnostic } {
  if (infra.global.ai_access_policy !== 'exclusive') return {};
  switch (state.kind) {
    case 'absent':
      return {};
    case 'none':
      return { holder: null };
    case 'corrupt':
      return { error: { file: stateFile, message: `${stateFile}: holds '${state.text}', not a domain name; fix it with 'make ai-switch DOMAIN=<domain>'` } };
    case 'domain':
      if (state.domain === AI_DOMAIN || !(state.domain in infra.domains)) {
        return { error: { file: stateFile, message: `${stateFile}: names '${state.domain}' as the AI access holder, but it is not a client domain of the infra; fix it with 'make ai-switch DOMAIN=<domain>'` } };
      }
      return { holder: state.domain };
  }
}

/** Who the generated ruleset lets reach ai-tools: the state file's holder, else the default. */
export function effectiveHolder(infra: Infra, holder: string | null | undefined): string | null {
  return holder === undefined ? (infra.global.ai_access_default ?? null) : holder;
}

/** Every output of a sync for a valid model: the Ansible tree and the isolation ruleset. */
export function planOutputs(infra: Infra, holder: string | null | undefined): Output[] {
  const ruleset = wholeFileOutput(RULESET_FILE, () => renderRuleset(infra, effectiveHolder(infra, holder)));
  return [...buildTree(infra).map((file) => managedOutput(file.path, file.vars)), ruleset];
}

async function findOrphans(baseDir: string, known: Set<string>): Promise<Orphan[]> {
  const candidates: string[] = [];
  for (const dir of TREE_DIRS) {
    let names: string[] = [];
    try {
      names = await readdir(join(baseDir, dir));
    } catch {
      continue;
    }
    for (const name of names.sort()) {
      const rel = `${dir}/${name}`;
      if (name.endsWith('.yml') && !known.has(rel) && rel !== 'group_vars/all.yml') candidates.push(rel);
    }
  }
  return inParallel(candidates, async (path) => ({ path, protected: await isProtected(join(baseDir, path)) }));
}

/** A file that says ephemeral: false belongs to something the user wants kept: never delete it. */
async function isProtected(path: string): Promise<boolean> {
  try {
    const data = parseYaml((await readIfExists(path)) ?? '', { maxAliasCount: 100 }) as unknown;
    if (typeof data !== 'object' || data === null) return false;
    const vars = data as Record<string, unknown>;
    return vars.domain_ephemeral === false || vars.instance_ephemeral === false;
  } catch {
    // Unreadable: err on the side of keeping it.
    return true;
  }
}

export interface Gathered {
  sources: Source[];
  readErrors: Diagnostic[];
  ctx: Context;
  state: HolderState;
  stateFile: string;
}

export interface Prepared {
  report: SyncReport;
  infra?: Infra;
  holder?: string | null;
}

/** Everything read from disk that the result depends on (cheap: no parsing). */
export async function gather(infraPath: string, env: NodeJS.ProcessEnv): Promise<Gathered> {
  const stateFile = stateFilePath(env);
  const [{ sources, errors }, ctx, state] = await Promise.all([readSources(infraPath), readContext(env), readHolderState(stateFile)]);
  return { sources, readErrors: errors, ctx, state, stateFile };
}

/** Validates and enriches what was gathered. */
export function evaluate(gathered: Gathered): Prepared {
  const report = empty();
  if (gathered.readErrors.length) return { report: { ...report, errors: gathered.readErrors } };
  const analysis = analyse(gathered.sources, gathered.ctx);
  report.warnings = analysis.warnings;
  if (!analysis.infra || analysis.errors.length) return { report: { ...report, errors: analysis.errors } };
  const { holder, error } = resolveHolder(analysis.infra, gathered.state, gathered.stateFile);
  if (error) return { report: { ...report, errors: [error] } };
  const enriched = enrich(analysis.infra, holder);
  report.info = enriched.info;
  return { report, infra: enriched.infra, holder };
}

export async function prepare(infraPath: string, env: NodeJS.ProcessEnv): Promise<Prepared> {
  return evaluate(await gather(infraPath, env));
}

/** Outputs beyond the Ansible tree (the ruleset, playbooks), computed from the same model. */
export type ExtraOutputs = (infra: Infra, holder: string | null | undefined) => Output[];

export async function sync(options: SyncOptions, extraOutputs: ExtraOutputs = () => []): Promise<SyncReport> {
  const env = options.env ?? process.env;
  const baseDir = options.baseDir;
  const writes = !options.dryRun && !options.check;
  const gathered = await gather(options.infraPath, env);
  if (gathered.readErrors.length) return { ...empty(), errors: gathered.readErrors };

  const key = await inputKey(gathered.sources, { ctx: gathered.ctx, state: gathered.state });
  const cache = await loadCache(baseDir);
  if (cache && cache.key === key && (await filesUntouched(baseDir, cache))) {
    const report: SyncReport = {
      ...empty(),
      warnings: cache.warnings.map((message) => ({ message })),
      info: cache.info,
      unchanged: Object.keys(cache.files).sort(),
      cached: true,
    };
    return finish(report, baseDir, new Set(Object.keys(cache.files)), options, writes);
  }
  const { report, infra, holder } = evaluate(gathered);
  if (report.errors.length || !infra) return report;

  const outputs = [...planOutputs(infra, holder), ...extraOutputs(infra, holder)];
  const changed: { output: Output; content: string }[] = [];
  const unchanged: Output[] = [];
  const listings = await listDirs(outputs.map((o) => dirname(join(baseDir, o.path))));
  await inParallel(outputs, async (output) => {
    const target = join(baseDir, output.path);
    const entry = cache?.files[output.path];
    if (entry && entry.digest === digest(output.text())) {
      const now = await statEntry(target);
      if (now && now.size === entry.size && now.mtimeMs === entry.mtimeMs) {
        unchanged.push(output);
        return;
      }
    }
    const existing = await readListed(target, listings);
    const content = output.managed ? mergeManaged(existing, output.text()) : output.text();
    if (content === existing) unchanged.push(output);
    else changed.push({ output, content });
  });
  report.written = changed.map((c) => c.output.path).sort();
  report.unchanged = unchanged.map((o) => o.path).sort();

  if (writes) {
    await ensureDirs(changed.map((c) => join(baseDir, c.output.path)));
    await inParallel(changed, ({ output, content }) => writeAtomic(join(baseDir, output.path), content));
    const files: SyncCache['files'] = {};
    const stats = await inParallel(outputs, (o) => statEntry(join(baseDir, o.path)));
    outputs.forEach((o, i) => {
      const s = stats[i];
      if (s) files[o.path] = { ...s, digest: digest(o.text()) };
    });
    await saveCache(baseDir, { version: 1, key, files, warnings: report.warnings.map((w) => w.message), info: report.info });
  }
  return finish(report, baseDir, new Set(outputs.map((o) => o.path)), options, writes);
}

async function finish(report: SyncReport, baseDir: string, known: Set<string>, options: SyncOptions, writes: boolean): Promise<SyncReport> {
  report.orphans = await findOrphans(baseDir, known);
  if (options.cleanOrphans && writes) {
    for (const orphan of report.orphans) {
      if (orphan.protected) continue;
      await unlink(join(baseDir, orphan.path));
      report.deleted.push(orphan.path);
    }
  }
  return report;
}
