/**
 * `anklume-gen audit`, the reading half: the live host as Incus, nft and conntrack report it,
 * read-only, every read in parallel. Arguments are arrays; what cannot be read (not root, a tool
 * missing, the daemon down) comes back as the reason, for the report to say.
 */
import type { ConntrackEntry, HostReadings, LiveInstance, Read } from './auditChecks.js';
import { readIfExists } from '../core/files.js';
import { incusPlan } from './incusPlan.js';
import { DEFAULT_READ_TIMEOUT_S, noAnswer } from '../aiswitch/readLimit.js';
import { runLimited } from '../aiswitch/limitedRun.js';
import { liveTableListing, readLiveHolders } from '../nftables/nft.js';
import { TABLE_FAMILY, TABLE_NAME } from '../nftables/nftables.js';

type Env = NodeJS.ProcessEnv;

/** Where each tool the audit runs comes from on Debian 12. */
const INSTALL: Record<string, string> = {
  nft: 'Debian: apt-get install nftables',
  conntrack: 'Debian: apt-get install conntrack',
  incus: 'Debian 12: apt-get install -t bookworm-backports incus',
  unshare: 'Debian: apt-get install util-linux',
  ip: 'Debian: apt-get install iproute2',
};

async function run(env: Env, argv: string[], input?: string, seconds = DEFAULT_READ_TIMEOUT_S): Promise<Read<string>> {
  const r = await runLimited(argv, env, seconds, input === undefined ? {} : { input });
  if (r.timedOut) return { ok: false, why: `${argv.slice(0, 3).join(' ')}: ${noAnswer(seconds)}` };
  if (r.exitCode === 0) return { ok: true, value: r.stdout };
  if (r.missing) return { ok: false, why: `${argv[0]} is not installed (${INSTALL[argv[0]] ?? 'install it'})` };
  const lines = (r.stderr || r.message).trim().split('\n');
  const why = (lines.find((l) => /error|denied|not permitted|must be root/i.test(l)) ?? lines[0]).trim();
  return { ok: false, why: `${argv.slice(0, 3).join(' ')}: ${why}${/denied|not permitted|permissions|must be root|EACCES|EPERM/i.test(why) ? ' (run as root)' : ''}` };
}

/** nft's own failure as a reason: not installed, or what nft said. */
function nftReason(err: unknown): string {
  const message = (err as Error).message;
  return /ENOENT/.test(message) ? `nft is not installed (${INSTALL.nft})` : `${message}${/not permitted|must be root/i.test(message) ? ' (run as root)' : ''}`;
}

/**
 * The live table as nft lists it (nft.ts), undefined when it is not loaded. Compared as text with
 * the tree's file listed by the kernel too, exactly as the incus_nftables role compares them
 * before it loads: the plan says what it does.
 */
export async function liveTable(env: Env): Promise<Read<string | undefined>> {
  try {
    return { ok: true, value: await liveTableListing({ env }) };
  } catch (err) {
    return { ok: false, why: nftReason(err) };
  }
}

/** The tree's ruleset loaded into a network namespace of its own, and listed there by nft. */
export async function treeTable(env: Env, text: string | undefined): Promise<Read<string | undefined>> {
  if (text === undefined) return { ok: true, value: undefined };
  // Listed by a second nft once the first has committed: within the loading batch, nft lists
  // the chains without their rules. The script is constant; the ruleset comes on stdin.
  const r = await run(env, ['unshare', '-rn', 'sh', '-c', `nft -f - && nft --stateless list table ${TABLE_FAMILY} ${TABLE_NAME}`], text);
  return r;
}

async function holders(env: Env): Promise<Read<string[] | undefined>> {
  try {
    return { ok: true, value: await readLiveHolders({ env }) };
  } catch (err) {
    return { ok: false, why: nftReason(err) };
  }
}

export async function instances(env: Env, seconds = DEFAULT_READ_TIMEOUT_S): Promise<Read<LiveInstance[]>> {
  const r = await run(env, ['incus', 'query', '/1.0/instances?recursion=1&all-projects=true'], undefined, seconds);
  return r.ok ? { ok: true, value: JSON.parse(r.value) as LiveInstance[] } : r;
}

/** `conntrack -L` lines: the original direction's protocol, state, addresses and port. */
export function parseConntrack(text: string): ConntrackEntry[] {
  const out: ConntrackEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    const protocol = fields[0];
    if (!protocol || protocol.includes('=')) continue;
    const value = (key: string) => fields.find((f) => f.startsWith(`${key}=`))?.slice(key.length + 1);
    const src = value('src');
    const dst = value('dst');
    if (!src || !dst) continue;
    const state = fields.find((f) => /^[A-Z_]+$/.test(f)) ?? '';
    out.push({ protocol, state, src, dst, ...(value('dport') ? { dport: value('dport') } : {}) });
  }
  return out;
}

async function links(env: Env): Promise<Read<{ ifname: string; master?: string }[]>> {
  const r = await run(env, ['ip', '-j', 'link', 'show']);
  return r.ok ? { ok: true, value: JSON.parse(r.value) as { ifname: string; master?: string }[] } : r;
}

async function connections(env: Env): Promise<Read<ConntrackEntry[]>> {
  const r = await run(env, ['conntrack', '-L', '-f', 'ipv4']);
  return r.ok ? { ok: true, value: parseConntrack(r.value) } : r;
}

export interface ReadOptions {
  env: Env;
  tree: string;
  /** The ansible variables given with -e, for apply's plan. */
  extraVars: Record<string, unknown>;
  treeText: string | undefined;
  expectedText: string;
  installedPath: string;
  bootConfPath: string;
}

export async function readHost(o: ReadOptions): Promise<HostReadings> {
  const [live, tree, liveHolders, live_instances, conntrack, plan, ports] = await Promise.all([
    liveTable(o.env), treeTable(o.env, o.treeText), holders(o.env), instances(o.env), connections(o.env), incusPlan(o.tree, o.extraVars, o.env), links(o.env),
  ]);
  return {
    liveTable: live,
    treeTable: tree,
    treeText: o.treeText,
    expectedText: o.expectedText,
    installedPath: o.installedPath,
    installedText: readIfExists(o.installedPath),
    bootConfPath: o.bootConfPath,
    bootConfText: readIfExists(o.bootConfPath),
    liveHolders,
    instances: live_instances,
    conntrack,
    plan,
    links: ports,
  };
}
