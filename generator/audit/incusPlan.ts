/**
 * The plan of `apply`: what would be created, updated or deleted, object by object. The Incus part
 * is the same comparison the roles carry out (roles/incus_preflight/filter_plugins/anklume_plan.py,
 * run here as a script on the same tree), so the plan shown and the apply that follows cannot
 * disagree; the ruleset part (live table, boot copy) is the incus_nftables role's comparison.
 */
import { execa } from 'execa';
import { existsSync, readFileSync } from 'node:fs';
import type { Read } from './auditChecks.js';
import { DEFAULT_READ_TIMEOUT_S, noAnswer } from '../aiswitch/readLimit.js';
import { runLimited } from '../aiswitch/limitedRun.js';
import { packagePath } from '../core/packageRoot.js';

export type Change = [unknown, unknown];

export interface PlanObject {
  op: 'create' | 'update' | 'delete';
  kind: 'project' | 'profile' | 'bridge' | 'instance' | 'ruleset' | 'routes';
  /** kind:name, e.g. instance:pro/pro-dev, bridge:net-pro, ruleset:live; on a cluster ruleset:live@m1, routes:m1. */
  id: string;
  changes: Record<string, Change>;
}

export interface Orphan {
  kind: 'instance' | 'bridge';
  label: string;
  protected: boolean;
}

export interface IncusPlan {
  /** Refusals: with any, nothing would be made. */
  problems: string[];
  objects: PlanObject[];
  orphans: Orphan[];
}

const PLAN_SCRIPT = packagePath('roles', 'incus_preflight', 'filter_plugins', 'anklume_plan.py');

/**
 * The Python that runs Ansible (its modules and PyYAML are there): ansible-playbook's own
 * interpreter, else Debian's, which its ansible package uses.
 */
async function ansiblePython(env: NodeJS.ProcessEnv): Promise<string> {
  const which = await execa('sh', ['-c', 'command -v ansible-playbook'], { env, extendEnv: false, reject: false });
  const path = String(which.stdout).trim();
  if (which.exitCode === 0 && path) {
    const shebang = /^#!\s*(\S+)(?:\s+(\S+))?/.exec(readFileSync(path, 'utf8').split('\n', 1)[0]);
    const interpreter = shebang && (shebang[1].endsWith('/env') ? shebang[2] : shebang[1]);
    if (interpreter && /(^|\/)python3?[\d.]*$/.test(interpreter)) return interpreter;
  }
  return existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
}

/** `extra` holds the ansible variables given with -e (the same names the roles take). */
export async function incusPlan(tree: string, extra: Record<string, unknown>, env: NodeJS.ProcessEnv, seconds = DEFAULT_READ_TIMEOUT_S): Promise<Read<IncusPlan>> {
  const python = await ansiblePython(env);
  const r = await runLimited([python, PLAN_SCRIPT, tree, JSON.stringify(extra)], env, seconds, { group: true });
  if (r.timedOut) return { ok: false, why: `cannot read Incus: ${noAnswer(seconds)} (without quorum a cluster's database does not answer)` };
  let parsed: (IncusPlan & { error?: undefined }) | { error: string } | undefined;
  try {
    parsed = JSON.parse(String(r.stdout)) as typeof parsed;
  } catch {
    parsed = undefined;
  }
  if (!parsed || 'error' in parsed && parsed.error !== undefined) {
    const why = parsed && 'error' in parsed && parsed.error ? parsed.error : (r.stderr || r.message).trim().split('\n').slice(-1)[0];
    const hint = /permission denied|needed permissions|EACCES/i.test(why) ? ' (run as root, or as a member of incus-admin)' : /not found|ENOENT|No such file/.test(why) ? ' (is Incus installed and its daemon running?)' : '';
    return { ok: false, why: `cannot read Incus: ${why}${hint}` };
  }
  const plan = parsed as IncusPlan;
  return { ok: true, value: { problems: plan.problems, objects: plan.objects, orphans: plan.orphans } };
}

/** Where the incus_nftables role installs the ruleset and includes it at boot, with the same variables. */
export interface RulesetPlace {
  installedPath: string;
  installedText: string | undefined;
  /** The boot configuration, when the role adds the include line to it (incus_nftables_boot_include). */
  bootConf?: { path: string; text: string | undefined };
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * The ruleset's part of the plan, as the incus_nftables role decides it: the live table against
 * the tree's file (both as the kernel lists them), the boot copy against the tree's file, and the
 * include line the role appends to an existing boot configuration that lacks it.
 */
export function rulesetObjects(o: { liveTable: string | undefined; treeTable: string; treeText: string } & RulesetPlace): PlanObject[] {
  const out: PlanObject[] = [];
  if (o.liveTable === undefined) out.push({ op: 'create', kind: 'ruleset', id: 'ruleset:live', changes: { 'table inet anklume': [null, 'loaded'] } });
  else if (o.liveTable !== o.treeTable) out.push({ op: 'update', kind: 'ruleset', id: 'ruleset:live', changes: { 'table inet anklume': ['differs from the tree', "the tree's"] } });
  if (o.installedText === undefined) out.push({ op: 'create', kind: 'ruleset', id: 'ruleset:boot', changes: { [o.installedPath]: [null, "the tree's ruleset"] } });
  else if (o.installedText !== o.treeText) out.push({ op: 'update', kind: 'ruleset', id: 'ruleset:boot', changes: { [o.installedPath]: ['differs from the tree', "the tree's ruleset"] } });
  const dir = o.installedPath.replace(/\/[^/]*$/, '');
  const line = `include "${dir}/*.nft"`;
  if (o.bootConf?.text !== undefined && !new RegExp(`^\\s*include\\s+"${escapeRegExp(dir)}/\\*\\.nft"`, 'm').test(o.bootConf.text)) {
    out.push({ op: 'update', kind: 'ruleset', id: 'ruleset:boot-conf', changes: { [o.bootConf.path]: ['no include of the ruleset', line] } });
  }
  return out;
}

const shown = (v: unknown): string => (v === null || v === undefined ? '(none)' : typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v));

/** One line per object, in the order apply changes them: `create instance:pro/pro-dev (key: old → new; …)`. */
export function planLines(objects: PlanObject[]): string[] {
  return objects.map((o) => {
    const keys = Object.entries(o.changes).map(([k, [before, after]]) => (o.op === 'create' ? `${k}: ${shown(after)}` : `${k}: ${shown(before)} → ${shown(after)}`));
    return `${o.op.padEnd(6)} ${o.id}${keys.length ? ` (${keys.join('; ')})` : ''}`;
  });
}
