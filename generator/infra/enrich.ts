/**
 * Enrichment (spec §5): defaults made explicit, the auto-created AI access policy, sys-firewall.
 * Pure: the holder of AI access is passed in.
 */
import { AI_DOMAIN, endpointDomain, isAiAccessPolicy, lookupNames } from './validate.js';
import type { Domain, Infra, Machine, NetworkPolicy } from '../core/types.js';

export const DEFAULT_AI_SERVICES = ['ollama', 'speaches'];

export interface Enriched {
  infra: Infra;
  info: string[];
}

/** The index of the one policy that targets ai-tools, if any. */
export function aiPolicyIndex(infra: Infra): number {
  const names = lookupNames(infra as unknown as Record<string, unknown>);
  return (infra.network_policies ?? []).findIndex((p) => isAiAccessPolicy(p, names));
}

function withDefaults(infra: Infra): Infra {
  const g = infra.global;
  const global = {
    ...g,
    gpu_policy: g.gpu_policy ?? 'exclusive',
    firewall_mode: g.firewall_mode ?? 'host',
    ai_access_policy: g.ai_access_policy ?? 'open',
  } as const;
  const domains: Record<string, Domain> = {};
  for (const [name, domain] of Object.entries(infra.domains)) {
    const machines: Record<string, Machine> = {};
    for (const [machineName, machine] of Object.entries(domain.machines ?? {})) {
      machines[machineName] = { ...machine, type: machine.type ?? 'lxc', ephemeral: machine.ephemeral ?? domain.ephemeral ?? false };
      // On a cluster every machine runs on a member (validated): its own, else its domain's.
      if (g.cluster) machines[machineName].member = machine.member ?? domain.member;
    }
    domains[name] = { ...domain, ephemeral: domain.ephemeral ?? false, machines };
  }
  const network_policies: NetworkPolicy[] = (infra.network_policies ?? []).map((p) => ({
    ...p,
    ports: p.ports ?? 'all',
    protocol: p.protocol ?? 'tcp',
    bidirectional: p.bidirectional ?? false,
  }));
  return { ...infra, global, domains, network_policies };
}

/**
 * @param holder the domain that has AI access now (state file), `null` when nobody has it, or
 *   undefined when no switch ever happened (the default applies).
 */
export function enrich(validated: Infra, holder?: string | null): Enriched {
  const infra = withDefaults(validated);
  const info: string[] = [];
  const global = infra.global;
  const policies = infra.network_policies ?? [];

  if (global.ai_access_policy === 'exclusive' && global.ai_access_default) {
    const current = holder ?? global.ai_access_default;
    const existing = aiPolicyIndex(infra);
    if (existing < 0) {
      policies.push({
        description: `AI access: ${current} -> ${AI_DOMAIN} (auto-created)`,
        from: current,
        to: AI_DOMAIN,
        ports: 'all',
        protocol: 'tcp',
        bidirectional: true,
      });
      info.push(`INFO: ai_access_policy is 'exclusive' — auto-created network policy from '${current}' to '${AI_DOMAIN}'`);
    } else if (holder && endpointDomain(policies[existing].from, lookupNames(infra as unknown as Record<string, unknown>)) !== holder) {
      // A policy that already names the holder or one of its machines stays as narrow as written
      // (the ruleset does the same); otherwise the holder replaces whoever `from` names.
      const auto = /^AI access: [a-z0-9-]+ -> ai-tools \(auto-created\)$/.test(policies[existing].description ?? '');
      policies[existing] = {
        ...policies[existing],
        from: holder,
        ...(auto ? { description: `AI access: ${holder} -> ${AI_DOMAIN} (auto-created)` } : {}),
      };
    }
  }

  if (global.firewall_mode === 'vm' && !Object.values(infra.domains).some((d) => d.machines && 'sys-firewall' in d.machines)) {
    const admin = infra.domains.admin;
    if (admin) {
      admin.machines = {
        ...admin.machines,
        'sys-firewall': {
          description: 'Firewall VM (auto-created for firewall_mode: vm)',
          type: 'vm',
          ip: `${global.base_subnet}.${admin.subnet_id}.253`,
          config: { 'limits.cpu': '2', 'limits.memory': '2GiB' },
          roles: ['base_system', 'firewall_router'],
          ephemeral: false,
        },
      };
    }
  }
  return { infra: { ...infra, network_policies: policies }, info };
}
