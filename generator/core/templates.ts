/**
 * The one Handlebars environment. Templates own the layout of every generated file; data enters
 * only through helpers that serialise it safely (YAML through js-yaml's dumper, nft strings and
 * comments through the sanitisers below).
 */
import Handlebars from 'handlebars';
import { readFileSync } from 'node:fs';
import { packagePath } from './packageRoot.js';
import { toAnsibleYaml } from './yamlOut.js';

export const TEMPLATES_DIR = packagePath('templates') + '/';

const hbs = Handlebars.create();

/** A double-quoted nft string: only characters an interface or set name can hold pass. */
export function nftString(value: unknown): string {
  const text = String(value);
  if (!/^[A-Za-z0-9_.:@+-]{1,64}$/.test(text)) throw new Error(`refusing to put ${JSON.stringify(text)} in an nft string`);
  return `"${text}"`;
}

/** Free text (a policy description) as the body of a one-line `#` comment: nothing can escape it. */
export function nftComment(value: unknown): string {
  return String(value ?? '')
    .replace(/[^A-Za-z0-9 _.,:/()+=@-]/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 160);
}

/** Text drawn in a picture (a node, an edge label, a title): one line, no quote or bracket of the picture's syntax. */
export function pictureText(value: unknown): string {
  return String(value ?? '')
    .replace(/[^A-Za-z0-9 _.,:/()+=@*<>-]/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 160);
}

/**
 * A relative path as a URI reference (each segment percent-encoded, `/` kept): one token that
 * nothing can carry out of the comment it stands in, read back as the same path by an editor.
 */
export function uriRef(value: unknown): string {
  return String(value).split('/').map(encodeURIComponent).join('/');
}

// Every YAML a template writes is read by Ansible.
hbs.registerHelper('yaml', (value: unknown) => toAnsibleYaml(value).replace(/\n$/, ''));
hbs.registerHelper('nftString', (value: unknown) => nftString(value));
hbs.registerHelper('nftComment', (value: unknown) => nftComment(value));
hbs.registerHelper('pictureText', (value: unknown) => pictureText(value));
hbs.registerHelper('uriRef', (value: unknown) => uriRef(value));
hbs.registerHelper('json', (value: unknown) => JSON.stringify(value));
hbs.registerHelper('join', (values: unknown, separator: unknown) =>
  (Array.isArray(values) ? values : []).map(String).join(typeof separator === 'string' ? separator : ', '));
hbs.registerHelper('eq', (a: unknown, b: unknown) => a === b);

const cache = new Map<string, Handlebars.TemplateDelegate>();

export const KNOWN_HELPERS = { yaml: true, nftString: true, nftComment: true, pictureText: true, uriRef: true, json: true, join: true, eq: true } as const;

/** Compiles templates/<name> once. */
export function template(name: string): Handlebars.TemplateDelegate {
  let compiled = cache.get(name);
  if (!compiled) {
    const source = readFileSync(TEMPLATES_DIR + name, 'utf8');
    compiled = hbs.compile(source, { noEscape: true, strict: true, knownHelpers: KNOWN_HELPERS, knownHelpersOnly: true });
    cache.set(name, compiled);
  }
  return compiled;
}

export function render(name: string, data: object): string {
  return template(name)(data);
}
