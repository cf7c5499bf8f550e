/**
 * `anklume-gen audit`, the judging half: what was read from the live host (hostReader.ts) against
 * the tree and the promise. Pure: every finding names what is wrong and the command that fixes it,
 * and whatever could not be read is said, never taken for clean.
 */
import { agrees } from '../aiswitch/aiStatus.js';
import { checkShape } from '../infra/schema.js';
import { checkSemantics } from '../infra/validate.js';
import { AI_DOMAIN } from '../infra/devices.js';
import { BRIDGE_PREFIX } from '../nftables/nftables.js';
import type { Context, Diagnostic, Infra, Mapping } from '../core/types.js';
import type { IncusPlan } from './incusPlan.js';
import type { Read } from '../aiswitch/readLimit.js';

/** A value read from the host, or why it could not be. */
export type { Read };

export interface LiveInstance {
  name: string;
  project: string;
  type: string;
  status: string;
  profiles: string[];
  config: Record<string, string>;
  devices: Record<string, Record<string, string>>;
  expanded_config: Record<string, string>;
  expanded_devices: Record<string, Record<string, string>>;
}

export interface ConntrackEntry {
  protocol: string;
  state: string;
  src: string;
  dst: string;
  dport?: string;
}

export interface HostReadings {
  /** The live table as nft lists it, undefined when it is not loaded. */
  liveTable: Read<string | undefined>;
  /** The tree's ruleset file as nft lists it once loaded in a scratch namespace; undefined: no file. */
  treeTable: Read<string | undefined>;
  /** The tree's ruleset file, as sync wrote it. */
  treeText: string | undefined;
  /** What sync would write now for this infra and holder. */
  expectedText: string;
  installedPath: string;
  installedText: string | undefined;
  bootConfPath: string;
  bootConfText: string | undefined;
  liveHolders: Read<string[] | undefined>;
  instances: Read<LiveInstance[]>;
  conntrack: Read<ConntrackEntry[]>;
  /** apply's plan for Incus: what differs from the tree is drift. */
  plan: Read<IncusPlan>;
  /** The host's interfaces and the bridge each is attached to (`ip -j link`). */
  links: Read<{ ifname: string; master?: string }[]>;
}

export interface Finding {
  /**
   * On an Incus cluster also `routes` (a member's routes, forwarding, proxy ARP) and `members` (a
   * member not read); `tree`: anklume's variables set outside a tree file's managed block.
   */
  check: 'ruleset' | 'boot' | 'holder' | 'devices' | 'incus' | 'connections' | 'routes' | 'members' | 'tree';
  message: string;
  fix: string;
}

export interface AuditReport {
  clean: boolean;
  holder: string | null;
  findings: Finding[];
  unchecked: { check: Finding['check']; why: string }[];
}

const quote = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
const incus = (...args: string[]) => ['incus', ...args].map(quote).join(' ');

/**
 * The tree's own findings, before the host's: what apply refuses in it (tree/treeOverrides.ts), and
 * the files whose managed block is not what infra.yml gives (what sync would write again).
 */
export function treeFileFindings(overrides: Diagnostic[], stale: string[], syncCommand: string): Finding[] {
  return [
    ...overrides.map((d): Finding => ({
      check: 'tree',
      message: `${d.file}${d.line ? `:${d.line}:${d.column ?? 1}` : ''}: ${d.message}`,
      fix: 'move it into infra.yml and run anklume-gen sync (make sync), or remove it from the file: apply refuses the tree until then',
    })),
    ...stale.map((path): Finding => ({
      check: 'tree',
      message: `${path} is not what infra.yml gives: its managed block was edited by hand, or infra.yml changed since the last sync; apply builds what the file says`,
      fix: syncCommand,
    })),
  ];
}

/** A report with the tree's findings first: then not clean. */
export function withTreeFindings<R extends AuditReport>(report: R, findings: Finding[]): R {
  return findings.length ? { ...report, clean: false, findings: [...findings, ...report.findings] } : report;
}

/** The first line where two listings part, for a message a person can act on. */
function firstDifference(expected: string, live: string): string {
  const a = expected.split('\n');
  const b = live.split('\n');
  const i = a.findIndex((line, k) => line !== b[k]);
  const at = i < 0 ? a.length : i;
  return `line ${at + 1}: the tree has ${JSON.stringify((a[at] ?? '<end>').trim())}, the kernel ${JSON.stringify((b[at] ?? '<end>').trim())}`;
}

/** The tree's ruleset against what infra.yml gives now: the same on one host and on a cluster. */
export function treeFindings(treeText: string | undefined, expectedText: string): Finding[] {
  if (treeText === undefined) return [{ check: 'ruleset', message: 'the tree has no nftables/anklume.nft: sync never ran in this base dir', fix: 'anklume-gen sync <infra> (make sync)' }];
  if (treeText !== expectedText) return [{ check: 'ruleset', message: `the tree's ruleset is not what infra.yml gives now (infra.yml changed since the last sync)`, fix: 'anklume-gen sync <infra> (make sync), then anklume-gen apply-nftables' }];
  return [];
}

function rulesetFindings(r: HostReadings): { findings: Finding[]; unchecked: AuditReport['unchecked'] } {
  const findings: Finding[] = treeFindings(r.treeText, r.expectedText);
  const unchecked: AuditReport['unchecked'] = [];
  const apply = 'anklume-gen apply-nftables (make nftables)';
  if (!r.liveTable.ok) unchecked.push({ check: 'ruleset', why: r.liveTable.why });
  else if (r.liveTable.value === undefined) {
    findings.push({ check: 'ruleset', message: 'table inet anklume is not loaded: nothing isolates the domains from each other', fix: apply });
  } else if (!r.treeTable.ok) unchecked.push({ check: 'ruleset', why: r.treeTable.why });
  else if (r.treeTable.value !== undefined && r.treeTable.value !== r.liveTable.value) {
    findings.push({ check: 'ruleset', message: `the live table inet anklume is not the ruleset of the tree (${firstDifference(r.treeTable.value, r.liveTable.value)})`, fix: apply });
  }
  if (r.treeText !== undefined) {
    if (r.installedText === undefined) {
      findings.push({ check: 'boot', message: `${r.installedPath} is missing: after a reboot no isolation is loaded`, fix: apply });
    } else if (r.installedText !== r.treeText) {
      findings.push({ check: 'boot', message: `${r.installedPath} (loaded at boot) is not the tree's ruleset: a reboot would bring back another one`, fix: apply });
    }
  }
  const installDir = r.installedPath.replace(/\/[^/]*$/, '');
  if (r.bootConfText === undefined) {
    findings.push({ check: 'boot', message: `${r.bootConfPath} does not exist: nothing loads ${r.installedPath} at boot`, fix: `create ${r.bootConfPath} with: include "${installDir}/*.nft" (apply-nftables adds the line to an existing one)` });
  } else if (!r.bootConfText.split('\n').some((l) => l.trim().startsWith('include') && l.includes(installDir))) {
    findings.push({ check: 'boot', message: `${r.bootConfPath} does not include ${installDir}: the ruleset is not loaded at boot`, fix: apply });
  }
  return { findings, unchecked };
}

function holderFindings(r: HostReadings, holder: string | null): { findings: Finding[]; unchecked: AuditReport['unchecked'] } {
  if (!r.liveHolders.ok) return { findings: [], unchecked: [{ check: 'holder', why: r.liveHolders.why }] };
  const live = r.liveHolders.value;
  if (live === undefined) return { findings: [], unchecked: [] };
  if (agrees(live, holder)) return { findings: [], unchecked: [] };
  const said = live.length ? live.map((h) => `'${h}'`).join(', ') : 'nobody';
  return {
    findings: [{
      check: 'holder',
      message: `the live ai_holder set gives AI access to ${said}, the state file to ${holder === null ? 'nobody' : `'${holder}'`}`,
      fix: r.treeText === r.expectedText ? 'anklume-gen apply-nftables (make nftables): the tree follows the state file' : 'anklume-gen sync <infra> (make sync), then anklume-gen apply-nftables: the tree follows the state file',
    }],
    unchecked: [],
  };
}

/**
 * Every port of a domain bridge must be a NIC of an instance of that domain (Incus names the host
 * side in volatile.<device>.host_name): anything else attached (an interface added by hand, an
 * uplink through bridge.external_interfaces) is on that domain's L2 around the isolation.
 */
export function portFindings(links: { ifname: string; master?: string }[], instances: LiveInstance[], infra: Infra): Finding[] {
  const bridges = new Map(Object.keys(infra.domains).map((d) => [`${BRIDGE_PREFIX}${d}`, d]));
  const nics = new Map<string, string>();
  for (const i of instances) {
    for (const [key, value] of Object.entries(i.config)) {
      const m = /^volatile\.([^.]+)\.host_name$/.exec(key);
      if (m) nics.set(value, i.project);
    }
  }
  return links.flatMap((l): Finding[] => {
    const domain = l.master === undefined ? undefined : bridges.get(l.master);
    if (domain === undefined || nics.get(l.ifname) === domain) return [];
    const owner = nics.get(l.ifname);
    return [{
      check: 'devices',
      message: `interface ${l.ifname} is attached to ${l.master}, the bridge of domain '${domain}', but is no NIC of an instance of that domain${owner ? ` (it is a NIC of project '${owner}')` : ''}: whatever is behind it is on that domain's L2 around the isolation${domain === AI_DOMAIN ? ' and the exclusive AI access' : ''}`,
      fix: `ip link set ${l.ifname} nomaster (and remove it from bridge.external_interfaces if it is there: incus network get ${l.master} bridge.external_interfaces)`,
    }];
  });
}

/** Which device of a live instance a path names, and how to remove it. */
function removeDevice(i: LiveInstance, device: string): string {
  if (i.devices[device]) return incus('config', 'device', 'remove', i.name, device, '--project', i.project);
  const from = i.profiles.length === 1 ? i.profiles[0] : `<one of: ${i.profiles.join(', ')}>`;
  return `${incus('profile', 'device', 'remove', from, device, '--project', i.project)} (the device comes from a profile)`;
}

/**
 * The live devices and settings judged by infra.yml's own rules: the instances of each domain's
 * project as machines whose devices and config are what Incus expanded (profiles included).
 */
export function deviceFindings(instances: LiveInstance[], infra: Infra, ctx: Context): Finding[] {
  const domains = Object.keys(infra.domains);
  const byKey = new Map<string, LiveInstance>();
  const raw: Mapping = {
    project_name: infra.project_name,
    global: { base_subnet: infra.global.base_subnet, ai_access_policy: infra.global.ai_access_policy ?? 'open', ...(infra.global.ai_access_default ? { ai_access_default: infra.global.ai_access_default } : {}) },
    domains: Object.fromEntries(domains.map((d) => {
      const machines = instances.filter((i) => i.project === d);
      for (const i of machines) byKey.set(`${d}/${i.name}`, i);
      return [d, {
        subnet_id: infra.domains[d].subnet_id,
        machines: Object.fromEntries(machines.map((i) => [i.name, {
          type: i.type === 'virtual-machine' ? 'vm' : 'lxc',
          profiles: [],
          config: Object.fromEntries(Object.entries(i.expanded_config).filter(([k]) => k === 'security.privileged' || k.startsWith('raw.'))),
          devices: i.expanded_devices,
        }])),
      }];
    })),
  };
  const out: Finding[] = [];
  const problems = [...checkShape(raw), ...checkSemantics(raw, ctx).errors];
  for (const p of problems) {
    const [top, domain, kind, machine, part, device] = p.path;
    if (top !== 'domains' || kind !== 'machines' || typeof domain !== 'string' || typeof machine !== 'string') continue;
    if (part !== 'devices' && part !== 'config') continue;
    const instance = byKey.get(`${domain}/${machine}`);
    if (!instance) continue;
    const fix = part === 'devices' && typeof device === 'string'
      ? removeDevice(instance, device)
      : `${incus('config', 'unset', instance.name, String(device), '--project', instance.project)} (or remove it from the profile that sets it)`;
    out.push({ check: 'devices', message: `instance ${domain}/${machine} (live): ${p.message}`, fix });
  }
  // An instance outside the domains' projects that has a NIC on a domain bridge is in that domain.
  const bridges = new Map(domains.map((d) => [`${BRIDGE_PREFIX}${d}`, d]));
  for (const i of instances) {
    if (domains.includes(i.project)) continue;
    for (const [name, d] of Object.entries(i.expanded_devices)) {
      const on = d.type === 'nic' ? d.network ?? d.parent : undefined;
      const domain = on === undefined ? undefined : bridges.get(on);
      if (domain === undefined) continue;
      out.push({
        check: 'devices',
        message: `instance ${i.project}/${i.name} (live) has NIC '${name}' on ${on}, the bridge of domain '${domain}', from outside the domain's project: it is on that domain's L2 around the isolation${domain === AI_DOMAIN ? ' and the exclusive AI access' : ''}`,
        fix: removeDevice(i, name),
      });
    }
  }
  return out;
}

const shown = (v: unknown): string => (v === null || v === undefined ? '(none)' : JSON.stringify(v));

/** apply's own plan, read as drift: every Incus object that is not what the tree says. */
export function planFindings(plan: IncusPlan): Finding[] {
  const out: Finding[] = plan.problems.map((p) => ({ check: 'incus', message: `apply would refuse: ${p}`, fix: 'what the message says; then anklume-gen apply' }));
  for (const o of plan.objects) {
    const what = o.op === 'create' ? 'is missing' : o.op === 'delete' ? 'would be deleted' : `differs from the tree: ${Object.entries(o.changes).map(([k, [a, b]]) => `${k} ${shown(a)} (tree: ${shown(b)})`).join('; ')}`;
    out.push({ check: 'incus', message: `${o.id.replace(':', ' ')} ${what}`, fix: 'anklume-gen apply (make apply)' });
  }
  for (const o of plan.orphans) {
    out.push({
      check: 'incus',
      message: `${o.kind} ${o.label} is in a domain's project but not in the tree${o.protected ? ' (protected: not marked ephemeral)' : ''}`,
      fix: o.protected
        ? `${o.kind === 'instance' ? incus('delete', '--force', o.label.split('/')[1], '--project', o.label.split('/')[0]) : incus('network', 'delete', o.label)}, or add it to infra.yml`
        : 'anklume-gen apply --delete-orphans (make apply DELETE_ORPHANS=1), or add it to infra.yml',
    });
  }
  return out;
}

function subnetOf(infra: Infra, address: string): string | undefined {
  const [a, b, c] = address.split('.');
  if (`${a}.${b}` !== infra.global.base_subnet) return undefined;
  return Object.entries(infra.domains).find(([, d]) => String(d.subnet_id) === c)?.[0];
}

/** Connections tracked between ai-tools and anything but the holder: what a revoke must have cut. */
export function connectionFindings(entries: ConntrackEntry[], infra: Infra, holder: string | null): Finding[] {
  if (infra.global.ai_access_policy !== 'exclusive') return [];
  const out: Finding[] = [];
  for (const e of entries) {
    if (e.state !== 'ESTABLISHED' && e.protocol !== 'udp') continue;
    const [from, to] = [subnetOf(infra, e.src), subnetOf(infra, e.dst)];
    const intoAi = to === AI_DOMAIN && from !== AI_DOMAIN && from !== holder;
    const outOfAi = from === AI_DOMAIN && to !== undefined && to !== AI_DOMAIN && to !== holder;
    if (!intoAi && !outOfAi) continue;
    out.push({
      check: 'connections',
      message: `a ${e.protocol} connection ${e.src} -> ${e.dst}${e.dport ? `:${e.dport}` : ''} is tracked between ai-tools and ${from === AI_DOMAIN ? to ?? 'outside' : from ?? 'outside'}, which does not hold AI access${holder ? ` ('${holder}' does)` : ''}`,
      fix: `conntrack -D -s ${e.src} -d ${e.dst}`,
    });
  }
  return out;
}

export function judgeHost(r: HostReadings, infra: Infra, holder: string | null, ctx: Context): AuditReport {
  const ruleset = rulesetFindings(r);
  const held = infra.global.ai_access_policy === 'exclusive' ? holderFindings(r, holder) : { findings: [], unchecked: [] };
  const findings = [...ruleset.findings, ...held.findings];
  const unchecked = [...ruleset.unchecked, ...held.unchecked];
  if (r.instances.ok) findings.push(...deviceFindings(r.instances.value, infra, ctx));
  else unchecked.push({ check: 'devices', why: r.instances.why });
  if (r.instances.ok && r.links.ok) findings.push(...portFindings(r.links.value, r.instances.value, infra));
  else if (!r.links.ok) unchecked.push({ check: 'devices', why: r.links.why });
  if (r.plan.ok) findings.push(...planFindings(r.plan.value));
  else unchecked.push({ check: 'incus', why: r.plan.why });
  if (r.conntrack.ok) findings.push(...connectionFindings(r.conntrack.value, infra, holder));
  else if (infra.global.ai_access_policy === 'exclusive') unchecked.push({ check: 'connections', why: r.conntrack.why });
  return { clean: findings.length === 0 && unchecked.length === 0, holder, findings, unchecked };
}
