/**
 * The cluster's record of the AI access holder (docs/multi-host.md#where-the-ai-holder-lives): a
 * key of the ai-tools project's config in the cluster's database, which ai-switch writes ("" for
 * nobody) and ai-status and the audit compare. A module of its own: the switch's pure plan and
 * ai-status's reader both need it, and neither should load the other.
 */
export const HOLDER_RECORD_KEY = 'user.anklume.ai_holder';
