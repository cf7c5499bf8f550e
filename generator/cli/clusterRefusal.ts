/**
 * The commands that act on the host refuse a cluster's tree or infra until they work on every
 * member (docs/multi-host.md#what-is-left). Each would otherwise act on this host alone and report
 * success: a promise with a hole. sync, validate, flows and nftables work on a cluster and do not
 * ask. The messages are here, one per command, saying what it would leave undone.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXIT_FAILED, type Invocation } from './command.js';
import { jsonError, printDiagnostics, printJson } from './output.js';
import { RULESET } from './sitePlaybook.js';
import type { Diagnostic } from '../core/types.js';

/** What each command would do wrong on a cluster, today. */
const NOT_BUILT = {
  'apply --check': "its plan reads the ruleset's live table and boot copy on this host only, not on each member, nor each member's routes",
  'ai-switch': "it would revoke and grant on this host alone: the holder's machines on the other members would keep reaching ai-tools there, or gain it",
  'ai-status': "it reads this host's holder set alone, not every member's",
  audit: 'it checks this host alone, not every member',
} as const;

export type HostCommand = keyof typeof NOT_BUILT;

const message = (command: HostCommand, what: string) =>
  `anklume-gen ${command} does not work on an Incus cluster yet: ${what}; ${NOT_BUILT[command]}. ` +
  'On a cluster, sync, validate, flows and nftables work; what is left is in docs/multi-host.md#what-is-left. Nothing was changed.';

/** The set that only a cluster's ruleset declares (templates/nftables/anklume.nft.hbs). */
const CLUSTER_SET = '\tset member_links {';

/** Where the tree's ruleset declares the member links: the tree was written for a cluster. */
export function clusterRuleset(baseDir: string): { file: string; line: number } | undefined {
  const file = join(baseDir, RULESET);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    // No ruleset: the command's own check says to sync first.
    return undefined;
  }
  const at = text.indexOf(`\n${CLUSTER_SET}\n`);
  return at < 0 ? undefined : { file, line: text.slice(0, at + 1).split('\n').length };
}

/** The refusal of a command given a cluster's tree, located at the ruleset's member links. */
export function clusterTree(command: HostCommand, baseDir: string): Diagnostic | undefined {
  const at = clusterRuleset(baseDir);
  return at && { ...at, column: 2, message: message(command, 'this tree was written for one (global.cluster in its infra)') };
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
