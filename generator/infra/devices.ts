/**
 * The devices infra.yml gives a machine, directly or through its domain's profiles, read the way
 * Incus reads them. Pure, and tolerant of a model that failed the schema (validation reports
 * every problem in one run), so validate.ts, flows and the messages share one reading.
 */
import { isMapping, mappingEntries, type PathSegment } from './load.js';
import type { Mapping } from '../core/types.js';

export const AI_DOMAIN = 'ai-tools';

/** Where a device is written: in a machine's devices, or in a profile of its domain. */
export type DeviceOwner = { kind: 'machine'; domain: string; machine: string } | { kind: 'profile'; domain: string; profile: string };

export interface DeviceEntry {
  owner: DeviceOwner;
  name: string;
  device: Mapping;
  path: PathSegment[];
}

/** The owner of a device from its path in the model, for the messages of the schema's errors. */
export function deviceOwnerAt(path: PathSegment[]): { owner: DeviceOwner; name?: string; rest: PathSegment[] } | undefined {
  const [top, domain, kind, holder, devices, name, ...rest] = path;
  if (top !== 'domains' || typeof domain !== 'string' || typeof holder !== 'string' || devices !== 'devices') return undefined;
  if (kind === 'machines') return { owner: { kind: 'machine', domain, machine: holder }, name: name === undefined ? undefined : String(name), rest };
  if (kind === 'profiles') return { owner: { kind: 'profile', domain, profile: holder }, name: name === undefined ? undefined : String(name), rest };
  return undefined;
}

/** Every device written in the infra: each profile's, then each machine's, domain by domain. */
export function allDevices(raw: Mapping): DeviceEntry[] {
  const out: DeviceEntry[] = [];
  for (const [domain, def] of mappingEntries(raw.domains)) {
    for (const [profile, p] of mappingEntries(def.profiles)) {
      for (const [name, device] of mappingEntries(p.devices)) {
        out.push({ owner: { kind: 'profile', domain, profile }, name, device, path: ['domains', domain, 'profiles', profile, 'devices', name] });
      }
    }
    for (const [machine, m] of mappingEntries(def.machines)) {
      for (const [name, device] of mappingEntries(m.devices)) {
        out.push({ owner: { kind: 'machine', domain, machine }, name, device, path: ['domains', domain, 'machines', machine, 'devices', name] });
      }
    }
  }
  return out;
}

/**
 * The profiles a machine uses: its list, else Incus's `default`. An empty list is read as no list,
 * as apply reads it (roles/incus_preflight/filter_plugins/anklume_desired.py): one reading.
 */
export function profilesOf(machine: Mapping): string[] {
  const listed = Array.isArray(machine.profiles) ? machine.profiles.filter((p): p is string => typeof p === 'string') : [];
  return listed.length ? listed : ['default'];
}

/**
 * The devices a machine ends up with, as Incus expands them: its profiles in order, then its own,
 * a later device of the same name replacing an earlier one, and `type: none` removing it.
 */
export function effectiveDevices(domainDef: Mapping, domain: string, machineName: string, machine: Mapping): DeviceEntry[] {
  // Most machines have no devices and their domain no profiles: validation asks for each of
  // thousands of machines, more than once.
  if (!isMapping(domainDef.profiles) && !isMapping(machine.devices)) return [];
  const profiles = isMapping(domainDef.profiles) ? domainDef.profiles : {};
  const byName = new Map<string, DeviceEntry>();
  for (const profile of profilesOf(machine)) {
    const p = profiles[profile];
    if (!isMapping(p)) continue;
    for (const [name, device] of mappingEntries(p.devices)) {
      byName.set(name, { owner: { kind: 'profile', domain, profile }, name, device, path: ['domains', domain, 'profiles', profile, 'devices', name] });
    }
  }
  for (const [name, device] of mappingEntries(machine.devices)) {
    byName.set(name, { owner: { kind: 'machine', domain, machine: machineName }, name, device, path: ['domains', domain, 'machines', machineName, 'devices', name] });
  }
  if (!byName.size) return [];
  return [...byName.values()].filter((e) => e.device.type !== 'none');
}

export type ProxyAddress =
  | { kind: 'tcp' | 'udp'; host: string; ports: number[]; text: string }
  | { kind: 'unix'; path: string; text: string };

const INET_ADDRESS = /^(tcp|udp):(\[[0-9A-Fa-f:.]+\]|[^:[\]]+):(\d{1,5}(?:-\d{1,5})?(?:,\d{1,5}(?:-\d{1,5})?)*)$/;

/** An Incus proxy address (`tcp:0.0.0.0:80`, `udp:[::]:53-55,60`, `unix:/run/x.sock`), or undefined. */
export function parseProxyAddress(text: unknown): ProxyAddress | undefined {
  if (typeof text !== 'string') return undefined;
  if (text.startsWith('unix:') && text.length > 5) return { kind: 'unix', path: text.slice(5), text };
  const m = INET_ADDRESS.exec(text);
  if (!m) return undefined;
  const ports: number[] = [];
  for (const range of m[3].split(',')) {
    const [first, last = first] = range.split('-').map(Number);
    if (!(first >= 1 && last <= 65535 && first <= last)) return undefined;
    for (let p = first; p <= last; p++) ports.push(p);
  }
  return { kind: m[1] as 'tcp' | 'udp', host: m[2].replace(/^\[|\]$/g, ''), ports, text };
}

/** The connect port a listen port leads to: the one at the same place in the list, or the only one. */
export function connectPortFor(published: PublishedPort, listenPort: number): number | undefined {
  const i = published.ports.indexOf(listenPort);
  return published.connectPorts.length === 1 ? published.connectPorts[0] : published.connectPorts[i];
}

/** Whether a proxy listening there is reachable from the host alone. */
export function isLoopback(host: string): boolean {
  return /^127\./.test(unmapIpv4(host)) || host === '::1' || host === 'localhost';
}

/** A boolean as Incus reads a config value (util.IsTrue): true, 1, yes, on, in any case. */
export const isTrue = (value: unknown): boolean =>
  value === true || value === 1 || (typeof value === 'string' && ['true', '1', 'yes', 'on'].includes(value.toLowerCase()));

/** An IPv4 address written as IPv6 (`::ffff:10.0.0.1`, `::ffff:a00:1`) as the IPv4 it is; anything else unchanged. */
export function unmapIpv4(host: string): string {
  const dotted = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(host);
  if (dotted) return dotted[1];
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(host);
  if (!hex) return host;
  const [hi, lo] = [parseInt(hex[1], 16), parseInt(hex[2], 16)];
  return [hi >> 8, hi & 255, lo >> 8, lo & 255].join('.');
}

/** Where Incus keeps its API socket and its state: a machine given them is root on the host. */
export function isIncusPath(path: string): boolean {
  return /^\/(var\/lib\/(incus|lxd)|run\/incus|var\/snap\/lxd)(\/|$)/.test(path.replace(/\/+/g, '/'));
}

/** A port published on the host's addresses by a proxy device: a path into its machine. */
export interface PublishedPort {
  machine: string;
  domain: string;
  device: string;
  /** The profile the device comes from, when it is not the machine's own. */
  profile?: string;
  listen: string;
  connect: string;
  protocol: 'tcp' | 'udp';
  ports: number[];
  /** nat: true is a DNAT rule, judged by the ruleset as a connection to the connect port. */
  nat: boolean;
  /** The connect side's ports: one for every listen port, or the same one for all (Incus's rule). */
  connectPorts: number[];
}

/**
 * The ports that proxy devices publish on the host (bind: host, the default) on any address but
 * loopback: each machine's effective devices, in the order of the infra.
 */
export function publishedPorts(raw: Mapping): PublishedPort[] {
  const out: PublishedPort[] = [];
  for (const [domain, def] of mappingEntries(raw.domains)) {
    for (const [machine, m] of mappingEntries(def.machines)) {
      for (const e of effectiveDevices(def, domain, machine, m)) {
        if (e.device.type !== 'proxy' || (e.device.bind ?? 'host') !== 'host') continue;
        const listen = parseProxyAddress(e.device.listen);
        const connect = parseProxyAddress(e.device.connect);
        if (!listen || listen.kind === 'unix' || isLoopback(listen.host) || !connect) continue;
        out.push({
          machine,
          domain,
          device: e.name,
          ...(e.owner.kind === 'profile' ? { profile: e.owner.profile } : {}),
          listen: listen.text,
          connect: connect.text,
          protocol: listen.kind,
          ports: listen.ports,
          nat: isTrue(e.device.nat),
          connectPorts: connect.kind === 'unix' ? [] : connect.ports,
        });
      }
    }
  }
  return out;
}
