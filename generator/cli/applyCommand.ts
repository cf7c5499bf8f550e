/**
 * `anklume-gen apply`: what `make apply` does: the shipped site.yml without tags on the tree sync
 * wrote, so that Incus has what infra.yml describes (projects, bridges, the isolation ruleset,
 * instances) and orphans are reported. The refusals about Incus are the incus_preflight role's,
 * before anything is made; a missing tree, or a ruleset out of step with the state file, is caught
 * here, before ansible starts.
 */
import { join } from 'node:path';
import { COMMON_OPTIONS, stringValue as str, type Command } from './command.js';
import { isFile, notSynced, playbookPassThrough, runSite, staleRuleset } from './sitePlaybook.js';

export const applyCommand: Command = {
  summary: 'build the domains in Incus from the tree sync wrote (projects, bridges, ruleset, instances): site.yml, as make apply',
  usage: 'anklume-gen apply [--base-dir DIR] [--check|--dry-run] [--delete-orphans] [--json] [-- ANSIBLE-PLAYBOOK-ARGS...]',
  options: { ...COMMON_OPTIONS, 'base-dir': { type: 'string' }, check: { type: 'boolean' }, 'dry-run': { type: 'boolean' }, 'delete-orphans': { type: 'boolean' } },
  flags: {
    'base-dir': 'the directory sync wrote to (default .)',
    check: "Ansible's check mode with --diff: what would change, nothing touched",
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
    return runSite({
      inv,
      json,
      name: 'apply',
      baseDir,
      args: [...(check ? ['--check', '--diff'] : []), ...(values['delete-orphans'] === true ? ['-e', JSON.stringify({ incus_orphans_delete: true })] : []), ...passed],
      fields: (ok) => ({ applied: ok && !check }),
      summary: (changed) =>
        check
          ? changed ? `${baseDir}: Incus would change (${changed} change(s)); nothing was touched` : `${baseDir}: Incus already has what the tree describes`
          : changed ? `${baseDir}: applied (${changed} change(s))` : `${baseDir}: already applied, nothing changed`,
    });
  },
};
