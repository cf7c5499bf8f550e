/**
 * `anklume-gen apply-nftables`: what `make nftables` does: the shipped site.yml, tag nftables, on
 * the ruleset sync wrote under the base dir. The incus_nftables role checks the file with `nft -c`
 * before it replaces the installed one, and loads it only when the live table differs.
 */
import { join } from 'node:path';
import { clusterRuleset } from './clusterTree.js';
import { COMMON_OPTIONS, stringValue as str, type Command } from './command.js';
import { isFile, notSynced, playbookPassThrough, RULESET, runSite, staleRuleset } from './sitePlaybook.js';

export const applyNftablesCommand: Command = {
  summary: 'apply the isolation ruleset sync wrote (nftables/anklume.nft) on this host, or on every member of an Incus cluster: site.yml --tags nftables, as make nftables',
  usage: 'anklume-gen apply-nftables [--base-dir DIR] [--dry-run|--check] [--json] [-- ANSIBLE-PLAYBOOK-ARGS...]',
  options: { ...COMMON_OPTIONS, 'base-dir': { type: 'string' }, 'dry-run': { type: 'boolean' }, check: { type: 'boolean' } },
  flags: {
    'base-dir': 'the directory sync wrote to; its nftables/anklume.nft is applied (default .)',
    'dry-run': "Ansible's check mode: say whether the live table would change, change nothing",
    check: 'the same as --dry-run (the word apply uses)',
  },
  async run(values, positionals, inv) {
    const passed = playbookPassThrough(positionals, inv);
    const json = values.json === true;
    const baseDir = str(values['base-dir']) ?? '.';
    const ruleset = join(baseDir, RULESET);
    if (!isFile(ruleset)) {
      return notSynced(inv, json, `${ruleset}: no ruleset to apply; write it first with 'anklume-gen sync <infra> --base-dir ${baseDir}'`, { applied: false });
    }
    const stale = await staleRuleset(baseDir, inv.env);
    if (stale) return notSynced(inv, json, stale, { applied: false });
    const dryRun = values['dry-run'] === true || values.check === true;
    return runSite({
      inv,
      json,
      name: 'apply-nftables',
      baseDir,
      args: [
        // A cluster's ruleset goes on every member (site.yml's second play).
        ...(clusterRuleset(baseDir) ? ['-i', join(baseDir, (await import('../tree/tree.js')).CLUSTER_INVENTORY)] : []),
        '--tags', 'nftables', ...(dryRun ? ['--check'] : []), ...passed,
      ],
      fields: (ok) => ({ applied: ok && !dryRun }),
      summary: (changed) =>
        dryRun
          ? changed ? `${ruleset}: the live table would change (${changed} change(s)); nothing was applied` : `${ruleset}: the live table is up to date`
          : changed ? `${ruleset}: applied (${changed} change(s))` : `${ruleset}: already applied, nothing changed`,
    });
  },
};
