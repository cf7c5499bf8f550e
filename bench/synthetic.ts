/** A synthetic infra of the size the benchmark targets: 250 domains × 20 machines, exclusive AI mode. */
import { stringify } from 'yaml';

export interface SyntheticSize {
  domains: number;
  machinesPerDomain: number;
}

export const BENCH_SIZE: SyntheticSize = { domains: 250, machinesPerDomain: 20 };

export function syntheticInfra(size: SyntheticSize = BENCH_SIZE): Record<string, unknown> {
  const domains: Record<string, unknown> = {};
  for (let d = 0; d < size.domains; d++) {
    const name = d === 0 ? 'ai-tools' : `dom${d}`;
    const machines: Record<string, unknown> = {};
    for (let m = 0; m < size.machinesPerDomain; m++) {
      machines[`${name}-m${m}`] = {
        description: `Machine ${m} of ${name}`,
        type: m % 5 === 0 ? 'vm' : 'lxc',
        ip: `10.100.${d}.${m + 1}`,
        ...(d === 0 && m === 0 ? { gpu: true } : {}),
        roles: ['base_system', 'dev_tools'],
        config: { 'limits.cpu': '2', 'limits.memory': '2GiB' },
        profiles: ['default'],
      };
    }
    domains[name] = { description: `Domain ${name}`, subnet_id: d, ephemeral: d % 2 === 0, machines };
  }
  return {
    project_name: 'bench',
    global: { base_subnet: '10.100', default_os_image: 'images:debian/13', ai_access_policy: 'exclusive', ai_access_default: 'dom1' },
    domains,
    network_policies: [
      { description: 'dom2 reaches dom3 web', from: 'dom2', to: 'dom3', ports: [80, 443], protocol: 'tcp' },
      { description: 'dom4 to one machine of dom5', from: 'dom4', to: 'dom5-m1', ports: [22] },
      { description: 'dom6 and dom7 talk freely', from: 'dom6', to: 'dom7', ports: 'all', bidirectional: true },
      { description: 'DNS from dom8 to dom9', from: 'dom8', to: 'dom9-m0', ports: [53], protocol: 'udp' },
      { description: 'dom10 web front published', from: 'outside', to: 'dom10-m0', ports: [443] },
    ],
  };
}

export function syntheticInfraText(size: SyntheticSize = BENCH_SIZE): string {
  return stringify(syntheticInfra(size), { lineWidth: 0 });
}
