/**
 * `anklume-gen apply --check`: the plan. Every object apply manages that would be created,
 * updated (its keys, old → new) or deleted, in the order apply changes them, then the counts;
 * nothing is changed. Exit 0 when there is nothing to do, 1 when apply would change something or
 * refuse (as `sync --check`).
 */
import { join } from 'node:path';
import { EXIT_FAILED, EXIT_OK, type Invocation } from './command.js';
import { bootConfiguration, installedRuleset } from './extraVars.js';
import { jsonError, printJson } from './output.js';
import { DEFAULT_INSTALLED_RULESET } from '../infra/context.js';
import type { PlanObject } from '../audit/incusPlan.js';
import { DEFAULT_READ_TIMEOUT_S } from '../aiswitch/readLimit.js';

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
  const [{ incusPlan, planLines, rulesetObjects }, { liveTable, treeTable }, { readIfExists }, { membersPlan }] = await Promise.all([
    import('../audit/incusPlan.js'),
    import('../audit/hostReader.js'),
    import('../core/files.js'),
    import('../audit/membersPlan.js'),
  ]);
  const treeText = readIfExists(join(baseDir, 'nftables', 'anklume.nft')) ?? '';
  const installedPath = installedRuleset(vars, DEFAULT_INSTALLED_RULESET);
  const [plan, live, tree, onMembers] = await Promise.all([
    incusPlan(baseDir, vars, inv.env),
    members ? { ok: true as const, value: '' } : liveTable(inv.env),
    members ? { ok: true as const, value: '' } : treeTable(inv.env, treeText),
    members ? membersPlan({ env: inv.env, baseDir, inventory: members, vars, seconds: DEFAULT_READ_TIMEOUT_S }) : { ok: true as const, value: undefined },
  ]);
  const errors = [plan, live, tree, onMembers].flatMap((r) => (r.ok ? [] : [r.why]));
  if (!plan.ok || !live.ok || !tree.ok || !onMembers.ok) {
    if (json) printJson(inv.streams, { create: [], update: [], delete: [], refused: [], orphans: [], errors: errors.map((message) => jsonError({ message })) });
    else for (const e of errors) inv.streams.err(`anklume-gen apply --check: ${e}`);
    return EXIT_FAILED;
  }
  const bootConf = bootConfiguration(vars);
  const ruleset = onMembers.value?.objects ?? rulesetObjects({
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
