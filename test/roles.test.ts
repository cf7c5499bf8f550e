/**
 * The roles as Ansible users expect them: each has a README.md and a meta/argument_specs.yml, which
 * Ansible itself checks before the role's first task; the specs repeat defaults/main.yml exactly;
 * a wrong value is refused by a real ansible-playbook before anything is touched; what the callers
 * pass (site.yml, incus_preflight's facts, the ai-switch playbook anklume-gen renders) is accepted;
 * and each tag of site.yml runs the roles it says.
 *
 * Nothing here reaches the host: the refused runs stop at the validation, the accepted ones run
 * under a tag no task has (Ansible tags the validation `always`, so it alone runs), in check mode.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { ansibleEnv } from '../generator/aiswitch/ansible.ts';
import { extraVars, planSwitch, renderPlaybook } from '../generator/aiswitch/aiPlan.ts';
import { enrich } from '../generator/infra/enrich.ts';
import { analyse } from '../generator/infra/infra.ts';
import { runCli } from './helpers/cli.ts';
import { testEnv, type TestEnv } from './helpers/env.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ROLES_DIR = join(ROOT, 'roles');
const ROLES = readdirSync(ROLES_DIR).filter((r) => statSync(join(ROLES_DIR, r)).isDirectory()).sort();
/** A tag no task carries: only the argument validation (tagged always by Ansible) runs under it. */
const VALIDATION_ONLY = ['--tags', 'anklume-argument-validation-only', '--check'];

interface Option {
  type?: string;
  elements?: string;
  required?: boolean;
  default?: unknown;
  description?: string | string[];
  choices?: unknown[];
  options?: Record<string, Option>;
}
interface EntryPoint {
  short_description?: string;
  description?: string | string[];
  options: Record<string, Option>;
}

/** Each role's defaults and argument specs, read by PyYAML as Ansible reads them (YAML 1.1). */
const read = spawnSync('/usr/bin/python3', ['-c', String.raw`
import json, os, sys, yaml
root = sys.argv[1]
def load(role, path):
    path = os.path.join(root, role, path)
    return yaml.safe_load(open(path)) if os.path.exists(path) else None
print(json.dumps({r: {'defaults': load(r, 'defaults/main.yml'), 'specs': load(r, 'meta/argument_specs.yml')} for r in sys.argv[2:]}))
`, ROLES_DIR, ...ROLES], { encoding: 'utf8' });
assert.equal(read.status, 0, read.stderr);
const loaded = JSON.parse(read.stdout) as Record<string, { defaults: Record<string, unknown> | null; specs: { argument_specs: Record<string, EntryPoint> } | null }>;
const mainOf = (role: string): EntryPoint => loaded[role].specs!.argument_specs.main;

interface Run {
  code: number | null;
  out: string;
  /** TASK [...] headers, in order. */
  tasks: string[];
  recap?: { ok: number; changed: number; failed: number };
}

function playbook(args: string[], t: TestEnv, env: NodeJS.ProcessEnv = {}): Run {
  const r = spawnSync('ansible-playbook', ['-i', 'localhost,', ...args], {
    env: { ...ansibleEnv(process.env, false), ANSIBLE_LOCAL_TEMP: join(t.dir, 'ansible-local'), ...env },
    encoding: 'utf8',
  });
  const out = r.stdout + r.stderr;
  const recap = /^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)/m.exec(out);
  return {
    code: r.status,
    out,
    tasks: [...out.matchAll(/^TASK \[(.*)\] \**$/gm)].map((m) => m[1]),
    recap: recap ? { ok: Number(recap[1]), changed: Number(recap[2]), failed: Number(recap[3]) } : undefined,
  };
}

const VALIDATION_TASK = /^[a-z_]+ : Validating arguments against arg spec 'main'/;

describe('every role documents and declares its arguments', () => {
  it('has README.md and meta/argument_specs.yml with an entry point main', () => {
    assert.deepEqual(ROLES, ['ai_switch', 'cluster_routes', 'incus_instances', 'incus_networks', 'incus_nftables', 'incus_orphans', 'incus_preflight', 'incus_projects']);
    for (const role of ROLES) {
      assert.ok(existsSync(join(ROLES_DIR, role, 'README.md')), `${role}/README.md`);
      assert.ok(loaded[role].specs, `${role}/meta/argument_specs.yml`);
      assert.deepEqual(Object.keys(loaded[role].specs!.argument_specs), ['main'], role);
      const main = mainOf(role);
      assert.ok(main.short_description && main.description, `${role}: short_description and description`);
    }
  });

  it('every option says its type, whether it is required and what it means; a required one has no default', () => {
    const wrong: string[] = [];
    const check = (where: string, options: Record<string, Option>) => {
      for (const [name, o] of Object.entries(options)) {
        if (!o.type) wrong.push(`${where}.${name}: no type`);
        if (typeof o.required !== 'boolean') wrong.push(`${where}.${name}: required is not said`);
        if (!o.description) wrong.push(`${where}.${name}: no description`);
        if (o.required && 'default' in o) wrong.push(`${where}.${name}: required with a default`);
        if (o.type === 'list' && !o.elements) wrong.push(`${where}.${name}: a list without elements`);
        if (o.options) check(`${where}.${name}`, o.options);
      }
    };
    for (const role of ROLES) check(role, mainOf(role).options);
    assert.deepEqual(wrong, []);
  });

  it('every variable of defaults/main.yml is an argument with the same default, and every default of the spec is in defaults/main.yml', () => {
    for (const role of ROLES) {
      const defaults = loaded[role].defaults ?? {};
      const options = mainOf(role).options;
      for (const [name, value] of Object.entries(defaults)) {
        assert.ok(name in options, `${role}: ${name} (defaults/main.yml) is not in meta/argument_specs.yml`);
        assert.deepEqual(options[name].default, value, `${role}: the default of ${name}`);
      }
      // Ansible 2.14 does not set a variable from the spec's default: one that defaults/main.yml
      // lacks would be documented and never set.
      for (const [name, o] of Object.entries(options)) {
        if ('default' in o) assert.ok(name in defaults, `${role}: ${name} has a default in the spec but not in defaults/main.yml`);
      }
    }
  });

  it('a variable that two roles declare has the same default in both (incus_preflight plans what incus_instances and incus_orphans do)', () => {
    const seen = new Map<string, [string, unknown]>();
    for (const role of ROLES) {
      for (const [name, value] of Object.entries(loaded[role].defaults ?? {})) {
        const first = seen.get(name);
        if (first) assert.deepEqual(value, first[1], `${name}: the default of ${role} and of ${first[0]}`);
        else seen.set(name, [role, value]);
      }
    }
    assert.ok(seen.has('incus_instances_start') && seen.has('incus_orphans_delete'));
  });

  it("the README names every argument, gives an example and the role's tag", () => {
    for (const role of ROLES) {
      const readme = readFileSync(join(ROLES_DIR, role, 'README.md'), 'utf8');
      assert.match(readme, new RegExp(`^# ${role}\\n`), role);
      for (const name of Object.keys(mainOf(role).options)) assert.ok(readme.includes(`\`${name}\``), `${role}/README.md does not name ${name}`);
      assert.match(readme, /^## Example\n[^]*```yaml\n[^]*- role: /m, `${role}: an example playbook`);
      assert.match(readme, /^## Tag\n/m, `${role}: its tag`);
    }
  });

  it("incus_preflight's facts (incus_domains, incus_machines) are described the same way by every role that takes them", () => {
    for (const fact of ['incus_domains', 'incus_machines']) {
      const takers = ROLES.filter((r) => fact in mainOf(r).options);
      assert.ok(takers.length >= 2, fact);
      for (const role of takers) {
        assert.deepEqual(mainOf(role).options[fact], mainOf(takers[0]).options[fact], `${role}: ${fact}`);
        // site.yml --tags nftables validates every role without running incus_preflight.
        assert.equal(mainOf(role).options[fact].required, false, `${role}: ${fact} must not be required`);
      }
    }
  });
});

describe('Ansible refuses a wrong argument before the first task (real ansible-playbook)', () => {
  let t: TestEnv;
  before(() => {
    t = testEnv('anklume-roles-');
  });
  after(() => t.cleanup());

  it('incus_nftables_boot_include: notabool: refused with the variable named, no task run, nothing touched (check mode too)', () => {
    const dir = join(t.dir, 'refused');
    mkdirSync(dir);
    writeFileSync(join(dir, 'anklume.nft'), 'table inet anklume {\n}\n');
    writeFileSync(join(dir, 'nftables.conf'), '#!/usr/sbin/nft -f\n');
    // Every path of the role points into the test's directory; --check on top of that.
    writeFileSync(join(dir, 'play.yml'), [
      '- name: A wrong value for incus_nftables',
      '  hosts: localhost',
      '  connection: local',
      '  gather_facts: false',
      '  roles:',
      '    - role: incus_nftables',
      '      vars:',
      `        incus_nftables_src: ${JSON.stringify(join(dir, 'anklume.nft'))}`,
      `        incus_nftables_install_dir: ${JSON.stringify(join(dir, 'installed'))}`,
      `        incus_nftables_boot_conf: ${JSON.stringify(join(dir, 'nftables.conf'))}`,
      '        incus_nftables_boot_include: notabool',
      '',
    ].join('\n'));
    const r = playbook([join(dir, 'play.yml'), '--check'], t);
    assert.notEqual(r.code, 0, r.out);
    assert.match(r.out, /Validation of arguments failed:\\nargument 'incus_nftables_boot_include' is of type [^\n]* and we were unable to convert to bool: The value 'notabool' is not a valid boolean/);
    assert.deepEqual(r.tasks.map((task) => VALIDATION_TASK.test(task)), [true], 'the validation is the only task that ran');
    assert.deepEqual(r.recap, { ok: 0, changed: 0, failed: 1 });
    assert.equal(existsSync(join(dir, 'installed')), false, 'the install directory was not made');
    assert.equal(readFileSync(join(dir, 'nftables.conf'), 'utf8'), '#!/usr/sbin/nft -f\n', 'the boot configuration is untouched');
  });

  // One wrong value per row, given to site.yml or a role the way a user would (-e, a role's vars).
  const refusals: { what: string; vars: Record<string, unknown>; message: RegExp }[] = [
    { what: 'a list where a dict is expected (incus_preflight_gpu_device)', vars: { incus_preflight_gpu_device: ['gpu'] }, message: /argument 'incus_preflight_gpu_device' is of type <class 'list'> and we were unable to convert to dict/ },
    { what: 'a word where a boolean is expected (incus_orphans_delete)', vars: { incus_orphans_delete: 'sometimes' }, message: /argument 'incus_orphans_delete' is of type <class 'str'> and we were unable to convert to bool/ },
    { what: 'a dict where a list is expected (incus_machines)', vars: { incus_machines: { a: 1 } }, message: /argument 'incus_machines' is of type <class 'dict'> and we were unable to convert to list/ },
    {
      what: "a fact of the wrong shape (a domain without project, a machine type Incus does not know)",
      vars: {
        incus_domains: [{ name: 'w', ephemeral: 'maybe', network: { name: 'net-w', config: {} }, profiles: [] }],
        incus_machines: [{ key: 'w/a', name: 'a', project: 'w', type: 'vm', image: 'x', profiles: ['default'], config: {}, devices: {} }],
      },
      message: /missing required arguments: project found in incus_domains\\nvalue of ephemeral must be one of: true, false, got: maybe found in incus_domains/,
    },
  ];
  for (const { what, vars, message } of refusals) it(`site.yml: ${what}`, () => {
    const varsFile = join(t.dir, `vars-${Object.keys(vars).join('-')}.json`);
    writeFileSync(varsFile, JSON.stringify(vars));
    const r = playbook([join(ROOT, 'site.yml'), '-e', `@${varsFile}`, ...VALIDATION_ONLY], t, { ANKLUME_BASE_DIR: t.dir });
    assert.notEqual(r.code, 0, r.out);
    assert.match(r.out, /Validation of arguments failed/);
    assert.match(r.out, message);
    assert.ok(r.tasks.every((task) => VALIDATION_TASK.test(task)), r.tasks.join('\n'));
  });

  it('ai_switch: a value outside the choices (ai_switch_nft_family: inet6)', () => {
    writeFileSync(join(t.dir, 'ai.yml'), '- name: ai_switch\n  hosts: localhost\n  connection: local\n  gather_facts: false\n  roles:\n    - role: ai_switch\n');
    const r = playbook([join(t.dir, 'ai.yml'), '-e', JSON.stringify({ ai_switch_nft_family: 'inet6' }), ...VALIDATION_ONLY], t);
    assert.notEqual(r.code, 0, r.out);
    assert.match(r.out, /value of ai_switch_nft_family must be one of: inet, ip, ip6, arp, bridge, netdev, got: inet6/);
  });
});

describe('what the callers pass is accepted (real ansible-playbook, argument validation only)', () => {
  let t: TestEnv;
  before(() => {
    t = testEnv('anklume-roles-callers-');
  });
  after(() => t.cleanup());

  const allValidated = (r: Run, count: number) => {
    assert.equal(r.code, 0, r.out);
    assert.deepEqual(r.recap, { ok: count, changed: 0, failed: 0 }, r.out);
    assert.equal(r.tasks.length, count);
    assert.ok(r.tasks.every((task) => VALIDATION_TASK.test(task)), r.tasks.join('\n'));
  };

  it("site.yml's own variables, without incus_preflight's facts (as under --tags nftables)", () => {
    allValidated(playbook([join(ROOT, 'site.yml'), ...VALIDATION_ONLY], t, { ANKLUME_BASE_DIR: t.dir }), 6);
  });

  it("incus_preflight's facts as its filters compute them from a synced tree (vm, gpu, profiles, devices)", async () => {
    const infra = join(t.dir, 'infra.yml');
    writeFileSync(infra, [
      'project_name: roles',
      'global: {base_subnet: "10.9", default_os_image: "images:debian/13"}',
      'domains:',
      '  work:',
      '    subnet_id: 5',
      '    ephemeral: true',
      '    profiles: {big: {description: "4 CPUs", config: {limits.cpu: 4}}}',
      '    machines:',
      '      desk: {type: vm, ip: "10.9.5.10", gpu: true, os_image: local-debian, profiles: [default, big], config: {security.nesting: true}}',
      '      bare: {}',
      '  home:',
      '    subnet_id: 6',
      '    machines:',
      '      box: {devices: {data: {type: disk, source: /srv, path: /srv}}}',
      '',
    ].join('\n'));
    const sync = await runCli(['sync', infra, '--base-dir', t.baseDir], t.env);
    assert.equal(sync.code, 0, sync.stderr);
    const facts = spawnSync('/usr/bin/python3', ['-c', String.raw`
import glob, json, sys, yaml
sys.path.insert(0, sys.argv[1])
from anklume_desired import anklume_domains, anklume_machines
tree = sys.argv[2]
load = lambda p: yaml.safe_load(open(p))
names = load(tree + '/group_vars/all.yml')['anklume_domains']
domains = anklume_domains([load('%s/group_vars/%s.yml' % (tree, n)) for n in names], 'default')
machines = anklume_machines([load(p) for p in sorted(glob.glob(tree + '/host_vars/*.yml'))], domains, {'type': 'gpu', 'gputype': 'physical'})
print(json.dumps({'incus_domains': domains, 'incus_machines': machines}))
`, join(ROLES_DIR, 'incus_preflight/filter_plugins'), t.baseDir], { encoding: 'utf8' });
    assert.equal(facts.status, 0, facts.stderr);
    const parsed = JSON.parse(facts.stdout) as { incus_domains: { name: string }[]; incus_machines: { type: string }[] };
    assert.deepEqual(parsed.incus_domains.map((d) => d.name).sort(), ['home', 'work']);
    assert.deepEqual(parsed.incus_machines.map((m) => m.type).sort(), ['container', 'container', 'virtual-machine']);
    writeFileSync(join(t.dir, 'facts.json'), facts.stdout);
    allValidated(playbook([join(ROOT, 'site.yml'), '-e', `@${join(t.dir, 'facts.json')}`, ...VALIDATION_ONLY], t, { ANKLUME_BASE_DIR: t.baseDir }), 6);
  });

  for (const fixture of ['infra.yml', 'infra-vm-scrub.yml']) it(`the ai-switch playbook and vars that anklume-gen renders (${fixture})`, () => {
    const file = join(ROOT, 'test/fixtures/ai-switch', fixture);
    const a = analyse([{ file, text: readFileSync(file, 'utf8'), role: 'single' }], { yolo: false });
    assert.ok(a.infra, JSON.stringify(a.errors));
    const dir = join(t.dir, `ai-${fixture}`);
    mkdirSync(dir);
    const plan = planSwitch({ infra: enrich(a.infra).infra, infraPath: file, from: 'pro', to: 'perso', flush: true, stateFile: join(dir, 'state'), logFile: join(dir, 'log'), persist: [join(dir, 'a.nft')], procRoot: '/proc' });
    writeFileSync(join(dir, 'ai-switch.yml'), renderPlaybook(plan));
    writeFileSync(join(dir, 'vars.json'), JSON.stringify(extraVars(plan, { dir, playbook: '', vars: '', revoke: 'r', grant: 'g', rulesetNone: 'n', rulesetNew: 'w', result: 'x', gpuRecords: 'd' })));
    allValidated(playbook([join(dir, 'ai-switch.yml'), '-e', `@${join(dir, 'vars.json')}`, ...VALIDATION_ONLY], t), 1);
  });
});

describe('the tags of site.yml', () => {
  let t: TestEnv;
  before(() => {
    t = testEnv('anklume-roles-tags-');
  });
  after(() => t.cleanup());

  /** The roles whose own tasks (not their argument validation) a tag selects, in order, play by play. */
  const rolesOf = (tags: string[]): string[][] => {
    const r = playbook([join(ROOT, 'site.yml'), '--list-tasks', ...tags], t);
    assert.equal(r.code, 0, r.out);
    return r.out.split(/^ {2}play #\d+ /m).slice(1).map((play) => {
      const roles = [...play.matchAll(/^ {6}([a-z_]+) : (.*)\t/gm)].filter((m) => !m[2].startsWith('Validating arguments')).map((m) => m[1]);
      return [...new Set(roles)];
    });
  };

  it('each part has its tag; incus_preflight runs with every part that reads its facts; nftables runs the ruleset alone (apply-nftables); on a cluster the ruleset and the routes go on every member, between the bridges and the instances', () => {
    // The plays: localhost (up to the bridges, and one host's ruleset), every cluster member, localhost again.
    const incus = [['incus_preflight', 'incus_projects', 'incus_networks'], ['cluster_routes'], ['incus_instances', 'incus_orphans']];
    assert.deepEqual(rolesOf([]), [[...incus[0], 'incus_nftables'], ['incus_nftables', 'cluster_routes'], incus[2]]);
    assert.deepEqual(rolesOf(['--tags', 'nftables']), [['incus_nftables'], ['incus_nftables'], []]);
    assert.deepEqual(rolesOf(['--tags', 'incus']), incus);
    assert.deepEqual(rolesOf(['--tags', 'preflight']), [['incus_preflight'], [], []]);
    assert.deepEqual(rolesOf(['--tags', 'projects']), [['incus_preflight', 'incus_projects'], [], []]);
    assert.deepEqual(rolesOf(['--tags', 'networks']), [['incus_preflight', 'incus_networks'], ['cluster_routes'], []]);
    for (const [tag, role] of [['instances', 'incus_instances'], ['orphans', 'incus_orphans']]) {
      assert.deepEqual(rolesOf(['--tags', tag]), [['incus_preflight'], [], [role]], tag);
    }
    assert.deepEqual(rolesOf(['--skip-tags', 'nftables']), incus);
  });
});
