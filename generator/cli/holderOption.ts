/** `--ai-domain D` of the commands that render for one AI access holder (nftables, flows). */
import { UsageError } from './command.js';
import { domainNotFound, isDomainName } from '../infra/names.js';
import { effectiveHolder } from '../infra/pipeline.js';
import { AI_DOMAIN } from '../infra/validate.js';
import type { Infra } from '../core/types.js';

/** A holder the infra refuses: exit 1 with this message. */
export class HolderRefused extends Error {}

/**
 * The holder to render for: the one requested, else the state file's, else ai_access_default.
 * @param stateHolder what the state file says (undefined: no switch yet; null: nobody)
 */
export function chooseHolder(infra: Infra, infraPath: string, stateHolder: string | null | undefined, requested: unknown): string | null {
  if (typeof requested !== 'string') return effectiveHolder(infra, stateHolder);
  if (!isDomainName(requested)) throw new UsageError(`Invalid domain name: ${requested} (must be DNS-safe${isDomainName(requested.toLowerCase()) ? `, lowercase; did you mean '${requested.toLowerCase()}'?` : ''})`);
  if (requested === AI_DOMAIN) throw new UsageError(`Cannot give AI access to 'ai-tools' itself: --ai-domain names a client domain`);
  if (infra.global.ai_access_policy !== 'exclusive') throw new HolderRefused(`--ai-domain needs ai_access_policy: exclusive in ${infraPath}`);
  if (!(requested in infra.domains)) throw new HolderRefused(domainNotFound(requested, Object.keys(infra.domains).filter((name) => name !== AI_DOMAIN), infraPath));
  return requested;
}
