/**
 * `anklume-gen apply --check`: the plan. Every object apply manages that would be created,
 * updated (its keys, old → new) or deleted, in the order apply changes them, then the counts;
 * nothing is changed. Exit 0 when there is nothing to do, 1 when apply would change something or
 * refuse (as `sync --check`).
 */
import { mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT_FAILED, EXIT_OK, type Invocation } from './command.js';
import { bootConfiguration, installedRuleset } from './extraVars.js';
import { jsonError, printJson } from './output.js';
import { DEFAULT_INSTALLED_RULESET } from '../infra/context.js';
import type { PlanObject } from '../audit/incusPlan.js';

/**
 * On an Incus cluster, the ruleset and the routes of every member, as the members' play of site.yml
 * would change them: that play run under --check (`-i` the members' inventory, `--limit` them),
 * each member's record of what differs read back (ruleset:live@m1, ruleset:boot@m1, routes:m1).
 */
async function membersPlan(inv: Invocation, baseDir: string, inventory: string, vars: Record<string, unknown>): Promise<{ ok: true; value: PlanObject[] } | { ok: false; why: string }> {
  const [{ runPlaybook }, { packagePath }] = await Promise.all([import('../aiswitch/ansible.js'), import('../core/packageRoot.js')]);
  const dir = mkdtempSync(join(tmpdir(), 'anklume-members-plan-'));
  try {
    const planFile = join(dir, 'plan.json');
    let output = '';
    const result = await runPlaybook({
      tempDir: dir,
      playbook: packagePath('site.yml'),
      extraArgs: ['-i', inventory, '--limit', 'anklume_cluster', '--tags', 'nftables,networks', '--check', '-e', JSON.stringify({ ...vars, anklume_plan_file: planFile })],
      env: { ...inv.env, ANKLUME_BASE_DIR: realpathSync(baseDir) },
      color: false,
      onOutput: (chunk) => void (output += chunk),
    });
    if (!result.ok) return { ok: false, why: `the members could not be read (ansible-playbook ${result.spawnError ?? `exit ${result.exitCode}`}): ${output.trim().split('\n').slice(-3).join(' ')}` };
    const records = readdirSync(dir).filter((name) => /^plan\.json\.(ruleset|routes)@/.test(name)).sort();
    const objects = records.flatMap((name) => Object.entries(JSON.parse(readFileSync(join(dir, name), 'utf8')) as Record<string, unknown>)
      .filter(([, differs]) => String(differs).toLowerCase() === 'true')
      .map(([id]): PlanObject => ({ op: 'update', kind: id.startsWith('routes:') ? 'routes' : 'ruleset', id, changes: {} })));
    return { ok: true, value: objects };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Where the ruleset goes in apply's order: after the bridges, before the instances. */
function inApplyOrder(incus: PlanObject[], ruleset: PlanObject[]): PlanObject[] {
  const before = incus.filter((o) => o.kind === 'project' || o.kind === 'profile' || o.kind === 'bridge');
  const after = incus.filter((o) => !before.includes(o));
  return [...before, ...ruleset, ...after];
}

/**
 * @param members on an Incus cluster, the inventory of its members: the ruleset's part is read on
 *   each of them, not on this host
 */
export async function showPlan(inv: Invocation, json: boolean, baseDir: string, vars: Record<string, unknown>, members?: string): Promise<number> {
  const [{ incusPlan, planLines, rulesetObjects }, { liveTable, treeTable }, { readIfExists }] = await Promise.all([
    import('../audit/incusPlan.js'),
    import('../audit/hostReader.js'),
    import('../core/files.js'),
  ]);
  const treeText = readIfExists(join(baseDir, 'nftables', 'anklume.nft')) ?? '';
  const installedPath = installedRuleset(vars, DEFAULT_INSTALLED_RULESET);
  const [plan, live, tree, onMembers] = await Promise.all([
    incusPlan(baseDir, vars, inv.env),
    members ? { ok: true as const, value: '' } : liveTable(inv.env),
    members ? { ok: true as const, value: '' } : treeTable(inv.env, treeText),
    members ? membersPlan(inv, baseDir, members, vars) : { ok: true as const, value: undefined },
  ]);
  const errors = [plan, live, tree, onMembers].flatMap((r) => (r.ok ? [] : [r.why]));
  if (!plan.ok || !live.ok || !tree.ok || !onMembers.ok) {
    if (json) printJson(inv.streams, { create: [], update: [], delete: [], refused: [], orphans: [], errors: errors.map((message) => jsonError({ message })) });
    else for (const e of errors) inv.streams.err(`anklume-gen apply --check: ${e}`);
    return EXIT_FAILED;
  }
  const bootConf = bootConfiguration(vars);
  const ruleset = onMembers.value ?? rulesetObjects({
    liveTable: live.value, treeTable: tree.value ?? '', treeText, installedPath, installedText: readIfExists(installedPath),
    ...(bootConf ? { bootConf: { path: bootConf, text: readIfExists(bootConf) } } : {}),
  });
  const objects = plan.value.problems.length ? [] : inApplyOrder(plan.value.objects, ruleset);
  const by = (op: PlanObject['op']) => objects.filter((o) => o.op === op).map(({ kind, id, changes }) => ({ kind, id, changes }));
  if (json) {
    printJson(inv.streams, { create: by('create'), update: by('update'), delete: by('delete'), refused: plan.value.problems, orphans: plan.value.orphans, errors: [] });
  } else {
    for (const p of plan.value.problems) inv.streams.out(`REFUSED: ${p}`);
    for (const line of planLines(objects)) inv.streams.out(line);
    for (const o of plan.value.orphans) {
      const deleted = objects.some((x) => x.op === 'delete' && x.id === `${o.kind}:${o.label}`);
      if (!deleted) inv.streams.out(o.protected ? `PROTECTED (ephemeral=false): ${o.kind} ${o.label} — manual removal required` : `ORPHAN: ${o.kind} ${o.label} — apply --delete-orphans deletes it`);
    }
    inv.streams.out(plan.value.problems.length
      ? `${baseDir}: apply would refuse (${plan.value.problems.length} problem(s)); nothing would be made`
      : objects.length
        ? `${baseDir}: ${by('create').length} to create, ${by('update').length} to update, ${by('delete').length} to delete; nothing was touched`
        : `${baseDir}: nothing to do: Incus and the ruleset${members ? ' and routes of every member' : ''} are what the tree describes`);
  }
  return plan.value.problems.length || objects.length ? EXIT_FAILED : EXIT_OK;
}
