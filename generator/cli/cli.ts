/** anklume-gen command line: argument parsing and dispatch; the work happens in the modules. */
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { COMMON_FLAGS, COMMON_OPTIONS, defaultInfra, EXIT_FAILED, EXIT_OK, EXIT_USAGE, QUIET_FLAG, QUIET_OPTION, reportProblems, UsageError, type Command, type Invocation } from './command.js';
import { jsonError, jsonWarning, paintDiff, printDiagnostics, printJson, type Streams } from './output.js';
import { packagePath } from '../core/packageRoot.js';
import { closest } from '../core/suggest.js';
import type { SyncReport } from '../tree/sync.js';

// Each command loads what it needs when it runs: `validate` never loads the templates, `--help`
// loads nothing, and start-up stays short for every command.

function onePositional(positionals: string[], cwd: string): string {
  if (positionals.length > 1) throw new UsageError(`expected one infra path, got ${positionals.length}: ${positionals.join(' ')}`);
  return positionals[0] ?? defaultInfra(cwd);
}

/** What --clean-orphans deletes, or under --dry-run/--check would delete: the orphans that are not protected. */
const deletable = (report: SyncReport): string[] => report.orphans.filter((o) => !o.protected).map((o) => o.path);

function syncSummary(streams: Streams, report: SyncReport, dryRun: boolean, check: boolean, quiet: boolean, cleanOrphans: boolean): void {
  if (!quiet) for (const line of report.info) streams.err(line);
  for (const text of report.diffs.values()) streams.out(paintDiff(streams, text.replace(/\n$/, '')));
  if (dryRun || check) {
    for (const path of report.written) streams.out(`${check ? 'Out of date' : 'Would write'}: ${path}`);
  }
  for (const o of report.orphans) {
    streams.out(o.protected ? `PROTECTED (ephemeral=false): ${o.path} — manual removal required` : `ORPHAN: ${o.path}`);
  }
  if ((dryRun || check) && cleanOrphans) for (const path of deletable(report)) streams.out(`Would delete: ${path}`);
  for (const path of report.deleted) streams.out(`Deleted: ${path}`);
  const verb = dryRun || check ? 'would change' : 'written';
  streams.out(`${report.written.length} file(s) ${verb}, ${report.unchanged.length} unchanged${report.orphans.length ? `, ${report.orphans.length} orphan(s)` : ''}`);
}

const syncCommand: Command = {
  summary: 'validate infra.yml (or infra/) and write the Ansible tree and the nftables ruleset (the default command)',
  usage: 'anklume-gen [sync] <infra.yml|infra/> [--base-dir DIR] [--dry-run] [--check] [--diff] [--clean-orphans] [--quiet] [--json]',
  options: {
    ...COMMON_OPTIONS,
    ...QUIET_OPTION,
    'base-dir': { type: 'string' },
    'dry-run': { type: 'boolean' },
    check: { type: 'boolean' },
    diff: { type: 'boolean' },
    'clean-orphans': { type: 'boolean' },
  },
  flags: {
    'base-dir': 'where the Ansible tree is written (default .)',
    'dry-run': "write nothing; print 'Would write: <path>' per file that would change",
    check: 'write nothing; exit 1 when any file would change (drift check)',
    diff: 'print a unified diff of each file that changes (the managed block, or the whole new file; coloured when stdout takes colours); applies with patch -p0 in the base dir',
    'clean-orphans': 'delete orphan files, except those of ephemeral: false domains and machines',
    quiet: QUIET_FLAG,
  },
  async run(values, positionals, inv) {
    const infraPath = onePositional(positionals, inv.cwd);
    const dryRun = values['dry-run'] === true;
    const check = values.check === true;
    const { sync } = await import('../tree/sync.js');
    const report = await sync(
      { infraPath, baseDir: typeof values['base-dir'] === 'string' ? values['base-dir'] : '.', dryRun, check, cleanOrphans: values['clean-orphans'] === true, diff: values.diff === true, env: inv.env },
    );
    if (values.json && !report.errors.length) {
      const diffs = values.diff ? { diffs: Object.fromEntries(report.diffs) } : {};
      // What a real sync did (written, deleted), or what --dry-run/--check would do (would_write, would_delete).
      const done = dryRun || check
        ? { would_write: report.written, unchanged: report.unchanged, orphans: report.orphans, would_delete: values['clean-orphans'] ? deletable(report) : [] }
        : { written: report.written, unchanged: report.unchanged, orphans: report.orphans, deleted: report.deleted };
      printJson(inv.streams, { ...done, warnings: report.warnings.map(jsonWarning), ...diffs });
    } else {
      reportProblems(inv, values.json === true, report.errors, report.warnings);
    }
    if (report.errors.length) {
      if (!values.json) inv.streams.err(`${report.errors.length} error(s) in ${infraPath}; nothing was written.`);
      return EXIT_FAILED;
    }
    if (!values.json) syncSummary(inv.streams, report, dryRun, check, values.quiet === true, values['clean-orphans'] === true);
    return check && report.written.length > 0 ? EXIT_FAILED : EXIT_OK;
  },
};

const validateCommand: Command = {
  summary: 'check infra.yml (or infra/) and report every error; writes nothing',
  usage: 'anklume-gen validate <infra.yml|infra/> [--quiet] [--json]',
  options: { ...COMMON_OPTIONS, ...QUIET_OPTION },
  flags: { quiet: QUIET_FLAG },
  async run(values, positionals, inv) {
    const infraPath = onePositional(positionals, inv.cwd);
    const { prepare } = await import('../infra/pipeline.js');
    const { report } = await prepare(infraPath, inv.env);
    reportProblems(inv, values.json === true, report.errors, report.warnings);
    if (!values.json) {
      if (report.errors.length) inv.streams.err(`${report.errors.length} error(s) in ${infraPath}`);
      else inv.streams.out(`${infraPath}: valid`);
    }
    return report.errors.length ? EXIT_FAILED : EXIT_OK;
  },
};

const resolveCommand: Command = {
  summary: 'print the model after validation and enrichment (--raw: only read and merge the files)',
  usage: 'anklume-gen resolve <infra.yml|infra/> [--raw] [--quiet] [--json]',
  options: { ...COMMON_OPTIONS, ...QUIET_OPTION, raw: { type: 'boolean' } },
  flags: { raw: 'only read and merge the files: no validation, no defaults', quiet: QUIET_FLAG },
  async run(values, positionals, inv) {
    const infraPath = onePositional(positionals, inv.cwd);
    let model: unknown;
    if (values.raw) {
      const [{ readRaw }, { readSources }] = await Promise.all([import('../infra/infra.js'), import('../infra/sources.js')]);
      const { sources, errors: readErrors } = await readSources(infraPath);
      const { raw, errors } = readErrors.length ? { raw: undefined, errors: readErrors } : readRaw(sources);
      if (!raw) {
        reportProblems(inv, values.json === true, errors, []);
        return EXIT_FAILED;
      }
      model = raw;
    } else {
      const { prepare } = await import('../infra/pipeline.js');
      const { report, infra } = await prepare(infraPath, inv.env);
      if (!infra) {
        reportProblems(inv, values.json === true, report.errors, report.warnings);
        return EXIT_FAILED;
      }
      if (!values.json) printDiagnostics(inv.streams, [], report.warnings);
      if (!values.quiet) for (const line of report.info) inv.streams.err(line);
      model = infra;
    }
    if (values.json) printJson(inv.streams, model);
    else inv.streams.out((await import('../core/yamlOut.js')).toYaml(model));
    return EXIT_OK;
  },
};

const nftablesCommand: Command = {
  summary: 'print the nftables ruleset that isolates the domains (the one sync writes to nftables/anklume.nft)',
  usage: 'anklume-gen nftables <infra.yml|infra/> [--ai-domain DOMAIN] [--json]',
  options: { ...COMMON_OPTIONS, 'ai-domain': { type: 'string' } },
  flags: { 'ai-domain': 'render for this AI access holder (default: the state file, else ai_access_default)' },
  async run(values, positionals, inv) {
    const infraPath = onePositional(positionals, inv.cwd);
    const [{ prepare }, { countForwardRules, renderRuleset }, { chooseHolder, HolderRefused }] = await Promise.all([
      import('../infra/pipeline.js'),
      import('../nftables/nftables.js'),
      import('./holderOption.js'),
    ]);
    const { report, infra, holder } = await prepare(infraPath, inv.env);
    if (!infra) {
      reportProblems(inv, values.json === true, report.errors, report.warnings);
      return EXIT_FAILED;
    }
    let aiDomain: string | null;
    try {
      aiDomain = chooseHolder(infra, infraPath, holder, values['ai-domain']);
    } catch (err) {
      if (!(err instanceof HolderRefused)) throw err;
      reportProblems(inv, values.json === true, [{ message: err.message }], []);
      return EXIT_FAILED;
    }
    const ruleset = renderRuleset(infra, aiDomain);
    if (values.json) printJson(inv.streams, { ruleset, ai_domain: infra.global.ai_access_policy === 'exclusive' ? aiDomain : null, forward_rules: countForwardRules(ruleset) });
    else inv.streams.out(ruleset);
    return EXIT_OK;
  },
};

/** Every command, by name; a command's own module is loaded only when it runs or --help lists it. */
const COMMANDS: Record<string, () => Promise<Command>> = {
  init: async () => (await import('./initCommand.js')).initCommand,
  sync: async () => syncCommand,
  validate: async () => validateCommand,
  resolve: async () => resolveCommand,
  nftables: async () => nftablesCommand,
  apply: async () => (await import('./applyCommand.js')).applyCommand,
  'apply-nftables': async () => (await import('./applyNftables.js')).applyNftablesCommand,
  audit: async () => (await import('./auditCommand.js')).auditCommand,
  flows: async () => (await import('./flowsCommand.js')).flowsCommand,
  'ai-switch': async () => (await import('./aiCommands.js')).aiSwitchCommand,
  'ai-status': async () => (await import('./aiCommands.js')).aiStatusCommand,
};

async function help(name: string | undefined): Promise<string> {
  if (name && COMMANDS[name]) {
    const c = await COMMANDS[name]();
    const described = { ...COMMON_FLAGS, ...c.flags };
    const flags = Object.entries(c.options).map(([flag, o]) => {
      const name = `${o.short ? `-${o.short}, ` : ''}--${flag}${o.type === 'string' ? ' VALUE' : ''}`;
      return `  ${name.padEnd(28)} ${described[flag] ?? ''}`.trimEnd();
    });
    return `${c.usage}\n\n${c.summary}\n\nOptions:\n${flags.join('\n')}\n\nExit codes: 0 ok, 1 invalid infra or failed operation, 2 usage error.`;
  }
  const all = await Promise.all(Object.entries(COMMANDS).map(async ([n, load]) => [n, await load()] as const));
  const lines = all.map(([n, c]) => `  ${n.padEnd(14)} ${c.summary}`);
  return `anklume-gen — generator for anklume (infra.yml → Ansible tree, nftables isolation, AI access)\n\nUsage: anklume-gen <command> [options]   (anklume-gen <infra> = anklume-gen sync <infra>)\n\nCommands:\n${lines.join('\n')}\n\nRun 'anklume-gen <command> --help' for a command's options. Every command takes --json.\nExit codes: 0 ok, 1 invalid infra or failed operation, 2 usage error.`;
}

/**
 * Whether a first argument that names no command is an infra path (`anklume-gen <infra>` = sync):
 * it exists, or it looks like one (a .yml/.yaml name, a path with a slash). Anything else is a
 * mistyped command: `anklume-gen valdiate x.yml` must not sync two paths.
 */
function looksLikeInfra(arg: string): boolean {
  return arg.startsWith('-') || /\.ya?ml$/i.test(arg) || arg.includes('/') || existsSync(arg);
}

function version(): string {
  return (JSON.parse(readFileSync(packagePath('package.json'), 'utf8')) as { version: string }).version;
}

/** A message for the person, or under --json the validate shape on stdout (nothing on stderr). */
function fail(inv: Invocation, json: boolean, code: number, message: string, usage?: string): number {
  if (json) printJson(inv.streams, { errors: [jsonError({ message })], warnings: [], ...(usage ? { usage } : {}) });
  else inv.streams.err(usage ? `${message}\nUsage: ${usage}` : message);
  return code;
}

/** parseArgs's own words, shortened; an unknown option gets a did-you-mean among the command's. */
function parseError(err: Error & { code?: string }, command: Command): string {
  const unknown = err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /^Unknown option '([^']+)'/.exec(err.message)?.[1] : undefined;
  if (unknown === undefined) return err.message.split('\n')[0];
  const near = closest(unknown, Object.keys(command.options).map((o) => `--${o}`));
  return `unknown option '${unknown}'${near ? `; did you mean '${near}'?` : ''}`;
}

function unknownCommand(inv: Invocation, json: boolean, name: string, note = ''): number {
  const near = closest(name, Object.keys(COMMANDS));
  const hint = near ? `; did you mean '${near}'?` : '';
  return fail(inv, json, EXIT_USAGE, `anklume-gen: unknown command '${name}'${hint}${note}`, 'anklume-gen <command> [options]; anklume-gen --help lists the commands');
}

export async function main(inv: Invocation): Promise<number> {
  const [first, ...rest] = inv.args;
  const end = inv.args.indexOf('--');
  const json = (end < 0 ? inv.args : inv.args.slice(0, end)).includes('--json');
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    if (first === undefined) {
      inv.streams.err(await help(undefined));
      return EXIT_USAGE;
    }
    const topic = rest[0];
    if (topic !== undefined && !COMMANDS[topic]) return unknownCommand(inv, json, topic);
    inv.streams.out(await help(topic));
    return EXIT_OK;
  }
  if (first === '--version' || first === '-V') {
    if (json) printJson(inv.streams, { version: version() });
    else inv.streams.out(`anklume-gen ${version()}`);
    return EXIT_OK;
  }
  if (!COMMANDS[first] && !looksLikeInfra(first)) return unknownCommand(inv, json, first, ' (an infra path must exist, or end in .yml or .yaml)');
  const name = COMMANDS[first] ? first : 'sync';
  const args = COMMANDS[first] ? rest : inv.args;
  const command = await COMMANDS[name]();
  let parsed;
  try {
    parsed = parseArgs({ args, options: command.options, allowPositionals: true, strict: true });
  } catch (err) {
    return fail(inv, json, EXIT_USAGE, `anklume-gen ${name}: ${parseError(err as Error & { code?: string }, command)}`, command.usage);
  }
  if (parsed.values.help) {
    inv.streams.out(await help(name));
    return EXIT_OK;
  }
  try {
    return await command.run(parsed.values, parsed.positionals, inv);
  } catch (err) {
    if (err instanceof UsageError) return fail(inv, json, EXIT_USAGE, `anklume-gen ${name}: ${err.message}`, command.usage);
    const message = err instanceof Error ? err.message : String(err);
    if (inv.env.ANKLUME_DEBUG && err instanceof Error && err.stack) inv.streams.err(err.stack);
    return fail(inv, json, EXIT_FAILED, `anklume-gen ${name}: failed: ${message}`);
  }
}
