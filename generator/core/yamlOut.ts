/**
 * YAML written for Ansible. Ansible reads every generated file with PyYAML, a YAML 1.1 loader: a
 * plain `yes`, `on`, `10:20`, `012` or `=` would come back as a boolean, a sexagesimal or octal
 * number, or an error. Such strings must be quoted, and only the loader's own rules say which.
 *
 * js-yaml's dumper quotes every string that one of its schema's implicit types would resolve; the
 * schema below adds PyYAML's implicit resolvers (yaml/resolver.py) to the core ones, so a string is
 * quoted when either a YAML 1.2 or a YAML 1.1 reader would take it for something else. js-yaml, not
 * the `yaml` library: it writes the 5,500 files of a large tree about four times faster, and the
 * tests prove with PyYAML itself that what it writes reads back identically.
 */
import * as jsyaml from 'js-yaml';

/** PyYAML's implicit resolvers, verbatim (bool, float, int, merge, null, timestamp, value). */
const PYYAML_IMPLICIT = new RegExp(
  '^(?:' +
    [
      'yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF',
      '[-+]?(?:[0-9][0-9_]*)\\.[0-9_]*(?:[eE][-+][0-9]+)?',
      '\\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?',
      '[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\\.[0-9_]*',
      '[-+]?\\.(?:inf|Inf|INF)',
      '\\.(?:nan|NaN|NAN)',
      '[-+]?0b[0-1_]+',
      '[-+]?0[0-7_]+',
      '[-+]?(?:0|[1-9][0-9_]*)',
      '[-+]?0x[0-9a-fA-F_]+',
      '[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+',
      '<<',
      '~|null|Null|NULL|',
      '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]',
      '[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \\t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\\.[0-9]*)?(?:[ \\t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?',
      '=',
    ].join('|') +
    ')$',
);

/** A plain `---` or `...` at the start of a line ends the document for every YAML reader. */
const DOCUMENT_MARKER = /^(?:---|\.\.\.)(?:[ \t]|$)/;

/** Never used to read: its only job is to make the dumper quote what PyYAML would not read as a string. */
const yaml11NonString = new jsyaml.Type('tag:anklume-gen,2026:yaml-1.1-non-string', {
  kind: 'scalar',
  resolve: (text: unknown) => typeof text === 'string' && (PYYAML_IMPLICIT.test(text) || DOCUMENT_MARKER.test(text)),
});

/**
 * Numbers JavaScript prints without a dot: integers from 1e21 up print as `1e+21`, which PyYAML's
 * float rule (it needs a dot) reads as a string; -0 would otherwise be written as the float -0.0.
 * Written `1.e+21` and `-0`. Checked before the core number types.
 */
const pyyamlSafeNumber = new jsyaml.Type('tag:anklume-gen,2026:pyyaml-safe-number', {
  kind: 'scalar',
  resolve: () => false,
  predicate: (value: unknown) => typeof value === 'number' && (Object.is(value, -0) || (Number.isInteger(value) && Math.abs(value) >= 1e21)),
  represent: (value: object) => (Object.is(value, -0) ? '-0' : String(value).replace(/^([-+]?\d+)e/, '$1.e')),
});

const IMPLICIT_TYPES = [pyyamlSafeNumber, jsyaml.types.null, jsyaml.types.bool, jsyaml.types.int, jsyaml.types.float, yaml11NonString];

const DUMP_SCHEMA = jsyaml.FAILSAFE_SCHEMA.extend({ implicit: IMPLICIT_TYPES });

const DUMP_OPTIONS: jsyaml.DumpOptions = {
  schema: DUMP_SCHEMA,
  // No folding: a long description stays on one line.
  lineWidth: -1,
  // A value shared by several places of the model is written out each time, never as an alias.
  noRefs: true,
  quotingType: '"',
  // Like a missing key, an undefined value is not written (tree data never says `key: null` for it).
  skipInvalid: true,
};

/** The YAML text of plain data (mappings, sequences, strings, numbers, booleans, null), newline-terminated. */
export function toYaml(value: unknown): string {
  return jsyaml.dump(value, DUMP_OPTIONS);
}

/**
 * What Jinja would take for the start of a template: Ansible evaluates it in every variable it
 * uses (a description saying `{{ lookup('pipe', 'id') }}` would run a command), unless the string
 * is tagged `!unsafe`. Generated values are data, never templates.
 */
const JINJA = /\{[{%#]/;

const ansibleUnsafe = new jsyaml.Type('!unsafe', {
  kind: 'scalar',
  // indexOf first: every string of a tree goes through here, and few have a brace.
  predicate: (value: unknown) => typeof value === 'string' && value.includes('{') && JINJA.test(value),
  represent: (value: object) => String(value),
});

const ANSIBLE_DUMP_OPTIONS: jsyaml.DumpOptions = { ...DUMP_OPTIONS, schema: DUMP_SCHEMA.extend({ explicit: [ansibleUnsafe] }) };

/**
 * Entries of a mapping already written, by what they hold. js-yaml writes a block mapping's entries
 * one after the other, each on its own (no aliases: noRefs), so a mapping's YAML is its entries'
 * put together; and a tree of thousands of files repeats most entries (a machine's type, image,
 * profiles, roles, domain), which are then written once.
 */
const entries = new Map<string, string>();
/** Far above a tree's distinct entries; a bound for a long-lived process (the tests). */
const ENTRIES_KEPT = 200_000;

/** What the dumper takes for a mapping: no other prototype, and no tag of its own (`[object X]` it would skip). */
const isPlainObject = (value: object): boolean => {
  const proto = Object.getPrototypeOf(value) as unknown;
  return (proto === Object.prototype || proto === null) && !(Symbol.toStringTag in value);
};

/** Whether JSON.stringify names the value exactly (so that two values with one JSON text are written alike). */
function jsonExact(value: unknown): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      // -0 and 0, NaN and null, share a JSON text but not a YAML one.
      return Number.isFinite(value) && !Object.is(value, -0);
    case 'object':
      if (value === null) return true;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) if (!(i in value) || !jsonExact(value[i])) return false;
        return true;
      }
      if (!isPlainObject(value)) return false;
      for (const key in value) if (!jsonExact((value as Record<string, unknown>)[key])) return false;
      return true;
    default:
      return false;
  }
}

/**
 * What an entry holds, as a text no other entry has (its first character says how the rest reads:
 * a string or a number after a key of the length given, else JSON); undefined when JSON cannot name
 * it exactly.
 */
function entryId(key: string, entry: unknown): string | undefined {
  if (typeof entry === 'string') return `s${key.length}:${key}${entry}`;
  if (typeof entry === 'number') return jsonExact(entry) ? `n${key.length}:${key}${entry}` : undefined;
  return jsonExact(entry) ? `j${JSON.stringify([key, entry])}` : undefined;
}

/**
 * Strings the dumper writes without escaping anything, as keys and values: characters it takes
 * plain anywhere (none of its indicators first, no `:`, `#`, quote, bracket, brace, backslash or
 * line break; no space at the end). Names, addresses and most descriptions are; a tree writes
 * thousands of them, one dumper call each otherwise. It writes such a string as it is, unless it is
 * one of the YAML 1.1 booleans it quotes on its own (`y`, `on`: js-yaml's compatibility mode) or
 * something the schema's implicit types would resolve (`2`, `0.5`, `null`): then in double quotes.
 */
const PLAIN_TEXT = /^[A-Za-z0-9_./](?:[A-Za-z0-9_./ -]*[A-Za-z0-9_./-])?$/;
const COMPAT_BOOLEANS = new Set(['y', 'Y', 'yes', 'Yes', 'YES', 'on', 'On', 'ON', 'n', 'N', 'no', 'No', 'NO', 'off', 'Off', 'OFF']);
const KEY_LENGTH_LIMIT = 1024;

/** Longer than every word an implicit type resolves (`false`); its numbers start with a digit, a sign or a dot. */
const LONGEST_WORD = 5;

function plainCharacters(text: string): boolean {
  return text.length <= KEY_LENGTH_LIMIT && PLAIN_TEXT.test(text);
}

/** Whether the dumper quotes a string of plain characters. */
function quoted(text: string): boolean {
  if (COMPAT_BOOLEANS.has(text)) return true;
  // Most keys and names: no type can resolve them, and asking each costs more than the rest.
  if (text.length > LONGEST_WORD && /^[A-Za-z]/.test(text)) return false;
  // Nor an address: every number and time a type reads has one dot at most.
  if (/^[0-9]/.test(text) && text.indexOf('.', text.indexOf('.') + 1) > 0) return false;
  for (const type of IMPLICIT_TYPES) if (type.resolve(text)) return true;
  return false;
}

/** A key the dumper writes as it is. */
function writtenAsIs(text: string): boolean {
  return plainCharacters(text) && !quoted(text);
}

/** How the dumper writes a string value of plain characters; undefined for any other. */
function stringAsIs(text: string): string | undefined {
  if (!plainCharacters(text)) return undefined;
  return quoted(text) ? `"${text}"` : text;
}

/**
 * What the dumper writes after `key:` for a value it writes without escaping anything, at any
 * depth, indented as it indents it: a string of plain characters (quoted or not), null, a boolean,
 * a safe integer (not -0), a non-empty list of such strings, a non-empty mapping of such keys and
 * values. Undefined for anything else, which the dumper then writes. A tree's files are mostly
 * these: a machine's roles and profiles, an inventory's hosts four levels deep (250 inventories
 * cost more to dump than 5,000 machines' files).
 */
function valueAsIs(entry: unknown, indent: string): string | undefined {
  if (entry === null) return ' null\n';
  switch (typeof entry) {
    case 'string': {
      const written = stringAsIs(entry);
      return written === undefined ? undefined : ` ${written}\n`;
    }
    case 'boolean':
      return entry ? ' true\n' : ' false\n';
    case 'number':
      return Number.isSafeInteger(entry) && !Object.is(entry, -0) ? ` ${entry}\n` : undefined;
    case 'object':
      return Array.isArray(entry) ? listAsIs(entry, indent) : mappingAsIs(entry, indent);
    default:
      return undefined;
  }
}

function listAsIs(items: unknown[], indent: string): string | undefined {
  if (!items.length) return undefined;
  let text = '\n';
  for (let i = 0; i < items.length; i++) {
    const item: unknown = items[i];
    const written = typeof item === 'string' ? stringAsIs(item) : undefined;
    if (written === undefined) return undefined;
    text += `${indent}- ${written}\n`;
  }
  return text;
}

function mappingAsIs(value: object, indent: string): string | undefined {
  if (!isPlainObject(value)) return undefined;
  const keys = Object.keys(value);
  if (!keys.length) return undefined;
  let text = '\n';
  for (const key of keys) {
    const rest = writtenAsIs(key) ? valueAsIs((value as Record<string, unknown>)[key], indent + '  ') : undefined;
    if (rest === undefined) return undefined;
    text += `${indent}${key}:${rest}`;
  }
  return text;
}

/** toYaml for files Ansible reads: the same text, with every string Jinja would evaluate tagged `!unsafe`. */
export function toAnsibleYaml(value: unknown): string {
  // An empty mapping is `{}`, and anything but a plain mapping of JSON-exact entries is written whole.
  if (typeof value !== 'object' || value === null || Array.isArray(value) || !isPlainObject(value)) return jsyaml.dump(value, ANSIBLE_DUMP_OPTIONS);
  const keys = Object.keys(value);
  if (!keys.length) return jsyaml.dump(value, ANSIBLE_DUMP_OPTIONS);
  let text = '';
  for (const key of keys) {
    const entry = (value as Record<string, unknown>)[key];
    const rest = writtenAsIs(key) ? valueAsIs(entry, '  ') : undefined;
    if (rest !== undefined) {
      text += `${key}:${rest}`;
      continue;
    }
    const id = entryId(key, entry);
    if (id === undefined) return jsyaml.dump(value, ANSIBLE_DUMP_OPTIONS);
    let yaml = entries.get(id);
    if (yaml === undefined) {
      if (entries.size >= ENTRIES_KEPT) entries.clear();
      // fromEntries: a key named __proto__ stays a key.
      entries.set(id, (yaml = jsyaml.dump(Object.fromEntries([[key, entry]]), ANSIBLE_DUMP_OPTIONS)));
    }
    text += yaml;
  }
  return text;
}
