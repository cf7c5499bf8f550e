/**
 * An Incus cluster's tree or infra, for the commands that act on the host. apply and
 * apply-nftables work on every member (they pass the members' inventory to site.yml), and audit and
 * ai-status read every member the same way; ai-switch does not yet (docs/multi-host.md#what-is-left):
 * it would act on this host alone and report success, a promise with a hole, so it refuses a
 * cluster's infra with one located message, here, saying what it would leave undone.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXIT_FAILED, type Invocation } from './command.js';
import { jsonError, printDiagnostics, printJson } from './output.js';
import { RULESET } from './sitePlaybook.js';
import type { Diagnostic } from '../core/types.js';

/** What each command would do wrong on a cluster, today. */
const NOT_BUILT = {
  'ai-switch': "it would revoke and grant on this host alone: the holder's machines on the other members would keep reaching ai-tools there, or gain it",
} as const;

export type HostCommand = keyof typeof NOT_BUILT;

const message = (command: HostCommand, what: string) =>
  `anklume-gen ${command} does not work on an Incus cluster yet: ${what}; ${NOT_BUILT[command]}. ` +
  'On a cluster, sync, validate, flows, nftables, apply, apply-nftables, audit and ai-status work; what is left is in docs/multi-host.md#what-is-left. Nothing was changed.';

/** The set that only a cluster's ruleset declares (templates/nftables/anklume.nft.hbs). */
const CLUSTER_SET = '\tset member_links {';

/**
 * Whether the tree's ruleset declares the member links: the tree was written for a cluster, and
 * apply and apply-nftables pass the members' inventory to site.yml.
 */
export function clusterRuleset(baseDir: string): boolean {
  try {
    return readFileSync(join(baseDir, RULESET), 'utf8').includes(`\n${CLUSTER_SET}\n`);
  } catch {
    // No ruleset: the command's own check says to sync first.
    return false;
  }
}

/** The infra has global.cluster, located at its key; undefined when it has none or cannot be read (the command reports that). */
export async function clusterInfra(command: HostCommand, infraPath: string): Promise<Diagnostic | undefined> {
  const [{ readSources }, { KEY_MARKER, parseFast, parsePrecise, isMapping }] = await Promise.all([import('../infra/sources.js'), import('../infra/load.js')]);
  const { sources, errors } = await readSources(infraPath);
  if (errors.length) return undefined;
  let precise: ReturnType<typeof parsePrecise> | undefined;
  const global = (parseFast(sources) ?? (precise = parsePrecise(sources)).raw)?.global;
  if (!isMapping(global) || global.cluster === undefined) return undefined;
  // Only a cluster pays for the reader that knows positions.
  const at = (precise ?? parsePrecise(sources)).locate(['global', 'cluster', KEY_MARKER]);
  return { ...(at ?? { file: infraPath }), path: '/global/cluster', message: message(command, `${infraPath} describes one (global.cluster)`) };
}

/**
 * The refusal, in the command's own failure shape: located on stderr, or its --json document with
 * `fields` (the keys it always has) and the error. Exit 1.
 */
export function refuse(inv: Invocation, json: boolean, refusal: Diagnostic, fields: Record<string, unknown>): number {
  if (json) printJson(inv.streams, { ...fields, errors: [jsonError(refusal)] });
  else printDiagnostics(inv.streams, [refusal], []);
  return EXIT_FAILED;
}
