/**
 * Running the shipped site.yml on the tree sync wrote, for `apply` and `apply-nftables` (what
 * `make apply` and `make nftables` do, for those who installed the package: the Makefile is not
 * in it). ansible's output goes to stderr as whole lines; the result is the play recap's count.
 */
import { mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT_FAILED, EXIT_OK, UsageError, type Invocation } from './command.js';
import { jsonError, printDiagnostics, printJson } from './output.js';
import type { Diagnostic } from '../core/types.js';
import { readIfExists } from '../core/files.js';
import { packagePath } from '../core/packageRoot.js';

/** The ruleset sync writes under the base dir, which apply and apply-nftables load. */
export const RULESET = 'nftables/anklume.nft';

/**
 * The play recap's `changed=N`, summed over its hosts: localhost, and on a cluster each member
 * (undefined when ansible printed no recap).
 */
function changedCount(output: string): number | undefined {
  const recap = [...output.matchAll(/^\S+\s*:\s*ok=\d+\s+changed=(\d+)/gm)];
  return recap.length ? recap.reduce((sum, m) => sum + Number(m[1]), 0) : undefined;
}

/** Words after `--` go to ansible-playbook as they are; anything else positional is a mistake. */
export function playbookPassThrough(positionals: string[], inv: Invocation): string[] {
  if (positionals.length && !inv.args.includes('--')) {
    throw new UsageError(`unexpected argument: ${positionals.join(' ')} (arguments for ansible-playbook go after --)`);
  }
  return positionals;
}

export interface SiteRun {
  inv: Invocation;
  json: boolean;
  /** The command's name, for its messages. */
  name: string;
  baseDir: string;
  /** site.yml's arguments: tags, --check, -e ... */
  args: string[];
  /** The one line said on success, from the recap's change count (undefined without a recap). */
  summary: (changed: number | undefined) => string;
  /** Fields of the --json document besides changed and errors. */
  fields: (ok: boolean) => Record<string, unknown>;
  /** What `changed` counts, when not the recap's tasks (apply: the objects of its plan). */
  count?: () => number | undefined;
}

export async function runSite(run: SiteRun): Promise<number> {
  const { inv, json } = run;
  const { runPlaybook } = await import('../aiswitch/ansible.js');
  let output = '';
  let pending = '';
  // A signal stops ansible (it runs in its own process group) before this process ends: an apply
  // interrupted at the terminal must not go on behind the user's back.
  const abort = new AbortController();
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    interrupted ??= sig;
    abort.abort();
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const sig of signals) process.on(sig, onSignal);
  // Ansible's temporary files live here and go with it, whatever happens to the run.
  const tempDir = mkdtempSync(join(tmpdir(), `anklume-${run.name}-`));
  const result = await runPlaybook({
    tempDir,
    playbook: packagePath('site.yml'),
    extraArgs: run.args,
    // What site.yml reads to find the tree (the Makefile passes it the same way).
    env: { ...inv.env, ANKLUME_BASE_DIR: realpathSync(run.baseDir) },
    color: inv.streams.color && !json,
    signal: abort.signal,
    onOutput: (chunk) => {
      const lines = (pending + chunk).split('\n');
      pending = lines.pop() ?? '';
      output += chunk;
      if (lines.length) inv.streams.err(lines.join('\n'));
    },
  }).finally(() => {
    for (const sig of signals) process.off(sig, onSignal);
    rmSync(tempDir, { recursive: true, force: true });
  });
  if (pending) inv.streams.err(pending);
  const changed = run.count?.() ?? changedCount(output);
  if (!result.ok) {
    const why = interrupted
      ? `interrupted by ${interrupted}: ansible-playbook was stopped; run it again to finish`
      : result.spawnError
        ? `ansible-playbook could not be started (${result.spawnError}); install Debian's ansible`
        : `ansible-playbook failed (${result.signal ?? `exit ${result.exitCode}`}); its output is above`;
    // Which objects a failed run changed is not known (the plan says what it meant to change):
    // 0 when no task changed anything, else null.
    const failedChanged = run.count ? (changedCount(output) === 0 ? 0 : null) : changed ?? null;
    if (json) printJson(inv.streams, { ...run.fields(false), changed: failedChanged, errors: [jsonError({ message: why })] });
    else inv.streams.err(`anklume-gen ${run.name}: ${why}`);
    return EXIT_FAILED;
  }
  if (json) printJson(inv.streams, { ...run.fields(true), changed: changed ?? null, errors: [] });
  else inv.streams.out(run.summary(changed));
  return EXIT_OK;
}

/**
 * The ruleset under the base dir gives AI access to another domain than the state file says:
 * the message, or undefined when they agree. A missing ruleset is the caller's to report.
 */
export async function staleRuleset(baseDir: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  const ruleset = join(baseDir, RULESET);
  let text: string;
  try {
    text = readFileSync(ruleset, 'utf8');
  } catch {
    return undefined;
  }
  const { holderDisagreement } = await import('./rulesetHolder.js');
  const problem = await holderDisagreement(text, env);
  return problem && `${ruleset}: ${problem}; write it again with 'anklume-gen sync <infra> --base-dir ${baseDir}' (sync follows the state file), or switch with 'anklume-gen ai-switch'. Nothing was applied.`;
}

/** anklume's variables set outside a tree file's managed block (tree/treeOverrides.ts), located. */
export async function treeOverridden(baseDir: string): Promise<Diagnostic[]> {
  const [{ TREE_DIRS }, { treeOverrides }] = await Promise.all([import('../tree/layout.js'), import('../tree/treeOverrides.js')]);
  const files: { path: string; text: string }[] = [];
  for (const dir of TREE_DIRS) {
    let names: string[];
    try {
      names = readdirSync(join(baseDir, dir));
    } catch {
      continue;
    }
    for (const name of names.sort()) {
      if (!name.endsWith('.yml')) continue;
      const path = join(baseDir, dir, name);
      const text = readIfExists(path);
      if (text !== undefined) files.push({ path, text });
    }
  }
  return treeOverrides(files);
}

/** The tree sets what infra.yml's checks never saw: nothing runs, each place is named. */
export function refuseOverrides(inv: Invocation, json: boolean, problems: Diagnostic[], fields: Record<string, unknown>): number {
  if (json) printJson(inv.streams, { ...fields, changed: null, errors: problems.map(jsonError) });
  else {
    printDiagnostics(inv.streams, problems, []);
    inv.streams.err(`${problems.length} variable(s) of anklume set outside the managed blocks of the tree: nothing was applied.`);
  }
  return EXIT_FAILED;
}

export function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** A file sync writes is missing or out of step: nothing runs, the message says what to run first. */
export function notSynced(inv: Invocation, json: boolean, message: string, fields: Record<string, unknown>): number {
  if (json) printJson(inv.streams, { ...fields, changed: null, errors: [jsonError({ message })] });
  else inv.streams.err(message);
  return EXIT_FAILED;
}
