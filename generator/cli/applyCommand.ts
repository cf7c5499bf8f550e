/**
 * `anklume-gen apply`: what `make apply` does: the shipped site.yml without tags on the tree sync
 * wrote, so that Incus has what infra.yml describes (projects, bridges, the isolation ruleset,
 * instances) and orphans are reported. The refusals about Incus are the incus_preflight role's,
 * before anything is made; a missing tree, or a ruleset out of step with the state file, is caught
 * here, before ansible starts.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { COMMON_OPTIONS, stringValue as str, type Command } from './command.js';
import { clusterRuleset } from './clusterTree.js';
import { extraVars } from './extraVars.js';
import { isFile, notSynced, playbookPassThrough, refuseOverrides, runSite, staleRuleset, treeOverridden } from './sitePlaybook.js';
import { readIfExists } from '../core/files.js';

/**
 * The objects the run changed: those of the plan incus_preflight carried out, and the ruleset's
 * live table, boot copy and boot include that incus_nftables reports beside it (undefined without
 * them: a run limited by tags counts the recap's tasks).
 */
function objectsChanged(planFile: string): string[] | undefined {
  const plan = readIfExists(planFile);
  // Beside it, each role's record of what changed, {id: changed}: <plan>.ruleset on one host;
  // <plan>.ruleset@<member> and <plan>.routes@<member> on a cluster.
  const dir = dirname(planFile);
  const records = readdirSync(dir).filter((name) => name.startsWith(`${basename(planFile)}.`)).sort().map((name) => readFileSync(join(dir, name), 'utf8'));
  if (plan === undefined && records.length === 0) return undefined;
  const objects = plan === undefined ? [] : (JSON.parse(plan) as { objects: { id: string }[] }).objects.map((o) => o.id);
  // Ansible may hand the flags over as booleans or as their text.
  const others = records.flatMap((text) => Object.entries(JSON.parse(text) as Record<string, unknown>).filter(([, changed]) => String(changed).toLowerCase() === 'true').map(([id]) => id));
  return [...objects, ...others];
}

export const applyCommand: Command = {
  summary: 'build the domains in Incus from the tree sync wrote (projects, bridges, ruleset, instances): site.yml, as make apply',
  usage: 'anklume-gen apply [--base-dir DIR] [--check|--dry-run] [--delete-orphans] [--json] [-- ANSIBLE-PLAYBOOK-ARGS...]',
  options: { ...COMMON_OPTIONS, 'base-dir': { type: 'string' }, check: { type: 'boolean' }, 'dry-run': { type: 'boolean' }, 'delete-orphans': { type: 'boolean' } },
  flags: {
    'base-dir': 'the directory sync wrote to (default .)',
    check: 'the plan: every project, profile, bridge, ruleset, instance and orphan that apply would create, update (keys old → new) or delete, read from Incus and nft, nothing touched; exit 1 when anything would change',
    'dry-run': 'the same as --check (the word apply-nftables and sync use)',
    'delete-orphans': 'also delete the instances and bridges infra.yml no longer names, unless protected (ephemeral: false)',
  },
  async run(values, positionals, inv) {
    const passed = playbookPassThrough(positionals, inv);
    const json = values.json === true;
    const baseDir = str(values['base-dir']) ?? '.';
    const check = values.check === true || values['dry-run'] === true;
    const tree = join(baseDir, 'group_vars', 'all.yml');
    if (!isFile(tree)) {
      return notSynced(inv, json, `${tree}: no generated tree to apply; write it first with 'anklume-gen sync <infra> --base-dir ${baseDir}'`, { applied: false });
    }
    const stale = await staleRuleset(baseDir, inv.env);
    if (stale) return notSynced(inv, json, stale, { applied: false });
    const overridden = await treeOverridden(baseDir);
    if (overridden.length) return refuseOverrides(inv, json, overridden, { applied: false });
    const deleteOrphans = values['delete-orphans'] === true;
    const vars = { ...(await extraVars(passed)), ...(deleteOrphans ? { incus_orphans_delete: true } : {}) };
    // A cluster's members, for site.yml's play of the ruleset and routes on every member.
    const inventory = clusterRuleset(baseDir) ? join(baseDir, (await import('../tree/tree.js')).CLUSTER_INVENTORY) : undefined;
    if (check) {
      const { showPlan } = await import('./applyPlan.js');
      return showPlan(inv, json, baseDir, vars, inventory);
    }
    const members = inventory ? ['-i', inventory] : [];
    const planDir = mkdtempSync(join(tmpdir(), 'anklume-plan-'));
    const planFile = join(planDir, 'plan.json');
    return runSite({
      inv,
      json,
      name: 'apply',
      baseDir,
      args: [
        ...members,
        ...(deleteOrphans ? ['-e', JSON.stringify({ incus_orphans_delete: true })] : []), ...passed, '-e', JSON.stringify({ anklume_plan_file: planFile }),
      ],
      fields: (ok) => {
        const objects = ok ? objectsChanged(planFile) : undefined;
        return { applied: ok, ...(objects ? { objects } : {}) };
      },
      count: () => objectsChanged(planFile)?.length,
      summary: (changed) => (changed ? `${baseDir}: applied (${changed} object(s) changed)` : `${baseDir}: already applied, nothing changed`),
    }).finally(() => rmSync(planDir, { recursive: true, force: true }));
  },
};
