/**
 * Whether the ruleset sync wrote gives AI access to the domain the state file names. ai-switch
 * keeps the two in step; a ruleset written before a switch (in another base dir, or a restored
 * copy) would hand access back to a domain that no longer holds it while the state file says
 * otherwise, so apply and apply-nftables refuse it.
 */
import { readHolderState, stateFilePath } from '../infra/context.js';

/** The elements of `set ai_holder` (up to the set's closing brace, comment lines aside). */
const HOLDER_SET = /^\tset ai_holder \{\n([\s\S]*?)^\t\}/m;
const BRIDGE = /^\s*"net-([^"]+)",?\s*$/gm;

/** What is wrong, in a sentence, or undefined when the two agree or one of them cannot tell. */
export async function holderDisagreement(rulesetText: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  const set = HOLDER_SET.exec(rulesetText)?.[1];
  // Open mode has no holder set, and a ruleset without one is not sync's.
  if (set === undefined) return undefined;
  const holders = [...set.matchAll(BRIDGE)].map((m) => m[1]);
  const path = stateFilePath(env);
  const state = await readHolderState(path).catch(() => undefined);
  const gives = holders.length ? `gives AI access to '${holders.join("', '")}'` : 'gives nobody AI access';
  if (state?.kind === 'domain' && holders.join() !== state.domain) return `${gives}, but the state file ${path} says '${state.domain}' holds it`;
  if (state?.kind === 'none' && holders.length) return `${gives}, but the state file ${path} says nobody holds it (a switch failed half-way)`;
  return undefined;
}
