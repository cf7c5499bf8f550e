/**
 * An Incus cluster's tree, for the commands that act on the host. Every one of them now works on
 * every member: apply and apply-nftables pass the members' inventory to site.yml, audit and
 * ai-status read every member, ai-switch revokes and grants on every member
 * (aiswitch/clusterSwitch.ts). What was refused here until then is refused no more; what is left
 * is telling whether a tree was written for a cluster.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RULESET } from './sitePlaybook.js';

/** The set that only a cluster's ruleset declares (templates/nftables/anklume.nft.hbs). */
const CLUSTER_SET = '\tset member_links {';

/**
 * Whether the tree's ruleset declares the member links: the tree was written for a cluster, and
 * apply and apply-nftables pass the members' inventory to site.yml.
 */
export function clusterRuleset(baseDir: string): boolean {
  try {
    return readFileSync(join(baseDir, RULESET), 'utf8').includes(`\n${CLUSTER_SET}\n`);
  } catch {
    // No ruleset: the command's own check says to sync first.
    return false;
  }
}
