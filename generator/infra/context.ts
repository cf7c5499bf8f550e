/**
 * The host's context: /etc/anklume flags and the AI access state file (I/O at the edge). Read
 * synchronously: three small files, and node:fs/promises is a module every command would load.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isDomainName } from './names.js';
import type { Context } from '../core/types.js';

export const DEFAULT_CONF_DIR = '/etc/anklume';
export const DEFAULT_STATE_FILE = '/opt/anklume/ai-access-current';
export const DEFAULT_LOG_FILE = '/var/log/anklume/ai-switch.log';
/** Where the incus_nftables role installs the ruleset for the host to load at boot. */
export const DEFAULT_INSTALLED_RULESET = '/etc/nftables.d/anklume.nft';

function readFlag(path: string): boolean | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  const value = text.trim().toLowerCase();
  if (['true', 'yes', '1', 'on'].includes(value)) return true;
  if (['false', 'no', '0', 'off'].includes(value)) return false;
  return undefined;
}

export async function readContext(env: NodeJS.ProcessEnv = process.env): Promise<Context> {
  const dir = env.ANKLUME_CONF_DIR || DEFAULT_CONF_DIR;
  const [vmNested, yolo] = [readFlag(join(dir, 'vm_nested')), readFlag(join(dir, 'yolo'))];
  return { vmNested, yolo: yolo === true };
}

export function stateFilePath(env: NodeJS.ProcessEnv = process.env, override?: string): string {
  return override || env.ANKLUME_STATE_FILE || DEFAULT_STATE_FILE;
}

export function logFilePath(env: NodeJS.ProcessEnv = process.env, override?: string): string {
  return override || env.ANKLUME_LOG_FILE || DEFAULT_LOG_FILE;
}

/**
 * What the state file says about the AI access holder: `absent` (never switched: the default
 * applies), `none` (a switch failed or revoked: nobody has access), or a domain name.
 */
export type HolderState = { kind: 'absent' } | { kind: 'none' } | { kind: 'domain'; domain: string } | { kind: 'corrupt'; text: string };

export async function readHolderState(path: string): Promise<HolderState> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'absent' };
    throw err;
  }
  const value = text.trim();
  if (value === '') return { kind: 'none' };
  if (isDomainName(value)) return { kind: 'domain', domain: value };
  return { kind: 'corrupt', text: value.slice(0, 64) };
}
