/**
 * `anklume-gen apply-nftables`: what `make nftables` does, for those who installed the package
 * (the Makefile is not in it): the shipped site.yml, tag nftables, on the ruleset sync wrote under
 * the base dir. The incus_nftables role checks the file with `nft -c` before it replaces the
 * installed one, and loads it only when the live table differs.
 */
import { mkdtempSync, realpathSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COMMON_OPTIONS, EXIT_FAILED, EXIT_OK, stringValue as str, UsageError, type Command } from './command.js';
import { printJson } from './output.js';
import { packagePath } from '../core/packageRoot.js';

const RULESET = 'nftables/anklume.nft';

/** The play recap's `changed=N` for localhost (undefined when ansible printed no recap). */
export function changedCount(output: string): number | undefined {
  const recap = /^localhost\s*:\s*ok=\d+\s+changed=(\d+)/m.exec(output);
  return recap ? Number(recap[1]) : undefined;
}

export const applyNftablesCommand: Command = {
  summary: 'apply the isolation ruleset sync wrote (nftables/anklume.nft) on this host: site.yml --tags nftables, as make nftables',
  usage: 'anklume-gen apply-nftables [--base-dir DIR] [--dry-run] [--json] [-- ANSIBLE-PLAYBOOK-ARGS...]',
  options: { ...COMMON_OPTIONS, 'base-dir': { type: 'string' }, 'dry-run': { type: 'boolean' } },
  flags: {
    'base-dir': 'the directory sync wrote to; its nftables/anklume.nft is applied (default .)',
    'dry-run': "Ansible's check mode: say whether the live table would change, change nothing",
  },
  async run(values, positionals, inv) {
    if (positionals.length && !inv.args.includes('--')) {
      throw new UsageError(`unexpected argument: ${positionals.join(' ')} (arguments for ansible-playbook go after --)`);
    }
    const json = values.json === true;
    const baseDir = str(values['base-dir']) ?? '.';
    const ruleset = join(baseDir, RULESET);
    try {
      if (!statSync(ruleset).isFile()) throw new Error('not a file');
    } catch {
      const message = `${ruleset}: no ruleset to apply; write it first with 'anklume-gen sync <infra> --base-dir ${baseDir}'`;
      if (json) printJson(inv.streams, { applied: false, changed: null, errors: [{ message }] });
      else inv.streams.err(message);
      return EXIT_FAILED;
    }
    const dryRun = values['dry-run'] === true;
    const { runPlaybook } = await import('../aiswitch/ansible.js');
    let output = '';
    let pending = '';
    // Ansible's temporary files live here and go with it, whatever happens to the run.
    const tempDir = mkdtempSync(join(tmpdir(), 'anklume-apply-nftables-'));
    const result = await runPlaybook({
      tempDir,
      playbook: packagePath('site.yml'),
      extraArgs: ['--tags', 'nftables', ...(dryRun ? ['--check'] : []), ...positionals],
      // What site.yml reads to find the ruleset (`make nftables` passes it the same way).
      env: { ...inv.env, ANKLUME_BASE_DIR: realpathSync(baseDir) },
      color: inv.streams.color && !json,
      // Whole lines to stderr (stdout is for the result and --json).
      onOutput: (chunk) => {
        const lines = (pending + chunk).split('\n');
        pending = lines.pop() ?? '';
        output += chunk;
        if (lines.length) inv.streams.err(lines.join('\n'));
      },
    }).finally(() => rmSync(tempDir, { recursive: true, force: true }));
    if (pending) inv.streams.err(pending);
    const changed = changedCount(output);
    if (!result.ok) {
      const why = result.spawnError ? `ansible-playbook could not be started (${result.spawnError}); install Debian's ansible` : `ansible-playbook failed (${result.signal ?? `exit ${result.exitCode}`}); its output is above`;
      if (json) printJson(inv.streams, { applied: false, changed: changed ?? null, errors: [{ message: why }] });
      else inv.streams.err(`anklume-gen apply-nftables: ${why}`);
      return EXIT_FAILED;
    }
    if (json) printJson(inv.streams, { applied: !dryRun, changed: changed ?? null, errors: [] });
    else if (dryRun) inv.streams.out(changed ? `${ruleset}: the live table would change (${changed} change(s)); nothing was applied` : `${ruleset}: the live table is up to date`);
    else inv.streams.out(changed ? `${ruleset}: applied (${changed} change(s))` : `${ruleset}: already applied, nothing changed`);
    return EXIT_OK;
  },
};
