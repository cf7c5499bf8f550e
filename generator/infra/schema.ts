/**
 * Shape checks: schema/infra.schema.json through ajv, with ajv's errors turned into the messages
 * anklume users know (spec §4). The schema owns the rules; this module only words them.
 */
import type { ErrorObject, ValidateFunction } from 'ajv';
import { createRequire } from 'node:module';
import type { PathSegment } from './load.js';
import { compileValidator, PRECOMPILED_FILE } from './schemaCompiler.js';
import { SCHEMA_TEXT } from './names.js';
import { bundled } from '../core/bundled.js';
import { closest } from '../core/suggest.js';
import { deviceOwnerAt } from './devices.js';
import { DEVICE_TYPES, deviceMessages as dm } from './deviceMessages.js';
import { clusterMessages as cm } from './clusterMessages.js';
import type { Mapping } from '../core/types.js';

export interface ShapeError {
  path: PathSegment[];
  message: string;
  /** Locate the key of the last path segment rather than its value. */
  onKey?: boolean;
}

let compiled: ValidateFunction | undefined;

/** The build's precompiled validator, if it was made from the schema on disk. */
function precompiled(): ValidateFunction | undefined {
  try {
    // `../infra/`: the same path from this module and from the one-file build in cli/.
    const load = bundled.validator ?? (() => createRequire(import.meta.url)(`../infra/${PRECOMPILED_FILE}`));
    const loaded = load() as ValidateFunction & { schemaText?: unknown };
    return loaded.schemaText === SCHEMA_TEXT ? loaded : undefined;
  } catch {
    return undefined;
  }
}

function validator(): ValidateFunction {
  compiled ??= precompiled() ?? compileValidator();
  return compiled;
}

function parsePointer(pointer: string): PathSegment[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

function show(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`;
  if (value === null) return 'null';
  if (Array.isArray(value)) return value.length ? 'a list' : 'an empty list';
  if (value instanceof Uint8Array) return 'binary data';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}

function showBare(value: unknown): string {
  return typeof value === 'string' ? value : show(value);
}

function dotted(path: PathSegment[]): string {
  return path.map((seg, i) => (typeof seg === 'number' ? `[${seg}]` : i === 0 ? seg : `.${seg}`)).join('');
}

const IPV4_HELP = 'expected four numbers 0-255 separated by dots, e.g. 10.100.1.10';

const NIC_TARGETS = new Set(['network', 'parent']);

/**
 * Words an error inside a machine's or a profile's devices; null when another error of the same
 * device already explains it, undefined when it is not about a device.
 */
function wordDevice(err: ErrorObject, path: PathSegment[], bypassing: Set<string>): ShapeError | null | undefined {
  const at = deviceOwnerAt(path);
  if (!at) return undefined;
  const { owner, name, rest } = at;
  const data: unknown = err.data;
  const params = err.params as Record<string, unknown>;
  if (name === undefined) return err.keyword === 'type' ? { path, message: dm.notMapping(owner, show(data)) } : null;
  const [key] = rest;
  const isBypassing = bypassing.has(path.slice(0, 6).join('\u0000'));
  if (rest.length === 0) {
    switch (err.keyword) {
      case 'type':
        return { path, message: dm.deviceNotMapping(owner, name, show(data)) };
      case 'required': {
        const missing = String(params.missingProperty);
        if (missing === 'type') return { path, message: dm.noType(owner, name) };
        if (NIC_TARGETS.has(missing)) return null;
        return { path, message: dm.proxyNeeds(owner, name, missing) };
      }
      case 'anyOf':
        return isBypassing ? null : { path, message: dm.nicWithoutNetwork(owner, name) };
      case 'dependencies':
        return isBypassing ? null : { path, message: dm.nicParentWithoutType(owner, name) };
      case 'not':
        return isBypassing ? null : { path, message: dm.nicNetworkAndType(owner, name) };
      default:
        return null;
    }
  }
  if (rest.length !== 1) return undefined;
  switch (key) {
    case 'type':
      if (data === 'infiniband') return { path, message: dm.infiniband(owner, name) };
      return { path, message: dm.unknownType(owner, name, show(data), typeof data === 'string' ? closest(data, DEVICE_TYPES) : undefined) };
    case 'nictype':
      return { path, message: dm.nicType(owner, name, show(data)) };
    case 'network':
    case 'parent':
      if (isBypassing) return null;
      return typeof data === 'string' ? { path, message: dm.nicNotDomainBridge(owner, name, key, data) } : undefined;
    case 'listen':
    case 'connect':
      return { path, message: dm.proxyAddress(owner, name, key, show(data)) };
    case 'bind':
      return { path, message: dm.proxyBind(owner, name, show(data)) };
    case 'nat':
      return { path, message: dm.proxyNat(owner, name, show(data)) };
  }
  return undefined;
}

/** The devices whose NIC type already skips the bridge: their network or parent need no second word. */
function bypassingDevices(errors: ErrorObject[]): Set<string> {
  const out = new Set<string>();
  for (const err of errors) {
    const path = parsePointer(err.instancePath);
    const at = deviceOwnerAt(path);
    if (at && at.rest.length === 1 && (at.rest[0] === 'nictype' || at.rest[0] === 'type')) out.add(path.slice(0, 6).join('\u0000'));
  }
  return out;
}

/** Words one ajv error; undefined for errors that another error of the same node already explains. */
function word(err: ErrorObject, nameReasons: string[], bypassing: Set<string>): ShapeError | undefined {
  const path = parsePointer(err.instancePath);
  const device = wordDevice(err, path, bypassing);
  if (device !== undefined) return device ?? undefined;
  const [top, second, third, fourth, fifth] = path;
  const data: unknown = err.data;
  const params = err.params as Record<string, unknown>;
  const inDomain = top === 'domains' && typeof second === 'string';
  const inMachine = inDomain && third === 'machines' && typeof fourth === 'string';
  const inPolicy = top === 'network_policies' && typeof second === 'number';
  const policy = inPolicy ? `network_policies[${second}]` : '';

  // Inside ports' anyOf, the anyOf error itself says it all; its branches' errors would repeat it.
  if (inPolicy && third === 'ports' && path.length === 3 && err.keyword !== 'anyOf') return undefined;

  switch (err.keyword) {
    case 'required': {
      const key = String(params.missingProperty);
      if (path.length === 0) return { path, message: `Missing required key: ${key}` };
      if (top === 'global' && key === 'ai_access_default') {
        return { path, message: `global.ai_access_default is required when ai_access_policy is 'exclusive'` };
      }
      if (inDomain && path.length === 2) return { path, message: `Domain '${second}': missing ${key}` };
      if (inPolicy && path.length === 2) return { path, message: `${policy}: missing '${key}'` };
      return { path, message: `Missing required key: ${dotted([...path, key])}` };
    }
    case 'additionalProperties': {
      const key = String(params.additionalProperty);
      const parent = err.parentSchema as { properties?: Mapping } | undefined;
      const known = Object.keys(parent?.properties ?? {});
      const guess = closest(key, known);
      const where = path.length ? ` in ${dotted(path)}` : ' at the top level';
      const hint = guess ? `; did you mean '${guess}'?` : known.length ? ` (allowed: ${known.join(', ')})` : '';
      return { path: [...path, key], onKey: true, message: `unknown key '${key}'${where}${hint}` };
    }
    case 'propertyNames': {
      const name = String(params.propertyName);
      const tooLong = nameReasons.includes('maxLength') && !nameReasons.includes('pattern');
      if (top === 'domains' && path.length === 1) {
        return tooLong
          ? { path: [...path, name], onKey: true, message: `Domain '${name}': name too long (${name.length} characters, max 11: its bridge 'net-${name}' must fit the 15-character limit of Linux interface names)` }
          : { path: [...path, name], onKey: true, message: `Domain '${name}': invalid name (lowercase alphanumeric + hyphen)` };
      }
      if (inDomain && third === 'machines' && path.length === 3) {
        const why = tooLong ? 'at most 63 characters' : 'lowercase letters, digits and hyphens, not starting or ending with a hyphen';
        return { path: [...path, name], onKey: true, message: `Machine '${name}': invalid name (${why})` };
      }
      if (inDomain && third === 'profiles') {
        return { path: [...path, name], onKey: true, message: `Domain '${second}': profile '${name}': invalid name (lowercase alphanumeric + hyphen)` };
      }
      if (top === 'global' && second === 'cluster' && third === 'members' && path.length === 3) return { path: [...path, name], onKey: true, message: cm.badMemberName(name) };
      return { path: [...path, name], onKey: true, message: `${dotted(path)}: invalid name '${name}'` };
    }
    case 'anyOf':
      if (inPolicy && third === 'ports') {
        if (Array.isArray(data) && data.length > 0) return undefined;
        return { path, message: `${policy}: ports must be a list or 'all', got ${show(data)} (e.g. ports: [80, 443], or ports: all)` };
      }
      break;
    case 'not':
      if (top === 'global' && second === 'ai_access_default') {
        return { path, message: `global.ai_access_default cannot be 'ai-tools' (must be a client domain)` };
      }
      break;
    case 'if':
    case 'allOf':
      return undefined;
  }

  if (inPolicy && third === 'ports' && typeof fourth === 'number') {
    if (Array.isArray(err.data)) return undefined;
    return { path, message: `${policy}: invalid port ${showBare(data)} (must be 1-65535)` };
  }
  if (inPolicy && path.length === 2 && err.keyword === 'type') return { path, message: `${policy}: must be a mapping, got ${show(data)}` };
  if (inPolicy && third === 'protocol') return { path, message: `${policy}: protocol must be 'tcp' or 'udp', got ${show(data)}` };
  if (top === 'global' && second === 'ai_vram_scrub_command') {
    const what = path.length === 2 ? 'global.ai_vram_scrub_command must be a list of the program and its arguments (at least the program; leave the key out for no scrub)' : `${dotted(path)} must be a non-empty string`;
    return { path, message: `${what}, got ${show(data)}` };
  }
  if (top === 'global' && path.length === 2) {
    const choices: Record<string, string> = {
      ai_access_policy: `'exclusive' or 'open'`,
      gpu_policy: `'exclusive' or 'shared'`,
      firewall_mode: `'host' or 'vm'`,
    };
    if (typeof second === 'string' && choices[second]) return { path, message: `global.${second} must be ${choices[second]}, got ${show(data)}` };
    if (second === 'ai_access_default') return { path, message: `global.ai_access_default ${show(data)} is not a valid domain name (lowercase alphanumeric + hyphen, at most 11 characters)` };
    if (second === 'base_subnet') return { path, message: `global.base_subnet must be two octets like "10.100", got ${show(data)}` };
  }
  if (top === 'global' && second === 'cluster') {
    const last = path[path.length - 1];
    if (last === 'member_link' && typeof data === 'string') return { path, message: cm.badMemberLink(dotted(path), data) };
    if (last === 'address' && path.length === 5 && typeof data === 'string') return { path, message: cm.badMemberAddress(String(fourth), data) };
  }
  if (((inDomain && path.length === 3) || (inMachine && path.length === 5)) && path[path.length - 1] === 'member' && typeof data === 'string') {
    return { path, message: cm.badMemberRef(path.length === 3 ? `Domain '${second}'` : `Machine '${fourth}'`, data) };
  }
  if (inDomain && path.length === 3 && third === 'subnet_id') {
    const hint = typeof data === 'string' ? ' (an integer, written without quotes)' : ' (an integer)';
    return { path, message: `Domain '${second}': subnet_id must be 0-254, got ${show(data)}${hint}` };
  }
  if (top === 'network_policies' && path.length === 1) {
    return { path, message: `network_policies must be a list of policies, got ${show(data)}; write 'network_policies: []' or leave the key out when there are none` };
  }
  if (inDomain && path.length === 3 && third === 'ephemeral') return { path, message: `Domain '${second}': ephemeral must be a boolean, got ${show(data)}` };
  if (inMachine && path.length === 5) {
    if (fifth === 'ephemeral') return { path, message: `Machine '${fourth}': ephemeral must be a boolean, got ${show(data)}` };
    if (fifth === 'type') return { path, message: `Machine '${fourth}': type must be 'lxc' or 'vm', got ${show(data)}` };
    if (fifth === 'ip') return { path, message: `Machine '${fourth}': invalid IP ${showBare(data)} (${IPV4_HELP})` };
    if (fifth === 'gpu') return { path, message: `Machine '${fourth}': gpu must be a boolean, got ${show(data)}` };
  }
  if (inMachine && path.length === 4 && err.keyword === 'type') return { path, message: `Machine '${fourth}': must be a mapping, got ${show(data)}` };
  if (inDomain && path.length === 2 && err.keyword === 'type') return { path, message: `Domain '${second}': must be a mapping, got ${show(data)}` };
  const where = path.length ? dotted(path) : 'infra';
  // ajv speaks JSON ("must be object"); users write YAML mappings and lists.
  const text = (err.message ?? 'is invalid').replace(/\bobject\b/g, 'a mapping').replace(/\barray\b/g, 'a list').replace(/must be string/, 'must be a string');
  return { path, message: `${where}: ${text}${err.keyword === 'type' ? `, got ${show(data)}` : ''}` };
}

/** Errors about a mapping's key names arrive before the propertyNames error that they explain. */
function isNameCheck(err: ErrorObject, raw: unknown): boolean {
  if (typeof err.data !== 'string') return false;
  let node: unknown = raw;
  for (const seg of parsePointer(err.instancePath)) {
    node = typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[seg] : undefined;
  }
  return typeof node === 'object' && node !== null;
}

export function checkShape(raw: unknown, validate: ValidateFunction = validator()): ShapeError[] {
  if (validate(raw)) return [];
  const out: ShapeError[] = [];
  const seen = new Set<string>();
  let nameReasons: string[] = [];
  const bypassing = bypassingDevices(validate.errors ?? []);
  for (const err of validate.errors ?? []) {
    if (err.keyword !== 'propertyNames' && isNameCheck(err, raw)) {
      nameReasons.push(err.keyword);
      continue;
    }
    const worded = word(err, nameReasons, bypassing);
    if (err.keyword === 'propertyNames') nameReasons = [];
    if (!worded) continue;
    const key = `${worded.path.join('\u0000')}|${worded.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(worded);
  }
  return out;
}
