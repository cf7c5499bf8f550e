/** The `ai-switch` and `ai-status` commands: flags in, results out; the work is in aiSwitch / aiStatus. */
import { existsSync } from 'node:fs';
import { formatStatus, status } from './aiStatus.js';
import { aiSwitch, DEFAULT_INSTALLED_RULESET, type SwitchResult } from './aiSwitch.js';
import type { Command, Invocation } from './cli.js';
import { logFilePath, stateFilePath } from './context.js';
import { jsonError, jsonWarning, printDiagnostics, printJson } from './output.js';
import { prepare } from './sync.js';

// Not imported from cli.ts: cli.ts imports this module, and a runtime cycle would make the
// command objects depend on evaluation order. Same values as cli.ts.
const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

/** Same rule as cli.ts / make sync: infra/ when infra/base.yml exists, else infra.yml. */
function defaultInfra(cwd: string): string {
  return existsSync(`${cwd}/infra/base.yml`) ? 'infra' : 'infra.yml';
}

function usageError(inv: Invocation, name: string, usage: string, message: string): number {
  inv.streams.err(`anklume-gen ${name}: ${message}\nUsage: ${usage.split('\n')[0]}`);
  return EXIT_USAGE;
}

class BadFlag extends Error {}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function seconds(value: string | undefined, flag: string): number {
  if (value === undefined) return 0;
  if (!/^\d+(\.\d+)?$/.test(value)) throw new BadFlag(`${flag} takes a number of seconds, got '${value}'`);
  return Math.round(Number(value) * 1000);
}

function switchJson(r: SwitchResult): Record<string, unknown> {
  return {
    status: r.status,
    from: r.from === undefined ? null : r.from,
    to: r.to ?? null,
    flush: r.flush ?? null,
    revoke_batch: r.plan?.revokeBatch ?? null,
    grant_batch: r.plan?.grantBatch ?? null,
    switch_batch: r.plan?.switchBatch ?? null,
    gpu_machines: r.plan?.gpuMachines ?? [],
    services: r.plan?.services ?? [],
    gpu: r.gpu ?? [],
    failed_step: r.failedStep ?? null,
    safe_state: r.safe ?? null,
    messages: r.messages,
    errors: r.errors.map(jsonError),
    warnings: r.warnings.map(jsonWarning),
  };
}

export const aiSwitchCommand: Command = {
  summary: 'give exclusive access to ai-tools to another domain, flushing GPU memory in between',
  usage:
    'anklume-gen ai-switch --domain DOMAIN [--no-flush] [--dry-run] [--infra PATH] [--base-dir DIR] [--state-file PATH] [--log-file PATH] [--installed-ruleset PATH] [--wait SECONDS] [--json]\n' +
    '  --domain             the domain that gets AI access (not ai-tools)\n' +
    '  --no-flush           skip the GPU memory flush (prints a SECURITY warning)\n' +
    '  --dry-run            change nothing; print old -> new, flush or not, and the exact nft change\n' +
    "  --infra              infra.yml or infra/ (default: infra/ when infra/base.yml exists, else infra.yml)\n" +
    '  --base-dir           the generated tree; its nftables/anklume.nft is updated (default .)\n' +
    '  --state-file         default $ANKLUME_STATE_FILE or /opt/anklume/ai-access-current\n' +
    '  --log-file           default $ANKLUME_LOG_FILE or /var/log/anklume/ai-switch.log\n' +
    `  --installed-ruleset  the host's boot copy of the ruleset (default ${DEFAULT_INSTALLED_RULESET})\n` +
    '  --wait               wait up to SECONDS for a running switch to finish (default: fail at once)',
  options: {
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
    domain: { type: 'string' },
    'no-flush': { type: 'boolean' },
    'dry-run': { type: 'boolean' },
    infra: { type: 'string' },
    'base-dir': { type: 'string' },
    'state-file': { type: 'string' },
    'log-file': { type: 'string' },
    'installed-ruleset': { type: 'string' },
    wait: { type: 'string' },
  },
  async run(values, positionals, inv) {
    const usage = aiSwitchCommand.usage;
    if (positionals.length) return usageError(inv, 'ai-switch', usage, `unexpected argument: ${positionals.join(' ')} (the infra is given with --infra)`);
    const json = values.json === true;
    let waitMs: number;
    try {
      waitMs = seconds(str(values.wait), '--wait');
    } catch (err) {
      return usageError(inv, 'ai-switch', usage, (err as Error).message);
    }
    const result = await aiSwitch({
      infraPath: str(values.infra) ?? defaultInfra(inv.cwd),
      baseDir: str(values['base-dir']) ?? '.',
      ...(str(values.domain) !== undefined ? { domain: str(values.domain) } : {}),
      flush: values['no-flush'] !== true,
      dryRun: values['dry-run'] === true,
      stateFile: stateFilePath(inv.env, str(values['state-file'])),
      logFile: logFilePath(inv.env, str(values['log-file'])),
      installedRuleset: str(values['installed-ruleset']) || inv.env.ANKLUME_INSTALLED_RULESET || DEFAULT_INSTALLED_RULESET,
      waitMs,
      env: inv.env,
      color: inv.streams.color,
      progress: (line) => inv.streams.err(line),
      ansibleOutput: (line) => inv.streams.err(line),
    });
    if (result.code === EXIT_USAGE) {
      if (json) printJson(inv.streams, switchJson(result));
      return usageError(inv, 'ai-switch', usage, result.messages[0]);
    }
    if (json) {
      printJson(inv.streams, switchJson(result));
      return result.code;
    }
    if (result.status === 'refused' || result.status === 'failed') {
      printDiagnostics(inv.streams, [], result.warnings);
      if (result.status === 'refused' && result.errors.length > 1) printDiagnostics(inv.streams, result.errors, []);
      for (const line of result.messages) inv.streams.err(line);
      if (result.status === 'failed') printDiagnostics(inv.streams, result.errors.slice(1), []);
      return result.code;
    }
    printDiagnostics(inv.streams, [], result.warnings);
    for (const line of result.messages) inv.streams.out(line);
    return result.code;
  },
};

export const aiStatusCommand: Command = {
  summary: 'show who holds AI access, whether the live ruleset agrees, and the last switches',
  usage: 'anklume-gen ai-status [--infra PATH] [--state-file PATH] [--log-file PATH] [--history N] [--json]',
  options: {
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
    infra: { type: 'string' },
    'state-file': { type: 'string' },
    'log-file': { type: 'string' },
    history: { type: 'string' },
  },
  async run(values, positionals, inv) {
    const usage = aiStatusCommand.usage;
    if (positionals.length) return usageError(inv, 'ai-status', usage, `unexpected argument: ${positionals.join(' ')} (the infra is given with --infra)`);
    const historyText = str(values.history) ?? '10';
    if (!/^\d+$/.test(historyText)) return usageError(inv, 'ai-status', usage, `--history takes a number, got '${historyText}'`);
    const stateFile = stateFilePath(inv.env, str(values['state-file']));
    const infraPath = str(values.infra) ?? defaultInfra(inv.cwd);
    // The infra only supplies the default holder; a broken infra must not hide the live state.
    const { infra } = await prepare(infraPath, { ...inv.env, ANKLUME_STATE_FILE: stateFile }).catch(() => ({ infra: undefined }));
    const report = await status({ infra, stateFile, logFile: logFilePath(inv.env, str(values['log-file'])), history: Number(historyText) });
    if (values.json) printJson(inv.streams, report);
    else {
      for (const line of formatStatus(report)) inv.streams.out(line);
      for (const p of report.problems) inv.streams.err(`WARNING: ${p}`);
    }
    return 'error' in report.live || !report.live.agrees ? EXIT_FAILED : EXIT_OK;
  },
};
