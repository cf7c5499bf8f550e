/**
 * Whether a tree was written for an Incus cluster: apply and apply-nftables then pass the members'
 * inventory (inventory/_cluster.yml) to site.yml, for the play of the ruleset on every member.
 * (audit, ai-status and ai-switch go by infra.yml's global.cluster, which they read.)
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RULESET } from './sitePlaybook.js';

/** The set that only a cluster's ruleset declares (templates/nftables/anklume.nft.hbs). */
const CLUSTER_SET = '\tset member_links {';

/** Whether the tree's ruleset declares the member links: the tree was written for a cluster. */
export function clusterRuleset(baseDir: string): boolean {
  try {
    return readFileSync(join(baseDir, RULESET), 'utf8').includes(`\n${CLUSTER_SET}\n`);
  } catch {
    // No ruleset: the command's own check says to sync first.
    return false;
  }
}
