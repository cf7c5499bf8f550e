/**
 * Reading infra.yml (or an infra/ directory) into a plain object, with a locator that maps a path
 * in the merged model back to file:line:column.
 *
 * Two readers, one model: js-yaml reads the common, valid case fast; the `yaml` library's Document
 * API gives exact positions. The precise reader runs whenever the fast one fails or the model turns
 * out to be invalid, so every message a user sees is located by the precise reader.
 */
import * as jsyaml from 'js-yaml';
import type { Document, LineCounter, Node as YamlNode } from 'yaml';
import { depthProblem } from './depth.js';
import { yaml } from './yamlLibrary.js';
import type { Diagnostic, Location, Mapping } from '../core/types.js';

export interface Source {
  file: string;
  text: string;
  /** What part of the merged model the file holds. */
  role: 'single' | 'base' | 'domains' | 'policies';
}

export type PathSegment = string | number;
export type Locator = (path: readonly PathSegment[]) => Location | undefined;

export interface Parsed {
  raw?: Mapping;
  errors: Diagnostic[];
  locate: Locator;
}

/** Above this an infra file is certainly a mistake (a log, a dump), not a description. */
const MAX_ALIAS_COUNT = 100;

export function isMapping(value: unknown): value is Mapping {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The entries of a mapping whose values are mappings, in order (none for anything else): one pass, for thousands of machines. */
export function mappingEntries(value: unknown): [string, Mapping][] {
  const out: [string, Mapping][] = [];
  if (!isMapping(value)) return out;
  for (const key of Object.keys(value)) {
    const entry = value[key];
    if (isMapping(entry)) out.push([key, entry]);
  }
  return out;
}

/**
 * What only the precise reader reads. Aliases could let a small file expand into a huge tree, and
 * tags are read differently by the two libraries (`key: !` is '' for one and null for the other).
 * The rest are constructs on which js-yaml is more lenient than the YAML spec and the `yaml`
 * library, or reads them differently: js-yaml alone would accept such a file without a message,
 * or build another model. A property test (test/property.test.ts) hunts for more.
 *
 * Each pattern starts with the characters its match needs, and looks back from there: irregexp
 * then skips to them instead of trying every offset of the text (13 ms on a 1.3 MB infra, 5 now).
 * A property test holds them to the plain patterns they were written from (test/property.test.ts).
 */
const PRECISE_ONLY = [
  // After the start of a token: an anchor or alias, a tag, an explicit key (`? `), a quoted string
  // that goes on past its line, a block scalar with an indentation indicator.
  /[&*!?"'|>](?<=(?:^|[\s[{,:-])[&*!?"'|>])(?:(?<=[&*])[^\s,\]}]|(?<=!)|(?<=\?)(?:\s|$)|(?<=")(?:[^"\\\n]|\\.)*\\?$|(?<=')(?:[^'\n]|'')*$|(?<=[|>])[-+]?[0-9])/m,
  // Carriage returns and byte-order marks: line breaks and spaces the libraries count differently.
  // `\U` escapes: js-yaml turns one past U+10FFFF into garbage instead of refusing it.
  /\r|\ufeff|\\U/,
  // Merge keys, and a comment stuck to a quote or a bracket (js-yaml takes it as a comment).
  /<<|['"[\]{}]#/,
  // Flow collections spanning lines (a line whose last bracket opens one, a line ending with a
  // comma, a line starting with a closing bracket), used as keys, or with empty keys. No pattern
  // may rescan what follows it: a line of brackets must cost linear time, not quadratic.
  /[[{,\]}](?:(?<=[[{])[^[\]{}\n]*$|(?<=,)[ \t]*$|(?<=^[ \t]*[\]}])|(?<=[\]}])[ \t]*:|(?<=[[{,])[ \t]*:)/m,
  // A tab in indentation, an empty sequence item, with or without a comment (js-yaml lets the
  // next item dedent).
  /[\t-](?<=^ *[\t-])(?:(?<=\t)|(?<=-)[ \t]*(?:#.*)?$)/m,
  // Directives, document end markers, content on the `---` line.
  /^%|^\.\.\.|^---(?![ \t]+#|[ \t]*$)/m,
];

/** A key of 1024 characters or more is refused by the YAML spec, not by js-yaml. */
const MAX_KEY_LENGTH = 1024;

/** Whether a line is long enough to hold such a key (a loop: as a regex, `^.{1024}` costs 10-25 ms on a large file). */
function hasLongLine(text: string): boolean {
  for (let start = 0; ; ) {
    const end = text.indexOf('\n', start);
    if ((end < 0 ? text.length : end) - start >= MAX_KEY_LENGTH) return true;
    if (end < 0) return false;
    start = end + 1;
  }
}

export function needsPreciseReader(text: string): boolean {
  return PRECISE_ONLY.some((pattern) => pattern.test(text)) || hasLongLine(text);
}

/**
 * A plain scalar that resolved to null, a boolean or a number, with the text it was written as.
 * js-yaml turns a key into `String(value)`, so `010:` would become the key '10' and `1.0:` the key
 * '1'; the precise reader (`stringKeys`) keeps the text. The source, returned by toString, makes
 * js-yaml keep it too; values are unwrapped after loading. Only such scalars are wrapped: one that
 * String() writes back as it was written (`3`, `false`, `0.5`, `null`) is the same key either way,
 * and a file with none (most) needs no unwrapping pass over its whole model.
 */
class Resolved {
  constructor(
    readonly value: null | boolean | number,
    readonly source: string,
  ) {}
  toString(): string {
    return this.source;
  }
  // Not '[object Object]': js-yaml would then use '[object Object]' as the key.
  get [Symbol.toStringTag](): string {
    return 'Resolved';
  }
}

/**
 * The YAML 1.2 core schema exactly as the `yaml` library resolves it (its tests and resolve
 * functions), so that both readers give the same model: js-yaml's own core schema differs on
 * `-0x1F`, `-0`, `+.5`-like forms.
 */
const CORE_INT = /^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$/;
const CORE_FLOAT = /^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+|[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*))$/;
const CORE_NULL = /^(?:~|[Nn]ull|NULL)?$/;
const CORE_BOOL = /^(?:[Tt]rue|TRUE|[Ff]alse|FALSE)$/;

function resolveInt(text: string): number {
  if (text.startsWith('0o')) return parseInt(text.slice(2), 8);
  if (text.startsWith('0x')) return parseInt(text.slice(2), 16);
  return parseInt(text, 10);
}

function resolveFloat(text: string): number {
  if (/^[-+]?\.(?:inf|Inf|INF)$/.test(text)) return text.startsWith('-') ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  if (/^\.(?:nan|NaN|NAN)$/.test(text)) return NaN;
  return parseFloat(text);
}

function coreType(tag: string, test: RegExp, resolve: (text: string) => null | boolean | number): jsyaml.Type {
  return new jsyaml.Type(`tag:yaml.org,2002:${tag}`, {
    kind: 'scalar',
    resolve: (data: string | null) => test.test(data ?? ''),
    construct: (data: string | null) => {
      const source = data ?? '';
      const value = resolve(source);
      if (String(value) === source) return value;
      wrapped++;
      return new Resolved(value, source);
    },
  });
}

/** Resolved wrappers made by the current load. */
let wrapped = 0;

const FAST_SCHEMA = jsyaml.FAILSAFE_SCHEMA.extend({
  implicit: [
    coreType('null', CORE_NULL, () => null),
    coreType('bool', CORE_BOOL, (t) => t[0] === 't' || t[0] === 'T'),
    coreType('int', CORE_INT, resolveInt),
    coreType('float', CORE_FLOAT, resolveFloat),
  ],
});

/** Replaces the Resolved wrappers by their values, in place. */
function unwrap(node: unknown): unknown {
  if (node instanceof Resolved) return node.value;
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) {
      if (typeof node[i] === 'object' && node[i] !== null) node[i] = unwrap(node[i]);
    }
  } else if (typeof node === 'object' && node !== null) {
    const map = node as Mapping;
    for (const key of Object.keys(map)) {
      const value = map[key];
      if (typeof value !== 'object' || value === null) continue;
      const unwrapped = unwrap(value);
      // Only a scalar changes (a mapping or a list is unwrapped in place). defineProperty: a plain
      // assignment to '__proto__' would change the prototype instead.
      if (unwrapped !== value) Object.defineProperty(map, key, { value: unwrapped, writable: true, enumerable: true, configurable: true });
    }
  }
  return node;
}

function readFast(source: Source): unknown {
  wrapped = 0;
  const root = jsyaml.load(source.text, { schema: FAST_SCHEMA, filename: source.file, json: false });
  return wrapped ? unwrap(root) : root;
}

interface Owner {
  prefix: PathSegment[];
  file: string;
  docPrefix: PathSegment[];
}

interface Detailed {
  doc: Document;
  lineCounter: LineCounter;
}

function positionOf(detailed: Detailed | undefined, file: string, offset: number | undefined): Location {
  if (!detailed || offset === undefined) return { file };
  const { line, col } = detailed.lineCounter.linePos(offset);
  return { file, line, column: col };
}

/**
 * Merges the per-file roots into one model, the same way for both readers. `roots` holds one entry
 * per source, in the order given (sorted file order for a directory).
 */
function merge(
  sources: Source[],
  roots: unknown[],
  errors: Diagnostic[],
  owners: Owner[],
  keyAt: (file: string, docPath: PathSegment[]) => Location | undefined = (file) => ({ file }),
): Mapping | undefined {
  if (sources.length === 1 && sources[0].role === 'single') {
    owners.push({ prefix: [], file: sources[0].file, docPrefix: [] });
    return roots[0] as Mapping;
  }
  const baseIndex = sources.findIndex((s) => s.role === 'base');
  if (sources.length === 0) {
    errors.push({ message: `nothing to read: no infra file was given, or it could not be read` });
    return undefined;
  }
  if (baseIndex < 0) {
    // readSources reports the missing file itself; this guards callers that go on regardless.
    errors.push({ message: `infra directory has no base.yml (project_name, global); nothing can be merged without it` });
    return undefined;
  }
  const base = roots[baseIndex] as Mapping;
  owners.push({ prefix: [], file: sources[baseIndex].file, docPrefix: [] });
  const merged: Mapping = { ...base };
  const domainFile = new Map<string, string>();
  let domains: Mapping | undefined;
  if (isMapping(base.domains)) {
    domains = { ...base.domains };
    for (const name of Object.keys(base.domains)) domainFile.set(name, sources[baseIndex].file);
  }
  sources.forEach((source, i) => {
    const root = roots[i];
    if (source.role === 'domains' && isMapping(root)) {
      domains ??= {};
      for (const [name, value] of Object.entries(root)) {
        const previous = domainFile.get(name);
        if (previous !== undefined) {
          errors.push({
            ...keyAt(source.file, [name]),
            message: `Domain '${name}': defined twice, in ${previous} and in ${source.file}; keep one definition`,
            path: `/domains/${name}`,
          });
          continue;
        }
        domainFile.set(name, source.file);
        domains[name] = value;
        owners.push({ prefix: ['domains', name], file: source.file, docPrefix: [name] });
      }
    } else if (source.role === 'policies' && isMapping(root)) {
      if ('network_policies' in base) {
        errors.push({
          ...keyAt(source.file, ['network_policies']),
          message: `network_policies is defined in both ${sources[baseIndex].file} and ${source.file}; keep it in one place`,
          path: '/network_policies',
        });
        return;
      }
      merged.network_policies = root.network_policies;
      owners.push({ prefix: ['network_policies'], file: source.file, docPrefix: ['network_policies'] });
    }
  });
  if (domains !== undefined) merged.domains = domains;
  return merged;
}

function rootShapeError(source: Source, root: unknown, at: Location): Diagnostic | undefined {
  if (root === null || root === undefined) {
    return { ...at, message: `file is empty; expected a YAML mapping (see examples/infra.yml)` };
  }
  if (!isMapping(root)) {
    const kind = Array.isArray(root) ? 'a list' : `a ${typeof root}`;
    return { ...at, message: `top level must be a mapping of keys, got ${kind}` };
  }
  if (source.role === 'policies' && Object.keys(root).some((k) => k !== 'network_policies')) {
    return { ...at, message: `only the key 'network_policies' is allowed in a policies file` };
  }
  return undefined;
}

/** Duplicate keys found on the AST, so that the path (and so the right message) is known. */
function findDuplicateKeys(node: unknown, path: PathSegment[], report: (path: PathSegment[], key: string, first: PathSegment[], offset?: number) => void): void {
  const { isMap, isScalar, isSeq } = yaml();
  if (isMap(node)) {
    const seen = new Set<string>();
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      if (seen.has(key)) report(path, key, [...path, key], isScalar(pair.key) ? pair.key.range?.[0] : undefined);
      seen.add(key);
      findDuplicateKeys(pair.value, [...path, key], report);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => findDuplicateKeys(item, [...path, i], report));
  }
}

/** The parser's wording, with what to do instead where the parser speaks about itself. */
function explainSyntax(message: string): string {
  if (/^Tabs are not allowed/.test(message)) return `${message} (indent with spaces)`;
  if (/multiple documents/.test(message)) return `an infra file holds a single YAML document, but a second one starts here (after '---' or '...')`;
  if (/stringKeys/.test(message)) return `keys must be plain strings; a list or a mapping cannot be a key`;
  if (/Maximum call stack size exceeded/.test(message)) return `the document nests too deeply to be read (hundreds of levels of [ ] or { }); an infra file nests a few levels`;
  return message;
}

/** Start offset of the quoted scalar that runs into `errorOffset` (where its closing quote is missing). */
function unclosedQuoteStart(doc: Document, errorOffset: number): number | undefined {
  let start: number | undefined;
  yaml().visit(doc, {
    Scalar(_key, node) {
      const range = node.range;
      if (!range || (node.type !== 'QUOTE_DOUBLE' && node.type !== 'QUOTE_SINGLE')) return;
      if (range[0] <= errorOffset && range[1] >= errorOffset - 1) start = range[0];
    },
  });
  return start;
}

/** The first alias node in document order: where an over-expanding document starts to repeat itself. */
function firstAliasStart(doc: Document): number | undefined {
  const { visit } = yaml();
  let start: number | undefined;
  visit(doc, {
    Alias(_key, node) {
      if (start === undefined && node.range) start = node.range[0];
      return visit.BREAK;
    },
  });
  return start;
}

function parseDetailed(source: Source): { detailed: Detailed; root: unknown; errors: Diagnostic[]; docPrefixToModel: (p: PathSegment[]) => PathSegment[] } {
  const { LineCounter, parseDocument } = yaml();
  const lineCounter = new LineCounter();
  const doc = parseDocument(source.text, { lineCounter, uniqueKeys: false, stringKeys: true, prettyErrors: false });
  const detailed = { doc, lineCounter };
  const errors: Diagnostic[] = [];
  const toModel = (p: PathSegment[]): PathSegment[] =>
    source.role === 'domains' ? ['domains', ...p] : p;
  // Only the first syntax error: after one, the parser's recovery produces follow-on errors (a tab
  // indent gives four) that send the user after problems that are not there.
  for (const err of doc.errors.slice(0, 1)) {
    const firstLine = err.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
    // An unclosed quote is detected at the end of the file; the user needs the opening quote.
    const opening = err.code === 'MISSING_CHAR' && /quote/.test(firstLine) ? unclosedQuoteStart(doc, err.pos[0]) : undefined;
    if (opening !== undefined) {
      const at = positionOf(detailed, source.file, opening);
      errors.push({ ...at, message: `YAML syntax error: ${firstLine}: the string opened here (line ${at.line}, column ${at.column}) is never closed` });
    } else {
      errors.push({ ...positionOf(detailed, source.file, err.pos[0]), message: `YAML syntax error: ${explainSyntax(firstLine)}` });
    }
  }
  // An unknown tag (`!foo`) would silently turn its value into a string: infra.yml uses no tags.
  for (const warning of doc.warnings.filter((w) => w.code === 'TAG_RESOLVE_FAILED').slice(0, 1)) {
    const text = warning.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
    errors.push({ ...positionOf(detailed, source.file, warning.pos[0]), message: `YAML tag not supported: ${text}; infra files use no tags (remove it, or quote the value)` });
  }
  if (errors.length > 0) return { detailed, root: undefined, errors, docPrefixToModel: toModel };
  findDuplicateKeys(doc.contents, [], (mapPath, key, _keyPath, offset) => {
    const modelPath = toModel(mapPath);
    const at = positionOf(detailed, source.file, offset);
    if (modelPath.length === 3 && modelPath[0] === 'domains' && modelPath[2] === 'machines') {
      errors.push({ ...at, path: '/' + [...modelPath, key].join('/'), message: `Machine '${key}': duplicate (already in '${String(modelPath[1])}')` });
    } else {
      const where = mapPath.length ? ` in '${mapPath.join('.')}'` : '';
      errors.push({ ...at, path: '/' + [...modelPath, key].join('/'), message: `duplicate key '${key}'${where}: each key may appear once in a mapping` });
    }
  });
  let root: unknown;
  try {
    root = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    const at = positionOf(detailed, source.file, firstAliasStart(doc) ?? 0);
    errors.push({
      ...at,
      message: `YAML aliases expand too much (${reason.replace(/\.$/, '')}): at most ${MAX_ALIAS_COUNT} alias expansions are allowed in an infra file; write the repeated values out instead of nesting aliases (*name)`,
    });
  }
  return { detailed, root, errors, docPrefixToModel: toModel };
}

/** Appended to a path, asks the locator for the position of the key rather than of its value. */
export const KEY_MARKER = '\u0000key';

function keyPosition(detailed: Detailed, docPath: PathSegment[], file: string): Location | undefined {
  const { isMap, isScalar } = yaml();
  const parent = docPath.length === 1 ? detailed.doc.contents : detailed.doc.getIn(docPath.slice(0, -1), true);
  if (!isMap(parent)) return undefined;
  const name = String(docPath[docPath.length - 1]);
  const pair = parent.items.find((p) => isScalar(p.key) && String(p.key.value) === name);
  const offset = pair && isScalar(pair.key) ? pair.key.range?.[0] : undefined;
  return offset === undefined ? undefined : positionOf(detailed, file, offset);
}

function makeLocator(owners: Owner[], detailedByFile: Map<string, Detailed>): Locator {
  return (requested) => {
    const wantKey = requested[requested.length - 1] === KEY_MARKER;
    const path = wantKey ? requested.slice(0, -1) : requested;
    let best: Owner | undefined;
    for (const owner of owners) {
      if (owner.prefix.length <= path.length && owner.prefix.every((seg, i) => String(path[i]) === String(seg))) {
        if (!best || owner.prefix.length > best.prefix.length) best = owner;
      }
    }
    if (!best) return undefined;
    const detailed = detailedByFile.get(best.file);
    if (!detailed) return { file: best.file };
    const docPath = [...best.docPrefix, ...path.slice(best.prefix.length)];
    if (wantKey && docPath.length > 0) {
      const at = keyPosition(detailed, docPath, best.file);
      if (at) return at;
    }
    // An empty value (`key:` and nothing after) has no text of its own: point at its key.
    const exact = docPath.length > 0 ? detailed.doc.getIn(docPath, true) : undefined;
    if (yaml().isScalar(exact) && exact.range && exact.range[0] === exact.range[1]) {
      const at = keyPosition(detailed, docPath, best.file);
      if (at) return at;
    }
    for (let len = docPath.length; len >= 0; len--) {
      const node = (len === 0 ? detailed.doc.contents : detailed.doc.getIn(docPath.slice(0, len), true)) as YamlNode | null | undefined;
      if (node && typeof node === 'object' && 'range' in node && node.range) {
        return positionOf(detailed, best.file, node.range[0]);
      }
    }
    return { file: best.file };
  };
}

/** Line and column of an offset, for a file no parser has read. */
function offsetPosition(source: Source, offset: number): Location {
  const before = source.text.slice(0, offset);
  const lineStart = before.lastIndexOf('\n') + 1;
  return { file: source.file, line: before.split('\n').length, column: offset - lineStart + 1 };
}

/** The precise reader: located errors, alias limit, duplicate keys. */
export function parsePrecise(sources: Source[]): Parsed {
  const errors: Diagnostic[] = [];
  const detailedByFile = new Map<string, Detailed>();
  const roots: unknown[] = [];
  for (const source of sources) {
    const tooDeep = depthProblem(source.text);
    if (tooDeep) {
      errors.push({ ...offsetPosition(source, tooDeep.offset), message: `YAML syntax error: ${tooDeep.message}` });
      roots.push(undefined);
      continue;
    }
    const { detailed, root, errors: fileErrors } = parseDetailed(source);
    detailedByFile.set(source.file, detailed);
    errors.push(...fileErrors);
    if (fileErrors.length === 0) {
      const shape = rootShapeError(source, root, positionOf(detailed, source.file, detailed.doc.contents?.range?.[0] ?? 0));
      if (shape) errors.push(shape);
    }
    roots.push(root);
  }
  const owners: Owner[] = [];
  const locate = makeLocator(owners, detailedByFile);
  // Duplicate keys are reported but do not stop the reading: the rest of the file is still checked.
  if (roots.some((root) => !isMapping(root))) return { errors, locate };
  const keyAt = (file: string, docPath: PathSegment[]): Location => {
    const detailed = detailedByFile.get(file);
    return (detailed && keyPosition(detailed, docPath, file)) || { file };
  };
  const raw = merge(sources, roots, errors, owners, keyAt);
  return { raw, errors, locate };
}

/**
 * The fast reader. Returns undefined when it cannot vouch for the result (syntax problem, aliases,
 * odd root): the caller then uses parsePrecise, which explains what is wrong.
 */
export function parseFast(sources: Source[]): Mapping | undefined {
  const roots: unknown[] = [];
  for (const source of sources) {
    if (needsPreciseReader(source.text) || depthProblem(source.text)) return undefined;
    let root: unknown;
    try {
      root = readFast(source);
    } catch {
      return undefined;
    }
    if (rootShapeError(source, root, { file: source.file })) return undefined;
    roots.push(root);
  }
  const errors: Diagnostic[] = [];
  const raw = merge(sources, roots, errors, []);
  return errors.length > 0 ? undefined : raw;
}
