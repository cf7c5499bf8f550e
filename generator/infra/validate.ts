/**
 * Semantic checks: what the schema cannot say (cross references, uniqueness, subnets, the AI
 * access rules). Written to tolerate a model that also failed the schema, so that one run reports
 * every problem.
 */
import { isMapping, mappingEntries, type PathSegment } from './load.js';
import { closest } from '../core/suggest.js';
import { posix } from 'node:path';
import { AI_DOMAIN, allDevices, effectiveDevices, isIncusPath, isTrue, parseProxyAddress, unmapIpv4, type DeviceOwner } from './devices.js';
import { deviceMessages as dm } from './deviceMessages.js';
import { isBridgeName } from './names.js';
import { clusterMessages as cm, type MemberOwner } from './clusterMessages.js';
import type { Context, Mapping } from '../core/types.js';

export interface Finding {
  path: PathSegment[];
  message: string;
  onKey?: boolean;
}

export interface SemanticResult {
  errors: Finding[];
  warnings: Finding[];
}

export { AI_DOMAIN };
/** Policy endpoint: the host's own input and output (not a forward rule). */
export const HOST_ENDPOINT = 'host';
/** Policy endpoint, `from` only: anything that is not a domain bridge (uplink, incusbr0, VPNs...). */
export const OUTSIDE_ENDPOINT = 'outside';
/** Every inventory already has these groups: a domain by that name would merge into them. */
const RESERVED_GROUPS = new Set(['all', 'ungrouped']);
/** Ansible's own names: a cluster member by one of them would not be a host of its own. */
const RESERVED_MEMBERS = new Set([...RESERVED_GROUPS, 'localhost']);
/** A domain or machine by one of these names would make a policy endpoint ambiguous. */
const RESERVED_ENDPOINTS = new Map([
  [HOST_ENDPOINT, 'the host itself'],
  [OUTSIDE_ENDPOINT, 'anything that is not a domain bridge'],
]);

const list = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);

interface MachineRef {
  domain: string;
  name: string;
  machine: Mapping;
}

/** Where a domain or a machine is: what a policy endpoint is resolved with. */
export interface Names {
  domains: { has(name: string): boolean };
  machines: { get(name: string): MachineRef | undefined };
}

/** Every domain and machine name; machines in declaration order, first definition wins. */
export function indexNames(raw: Mapping): { domains: Set<string>; machines: Map<string, MachineRef> } {
  const domains = new Set<string>();
  const machines = new Map<string, MachineRef>();
  for (const [domain, def] of mappingEntries(raw.domains)) {
    domains.add(domain);
    for (const [name, machine] of mappingEntries(def.machines)) {
      if (!machines.has(name)) machines.set(name, { domain, name, machine });
    }
  }
  return { domains, machines };
}

/**
 * The same answers as indexNames, found by looking when asked: enrichment and the ruleset resolve
 * a handful of policy endpoints, and indexing thousands of machines first cost more than that.
 */
export function lookupNames(raw: Mapping): Names {
  const domains: Mapping = isMapping(raw.domains) ? raw.domains : {};
  return {
    domains: { has: (name) => Object.hasOwn(domains, name) && isMapping(domains[name]) },
    machines: {
      get: (name) => {
        for (const domain in domains) {
          const def = domains[domain];
          const machines = isMapping(def) ? def.machines : undefined;
          if (isMapping(machines) && Object.hasOwn(machines, name) && isMapping(machines[name])) return { domain, name, machine: machines[name] };
        }
        return undefined;
      },
    },
  };
}

/** The domain a policy endpoint belongs to: itself for a domain, its domain for a machine. */
export function endpointDomain(ref: unknown, index: Names): string | undefined {
  if (typeof ref !== 'string') return undefined;
  if (index.domains.has(ref)) return ref;
  return index.machines.get(ref)?.domain;
}

/**
 * Whether a policy is an AI access policy: one from a domain (or machine) to ai-tools. In exclusive
 * mode its `from` is whoever holds access; a policy from outside to ai-tools is not one (it is
 * refused in exclusive mode).
 */
export function isAiAccessPolicy(policy: { from?: unknown; to?: unknown }, index: Names): boolean {
  return policy.from !== OUTSIDE_ENDPOINT && endpointDomain(policy.to, index) === AI_DOMAIN;
}

function reservedName(kind: 'Domain' | 'Machine', name: string): string | undefined {
  // A Map: a plain object would find Object.prototype's `constructor` for a domain of that name.
  const meaning = RESERVED_ENDPOINTS.get(name);
  return meaning && `${kind} '${name}': invalid name ('${name}' is reserved: network policies use it for ${meaning}); choose another name`;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** An address's four octets (asked for each of thousands of machines: no intermediate arrays). */
function ipv4(text: unknown): number[] | undefined {
  if (typeof text !== 'string') return undefined;
  const m = IPV4.exec(text);
  if (!m) return undefined;
  const a = Number(m[1]);
  const b = Number(m[2]);
  const c = Number(m[3]);
  const d = Number(m[4]);
  return a <= 255 && b <= 255 && c <= 255 && d <= 255 ? [a, b, c, d] : undefined;
}

/** GPU access: `gpu: true`, or a device of type gpu of its own or of a profile it uses. */
export function hasGpu(machine: Mapping, domain: Mapping): boolean {
  return machine.gpu === true || effectiveDevices(domain, '', '', machine).some((e) => e.device.type === 'gpu');
}

function checkAiAccess(raw: Mapping, index: ReturnType<typeof indexNames>, errors: Finding[]): void {
  const global = isMapping(raw.global) ? raw.global : {};
  const defaultDomain = global.ai_access_default;
  if (typeof defaultDomain === 'string' && defaultDomain !== AI_DOMAIN && !index.domains.has(defaultDomain)) {
    const guess = closest(defaultDomain, [...index.domains].filter((d) => d !== AI_DOMAIN));
    errors.push({
      path: ['global', 'ai_access_default'],
      message: `global.ai_access_default '${defaultDomain}' is not a known domain${guess ? `; did you mean '${guess}'?` : ''}`,
    });
  }
  if (global.ai_access_policy !== 'exclusive') return;
  if (!index.domains.has(AI_DOMAIN)) {
    errors.push({ path: ['global', 'ai_access_policy'], message: `ai_access_policy is 'exclusive' but no '${AI_DOMAIN}' domain exists` });
  }
  const policies = list(raw.network_policies);
  const targeting = policies
    .map((p, i) => ({ p, i }))
    .filter(({ p }) => isMapping(p) && isAiAccessPolicy(p, index));
  if (targeting.length > 1) {
    errors.push({
      path: ['network_policies', targeting[1].i, 'to'],
      message: `ai_access_policy is 'exclusive' but ${targeting.length} network_policies target ai-tools (max 1 allowed): indexes ${targeting.map((t) => t.i).join(', ')}`,
    });
  }
  policies.forEach((p, i) => {
    if (isMapping(p) && p.from === OUTSIDE_ENDPOINT && endpointDomain(p.to, index) === AI_DOMAIN) {
      errors.push({
        path: ['network_policies', i, 'from'],
        message: `network_policies[${i}]: goes from outside to ai-tools ('${String(p.to)}'), which would bypass ai_access_policy 'exclusive' (only the current holder may reach ai-tools; set ai_access_policy: open to let anything else in)`,
      });
    }
    if (!isMapping(p) || endpointDomain(p.from, index) !== AI_DOMAIN) return;
    const to = endpointDomain(p.to, index);
    if (to === undefined || to === AI_DOMAIN) return;
    errors.push({
      path: ['network_policies', i, 'from'],
      message: `network_policies[${i}]: goes from ai-tools ('${String(p.from)}') to '${String(p.to)}', which would bypass ai_access_policy 'exclusive' (only the current holder may exchange traffic with ai-tools; use 'bidirectional: true' on the one policy that targets ai-tools, or set ai_access_policy: open)`,
    });
  });
}

function checkDomainsAndMachines(raw: Mapping, errors: Finding[], warnings: Finding[]): void {
  const global = isMapping(raw.global) ? raw.global : {};
  const base = typeof global.base_subnet === 'string' ? global.base_subnet : undefined;
  const subnetOwner = new Map<number, string>();
  const machineOwner = new Map<string, string>();
  const ipOwner = new Map<string, string>();
  const gpuMachines: { name: string; path: PathSegment[] }[] = [];

  for (const [domain, def] of mappingEntries(raw.domains)) {
    const reserved = reservedName('Domain', domain);
    if (reserved) errors.push({ path: ['domains', domain], onKey: true, message: reserved });
    if (RESERVED_GROUPS.has(domain)) {
      errors.push({
        path: ['domains', domain],
        onKey: true,
        message: `Domain '${domain}': invalid name ('${domain}' is an Ansible built-in group, and group_vars/all.yml holds the project's variables); choose another name`,
      });
    }
    const sid = def.subnet_id;
    const validSid = typeof sid === 'number' && Number.isInteger(sid) && sid >= 0 && sid <= 254;
    if (validSid) {
      const other = subnetOwner.get(sid);
      if (other !== undefined) {
        errors.push({ path: ['domains', domain, 'subnet_id'], message: `Domain '${domain}': subnet_id ${sid} already used by '${other}'` });
      } else {
        subnetOwner.set(sid, domain);
      }
    }
    const profiles = isMapping(def.profiles) ? def.profiles : {};
    for (const [name, machine] of mappingEntries(def.machines)) {
      const at = (...rest: PathSegment[]): PathSegment[] => ['domains', domain, 'machines', name, ...rest];
      const reservedMachine = reservedName('Machine', name);
      if (reservedMachine) errors.push({ path: at(), onKey: true, message: reservedMachine });
      const ownerDomain = machineOwner.get(name);
      if (ownerDomain !== undefined) {
        errors.push({ path: at(), onKey: true, message: `Machine '${name}': duplicate (already in '${ownerDomain}')` });
      } else {
        machineOwner.set(name, domain);
      }
      const ip = machine.ip;
      const octets = ipv4(ip);
      if (octets && typeof ip === 'string') {
        const other = ipOwner.get(ip);
        if (other !== undefined) {
          errors.push({ path: at('ip'), message: `Machine '${name}': IP ${ip} already used by '${other}'` });
        } else {
          ipOwner.set(ip, name);
        }
        if (base !== undefined && validSid) {
          if (`${octets[0]}.${octets[1]}` !== base || octets[2] !== sid) {
            errors.push({ path: at('ip'), message: `Machine '${name}': IP ${ip} not in subnet ${base}.${sid}.0/24 of domain '${domain}'` });
          } else if (octets[3] === 0 || octets[3] === 254 || octets[3] === 255) {
            const why = { 0: 'the network address', 254: 'the gateway of the bridge', 255: 'the broadcast address' }[octets[3]];
            errors.push({ path: at('ip'), message: `Machine '${name}': invalid IP ${ip} (.${octets[3]} is ${why}; use a host part between 1 and 253)` });
          }
        }
      }
      list(machine.profiles).forEach((p, i) => {
        if (typeof p === 'string' && p !== 'default' && !isMapping(profiles[p])) {
          errors.push({ path: at('profiles', i), message: `Machine '${name}': profile '${p}' not defined in domain '${domain}'` });
        }
      });
      if (hasGpu(machine, def)) gpuMachines.push({ name, path: at() });
    }
  }

  if (gpuMachines.length > 1) {
    const gpuPolicy = global.gpu_policy ?? 'exclusive';
    const text = `${gpuMachines.length} instances have GPU access: ${gpuMachines.map((g) => g.name).join(', ')}`;
    // Located on the first machine beyond the one that exclusivity allows.
    const where = gpuMachines[1].path;
    if (gpuPolicy === 'exclusive') {
      errors.push({ path: where, onKey: true, message: `GPU policy is 'exclusive' but ${text} (keep one, or set global.gpu_policy: shared)` });
    } else if (gpuPolicy === 'shared') {
      warnings.push({ path: where, onKey: true, message: `GPU policy is 'shared': ${text}; there is no VRAM isolation between them` });
    }
  }
}

function checkPolicies(raw: Mapping, index: ReturnType<typeof indexNames>, errors: Finding[]): void {
  // Only for a suggestion, when an endpoint is unknown: thousands of names otherwise.
  const names = () => [...index.domains, ...index.machines.keys(), HOST_ENDPOINT];
  list(raw.network_policies).forEach((p, i) => {
    if (!isMapping(p)) return;
    if (p.to === OUTSIDE_ENDPOINT) {
      errors.push({
        path: ['network_policies', i, 'to'],
        message: `network_policies[${i}]: 'to: outside' is not needed: domains always reach the outside (only connections into a domain are judged); remove this policy`,
      });
    } else if (p.from === OUTSIDE_ENDPOINT && p.to === HOST_ENDPOINT) {
      errors.push({
        path: ['network_policies', i, 'to'],
        message: `network_policies[${i}]: 'from: outside' to 'host' is the host's own input, which anklume does not filter; name a domain or machine as 'to', or remove this policy`,
      });
    }
    for (const field of ['from', 'to'] as const) {
      const ref = p[field];
      if (typeof ref !== 'string' || ref === HOST_ENDPOINT || ref === OUTSIDE_ENDPOINT || index.domains.has(ref)) continue;
      const machine = index.machines.get(ref);
      if (machine) {
        if (machine.machine.ip === undefined) {
          errors.push({
            path: ['network_policies', i, field],
            message: `network_policies[${i}]: '${field}: ${ref}' is a machine without an ip, so the firewall cannot tell it apart from its domain; give it an ip or name its domain '${machine.domain}'`,
          });
        }
        continue;
      }
      const guess = closest(ref, field === 'from' ? [...names(), OUTSIDE_ENDPOINT] : names());
      const outside = field === 'from' ? ` (or '${OUTSIDE_ENDPOINT}', for anything that is not a domain bridge)` : '';
      errors.push({
        path: ['network_policies', i, field],
        message: `network_policies[${i}]: '${field}: ${ref}' is not a known domain, machine, or 'host'${outside}${guess ? `; did you mean '${guess}'?` : ''}`,
      });
    }
  });
}

function checkFirewallMode(raw: Mapping, index: ReturnType<typeof indexNames>, errors: Finding[]): void {
  const global = isMapping(raw.global) ? raw.global : {};
  if (global.firewall_mode !== 'vm' || index.machines.has('sys-firewall')) return;
  if (!index.domains.has('admin')) {
    errors.push({ path: ['global', 'firewall_mode'], message: `global.firewall_mode is 'vm' but there is no 'admin' domain to hold the sys-firewall VM; add an 'admin' domain or define sys-firewall yourself` });
    return;
  }
  // Enrichment will give sys-firewall the .253 of admin: it must be free.
  const admin = isMapping(raw.domains) && isMapping(raw.domains.admin) ? raw.domains.admin : {};
  if (typeof global.base_subnet !== 'string' || typeof admin.subnet_id !== 'number') return;
  const ip = `${global.base_subnet}.${admin.subnet_id}.253`;
  for (const [name, machine] of mappingEntries(admin.machines)) {
    if (machine.ip === ip) {
      errors.push({
        path: ['domains', 'admin', 'machines', name, 'ip'],
        message: `Machine 'sys-firewall': IP ${ip} already used by '${name}' (firewall_mode 'vm' adds sys-firewall at ${ip}; move '${name}' or define sys-firewall yourself)`,
      });
    }
  }
}

/** The domain whose subnet holds this IPv4 address, but for its gateway (the host itself). */
function domainOfAddress(raw: Mapping, address: string): string | undefined {
  const octets = ipv4(address);
  const global = isMapping(raw.global) ? raw.global : {};
  if (!octets || octets[3] === 254 || `${octets[0]}.${octets[1]}` !== global.base_subnet) return undefined;
  return mappingEntries(raw.domains).find(([, def]) => def.subnet_id === octets[2])?.[0];
}

/**
 * What a device can open around the isolation (docs/nftables.md#devices-and-profiles): a NIC on
 * another domain's bridge, a proxy device of ai-tools under exclusive access, a proxy that makes
 * the host connect into another domain. The shapes that are wrong whatever the infra says (a NIC
 * type that skips the bridge, a network that is no domain bridge) are the schema's.
 */
function checkDevices(raw: Mapping, errors: Finding[], warnings: Finding[]): void {
  const global = isMapping(raw.global) ? raw.global : {};
  const exclusive = global.ai_access_policy === 'exclusive';
  const domains = new Set(mappingEntries(raw.domains).map(([d]) => d));
  for (const { owner, name, device, path } of allDevices(raw)) {
    if (device.type === 'nic') {
      for (const key of ['network', 'parent'] as const) {
        const value = device[key];
        if (typeof value !== 'string' || !isBridgeName(value) || value === `net-${owner.domain}`) continue;
        const other = value.slice('net-'.length);
        const message = domains.has(other) ? dm.nicOtherDomain(owner, name, key, value, other) : dm.nicUnknownBridge(owner, name, key, value);
        errors.push({ path: [...path, key], message });
      }
      const filtering = device['security.ipv4_filtering'];
      const ownBridge = `net-${owner.domain}`;
      if (filtering !== undefined && !isTrue(filtering) && (device.network === ownBridge || device.parent === ownBridge)) {
        warnings.push({ path: [...path, 'security.ipv4_filtering'], message: dm.nicSourceUnfiltered(owner, name, JSON.stringify(filtering)) });
      }
    }
    if (device.type === 'pci' || device.type === 'usb') {
      const refused = exclusive && owner.domain === AI_DOMAIN;
      (refused ? errors : warnings).push({ path, onKey: true, message: dm.hostHardware(owner, name, device.type, refused) });
    }
    if (device.type === 'disk' && typeof device.source === 'string' && device.pool === undefined && isIncusPath(device.source)) {
      errors.push({ path: [...path, 'source'], message: dm.incusApi(owner, name, 'source', device.source) });
    }
    if (device.type !== 'proxy') continue;
    if (exclusive && owner.domain === AI_DOMAIN) {
      errors.push({ path, onKey: true, message: dm.proxyOnAiTools(owner, name) });
      continue;
    }
    const connect = parseProxyAddress(device.connect);
    if (!connect) continue;
    const bindInstance = device.bind === 'instance';
    if (connect.kind === 'unix') {
      // With bind: instance the host connects to the socket: Incus's own would hand over the host.
      if (bindInstance && isIncusPath(connect.path)) errors.push({ path: [...path, 'connect'], message: dm.incusApi(owner, name, 'connect', connect.path) });
      continue;
    }
    const host = unmapIpv4(connect.host);
    if (ipv4(host)) {
      const other = domainOfAddress(raw, host);
      if (other === undefined || other === owner.domain) continue;
      const message = bindInstance ? dm.proxyIntoDomain(owner, name, connect.text, other) : dm.proxyRelays(owner, name, connect.text, other);
      errors.push({ path: [...path, 'connect'], message });
    } else if (!host.includes(':') && host !== 'localhost') {
      errors.push({ path: [...path, 'connect'], message: dm.proxyUnjudgedHost(owner, name, host) });
    }
  }
}

/** A config key that can give root on the host. */
const isHostRootKey = (key: string): boolean => key === 'security.privileged' || key.startsWith('raw.');

/**
 * The config of every machine and every profile that holds a key that can give root on the host
 * (most hold none: thousands of machines are looked at, a few kept).
 */
function configBlocks(raw: Mapping): { owner: DeviceOwner; config: Mapping; container: boolean; path: PathSegment[] }[] {
  const out: ReturnType<typeof configBlocks> = [];
  const holdsHostRootKey = (config: unknown): config is Mapping => isMapping(config) && Object.keys(config).some(isHostRootKey);
  for (const [domain, def] of mappingEntries(raw.domains)) {
    for (const [profile, p] of mappingEntries(def.profiles)) {
      if (holdsHostRootKey(p.config)) out.push({ owner: { kind: 'profile', domain, profile }, config: p.config, container: true, path: ['domains', domain, 'profiles', profile, 'config'] });
    }
    for (const [machine, m] of mappingEntries(def.machines)) {
      if (holdsHostRootKey(m.config)) out.push({ owner: { kind: 'machine', domain, machine }, config: m.config, container: (m.type ?? 'lxc') === 'lxc', path: ['domains', domain, 'machines', machine, 'config'] });
    }
  }
  return out;
}

/**
 * security.privileged and raw.*: root in such a machine can become root on the host, and so reach
 * every domain. Refused in ai-tools under exclusive access; elsewhere a warning, or the spec's
 * vm_nested rule for a privileged container.
 */
function checkHostRoot(raw: Mapping, ctx: Context, errors: Finding[], warnings: Finding[]): void {
  const global = isMapping(raw.global) ? raw.global : {};
  const exclusive = global.ai_access_policy === 'exclusive';
  for (const { owner, config, container, path } of configBlocks(raw)) {
    for (const [key, value] of Object.entries(config)) {
      const privileged = key === 'security.privileged' && isTrue(value) && container;
      if (!privileged && !key.startsWith('raw.')) continue;
      const where = [...path, key];
      if (exclusive && owner.domain === AI_DOMAIN) {
        errors.push({ path: where, message: dm.hostRoot(owner, key, true) });
      } else if (privileged && ctx.vmNested === false) {
        const text = `${owner.kind === 'machine' ? `Machine '${owner.machine}'` : `Domain '${owner.domain}': profile '${owner.profile}'`}: security.privileged=true on LXC is forbidden when vm_nested=false`;
        if (ctx.yolo) warnings.push({ path: where, message: `YOLO: ${text} (allowed because yolo is set)` });
        else errors.push({ path: where, message: `${text} (a privileged container is root on the host; use type: vm, or set yolo to accept the risk)` });
      } else {
        warnings.push({ path: where, message: dm.hostRoot(owner, key, false) });
      }
    }
  }
}

/** A host folder (or storage volume) as a key that two mounts of the same data share. */
function diskKey(device: Mapping): string | undefined {
  if (typeof device.source !== 'string' || device.source === '') return undefined;
  // A custom volume belongs to its project (features.storage.volumes): two domains' volumes of
  // the same name are two volumes.
  if (typeof device.pool === 'string') return undefined;
  if (!device.source.startsWith('/')) return `source ${device.source}`;
  const normal = posix.normalize(device.source);
  return normal.length > 1 ? normal.replace(/\/$/, '') : normal;
}

const overlaps = (a: string, b: string): boolean =>
  a === b || (a.startsWith('/') && b.startsWith('/') && (a === '/' || b === '/' || a.startsWith(`${b}/`) || b.startsWith(`${a}/`)));

/** A host folder or volume mounted by machines of two domains is a channel between them. */
function checkSharedDisks(raw: Mapping, warnings: Finding[]): void {
  const mounted: { machine: string; domain: string; key: string; source: string }[] = [];
  const warned = new Set<string>();
  for (const [domain, def] of mappingEntries(raw.domains)) {
    for (const [machine, m] of mappingEntries(def.machines)) {
      for (const e of effectiveDevices(def, domain, machine, m)) {
        const key = e.device.type === 'disk' ? diskKey(e.device) : undefined;
        if (key === undefined) continue;
        const source = String(e.device.source);
        const other = mounted.find((x) => x.domain !== domain && overlaps(x.key, key));
        const at = [...e.path, 'source'];
        if (other && !warned.has(at.join('\u0000'))) {
          warned.add(at.join('\u0000'));
          warnings.push({ path: at, message: dm.sharedDisk(e.owner, machine, e.name, source, other) });
        }
        mounted.push({ machine, domain, key, source });
      }
    }
  }
}

/** Interfaces that cannot be a member link, and why: what else sends on them. */
const NOT_MEMBER_LINKS = new Map([
  ['lo', 'the loopback interface'],
  ['incusbr0', "Incus's default bridge, where any container can send"],
]);

/** A member link named like a domain bridge, or like an interface that is not one. */
function memberLinkProblem(where: string, link: unknown): string | undefined {
  if (typeof link !== 'string') return undefined;
  if (isBridgeName(link)) return cm.linkIsBridge(where, link);
  const why = NOT_MEMBER_LINKS.get(link);
  return why === undefined ? undefined : cm.linkIsLocal(where, link, why);
}

/** Addresses that no other member can reach, by their first octet. */
function unreachableAddress(octets: number[]): string | undefined {
  if (octets[0] === 0) return 'in 0.0.0.0/8 (this host)';
  if (octets[0] === 127) return 'a loopback address';
  if (octets[0] >= 224) return 'a multicast or reserved address';
  return undefined;
}

/** The cluster's own keys: its members' names, addresses and links. */
function checkClusterMembers(raw: Mapping, cluster: Mapping, index: ReturnType<typeof indexNames>, errors: Finding[]): void {
  const global = isMapping(raw.global) ? raw.global : {};
  const base = typeof global.base_subnet === 'string' ? global.base_subnet : undefined;
  const plan = base === undefined ? undefined : `${base}.0.0/16`;
  const at = (...rest: PathSegment[]): PathSegment[] => ['global', 'cluster', ...rest];
  const linkProblem = memberLinkProblem('global.cluster.member_link', cluster.member_link);
  if (linkProblem) errors.push({ path: at('member_link'), message: linkProblem });
  const addressOwner = new Map<string, string>();
  for (const [member, def] of mappingEntries(cluster.members)) {
    if (RESERVED_MEMBERS.has(member)) errors.push({ path: at('members', member), onKey: true, message: cm.memberNameReserved(member) });
    else if (index.domains.has(member)) errors.push({ path: at('members', member), onKey: true, message: cm.memberNameTaken(member, 'domain') });
    else if (index.machines.has(member)) errors.push({ path: at('members', member), onKey: true, message: cm.memberNameTaken(member, 'machine') });
    const ownLinkProblem = memberLinkProblem(`Member '${member}': member_link`, def.member_link);
    if (ownLinkProblem) errors.push({ path: at('members', member, 'member_link'), message: ownLinkProblem });
    const address = def.address;
    const octets = ipv4(address);
    if (!octets || typeof address !== 'string') continue;
    const where = at('members', member, 'address');
    const other = addressOwner.get(address);
    if (other !== undefined) errors.push({ path: where, message: cm.addressReused(member, address, other) });
    else addressOwner.set(address, member);
    const unreachable = unreachableAddress(octets);
    if (unreachable) {
      errors.push({ path: where, message: cm.addressUnreachable(member, address, unreachable) });
    } else if (plan !== undefined && `${octets[0]}.${octets[1]}` === base) {
      const domain = mappingEntries(raw.domains).find(([, d]) => d.subnet_id === octets[2])?.[0];
      errors.push({ path: where, message: domain ? cm.addressInDomain(member, address, domain, `${base}.${octets[2]}.0/24`, plan) : cm.addressInPlan(member, address, plan) });
    }
  }
}

/**
 * Where each machine runs (docs/multi-host.md): without global.cluster, no member key at all; with
 * it, every machine has a member that the cluster lists (its own or its domain's) and an ip.
 */
function checkCluster(raw: Mapping, index: ReturnType<typeof indexNames>, errors: Finding[]): void {
  const global = isMapping(raw.global) ? raw.global : {};
  const cluster = isMapping(global.cluster) ? global.cluster : undefined;
  const members = cluster && isMapping(cluster.members) ? Object.keys(cluster.members) : [];
  if (cluster) checkClusterMembers(raw, cluster, index, errors);
  if (cluster && global.firewall_mode === 'vm') errors.push({ path: ['global', 'firewall_mode'], message: cm.firewallVm() });
  const judge = (owner: MemberOwner, member: unknown, path: PathSegment[]): void => {
    if (typeof member !== 'string') return;
    if (!cluster) errors.push({ path, message: cm.memberWithoutCluster(owner, member) });
    else if (!members.includes(member)) errors.push({ path, message: cm.unknownMember(owner, member, members, closest(member, members)) });
  };
  const base = typeof global.base_subnet === 'string' ? global.base_subnet : undefined;
  for (const [domain, def] of mappingEntries(raw.domains)) {
    judge({ kind: 'Domain', name: domain }, def.member, ['domains', domain, 'member']);
    for (const [name, machine] of mappingEntries(def.machines)) {
      // Without a cluster, only a machine that names a member has something to hear.
      if (!cluster && machine.member === undefined) continue;
      const path: PathSegment[] = ['domains', domain, 'machines', name];
      judge({ kind: 'Machine', name }, machine.member, [...path, 'member']);
      if (!cluster) continue;
      if (machine.member === undefined && def.member === undefined) errors.push({ path, onKey: true, message: cm.machineWithoutMember(name, domain, members) });
      if (machine.ip === undefined) {
        const subnet = base !== undefined && typeof def.subnet_id === 'number' ? `${base}.${def.subnet_id}.0/24` : undefined;
        errors.push({ path, onKey: true, message: cm.machineWithoutIp(name, domain, subnet) });
      }
    }
  }
}

export function checkSemantics(raw: Mapping, ctx: Context): SemanticResult {
  const errors: Finding[] = [];
  const warnings: Finding[] = [];
  const index = indexNames(raw);
  checkAiAccess(raw, index, errors);
  checkDomainsAndMachines(raw, errors, warnings);
  checkDevices(raw, errors, warnings);
  checkHostRoot(raw, ctx, errors, warnings);
  checkSharedDisks(raw, warnings);
  checkPolicies(raw, index, errors);
  checkFirewallMode(raw, index, errors);
  checkCluster(raw, index, errors);
  return { errors, warnings };
}
