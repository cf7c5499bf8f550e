/** From a path on disk to a validated model, or to located errors (load → schema → semantics). */
import { KEY_MARKER, parseFast, parsePrecise, type Locator, type PathSegment, type Source } from './load.js';
import { checkShape } from './schema.js';
import { checkSemantics, type Finding } from './validate.js';
import type { Context, Diagnostic, Infra, Mapping } from '../core/types.js';

export interface Analysis {
  infra?: Infra;
  raw?: Mapping;
  errors: Diagnostic[];
  warnings: Diagnostic[];
}


function locateFinding(f: Finding, locate: Locator): Diagnostic {
  const path: PathSegment[] = f.path;
  const at = f.onKey ? locateKey(path, locate) : locate(path);
  return { message: f.message, path: '/' + path.map(String).join('/'), ...at };
}

/** A key's own position: the locator finds values, so ask for the parent and the key within it. */
function locateKey(path: PathSegment[], locate: Locator) {
  return locate([...path, KEY_MARKER]) ?? locate(path);
}

function byPosition(a: Diagnostic, b: Diagnostic): number {
  return (a.file ?? '').localeCompare(b.file ?? '') || (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0);
}

function check(raw: Mapping, ctx: Context): { errors: Finding[]; warnings: Finding[] } {
  const shape = checkShape(raw);
  const semantic = checkSemantics(raw, ctx);
  return { errors: [...shape, ...semantic.errors], warnings: semantic.warnings };
}

/** Validates sources already read. Pure apart from CPU: used by sync, validate and the tests. */
export function analyse(sources: Source[], ctx: Context): Analysis {
  const fast = parseFast(sources);
  if (fast) {
    const result = check(fast, ctx);
    // Warnings are rare: only then is the precise reader needed, to locate them like errors.
    if (result.errors.length === 0 && result.warnings.length === 0) {
      return { infra: fast as unknown as Infra, raw: fast, errors: [], warnings: [] };
    }
  }
  const precise = parsePrecise(sources);
  if (!precise.raw) {
    return { errors: precise.errors.sort(byPosition), warnings: [] };
  }
  const result = check(precise.raw, ctx);
  const errors = [...precise.errors, ...result.errors.map((f) => locateFinding(f, precise.locate))].sort(byPosition);
  const warnings = result.warnings.map((f) => locateFinding(f, precise.locate));
  return errors.length
    ? { raw: precise.raw, errors, warnings }
    : { infra: precise.raw as unknown as Infra, raw: precise.raw, errors, warnings };
}

/** Only read and merge (resolve --raw): no schema, no defaults. */
export function readRaw(sources: Source[]): { raw?: Mapping; errors: Diagnostic[] } {
  const fast = parseFast(sources);
  if (fast) return { raw: fast, errors: [] };
  const precise = parsePrecise(sources);
  return { raw: precise.errors.length ? undefined : precise.raw, errors: precise.errors };
}
