/**
 * The one Handlebars environment. Templates own the layout of every generated file; data enters
 * only through helpers that serialise it safely (YAML through js-yaml's dumper, nft strings and
 * comments through the sanitisers below).
 *
 * The build precompiles every template (buildTemplates.ts), each stamped with the digest of its
 * source: a template whose source still has that digest runs on Handlebars' runtime alone, which
 * loads in a fraction of the compiler's time; any other (sources run through tsx, a template
 * edited after the build) is compiled here, with the same options.
 */
import type Handlebars from 'handlebars';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { bundled } from './bundled.js';
import { packagePath } from './packageRoot.js';
import { toAnsibleYaml } from './yamlOut.js';

export const TEMPLATES_DIR = packagePath('templates') + '/';
export const PRECOMPILED_TEMPLATES = 'templates.precompiled.cjs';

// Handlebars is CommonJS: require loads its runtime (carried by the one-file build), or the whole of
// it, when first needed.
const requireCjs = createRequire(import.meta.url);

interface Precompiled {
  templates: Record<string, { digest: string; spec: Parameters<typeof Handlebars.template>[0] }>;
}

let precompiled: Precompiled | null | undefined;
function precompiledTemplates(): Precompiled | null {
  if (precompiled === undefined) {
    try {
      // `../core/`: the same path from this module and from the one-file build in cli/.
      precompiled = (bundled.templates ?? (() => requireCjs(`../core/${PRECOMPILED_TEMPLATES}`)))() as Precompiled;
    } catch {
      precompiled = null;
    }
  }
  return precompiled;
}

export const templateDigest = (source: string): string => createHash('sha1').update(source).digest('hex');

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
    .replace(/[^A-Za-z0-9 _.,:/()+=@*-]/g, ' ')
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

/** The text without its last line break, if it ends with one (a regex showed, on thousands of files). */
export function withoutFinalNewline(text: string): string {
  return text.endsWith('\n') ? text.slice(0, -1) : text;
}

/** What the `yaml` helper writes: every YAML a template writes is read by Ansible. */
export function yamlText(value: unknown): string {
  return withoutFinalNewline(toAnsibleYaml(value));
}

/** An environment (the runtime's, or the full library's) with anklume's helpers and nothing else. */
function environment(base: typeof Handlebars): typeof Handlebars {
  const hbs = base.create();
  hbs.registerHelper('yaml', yamlText);
  hbs.registerHelper('nftString', (value: unknown) => nftString(value));
  hbs.registerHelper('nftComment', (value: unknown) => nftComment(value));
  hbs.registerHelper('pictureText', (value: unknown) => pictureText(value));
  hbs.registerHelper('uriRef', (value: unknown) => uriRef(value));
  hbs.registerHelper('json', (value: unknown) => JSON.stringify(value));
  hbs.registerHelper('join', (values: unknown, separator: unknown) =>
    (Array.isArray(values) ? values : []).map(String).join(typeof separator === 'string' ? separator : ', '));
  hbs.registerHelper('eq', (a: unknown, b: unknown) => a === b);
  return hbs;
}

let runtimeEnv: typeof Handlebars | undefined;
let compilerEnv: typeof Handlebars | undefined;

const cache = new Map<string, Handlebars.TemplateDelegate>();

export const KNOWN_HELPERS = { yaml: true, nftString: true, nftComment: true, pictureText: true, uriRef: true, json: true, join: true, eq: true } as const;
/** How every template is compiled, at build time and here. */
export const COMPILE_OPTIONS = { noEscape: true, strict: true, knownHelpers: KNOWN_HELPERS, knownHelpersOnly: true } as const;

/** The full library, for the build and for templates that were not precompiled as they are now. */
export function handlebarsCompiler(): typeof Handlebars {
  return requireCjs('handlebars') as typeof Handlebars;
}

/** templates/<name>, compiled once: precompiled when its source is what the build saw. */
export function template(name: string): Handlebars.TemplateDelegate {
  let compiled = cache.get(name);
  if (!compiled) {
    const source = readFileSync(TEMPLATES_DIR + name, 'utf8');
    const built = precompiledTemplates()?.templates[name];
    if (built && built.digest === templateDigest(source)) {
      runtimeEnv ??= environment((bundled.handlebarsRuntime ?? (() => requireCjs('handlebars/runtime')))() as typeof Handlebars);
      compiled = runtimeEnv.template(built.spec);
    } else {
      compilerEnv ??= environment(handlebarsCompiler());
      compiled = compilerEnv.compile(source, COMPILE_OPTIONS);
    }
    cache.set(name, compiled);
  }
  return compiled;
}

export function render(name: string, data: object): string {
  return template(name)(data);
}

/** Stands for the value in a frame: no template or helper writes a NUL. */
const HOLE = '\u0000';
const frames = new Map<string, readonly [string, string]>();

/**
 * The text of a template that writes one value and fixed text around it (`{{yaml vars}}` or
 * `{{block}}`, nothing else that depends on the data; test/templates.test.ts holds each such
 * template to it), on each side of that value: rendered once, then each value goes between the
 * two sides. A sync of thousands of files otherwise pays Handlebars' set-up twice per file.
 * @param key the value's name in the template's data
 */
export function frame(name: string, key: string): readonly [string, string] {
  let sides = frames.get(name);
  if (!sides) {
    // The yaml helper passes the hole through, so that it lands where the value's YAML would.
    const parts = template(name)({ [key]: HOLE }, { helpers: { yaml: (value: unknown) => value } }).split(HOLE);
    if (parts.length !== 2) throw new Error(`template ${name} does not write ${key} exactly once`);
    frames.set(name, (sides = [parts[0], parts[1]]));
  }
  return sides;
}
