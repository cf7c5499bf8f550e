/** The `ai-switch` and `ai-status` commands: flags in, results out; the work is in aiSwitch / aiStatus. */
// The switch and status modules (execa, ansible) load only when their command runs.
import type { SwitchResult } from '../aiswitch/aiSwitch.js';
import { COMMON_OPTIONS, defaultInfra, EXIT_FAILED, EXIT_OK, EXIT_USAGE, reportProblems, stringValue as str, UsageError, type Command, type Options } from './command.js';
import { DEFAULT_INSTALLED_RULESET, logFilePath, stateFilePath } from '../infra/context.js';
import { jsonError, jsonWarning, printDiagnostics, printJson } from './output.js';
import { readTimeout, TIMEOUT_FLAG, TIMEOUT_OPTION } from './readTimeout.js';


function seconds(value: string | undefined, flag: string): number {
  if (value === undefined) return 0;
  if (!/^\d+(\.\d+)?$/.test(value)) throw new UsageError(`${flag} takes a number of seconds, got '${value}'`);
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
    gpu_machine_types: r.plan?.gpuTypes ?? {},
    services: r.plan?.services ?? [],
    vram_scrub_command: r.plan?.scrubCommand ?? [],
    gpu: r.gpu ?? [],
    failed_step: r.failedStep ?? null,
    safe_state: r.safe ?? null,
    // On an Incus cluster only: its members, and those that did not confirm a step.
    ...(r.members ? { members: r.members, unconfirmed_members: r.unconfirmedMembers ?? [] } : {}),
    messages: r.messages,
    errors: r.errors.map(jsonError),
    warnings: r.warnings.map(jsonWarning),
  };
}

/** Where the infra, the AI state and the switch log are: both commands take the same flags. */
const WHERE_FLAGS = {
  infra: 'infra.yml or infra/ (default: infra/ when infra/base.yml exists, else infra.yml)',
  'state-file': 'default $ANKLUME_STATE_FILE or /opt/anklume/ai-access-current',
  'log-file': 'default $ANKLUME_LOG_FILE or /var/log/anklume/ai-switch.log',
};
const WHERE_OPTIONS: Options = { infra: { type: 'string' }, 'state-file': { type: 'string' }, 'log-file': { type: 'string' } };

export const aiSwitchCommand: Command = {
  summary: 'give exclusive access to ai-tools to another domain, flushing GPU memory in between',
  usage: 'anklume-gen ai-switch --domain DOMAIN [--no-flush] [--dry-run] [--infra PATH] [--base-dir DIR] [--state-file PATH] [--log-file PATH] [--installed-ruleset PATH] [--wait SECONDS] [--json]',
  flags: {
    domain: 'the domain that gets AI access (not ai-tools)',
    'no-flush': 'skip the GPU memory flush (prints a SECURITY warning)',
    'dry-run': 'change nothing; print old -> new, flush or not, and the exact nft change',
    ...WHERE_FLAGS,
    'base-dir': 'the generated tree; its nftables/anklume.nft is updated (default .)',
    'installed-ruleset': `the host's boot copy of the ruleset (default ${DEFAULT_INSTALLED_RULESET})`,
    wait: 'wait up to SECONDS for a running switch to finish (default: fail at once)',
  },
  options: {
    ...COMMON_OPTIONS,
    domain: { type: 'string' },
    'no-flush': { type: 'boolean' },
    'dry-run': { type: 'boolean' },
    ...WHERE_OPTIONS,
    'base-dir': { type: 'string' },
    'installed-ruleset': { type: 'string' },
    wait: { type: 'string' },
  },
  async run(values, positionals, inv) {
    if (positionals.length) throw new UsageError(`unexpected argument: ${positionals.join(' ')} (the infra is given with --infra)`);
    const json = values.json === true;
    const waitMs = seconds(str(values.wait), '--wait');
    const [{ aiSwitch }, { securityWarning }] = await Promise.all([import('../aiswitch/aiSwitch.js'), import('../aiswitch/aiPlan.js')]);
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
      // Under --json the switch's own document (status: refused) is the one answer.
      if (!json) throw new UsageError(result.messages[0]);
      printJson(inv.streams, switchJson(result));
      return EXIT_USAGE;
    }
    if (json) {
      printJson(inv.streams, switchJson(result));
      return result.code;
    }
    if (result.status === 'refused' || result.status === 'failed') {
      printDiagnostics(inv.streams, [], result.warnings);
      if (result.status === 'refused' && result.errors.length > 1) printDiagnostics(inv.streams, result.errors, []);
      // A refusal reads like every command's error; a failure is the switch's own account of it.
      for (const line of result.messages) inv.streams.err(result.status === 'refused' ? `error: ${line}` : line);
      if (result.status === 'failed') printDiagnostics(inv.streams, result.errors.slice(1), []);
      return result.code;
    }
    printDiagnostics(inv.streams, [], result.warnings);
    // The plan is the result (stdout); its SECURITY line is a warning, on stderr like every other
    // (and like the one a switch without --dry-run prints).
    const security = result.plan && !result.plan.flush ? securityWarning(result.plan) : undefined;
    for (const line of result.messages) (line === security ? inv.streams.err : inv.streams.out)(line);
    return result.code;
  },
};

export const aiStatusCommand: Command = {
  summary: 'show who holds AI access, whether the live ruleset agrees, and the last switches',
  usage: 'anklume-gen ai-status [--infra PATH] [--state-file PATH] [--log-file PATH] [--history N] [--base-dir DIR] [--timeout SECONDS] [--json]',
  flags: {
    ...WHERE_FLAGS,
    history: 'how many past switches to show (default 10)',
    'base-dir': "on an Incus cluster, the tree whose inventory/_cluster.yml reaches the members (default .)",
    ...TIMEOUT_FLAG,
  },
  options: {
    ...COMMON_OPTIONS,
    ...WHERE_OPTIONS,
    history: { type: 'string' },
    'base-dir': { type: 'string' },
    ...TIMEOUT_OPTION,
  },
  async run(values, positionals, inv) {
    if (positionals.length) throw new UsageError(`unexpected argument: ${positionals.join(' ')} (the infra is given with --infra)`);
    const historyText = str(values.history) ?? '10';
    if (!/^\d+$/.test(historyText)) throw new UsageError(`--history takes a number, got '${historyText}'`);
    const seconds = readTimeout(values);
    const stateFile = stateFilePath(inv.env, str(values['state-file']));
    const infraPath = str(values.infra) ?? defaultInfra(inv.cwd);
    // The infra only supplies the default holder; a broken infra must not hide the live state.
    const [{ prepare }, { formatStatus, status, statusAgrees }, { jsonLogPath }] = await Promise.all([import('../infra/pipeline.js'), import('../aiswitch/aiStatus.js'), import('../aiswitch/aiPlan.js')]);
    const { infra } = await prepare(infraPath, { ...inv.env, ANKLUME_STATE_FILE: stateFile }).catch(() => ({ infra: undefined }));
    const logFile = logFilePath(inv.env, str(values['log-file']));
    // On an Incus cluster every member's sets and the cluster's record, not this host's set.
    const cluster = infra?.global.cluster ? await (await import('./aiStatusCluster.js')).clusterReadings(inv, { infra, infraPath, baseDir: str(values['base-dir']) ?? '.', seconds }) : undefined;
    if (cluster && 'problem' in cluster) {
      reportProblems(inv, values.json === true, [{ message: cluster.problem }], []);
      return EXIT_FAILED;
    }
    const report = await status({ infra, stateFile, logFile, jsonLogFile: jsonLogPath(logFile), history: Number(historyText), ...(cluster ? { cluster } : {}) });
    if (values.json) printJson(inv.streams, report);
    else {
      for (const line of formatStatus(report)) inv.streams.out(line);
      for (const p of report.problems) inv.streams.err(`WARNING: ${p}`);
    }
    if (report.cluster) return statusAgrees(report) ? EXIT_OK : EXIT_FAILED;
    return 'error' in report.live || !report.live.agrees ? EXIT_FAILED : EXIT_OK;
  },
};
