/**
 * From the files on disk to a validated, enriched model: the part every command shares
 * (load → schema → semantics → enrich), with the host's context and the AI access state.
 */
import type { HolderState } from './context.js';
import { gather, type Gathered } from './gather.js';
import { enrich } from './enrich.js';
import { analyse } from './infra.js';
import { AI_DOMAIN } from './validate.js';
import type { Diagnostic, Infra } from '../core/types.js';

/**
 * The AI access holder the outputs must reflect: the state file's word, checked against the infra.
 * Returns undefined when no switch ever happened (the default applies), null when nobody has access.
 */
export function resolveHolder(infra: Infra, state: HolderState, stateFile: string): { holder?: string | null; error?: Diagnostic } {
  if (infra.global.ai_access_policy !== 'exclusive') return {};
  switch (state.kind) {
    case 'absent':
      return {};
    case 'none':
      return { holder: null };
    case 'corrupt':
      return { error: { file: stateFile, message: `holds '${state.text}', not a domain name; fix it with 'anklume-gen ai-switch --domain <domain>' (make ai-switch DOMAIN=<domain>)` } };
    case 'domain':
      if (state.domain === AI_DOMAIN || !(state.domain in infra.domains)) {
        return { error: { file: stateFile, message: `names '${state.domain}' as the AI access holder, but it is not a client domain of the infra; fix it with 'anklume-gen ai-switch --domain <domain>' (make ai-switch DOMAIN=<domain>)` } };
      }
      return { holder: state.domain };
  }
}

/** Who the generated ruleset lets reach ai-tools: the state file's holder, else the default. */
export function effectiveHolder(infra: Infra, holder: string | null | undefined): string | null {
  return holder === undefined ? (infra.global.ai_access_default ?? null) : holder;
}

/** What checking the infra said: problems, and the INFO lines of enrichment. */
export interface Checked {
  errors: Diagnostic[];
  warnings: Diagnostic[];
  info: string[];
}

export interface Prepared {
  report: Checked;
  infra?: Infra;
  holder?: string | null;
}

/** Validates and enriches what was gathered. */
export function evaluate(gathered: Gathered): Prepared {
  const report: Checked = { errors: [], warnings: [], info: [] };
  if (gathered.readErrors.length) return { report: { ...report, errors: gathered.readErrors } };
  const analysis = analyse(gathered.sources, gathered.ctx);
  report.warnings = analysis.warnings;
  if (!analysis.infra || analysis.errors.length) return { report: { ...report, errors: analysis.errors } };
  const { holder, error } = resolveHolder(analysis.infra, gathered.state, gathered.stateFile);
  if (error) return { report: { ...report, errors: [error] } };
  const enriched = enrich(analysis.infra, holder);
  report.info = enriched.info;
  return { report, infra: enriched.infra, holder };
}

export async function prepare(infraPath: string, env: NodeJS.ProcessEnv): Promise<Prepared> {
  return evaluate(await gather(infraPath, env));
}
