/**
 * The ansible variables given after `--` with -e / --extra-vars (JSON, YAML, key=value, or
 * @file), merged in order as ansible-playbook merges them: apply's plan and audit must see the
 * values the roles will see.
 */
import { readFileSync } from 'node:fs';
import { UsageError } from './command.js';

function parse(value: string, load: (text: string) => unknown): Record<string, unknown> {
  if (value.startsWith('@')) {
    let text: string;
    try {
      text = readFileSync(value.slice(1), 'utf8');
    } catch (err) {
      throw new UsageError(`-e ${value}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    const data = load(text);
    if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new UsageError(`-e ${value}: the file must hold a mapping of variables`);
    return data as Record<string, unknown>;
  }
  if (/^\s*[{[]/.test(value)) {
    const data = load(value);
    if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new UsageError(`-e ${value}: must be a mapping of variables`);
    return data as Record<string, unknown>;
  }
  return Object.fromEntries(value.split(/\s+/).filter(Boolean).map((pair) => {
    const at = pair.indexOf('=');
    if (at < 1) throw new UsageError(`-e ${value}: expected key=value, JSON or @file`);
    return [pair.slice(0, at), pair.slice(at + 1)];
  }));
}

export async function extraVars(passed: string[]): Promise<Record<string, unknown>> {
  const values: string[] = [];
  passed.forEach((arg, i) => {
    if ((arg === '-e' || arg === '--extra-vars') && passed[i + 1] !== undefined) values.push(passed[i + 1]);
    else if (arg.startsWith('--extra-vars=')) values.push(arg.slice('--extra-vars='.length));
    else if (/^-e./.test(arg)) values.push(arg.slice(2));
  });
  if (!values.length) return {};
  const { load } = await import('js-yaml');
  return Object.assign({}, ...values.map((v) => parse(v, (text) => load(text))));
}

/** Where the incus_nftables role installs the boot copy, given the same variables. */
export function installedRuleset(vars: Record<string, unknown>, fallback: string): string {
  const dir = typeof vars.incus_nftables_install_dir === 'string' ? vars.incus_nftables_install_dir : undefined;
  const file = typeof vars.incus_nftables_file === 'string' ? vars.incus_nftables_file : 'anklume.nft';
  return dir ? `${dir.replace(/\/$/, '')}/${file}` : fallback;
}

/** The nftables configuration Debian loads at boot (incus_nftables_boot_conf's default). */
export const DEFAULT_BOOT_CONF = '/etc/nftables.conf';

/** The boot configuration the incus_nftables role adds its include to, unless told not to. */
export function bootConfiguration(vars: Record<string, unknown>): string | undefined {
  const include = vars.incus_nftables_boot_include;
  if (include === false || (typeof include === 'string' && /^(false|no|0|off)$/i.test(include))) return undefined;
  return typeof vars.incus_nftables_boot_conf === 'string' ? vars.incus_nftables_boot_conf : DEFAULT_BOOT_CONF;
}
