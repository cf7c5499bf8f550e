/** What every command shares: the command shape, exit codes, usage errors, the default infra. */
import { existsSync } from 'node:fs';
import type { ParseArgsConfig } from 'node:util';
import { jsonError, jsonWarning, printDiagnostics, printJson, type Streams } from './output.js';
import type { Diagnostic } from '../core/types.js';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** A mistake in the command line itself: reported with the command's usage, exit 2. */
export class UsageError extends Error {}

export interface Invocation {
  args: string[];
  env: NodeJS.ProcessEnv;
  streams: Streams;
  cwd: string;
}

export type Options = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

export interface Command {
  summary: string;
  /** One line. */
  usage: string;
  options: Options;
  /** What each option means, for --help. */
  flags?: Record<string, string>;
  run: (values: Values, positionals: string[], inv: Invocation) => Promise<number>;
}

export const COMMON_OPTIONS: Options = { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } };
export const COMMON_FLAGS: Record<string, string> = { json: 'one JSON document on stdout, nothing else there', help: 'this help' };

/** `--quiet` (`-q`) of the commands that print `INFO:` lines: no INFO lines; warnings and errors still print. */
export const QUIET_OPTION: Options = { quiet: { type: 'boolean', short: 'q' } };
export const QUIET_FLAG = 'no INFO: lines on stderr (warnings and errors still print)';

/** `infra/` when infra/base.yml exists, else infra.yml (the same rule as `make sync`). */
export function defaultInfra(cwd: string): string {
  return existsSync(`${cwd}/infra/base.yml`) ? 'infra' : 'infra.yml';
}

export const stringValue = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** Problems with the infra: JSON (the validate shape) for --json, else located lines on stderr. */
export function reportProblems(inv: Invocation, json: boolean, errors: Diagnostic[], warnings: Diagnostic[]): void {
  if (json) printJson(inv.streams, { errors: errors.map(jsonError), warnings: warnings.map(jsonWarning) });
  else printDiagnostics(inv.streams, errors, warnings);
}
