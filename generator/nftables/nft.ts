/**
 * The I/O edge for nft (ai-switch, ai-status): runs `nft` with argument arrays (never a shell
 * string), the ruleset text on stdin. `netns` runs it inside `ip netns exec <netns>` (tests).
 */
import { execa } from 'execa';
import { AI_HOLDER_SET, holdersFromSetJson, TABLE_FAMILY, TABLE_NAME } from './nftables.js';

export interface NftOptions {
  /** A named network namespace to run in (tests); the caller's own namespace when absent. */
  netns?: string;
  /** The environment nft runs in (its PATH finds it); the process's own when absent. */
  env?: NodeJS.ProcessEnv;
}

export class NftError extends Error {
  constructor(readonly args: string[], readonly stderr: string, readonly exitCode: number | undefined) {
    super(`nft ${args.join(' ')} failed${exitCode === undefined ? '' : ` (exit ${exitCode})`}: ${stderr.trim().split('\n').slice(0, 6).join(' | ')}`);
  }
}

async function nft(args: string[], opts: NftOptions, input?: string): Promise<{ ok: boolean; stdout: string; stderr: string; exitCode?: number }> {
  const [cmd, argv] = opts.netns ? ['ip', ['netns', 'exec', opts.netns, 'nft', ...args]] : ['nft', args];
  const r = await execa(cmd, argv, { input, reject: false, ...(opts.env ? { env: opts.env, extendEnv: false } : {}) });
  return { ok: r.exitCode === 0, stdout: String(r.stdout), stderr: String(r.stderr || r.message || ''), exitCode: r.exitCode };
}

/** Loads a ruleset or a switch batch: one nft transaction, all or nothing. */
export async function nftApply(text: string, opts: NftOptions = {}): Promise<void> {
  const r = await nft(['-f', '-'], opts, text);
  if (!r.ok) throw new NftError(['-f', '-'], r.stderr, r.exitCode);
}

/** Checks a ruleset or batch against the live kernel without committing it (`nft -c`). */
export async function nftCheck(text: string, opts: NftOptions = {}): Promise<void> {
  const r = await nft(['-c', '-f', '-'], opts, text);
  if (!r.ok) throw new NftError(['-c', '-f', '-'], r.stderr, r.exitCode);
}

/**
 * The domains in the live ai_holder set ([] = nobody), or undefined when the table or the set is
 * not loaded (make nftables never ran, or open mode). Other failures throw.
 */
export async function readLiveHolders(opts: NftOptions = {}): Promise<string[] | undefined> {
  const args = ['-j', 'list', 'set', TABLE_FAMILY, TABLE_NAME, AI_HOLDER_SET];
  const r = await nft(args, opts);
  if (!r.ok) {
    if (/No such file or directory/.test(r.stderr)) return undefined;
    throw new NftError(args, r.stderr, r.exitCode);
  }
  return holdersFromSetJson(r.stdout);
}

/** `nft --stateless list table inet anklume`, or undefined when the table is not loaded. */
export async function liveTableListing(opts: NftOptions = {}): Promise<string | undefined> {
  const args = ['--stateless', 'list', 'table', TABLE_FAMILY, TABLE_NAME];
  const r = await nft(args, opts);
  if (!r.ok) {
    if (/No such file or directory/.test(r.stderr)) return undefined;
    throw new NftError(args, r.stderr, r.exitCode);
  }
  return r.stdout;
}
