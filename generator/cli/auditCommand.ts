/** The `audit` command: the live host against the tree and the promise; the work is in audit/. */
import { join } from 'node:path';
import { COMMON_OPTIONS, defaultInfra, EXIT_FAILED, EXIT_OK, reportProblems, stringValue as str, UsageError, type Command } from './command.js';
import { bootConfiguration, DEFAULT_BOOT_CONF, extraVars, installedRuleset } from './extraVars.js';
import { printJson } from './output.js';
import { readTimeout, TIMEOUT_FLAG, TIMEOUT_OPTION } from './readTimeout.js';
import { DEFAULT_INSTALLED_RULESET, stateFilePath } from '../infra/context.js';


/** The base dir holds no tree, or the tree of another infra: the audit would compare the wrong things. */
async function wrongTree(baseDir: string, project: string, infraPath: string): Promise<string | undefined> {
  const { readIfExists } = await import('../core/files.js');
  const all = readIfExists(join(baseDir, 'group_vars', 'all.yml'));
  if (all === undefined) return `${join(baseDir, 'group_vars', 'all.yml')}: no generated tree to audit against; write it with 'anklume-gen sync ${infraPath} --base-dir ${baseDir}' (make sync INFRA=${infraPath} BASE_DIR=${baseDir}), or name the tree that has it: --base-dir DIR (make audit BASE_DIR=DIR)`;
  const { load } = await import('js-yaml');
  const written = (load(all) as { project_name?: unknown } | null)?.project_name;
  if (written !== project) {
    return `${baseDir}: this tree was written for project '${String(written)}', not for '${project}' (${infraPath}): name the right tree with --base-dir DIR or the right infra with --infra PATH (make audit BASE_DIR=DIR INFRA=PATH), or sync again`;
  }
  return undefined;
}

export const auditCommand: Command = {
  summary: 'check the live host against the tree and the promise (ruleset, boot copy, AI holder, devices, instances, connections); exit 1 on any finding',
  usage: 'anklume-gen audit [--infra PATH] [--base-dir DIR] [--state-file PATH] [--installed-ruleset PATH] [--boot-conf PATH] [--timeout SECONDS] [--json] [-- -e VARS...]',
  flags: {
    infra: 'infra.yml or infra/ (default: infra/ when infra/base.yml exists, else infra.yml)',
    'base-dir': 'the generated tree (default .)',
    'state-file': 'default $ANKLUME_STATE_FILE or /opt/anklume/ai-access-current',
    'installed-ruleset': `the host's boot copy of the ruleset (default $ANKLUME_INSTALLED_RULESET or ${DEFAULT_INSTALLED_RULESET})`,
    'boot-conf': `the nftables configuration loaded at boot (default $ANKLUME_BOOT_CONF or ${DEFAULT_BOOT_CONF})`,
    ...TIMEOUT_FLAG,
  },
  options: {
    ...COMMON_OPTIONS,
    infra: { type: 'string' },
    'base-dir': { type: 'string' },
    'state-file': { type: 'string' },
    'installed-ruleset': { type: 'string' },
    'boot-conf': { type: 'string' },
    ...TIMEOUT_OPTION,
  },
  async run(values, positionals, inv) {
    if (positionals.length && !inv.args.includes('--')) throw new UsageError(`unexpected argument: ${positionals.join(' ')} (the infra is given with --infra; ansible variables for the roles go after --, as -e ...)`);
    const vars = await extraVars(positionals);
    const json = values.json === true;
    const seconds = readTimeout(values);
    const infraPath = str(values.infra) ?? defaultInfra(inv.cwd);
    const stateFile = stateFilePath(inv.env, str(values['state-file']));
    const [{ prepare, effectiveHolder }, { readHost }, { judgeHost, withTreeFindings }, { renderRuleset, RULESET_FILE }, { readIfExists }, { readContext }] = await Promise.all([
      import('../infra/pipeline.js'),
      import('../audit/hostReader.js'),
      import('../audit/auditChecks.js'),
      import('../nftables/nftables.js'),
      import('../core/files.js'),
      import('../infra/context.js'),
    ]);
    const { report, infra, holder } = await prepare(infraPath, { ...inv.env, ANKLUME_STATE_FILE: stateFile });
    if (!infra) {
      reportProblems(inv, json, report.errors, report.warnings);
      return EXIT_FAILED;
    }
    const held = effectiveHolder(infra, holder);
    const baseDir = str(values['base-dir']) ?? '.';
    const treeProblem = await wrongTree(baseDir, infra.project_name, infraPath);
    if (treeProblem) {
      reportProblems(inv, json, [{ message: treeProblem }], []);
      return EXIT_FAILED;
    }
    // The tree's own files: what apply would refuse, and managed blocks that are not what infra.yml gives.
    const [{ sync }, { treeFileFindings }, { treeOverridden }] = await Promise.all([import('../tree/sync.js'), import('../audit/auditChecks.js'), import('./sitePlaybook.js')]);
    const drift = await sync({ infraPath, baseDir, dryRun: true, env: { ...inv.env, ANKLUME_STATE_FILE: stateFile } });
    const treeFindings = treeFileFindings(await treeOverridden(baseDir), drift.written.filter((path) => path !== RULESET_FILE), `anklume-gen sync ${infraPath} --base-dir ${baseDir} (make sync)`);
    if (infra.global.cluster) {
      const { auditCluster } = await import('./auditCluster.js');
      return auditCluster(inv, json, {
        infra, held, baseDir, vars, infraPath, seconds, treeFindings,
        treeText: readIfExists(join(baseDir, RULESET_FILE)),
        expectedText: renderRuleset(infra, held),
        installedPath: str(values['installed-ruleset']) || installedRuleset(vars, inv.env.ANKLUME_INSTALLED_RULESET || DEFAULT_INSTALLED_RULESET),
        bootConfPath: str(values['boot-conf']) || bootConfiguration(vars),
      });
    }
    const readings = await readHost({
      env: inv.env,
      tree: baseDir,
      extraVars: vars,
      treeText: readIfExists(join(baseDir, RULESET_FILE)),
      expectedText: renderRuleset(infra, held),
      installedPath: str(values['installed-ruleset']) || installedRuleset(vars, inv.env.ANKLUME_INSTALLED_RULESET || DEFAULT_INSTALLED_RULESET),
      bootConfPath: str(values['boot-conf']) || inv.env.ANKLUME_BOOT_CONF || DEFAULT_BOOT_CONF,
    });
    const audit = withTreeFindings(judgeHost(readings, infra, infra.global.ai_access_policy === 'exclusive' ? held : null, await readContext(inv.env)), treeFindings);
    if (json) {
      printJson(inv.streams, audit);
      return audit.clean ? EXIT_OK : EXIT_FAILED;
    }
    for (const f of audit.findings) inv.streams.out(`FINDING (${f.check}): ${f.message}\n  fix: ${f.fix}`);
    for (const u of audit.unchecked) inv.streams.out(`NOT CHECKED (${u.check}): ${u.why}`);
    if (audit.clean) inv.streams.out('clean: the live host is what the tree and infra.yml say');
    else inv.streams.out(`${audit.findings.length} finding(s)${audit.unchecked.length ? `, ${audit.unchecked.length} check(s) that could not run: not a clean host` : ''}`);
    return audit.clean ? EXIT_OK : EXIT_FAILED;
  },
};
