/**
 * `anklume-gen init [DIR] [--layout file|dir]`: a commented starter infra (three domains, exclusive
 * AI access) whose layout is in templates/init/. It never overwrites: any infra already in DIR and
 * nothing is written.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { COMMON_OPTIONS, EXIT_FAILED, EXIT_OK, reportProblems, UsageError, type Command } from './command.js';
import { printJson } from './output.js';

/** Each file of a layout: its path under DIR, its template, the schema its first line names. */
const LAYOUTS: Record<string, { path: string; template: string; schema: string }[]> = {
  file: [{ path: 'infra.yml', template: 'init/infra.yml.hbs', schema: 'infra.schema.json' }],
  dir: [
    { path: 'infra/base.yml', template: 'init/base.yml.hbs', schema: 'infra-base.schema.json' },
    ...['ai-tools', 'perso', 'pro'].map((d) => ({ path: `infra/domains/${d}.yml`, template: `init/domains/${d}.yml.hbs`, schema: 'infra-domain.schema.json' })),
    { path: 'infra/policies.yml', template: 'init/policies.yml.hbs', schema: 'infra-policies.schema.json' },
  ],
};

export const initCommand: Command = {
  summary: 'write a commented starter infra (pro, perso, ai-tools, exclusive AI access) in DIR (default .); never overwrites',
  usage: 'anklume-gen init [DIR] [--layout file|dir] [--json]',
  options: { ...COMMON_OPTIONS, layout: { type: 'string' } },
  flags: { layout: "file: DIR/infra.yml (the default); dir: DIR/infra/base.yml, infra/domains/*.yml and infra/policies.yml" },
  async run(values, positionals, inv) {
    if (positionals.length > 1) throw new UsageError(`expected at most one directory, got ${positionals.length}: ${positionals.join(' ')}`);
    const layout = typeof values.layout === 'string' ? values.layout : 'file';
    if (!LAYOUTS[layout]) {
      const { closest } = await import('../core/suggest.js');
      const near = closest(layout, Object.keys(LAYOUTS));
      throw new UsageError(`--layout must be file or dir, not '${layout}'${near ? `; did you mean '${near}'?` : ''}`);
    }
    const [{ packagePath }, { render }] = await Promise.all([
      import('../core/packageRoot.js'),
      import('../core/templates.js'),
    ]);
    const dir = path.resolve(inv.cwd, positionals[0] ?? '.');
    const shown = (rel: string) => path.join(positionals[0] ?? '.', rel);

    // Any infra already there, in either layout: init writes a new one, never over or beside one.
    const domainsDir = path.join(dir, 'infra', 'domains');
    const present = [
      'infra.yml',
      'infra/base.yml',
      'infra/policies.yml',
      ...(fs.existsSync(domainsDir) ? fs.readdirSync(domainsDir).filter((f) => /\.ya?ml$/.test(f)).sort().map((f) => `infra/domains/${f}`) : []),
      ...LAYOUTS[layout].map((f) => f.path),
      // lstat: a link to nothing is there too (writing through it would fail, or write elsewhere).
    ].find((rel) => fs.lstatSync(path.join(dir, rel), { throwIfNoEntry: false }) !== undefined);
    if (present !== undefined) {
      reportProblems(inv, values.json === true, [{ file: shown(present), message: 'exists already, and init never overwrites an infra: nothing was written (edit that one, or init another directory)' }], []);
      return EXIT_FAILED;
    }

    // The schema as this project will find it: the anklume-gen installed in DIR's node_modules (or
    // an ancestor's), whose path stays right wherever the project is cloned and installed again;
    // else the schema/ of the package running now (a clone of the repository, a global install).
    let schemaDir = packagePath('schema');
    for (let d = dir; ; d = path.dirname(d)) {
      const installed = path.join(d, 'node_modules', 'anklume-gen', 'schema');
      if (fs.existsSync(path.join(installed, 'infra.schema.json'))) {
        schemaDir = installed;
        break;
      }
      if (path.dirname(d) === d) break;
    }
    try {
      fs.mkdirSync(dir, { recursive: true });
      fs.accessSync(dir, fs.constants.W_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      reportProblems(inv, values.json === true, [{ file: shown('.'), message: `cannot write here (${code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code ?? String(err)}): nothing was written; init a directory you can write to` }], []);
      return EXIT_FAILED;
    }
    const physical = schemaDir === packagePath('schema') ? fs.realpathSync(dir) : dir;

    const written: string[] = [];
    try {
      for (const file of LAYOUTS[layout]) {
        const target = path.join(dir, file.path);
        const schema = path.relative(path.dirname(path.join(physical, file.path)), path.join(schemaDir, file.schema)).split(path.sep).join('/');
        fs.mkdirSync(path.dirname(target), { recursive: true });
        fs.writeFileSync(target, render(file.template, { schema }), { flag: 'wx' });
        written.push(file.path);
      }
    } catch (err) {
      // Another process wrote one of the files meanwhile: take back what this run wrote.
      for (const rel of written) fs.rmSync(path.join(dir, rel), { force: true });
      throw err;
    }
    const paths = written.map(shown);
    if (values.json) printJson(inv.streams, { written: paths });
    else {
      for (const p of paths) inv.streams.out(`Wrote: ${p}`);
      const infra = shown(layout === 'dir' ? 'infra' : 'infra.yml');
      // Run through npx (npm exec), the command is npx's too: a local install puts no anklume-gen on PATH.
      const cli = inv.env.npm_command === 'exec' ? 'npx anklume-gen' : 'anklume-gen';
      inv.streams.out(`Next: edit it, then '${cli} validate ${infra}' and '${cli} ${infra} --dry-run' (what sync would write)`);
    }
    return EXIT_OK;
  },
};
