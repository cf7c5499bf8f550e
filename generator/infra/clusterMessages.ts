/**
 * What anklume says about global.cluster and the member keys (docs/multi-host.md): one module, so
 * that every problem of a cluster is worded the same way wherever it is found. Each message names
 * what is wrong and what would be right.
 */

/** `Machine 'pro-dev'` or `Domain 'pro'`: whose member key it is. */
export type MemberOwner = { kind: 'Machine' | 'Domain'; name: string };

const subject = (owner: MemberOwner): string => `${owner.kind} '${owner.name}'`;

const memberList = (members: readonly string[]): string => (members.length ? `members: ${members.join(', ')}` : 'global.cluster.members lists none');

export const clusterMessages = {
  memberWithoutCluster: (owner: MemberOwner, member: string) =>
    `${subject(owner)}: member: '${member}' needs global.cluster (the cluster's members and the link that joins them, docs/multi-host.md); on one host, remove member`,
  unknownMember: (owner: MemberOwner, member: string, members: readonly string[], guess?: string) =>
    `${subject(owner)}: member '${member}' is not in global.cluster.members${guess ? `; did you mean '${guess}'?` : ` (${memberList(members)})`}`,
  machineWithoutMember: (machine: string, domain: string, members: readonly string[]) =>
    `Machine '${machine}': no member: in a cluster every machine runs on a member; set member on it or on its domain '${domain}' (${memberList(members)})`,
  machineWithoutIp: (machine: string, domain: string, subnet: string | undefined) =>
    `Machine '${machine}': no ip: in a cluster every machine needs a fixed address in its domain's subnet${subnet ? ` ${subnet}` : ''} (between members, the source address is what places a packet in domain '${domain}', and each member's DHCP knows only its own machines); add ip`,
  addressReused: (member: string, address: string, other: string) =>
    `Member '${member}': address ${address} already used by '${other}' (each member needs its own address on the member link)`,
  addressInDomain: (member: string, address: string, domain: string, subnet: string, plan: string) =>
    `Member '${member}': address ${address} is inside domain '${domain}''s subnet ${subnet}: the members would route it to a machine of '${domain}'; give the member its address on the member link, outside ${plan} (anklume's address plan, global.base_subnet)`,
  addressInPlan: (member: string, address: string, plan: string) =>
    `Member '${member}': address ${address} is inside anklume's address plan ${plan} (global.base_subnet), where domains get their subnets; give the member its address on the member link, outside ${plan}`,
  addressUnreachable: (member: string, address: string, why: string) =>
    `Member '${member}': address ${address} is ${why}, which the other members cannot reach; give the member its address on the member link`,
  linkIsBridge: (where: string, link: string) =>
    `${where} '${link}' has the name of a domain bridge (net-<domain>): the isolation ruleset would take it for one; name the interface that joins the members (e.g. enp2s0, or a VLAN such as vlan50)`,
  linkIsLocal: (where: string, link: string, why: string) =>
    `${where} '${link}' is ${why}: what arrives on a member link from a domain's subnet is taken as that domain's, so the link must join the members and nothing else; name the interface that joins them (e.g. enp2s0, or a VLAN such as vlan50)`,
  memberNameTaken: (member: string, kind: 'domain' | 'machine') =>
    `Member '${member}': has the name of a ${kind}: Ansible's inventory would take the two for one (the members are hosts of inventory/_cluster.yml); rename the member in Incus (incus cluster rename) or the ${kind}`,
  memberNameReserved: (member: string) =>
    `Member '${member}': invalid name ('${member}' is Ansible's own: the members are hosts of inventory/_cluster.yml, and anklume's playbook runs on 'localhost'); rename the member in Incus (incus cluster rename)`,
  // Shapes (schema.ts words ajv's errors about the cluster keys with these).
  badMemberName: (member: string) =>
    `global.cluster.members: member '${member}': invalid name (an Incus member name: letters, digits and hyphens, at most 63 characters, not starting or ending with a hyphen)`,
  badMemberRef: (where: string, value: string) =>
    `${where}: member must name a cluster member (letters, digits and hyphens, at most 63 characters, as global.cluster.members lists them), got '${value}'`,
  badMemberLink: (where: string, value: string) =>
    `${where}: must be the name of a network interface (letters, digits, '_', '.', '@' and '-', at most 15 characters, as 'ip link' shows it), got '${value}'`,
  badMemberAddress: (member: string, value: string) =>
    `Member '${member}': address must be the member's IPv4 address on the member link, like 192.168.50.2, got '${value}'`,
  firewallVm: () =>
    `global.firewall_mode is 'vm' but global.cluster is set: a sys-firewall VM on one member cannot judge what the other members forward; leave firewall_mode out (host: the same ruleset on every member)`,
};
