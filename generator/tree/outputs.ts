/**
 * What a sync writes, and the loop that renders and compares it and hands changed files to a writer.
 */
import { digest, type CacheEntry } from './cache.js';
import { changeDiff } from './diff.js';
import { listDirs, readListed, stampOf } from '../core/files.js';
import { parentOf, treeBase, under } from '../core/paths.js';
import { holdsUserBytes, managedBlock, mergeManaged } from './managedBlock.js';
import { renderRuleset, RULESET_FILE } from '../nftables/nftables.js';
import { buildTree } from './tree.js';
import { effectiveHolder } from '../infra/pipeline.js';
import type { Infra } from '../core/types.js';
import type { Writer } from './writer.js';

/**
 * A file of the output: a managed block inside a user-editable file, or a whole generated file.
 * Rendering is deferred until the file's turn comes, so that it overlaps the writing of earlier files.
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

function managedOutput(path: string, vars: () => object): Output {
  return { path, managed: true, text: once(() => managedBlock(vars())) };
}

function wholeFileOutput(path: string, produce: () => string): Output {
  return { path, managed: false, text: once(produce) };
}

/** Every output of a sync for a valid model: the Ansible tree and the isolation ruleset. */
export function planOutputs(infra: Infra, holder: string | null | undefined): Output[] {
  const ruleset = wholeFileOutput(RULESET_FILE, () => renderRuleset(infra, effectiveHolder(infra, holder)));
  return [...buildTree(infra, holder).map((file) => managedOutput(file.path, file.vars)), ruleset];
}

/** Where each output goes on disk, in the order of the outputs. */
export function outputTargets(outputs: Output[], baseDir: string): string[] {
  const base = treeBase(baseDir);
  return outputs.map((o) => under(base, o.path));
}

export interface Job {
  /** outputTargets of the outputs. */
  targets: string[];
  /** The previous sync's record of each file, to skip reading files it proves unchanged. */
  cached: Record<string, CacheEntry>;
  /** Undefined for --dry-run and --check: compare only. */
  writer?: Writer;
  /** Collect a unified diff of each file that changes (--diff). */
  diff?: boolean;
}

export interface Outcome {
  written: string[];
  unchanged: string[];
  /** The new cache entries (when writing). */
  files: Record<string, CacheEntry>;
  /** With Job.diff: path → unified diff, in output order. */
  diffs: Map<string, string>;
}

/** Renders and compares every output, and hands the changed ones to the writer. */
export async function processOutputs(outputs: Output[], job: Job): Promise<Outcome> {
  const outcome: Outcome = { written: [], unchanged: [], files: {}, diffs: new Map() };
  /** The digest of each written file, in the order written (the writer's stamps come in that order). */
  const digests: string[] = [];
  const { targets } = job;
  const listings = listDirs(new Set(targets.map(parentOf)));
  for (const [index, output] of outputs.entries()) {
    const target = targets[index];
    const rendered = output.text();
    const fileDigest = digest(rendered);
    const entry = job.cached[output.path];
    if (entry && entry.digest === fileDigest) {
      const now = stampOf(target);
      if (now && now.size === entry.size && now.mtimeMs === entry.mtimeMs) {
        outcome.unchanged.push(output.path);
        outcome.files[output.path] = entry;
        continue;
      }
    }
    const existing = readListed(target, listings);
    const content = output.managed ? mergeManaged(existing, rendered) : rendered;
    if (content === existing) {
      outcome.unchanged.push(output.path);
      const now = job.writer ? stampOf(target) : undefined;
      if (now) outcome.files[output.path] = { ...now, digest: fileDigest };
      continue;
    }
    outcome.written.push(output.path);
    if (job.diff) outcome.diffs.set(output.path, changeDiff(output.path, existing, content, output.managed));
    digests.push(fileDigest);
    job.writer?.write(target, content, existing !== undefined && output.managed && holdsUserBytes(existing) ? 'durable' : 'atomic');
  }
  if (job.writer) {
    const stamps = await job.writer.finish();
    outcome.written.forEach((path, k) => {
      outcome.files[path] = { size: stamps[k].size, mtimeMs: stamps[k].mtimeMs, digest: digests[k] };
    });
  }
  return outcome;
}
