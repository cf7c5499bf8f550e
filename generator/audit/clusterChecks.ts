/**
 * `anklume-gen audit` on an Incus cluster, the judging half (docs/multi-host.md, "audit"): today's
 * checks on every member (its live table and boot copy, from the members' play of site.yml under
 * --check; its holder sets; its connections between ai-tools and domains without access; its
 * bridges' ports), its routes and proxy ARP (the same play), Incus's own view from here (each
 * member ONLINE and each instance on its member: apply's plan, the one comparison), and the
 * holder's records agreeing with each other. Pure; a member that could not be read is NOT CHECKED.
 */
import { memberAgrees, HOLDER_RECORD_KEY, type HolderRecord } from '../aiswitch/aiStatus.js';
import { connectionFindings, deviceFindings, planFindings, portFindings, treeFindings, type AuditReport, type Finding, type LiveInstance, type Read } from './auditChecks.js';
import type { IncusPlan } from './incusPlan.js';
import type { MembersRead } from './memberReader.js';
import type { MembersPlan } from './membersPlan.js';
import { domainSubnet } from '../nftables/memberSets.js';
import type { Context, Infra } from '../core/types.js';

export interface ClusterReadings {
  treeText: string | undefined;
  expectedText: string;
  /** Where each member keeps its boot copy and loads it from (the role's variables). */
  installedPath: string;
  bootConfPath: string | undefined;
  /** Incus, from here: every instance of the cluster (its location included). */
  instances: Read<LiveInstance[]>;
  /** apply's plan for Incus: members not ONLINE, instances not on their member, any other drift. */
  plan: Read<IncusPlan>;
  /** The members' play under --check: ruleset:live@m, ruleset:boot@m, ruleset:boot-conf@m, routes:m that differ. */
  membersPlan: Read<MembersPlan>;
  /** Each member's own readings over Ansible. */
  members: MembersRead;
  record: HolderRecord;
}

export interface ClusterAuditReport extends AuditReport {
  /** Each member of global.cluster: checked, or not (its reason is among `unchecked`). */
  members: Record<string, 'checked' | 'not checked'>;
  /** The cluster's record of the holder (user.anklume.ai_holder on project ai-tools). */
  holder_record: HolderRecord;
}

const APPLY_NFTABLES = 'anklume-gen apply-nftables (make nftables)';
const whose = (holder: string | null) => (holder === null ? 'nobody' : `'${holder}'`);
const onMember = (m: string) => (f: Finding): Finding => ({ ...f, message: `member ${m}: ${f.message}` });

/** What the members' play says differs on member m, as findings (the play names the object, not the keys). */
function memberPlanFindings(m: string, plan: MembersPlan, tableLoaded: boolean, r: ClusterReadings): Finding[] {
  const differs = new Set(plan.objects.map((o) => o.id));
  const out: Finding[] = [];
  if (differs.has(`ruleset:live@${m}`) && tableLoaded) {
    out.push({ check: 'ruleset', message: 'its live table inet anklume is not the ruleset of the tree', fix: APPLY_NFTABLES });
  }
  if (differs.has(`ruleset:boot@${m}`)) {
    out.push({ check: 'boot', message: `${r.installedPath} (loaded at boot) is missing or not the tree's ruleset: a reboot would bring back another one, or none`, fix: APPLY_NFTABLES });
  }
  if (differs.has(`ruleset:boot-conf@${m}`) && r.bootConfPath) {
    out.push({ check: 'boot', message: `${r.bootConfPath} does not include ${r.installedPath.replace(/\/[^/]*$/, '')}: the ruleset is not loaded at boot`, fix: APPLY_NFTABLES });
  }
  if (differs.has(`routes:${m}`)) {
    out.push({ check: 'routes', message: "its routes to the machines of the other members, IPv4 forwarding, proxy ARP on the domain bridges or what it reads at boot to set them again are not what the tree says: machines on other members are not reached as infra.yml places them, or will not be after a reboot", fix: 'anklume-gen apply (make apply)' });
  }
  return out.map(onMember(m));
}

/** A member's holder sets against the state file's holder (exclusive mode). */
function memberHolderFinding(m: string, holders: string[] | undefined, subnets: string[] | undefined, holder: string | null, infra: Infra): Finding[] {
  if (holders === undefined) return []; // not loaded: the table's finding says it
  if (memberAgrees({ holders, subnets: subnets ?? [] }, holder, (d) => domainSubnet(infra, d))) return [];
  const said = holders.length ? holders.map((h) => `'${h}'`).join(', ') : 'nobody';
  return [onMember(m)({
    check: 'holder',
    message: `its live ai_holder set gives AI access to ${said} (ai_holder_subnet: ${subnets?.length ? subnets.join(', ') : 'empty'}), the state file to ${whose(holder)}`,
    fix: `${APPLY_NFTABLES}: the tree follows the state file`,
  })];
}

export function judgeCluster(r: ClusterReadings, infra: Infra, holder: string | null, ctx: Context): ClusterAuditReport {
  const exclusive = infra.global.ai_access_policy === 'exclusive';
  const findings: Finding[] = treeFindings(r.treeText, r.expectedText);
  const unchecked: AuditReport['unchecked'] = [];
  const members: ClusterAuditReport['members'] = {};

  if (r.instances.ok) findings.push(...deviceFindings(r.instances.value, infra, ctx));
  else unchecked.push({ check: 'devices', why: r.instances.why });
  if (r.plan.ok) findings.push(...planFindings(r.plan.value));
  else unchecked.push({ check: 'incus', why: r.plan.why });

  for (const m of Object.keys(infra.global.cluster?.members ?? {}).sort()) {
    const read = r.members[m];
    if (!read || !read.ok) {
      members[m] = 'not checked';
      unchecked.push({ check: 'members', why: `member ${m} was not read: ${read ? read.why : 'no answer'}` });
      continue;
    }
    const mr = read.value;
    const notRead = (check: Finding['check'], why: string) => unchecked.push({ check, why: `member ${m}: ${why}` });
    let checked = true;
    if (!mr.table.ok) {
      notRead('ruleset', mr.table.why);
      checked = false;
    } else if (!mr.table.value) {
      findings.push(onMember(m)({ check: 'ruleset', message: 'table inet anklume is not loaded: nothing isolates the domains on it', fix: APPLY_NFTABLES }));
    }
    if (!r.membersPlan.ok) {
      notRead('ruleset', `its table, boot copy and routes could not be compared with the tree: ${r.membersPlan.why}`);
      checked = false;
    } else if (!r.membersPlan.value.read.includes(m)) {
      notRead('ruleset', 'its table, boot copy and routes could not be compared with the tree: the members\' play under --check wrote no record for it');
      checked = false;
    } else findings.push(...memberPlanFindings(m, r.membersPlan.value, mr.table.ok && mr.table.value, r));
    if (exclusive) {
      if (!mr.holders.ok) {
        notRead('holder', mr.holders.why);
        checked = false;
      } else if (!mr.holderSubnets.ok) {
        notRead('holder', mr.holderSubnets.why);
        checked = false;
      } else findings.push(...memberHolderFinding(m, mr.holders.value, mr.holderSubnets.value, holder, infra));
      if (mr.conntrack.ok) findings.push(...connectionFindings(mr.conntrack.value, infra, holder).map(onMember(m)));
      else {
        notRead('connections', mr.conntrack.why);
        checked = false;
      }
    }
    if (!mr.links.ok) {
      notRead('devices', mr.links.why);
      checked = false;
    } else if (r.instances.ok) findings.push(...portFindings(mr.links.value, r.instances.value, infra).map(onMember(m)));
    members[m] = checked ? 'checked' : 'not checked';
  }

  // The records: the state file is the holder judged above; the cluster's record must say the same.
  if (exclusive) {
    if ('error' in r.record) unchecked.push({ check: 'holder', why: `the cluster's record (${HOLDER_RECORD_KEY} on project ai-tools): ${r.record.error}` });
    else if (r.record.written && r.record.holder !== holder) {
      findings.push({
        check: 'holder',
        message: `the cluster's record (${HOLDER_RECORD_KEY} on project ai-tools) says ${whose(r.record.holder)}, the state file ${whose(holder)}`,
        fix: `anklume-gen ai-switch --domain <domain> (it writes both records), or incus project set ai-tools ${HOLDER_RECORD_KEY}=${holder ?? '""'}`,
      });
    }
  }
  return { clean: findings.length === 0 && unchecked.length === 0, holder, findings, unchecked, members, holder_record: r.record };
}
