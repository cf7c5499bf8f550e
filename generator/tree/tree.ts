/**
 * The Ansible tree (spec §6) as data: relative path → variables of its managed block. Pure.
 */
import { aiPolicyIndex } from '../infra/enrich.js';
import type { Cluster, Domain, Infra, Machine, NetworkPolicy } from '../core/types.js';

/**
 * The inventory of the cluster's members (global.cluster only): the `_` keeps it apart from the
 * domains' files, whose names cannot start with one.
 */
export const CLUSTER_INVENTORY = 'inventory/_cluster.yml';
/** The members' group in that inventory: the underscore keeps it apart from every domain's group. */
export const CLUSTER_GROUP = 'anklume_cluster';

/**
 * A file of the tree. Its variables are built when asked for: a large tree's files are then built
 * and rendered one by one while the earlier ones are being written, not all before the first.
 */
export type VarFile = { path: string; vars: () => Record<string, unknown>; kind: 'all' | 'inventory' | 'group' | 'host' };

/** Keys whose value is absent are omitted, so a generated file never says `key: null`. */
function present(entries: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  // for-in, not Object.entries: called for each of thousands of files, and the pairs it builds showed.
  for (const key in entries) {
    const value = entries[key];
    if (value !== undefined && value !== null) out[key] = value;
  }
  return out;
}

export function imageOf(infra: Infra, machine: Machine): string | undefined {
  return machine.os_image ?? infra.global.default_os_image;
}

/**
 * The policies Ansible is told about. When nobody holds AI access (a switch failed half-way), the
 * AI policy is left out: listing it would name a domain that has no access. The model keeps it,
 * because the ruleset derives the next grant's elements (ports, direction) from it.
 */
function policiesFor(infra: Infra, holder: string | null | undefined): NetworkPolicy[] {
  const policies = infra.network_policies ?? [];
  const aiIndex = holder === null && infra.global.ai_access_policy === 'exclusive' ? aiPolicyIndex(infra) : -1;
  return aiIndex < 0 ? policies : policies.filter((_, i) => i !== aiIndex);
}

function allVars(infra: Infra, holder: string | null | undefined): Record<string, unknown> {
  const images = new Set<string>();
  for (const domain of Object.values(infra.domains)) {
    for (const machine of Object.values(domain.machines ?? {})) {
      const image = imageOf(infra, machine);
      if (image !== undefined) images.add(image);
    }
  }
  const g = infra.global;
  const policies = policiesFor(infra, holder);
  return present({
    project_name: infra.project_name,
    base_subnet: g.base_subnet,
    default_os_image: g.default_os_image,
    psot_default_connection: g.default_connection,
    psot_default_user: g.default_user,
    incus_all_images: [...images].sort(),
    // What `make apply` builds: files of domains infra.yml no longer names stay on disk as orphans.
    anklume_domains: Object.keys(infra.domains),
    // Like the seed-era generator: no policies, no key (rather than an empty list).
    network_policies: policies.length ? policies : undefined,
    // On a cluster, what apply's preflight holds `incus cluster list` to: each member and its
    // address. Here, not read from inventory/_cluster.yml, which stays on disk as an orphan once
    // global.cluster is gone; absent on one host.
    anklume_cluster_members: g.cluster && Object.fromEntries(Object.entries(g.cluster.members).map(([name, m]) => [name, m.address])),
  });
}

function inventoryVars(name: string, domain: Domain): Record<string, unknown> {
  const hosts: Record<string, unknown> = {};
  for (const [machineName, machine] of Object.entries(domain.machines ?? {})) {
    hosts[machineName] = machine.ip === undefined ? null : { ansible_host: machine.ip };
  }
  return { all: { children: { [name]: { hosts } } } };
}

function groupVars(infra: Infra, name: string, domain: Domain): Record<string, unknown> {
  const base = infra.global.base_subnet;
  return present({
    domain_name: name,
    domain_description: domain.description,
    domain_ephemeral: domain.ephemeral ?? false,
    incus_project: name,
    incus_network: {
      name: `net-${name}`,
      subnet: `${base}.${domain.subnet_id}.0/24`,
      gateway: `${base}.${domain.subnet_id}.254`,
    },
    subnet_id: domain.subnet_id,
    incus_profiles: domain.profiles,
  });
}

function hostVars(infra: Infra, domainName: string, domain: Domain, name: string, machine: Machine): Record<string, unknown> {
  return present({
    instance_name: name,
    instance_type: machine.type ?? 'lxc',
    instance_description: machine.description,
    instance_domain: domainName,
    // The cluster member the instance runs on (incus --target); absent on one host.
    instance_target: machine.member,
    instance_ephemeral: machine.ephemeral ?? domain.ephemeral ?? false,
    instance_os_image: imageOf(infra, machine),
    instance_ip: machine.ip,
    instance_gpu: machine.gpu,
    instance_profiles: machine.profiles,
    instance_config: machine.config,
    instance_devices: machine.devices,
    instance_storage_volumes: machine.storage_volumes,
    instance_roles: machine.roles,
  });
}

/** Each member as a host: Ansible reaches it at its address, and its member link is a host var. */
function clusterInventoryVars(cluster: Cluster): Record<string, unknown> {
  const hosts: Record<string, unknown> = {};
  for (const [name, member] of Object.entries(cluster.members)) {
    hosts[name] = { ansible_host: member.address, anklume_member_link: member.member_link ?? cluster.member_link };
  }
  return { all: { children: { [CLUSTER_GROUP]: { hosts } } } };
}

/**
 * Every var file of the tree, in a stable order. Names were validated (DNS-safe) before this.
 * @param holder the AI access holder as the state file says (pipeline.resolveHolder): null when
 *   nobody has access, undefined when no switch ever happened.
 */
export function buildTree(infra: Infra, holder?: string | null): VarFile[] {
  const files: VarFile[] = [{ path: 'group_vars/all.yml', vars: () => allVars(infra, holder), kind: 'all' }];
  const cluster = infra.global.cluster;
  if (cluster) files.push({ path: CLUSTER_INVENTORY, vars: () => clusterInventoryVars(cluster), kind: 'inventory' });
  for (const [name, domain] of Object.entries(infra.domains)) {
    files.push({ path: `inventory/${name}.yml`, vars: () => inventoryVars(name, domain), kind: 'inventory' });
    files.push({ path: `group_vars/${name}.yml`, vars: () => groupVars(infra, name, domain), kind: 'group' });
    for (const [machineName, machine] of Object.entries(domain.machines ?? {})) {
      files.push({ path: `host_vars/${machineName}.yml`, vars: () => hostVars(infra, name, domain, machineName, machine), kind: 'host' });
    }
  }
  return files;
}

/** The directories whose *.yml files the tree owns (for orphan detection). */
