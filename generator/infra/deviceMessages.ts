/**
 * What anklume says about a device or a setting that could take a machine out of its domain: one
 * module, so that the schema's errors (schema.ts) and the cross references (validate.ts) word the
 * same problem the same way. Each message names the bypass and what would be right.
 */
import { AI_DOMAIN, type DeviceOwner } from './devices.js';

/** Incus 6.0's device types; infiniband is left out on purpose (it skips the bridge). */
export const DEVICE_TYPES = ['none', 'nic', 'disk', 'gpu', 'proxy', 'unix-char', 'unix-block', 'unix-hotplug', 'usb', 'tpm', 'pci'] as const;

export function subject(owner: DeviceOwner): string {
  return owner.kind === 'machine' ? `Machine '${owner.machine}'` : `Domain '${owner.domain}': profile '${owner.profile}'`;
}

const who = (owner: DeviceOwner): string => (owner.kind === 'machine' ? 'the machine' : "the profile's machines");
const ownBridge = (owner: DeviceOwner): string => `net-${owner.domain}`;
const bypassed = (other?: string): string =>
  other === AI_DOMAIN ? 'domain isolation and the exclusive AI access would both be bypassed' : 'domain isolation would be bypassed';

export const deviceMessages = {
  notMapping: (owner: DeviceOwner, shown: string) =>
    `${subject(owner)}: devices must be a mapping of device name to device (e.g. data: { type: disk, source: /srv/data, path: /data }), got ${shown}`,
  deviceNotMapping: (owner: DeviceOwner, device: string, shown: string) =>
    `${subject(owner)}: device '${device}' must be a mapping with a type (${DEVICE_TYPES.filter((t) => t !== 'none').join(', ')}), got ${shown}`,
  noType: (owner: DeviceOwner, device: string) => `${subject(owner)}: device '${device}' has no type (one of ${DEVICE_TYPES.join(', ')})`,
  unknownType: (owner: DeviceOwner, device: string, type: string, guess?: string) =>
    `${subject(owner)}: device '${device}': unknown device type ${type}${guess ? `; did you mean '${guess}'?` : ` (Incus's: ${DEVICE_TYPES.join(', ')})`}`,
  infiniband: (owner: DeviceOwner, device: string) =>
    `${subject(owner)}: device '${device}' is an InfiniBand interface (type: infiniband), which does not go through the domain's bridge: the isolation ruleset would never see its traffic, so ${bypassed(AI_DOMAIN)}; anklume allows network interfaces only as bridged NICs on the machine's own bridge (type: nic, network: ${ownBridge(owner)})`,
  nicType: (owner: DeviceOwner, device: string, nictype: string) =>
    `${subject(owner)}: device '${device}' is a NIC of type ${nictype}, which does not go through the domain's bridge: the isolation ruleset would never see its traffic, so ${bypassed(AI_DOMAIN)}; only bridged NICs on the machine's own bridge are allowed (type: nic, network: ${ownBridge(owner)})`,
  nicWithoutNetwork: (owner: DeviceOwner, device: string) =>
    `${subject(owner)}: device '${device}' is a NIC without 'network' or 'parent': give it network: ${ownBridge(owner)} (its domain's bridge)`,
  nicNotDomainBridge: (owner: DeviceOwner, device: string, key: string, value: string) =>
    `${subject(owner)}: device '${device}' puts ${who(owner)} on '${value}' (${key}), which is not a domain bridge (anklume's are net-<domain>): ${who(owner)} would reach, and be reached from, everything on that network around the isolation ruleset; use ${key}: ${ownBridge(owner)} (its own bridge), and a network_policies entry ('from: outside') to let something in`,
  nicOtherDomain: (owner: DeviceOwner, device: string, key: string, value: string, other: string) =>
    `${subject(owner)}: device '${device}' puts ${who(owner)} on '${value}' (${key}), the bridge of domain '${other}': a NIC on another domain's bridge is on that domain's own L2, where the isolation ruleset never sees the packets, so ${bypassed(other)}; keep NICs on ${ownBridge(owner)} (its own bridge) and open flows with network_policies`,
  nicUnknownBridge: (owner: DeviceOwner, device: string, key: string, value: string) =>
    `${subject(owner)}: device '${device}' puts ${who(owner)} on '${value}' (${key}), which is the bridge of no domain of this infra: whatever is on it would reach ${who(owner)} around the isolation ruleset; use ${key}: ${ownBridge(owner)} (its own bridge)`,
  nicSourceUnfiltered: (owner: DeviceOwner, device: string, shown: string) =>
    `${subject(owner)}: device '${device}' sets security.ipv4_filtering to ${shown}: ${who(owner)} can then send from any address of ${ownBridge(owner)}, so another machine of domain '${owner.domain}' can pose as one that a network policy names (and take its replies); anklume filters every NIC of a domain bridge by the address Incus gives it: remove the key, or set it to true`,
  proxyAddress: (owner: DeviceOwner, device: string, key: string, shown: string) =>
    `${subject(owner)}: device '${device}': ${key} ${shown} is not an Incus proxy address: <type>:<address>:<port> such as tcp:0.0.0.0:8080 (tcp or udp, ports 1-65535, ranges 8000-8010 and lists 80,443), or unix:/path/to/socket`,
  proxyNeeds: (owner: DeviceOwner, device: string, key: string) =>
    `${subject(owner)}: device '${device}' is a proxy device without '${key}' (e.g. listen: tcp:0.0.0.0:8080, connect: tcp:127.0.0.1:80)`,
  proxyBind: (owner: DeviceOwner, device: string, shown: string) => `${subject(owner)}: device '${device}': bind must be 'host' or 'instance', got ${shown}`,
  proxyNat: (owner: DeviceOwner, device: string, shown: string) => `${subject(owner)}: device '${device}': nat must be true or false, got ${shown}`,
  proxyOnAiTools: (owner: DeviceOwner, device: string) =>
    `${subject(owner)}: device '${device}' is a proxy device in ai-tools under ai_access_policy 'exclusive': it would publish ai-tools on the host's addresses to every domain and the LAN, around the exclusive AI access (the holder reaches ai-tools directly); remove it, or set ai_access_policy: open`,
  proxyIntoDomain: (owner: DeviceOwner, device: string, address: string, other: string) =>
    `${subject(owner)}: device '${device}' is a proxy with bind: instance that makes the host connect to ${address}, in domain '${other}': a path from ${who(owner)} into another domain that the isolation ruleset never sees, so ${bypassed(other)}; remove it, and open the flow with network_policies instead`,
  proxyUnjudgedHost: (owner: DeviceOwner, device: string, host: string) =>
    `${subject(owner)}: device '${device}' is a proxy that connects to '${host}', a name rather than an IPv4 address: anklume cannot tell which domain it reaches; write the address`,
  proxyRelays: (owner: DeviceOwner, device: string, address: string, other: string) =>
    `${subject(owner)}: device '${device}' is a proxy that connects, from inside ${who(owner)}, to ${address} in domain '${other}': it would relay what ${who(owner)} reach there${other === AI_DOMAIN ? ' (ai-tools, through whichever domain holds AI access)' : ''} to every domain and the LAN through the host's addresses, so ${bypassed(other)}; connect to the machine itself (tcp:127.0.0.1:PORT), and open flows with network_policies`,
  incusApi: (owner: DeviceOwner, device: string, key: string, path: string) =>
    `${subject(owner)}: device '${device}' gives ${who(owner)} ${path} (${key}), Incus's own socket or state: with it, root in the machine drives Incus, so it is root on the host and can put itself on any domain's bridge; remove it`,
  hostHardware: (owner: DeviceOwner, device: string, type: string, refusedOnAiTools: boolean) =>
    refusedOnAiTools
      ? `${subject(owner)}: device '${device}' passes host hardware through (type: ${type}): a network card there would put ai-tools on the LAN around the bridge, and the exclusive AI access with it; refused on ai-tools under ai_access_policy 'exclusive' (remove it, or set ai_access_policy: open)`
      : `${subject(owner)}: device '${device}' passes host hardware through (type: ${type}): a network card there puts ${who(owner)} on the LAN around the domain's bridge and the isolation ruleset; keep it for devices that are not network interfaces`,
  nicParentWithoutType: (owner: DeviceOwner, device: string) =>
    `${subject(owner)}: device '${device}' is a NIC with 'parent' but no 'nictype': Incus needs nictype: bridged with a parent (or network: ${ownBridge(owner)} alone)`,
  nicNetworkAndType: (owner: DeviceOwner, device: string) =>
    `${subject(owner)}: device '${device}' is a NIC with both 'network' and 'nictype': Incus takes one or the other; write network: ${ownBridge(owner)} alone`,
  hostRoot: (owner: DeviceOwner, key: string, refusedOnAiTools: boolean) => {
    const what = key === 'security.privileged'
      ? 'security.privileged=true: root in the container is root on the host'
      : `${key} hands settings straight to ${key.split('.')[1] === 'idmap' ? 'the container\'s id mapping' : key.split('.')[1]}, past Incus's checks: root in the machine may get root on the host`;
    return refusedOnAiTools
      ? `${subject(owner)}: ${what}, and could leave it to reach every domain and what the last AI holder left in ai-tools; refused on ai-tools under ai_access_policy 'exclusive' (remove it, or set ai_access_policy: open)`
      : `${subject(owner)}: ${what}, and could leave it to reach every domain; keep it for machines you trust as much as the host (docs/nftables.md#devices-and-profiles)`;
  },
  sharedDisk: (owner: DeviceOwner, machine: string, device: string, source: string, other: { machine: string; domain: string; source: string }) =>
    `${subject(owner)}: device '${device}' mounts ${source} in machine '${machine}' of domain '${owner.domain}', and machine '${other.machine}' of domain '${other.domain}' mounts ${other.source}: a shared folder is a channel between the two domains, around the isolation ruleset; share it only if that is what you want`,
};
