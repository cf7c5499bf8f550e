/** `--timeout SECONDS` of audit and ai-status: how long each read may take (aiswitch/readLimit.ts). */
import { stringValue as str, UsageError, type Options, type Values } from './command.js';
import { DEFAULT_READ_TIMEOUT_S } from '../aiswitch/readLimit.js';

export const TIMEOUT_FLAG = { timeout: `on an Incus cluster, how long each read of Incus or of the members may take, in seconds (default ${DEFAULT_READ_TIMEOUT_S}); past it: NOT READ, exit 1` };
export const TIMEOUT_OPTION: Options = { timeout: { type: 'string' } };

export function readTimeout(values: Values): number {
  const text = str(values.timeout);
  if (text === undefined) return DEFAULT_READ_TIMEOUT_S;
  if (!/^[1-9]\d*$/.test(text)) throw new UsageError(`--timeout takes a whole number of seconds (1 or more), got '${text}'`);
  return Number(text);
}
