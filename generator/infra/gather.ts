/**
 * Everything read from disk that a command's result depends on, before any parsing: the infra's
 * files, the host's context, the AI state. What an unchanged sync hashes; it loads no YAML reader.
 */
import { readContext, readHolderState, stateFilePath, type HolderState } from './context.js';
import { readSources } from './sources.js';
import type { Source } from './load.js';
import type { Context, Diagnostic } from '../core/types.js';

export interface Gathered {
  sources: Source[];
  readErrors: Diagnostic[];
  ctx: Context;
  state: HolderState;
  stateFile: string;
}

/** Everything read from disk that the result depends on (cheap: no parsing). */
export async function gather(infraPath: string, env: NodeJS.ProcessEnv): Promise<Gathered> {
  const stateFile = stateFilePath(env);
  const [{ sources, errors }, ctx, state] = await Promise.all([readSources(infraPath), readContext(env), readHolderState(stateFile)]);
  return { sources, readErrors: errors, ctx, state, stateFile };
}

