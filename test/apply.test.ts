/**
 * `make apply` (= `anklume-gen apply`) where no Incus can help: its refusals (Incus missing, daemon
 * down, no tree) must stop before anything is made. Those that are ansible's (incus_preflight) run
 * the real ansible-playbook and the real incus client; those of the CLI (no tree, a usage error)
 * run before ansible. Either way what must not run is a stand-in first on PATH that fails loudly if
 * called (test/helpers/standins.ts, ForbiddenTools: nft always; ansible-playbook and incus too where
 * the CLI refuses), and the test says so in its name: a broken refusal fails the test instead of
 * acting on this machine. And what
 * the roles ask Incus for (incus_preflight's filter, read by the real Python of Ansible) for the
 * cases the real-Incus test cannot start here: `type: vm`, a real `gpu` device, config values
 * that are numbers or booleans in infra.yml. The real thing is test/incus-apply-e2e.test.ts.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runCli } from './helpers/cli.ts';
import { testEnv, type TestEnv } from './helpers/env.ts';
import { ForbiddenTools, StandIns } from './helpers/standins.ts';

const ROOT = process.cwd();
const OUTER_MAKE = new Set(['INFRA', 'BASE_DIR', 'DOMAIN', 'MAKEFLAGS', 'MAKELEVEL', 'MFLAGS', 'EXTRA_VARS', 'CHECK', 'DELETE_ORPHANS']);

function make(args: string[], env: NodeJS.ProcessEnv): { code: number; out: string } {
  const clean = Object.fromEntries(Object.entries(env).filter(([k]) => !OUTER_MAKE.has(k)));
  const r = spawnSync('make', ['-s', '-C', ROOT, ...args], { env: clean, encoding: 'utf8' });
  return { code: r.status ?? -1, out: r.stdout + r.stderr };
}

const hasIncus = spawnSync('incus', ['--version']).status === 0;

function synced(t: TestEnv, infra: string): void {
  const r = make(['sync', `INFRA=${infra}`, `BASE_DIR=${t.baseDir}`], t.env);
  assert.equal(r.code, 0, r.out);
}

/** A PATH with every command of this machine's but incus. */
function pathWithoutIncus(dir: string): string {
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  for (const d of ['/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin']) {
    let names: string[] = [];
    try {
      names = readdirSync(d);
    } catch {
      continue;
    }
    for (const name of names) {
      if (name === 'incus') continue;
      try {
        symlinkSync(join(d, name), join(bin, name));
      } catch {
        // The first directory on the usual PATH wins, as it would.
      }
    }
  }
  return bin;
}

describe('make apply refuses before making anything', () => {
  it('without Incus: one message naming the fix (install from bookworm-backports); anklume-gen apply exits 1, make apply non-zero (nft: a stand-in that fails if called)', async () => {
    const t = testEnv();
    const forbidden = ForbiddenTools.create(['nft']);
    try {
      synced(t, `${ROOT}/examples/infra.yml`);
      const env = forbidden.env({ ...t.env, PATH: pathWithoutIncus(t.dir) });
      const fix = /Incus is not installed \(no `incus` command\)\. Install Incus >= 6\.0: on Debian 12, enable bookworm-backports and run `apt-get install -t bookworm-backports incus`/;
      const r = make(['apply', `BASE_DIR=${t.baseDir}`], env);
      assert.notEqual(r.code, 0);
      assert.match(r.out, fix);
      assert.doesNotMatch(r.out, /changed: /);
      const cli = await runCli(['apply', '--base-dir', t.baseDir], env);
      assert.equal(cli.code, 1);
      assert.equal(cli.stdout, '');
      assert.match(cli.stderr, fix);
      assert.match(cli.stderr, /anklume-gen apply: ansible-playbook failed \(exit \d+\); its output is above\n$/);
      const json = await runCli(['apply', '--base-dir', t.baseDir, '--json'], env);
      assert.equal(json.code, 1);
      assert.deepEqual(JSON.parse(json.stdout), { applied: false, changed: 0, errors: [{ message: `ansible-playbook failed (exit ${/exit (\d+)/.exec(cli.stderr)![1]}); its output is above`, file: null, line: null, column: null, path: null }] });
      forbidden.assertNoneCalled();
    } finally {
      forbidden.cleanup();
      t.cleanup();
    }
  });

  it('with the daemon down (the real client, pointed at a socket nobody serves): says to start it (nft: a stand-in that fails if called)', { skip: hasIncus ? false : 'incus is not installed here' }, () => {
    const t = testEnv();
    const forbidden = ForbiddenTools.create(['nft']);
    try {
      synced(t, `${ROOT}/examples/infra.yml`);
      const r = make(['apply', `BASE_DIR=${t.baseDir}`], forbidden.env({ ...t.env, INCUS_SOCKET: join(t.dir, 'no-daemon.socket') }));
      forbidden.assertNoneCalled();
      assert.notEqual(r.code, 0);
      assert.match(r.out, /The Incus daemon is not running or not reachable: start it \(`systemctl start incus`/);
      assert.match(r.out, /doesn't appear to be started/);
      assert.doesNotMatch(r.out, /changed: /);
    } finally {
      forbidden.cleanup();
      t.cleanup();
    }
  });

  it('without a generated tree: says to sync first, before ansible starts; exit 1 (ansible-playbook, incus, nft: stand-ins that fail if called)', async () => {
    const t = testEnv();
    const forbidden = ForbiddenTools.create();
    try {
      mkdirSync(t.baseDir, { recursive: true });
      const env = forbidden.env(t.env);
      const expected = `${join(t.baseDir, 'group_vars/all.yml')}: no generated tree to apply; write it first with 'anklume-gen sync <infra> --base-dir ${t.baseDir}'`;
      const r = make(['apply', `BASE_DIR=${t.baseDir}`], env);
      forbidden.assertNoneCalled();
      assert.notEqual(r.code, 0);
      assert.ok(r.out.includes(expected), r.out);
      assert.doesNotMatch(r.out, /PLAY/);
      const cli = await runCli(['apply', '--base-dir', t.baseDir, '--check'], env);
      forbidden.assertNoneCalled();
      assert.equal(cli.code, 1);
      assert.equal(cli.stderr, `${expected}\n`);
    } finally {
      forbidden.cleanup();
      t.cleanup();
    }
  });

  it('an argument before -- is a usage error (arguments for ansible-playbook go after --; ansible-playbook, incus, nft: stand-ins that fail if called)', async () => {
    const forbidden = ForbiddenTools.create();
    try {
      const r = await runCli(['apply', 'infra.yml'], forbidden.env(process.env));
      forbidden.assertNoneCalled();
      assert.equal(r.code, 2);
      assert.match(r.stderr, /anklume-gen apply: unexpected argument: infra\.yml \(arguments for ansible-playbook go after --\)/);
    } finally {
      forbidden.cleanup();
    }
  });

  it("anklume's variables set outside a managed block of the tree (a NIC on ai-tools' bridge below the block): refused with each place, apply, --check and --json alike (ansible-playbook, incus, nft: stand-ins that fail if called)", async () => {
    const t = testEnv();
    const forbidden = ForbiddenTools.create();
    try {
      synced(t, `${ROOT}/examples/infra.yml`);
      const file = join(t.baseDir, 'host_vars/pro-dev.yml');
      const generated = readFileSync(file, 'utf8');
      writeFileSync(file, `${generated}my_app_port: 8080\ninstance_devices:\n  eth1: {type: nic, network: net-ai-tools}\n`);
      const line = generated.split('\n').length + 1;
      const env = forbidden.env(t.env);
      for (const extra of [[], ['--check']]) {
        const r = await runCli(['apply', '--base-dir', t.baseDir, ...extra], env);
        assert.equal(r.code, 1, r.stderr);
        assert.equal(r.stderr.split('\n').filter((l) => l.includes('error:')).length, 1, r.stderr);
        assert.ok(r.stderr.includes(`${file}:${line}:1: error: 'instance_devices' is one of anklume's variables, set outside the managed block: apply would read it although infra.yml's checks never saw it`), r.stderr);
        assert.match(r.stderr, /1 variable\(s\) of anklume set outside the managed blocks of the tree: nothing was applied\.\n$/);
      }
      const json = await runCli(['apply', '--base-dir', t.baseDir, '--json'], env);
      assert.equal(json.code, 1);
      const doc = JSON.parse(json.stdout) as { applied: boolean; errors: { file: string; line: number; column: number }[] };
      assert.deepEqual([doc.applied, doc.errors.map((e) => [e.file, e.line, e.column])], [false, [[file, line, 1]]]);
      forbidden.assertNoneCalled();
      // Only the user's own variable below the block: nothing is refused, ansible-playbook is called.
      writeFileSync(file, `${generated}my_app_port: 8080\n`);
      await runCli(['apply', '--base-dir', t.baseDir], env);
      assert.deepEqual(forbidden.calls().map((c) => c.tool), ['ansible-playbook'], 'past the check, to ansible-playbook');
    } finally {
      forbidden.cleanup();
      t.cleanup();
    }
  });

  it("the tree's own refusal (incus_preflight, the real Incus client; nft: a stand-in that fails if called): the role's message when the tree is missing on the host side too", { skip: hasIncus ? false : 'incus is not installed here (that refusal comes first)' }, () => {
    const t = testEnv();
    const forbidden = ForbiddenTools.create(['nft']);
    try {
      synced(t, `${ROOT}/examples/infra.yml`);
      // The tree moved away between the CLI's look and ansible's: the role says so in its words.
      const r = spawnSync('/usr/bin/ansible-playbook', [join(ROOT, 'site.yml'), '--tags', 'incus'], { env: forbidden.env({ ...t.env, ANKLUME_BASE_DIR: join(t.dir, 'elsewhere'), ANSIBLE_LOCALHOST_WARNING: 'False' }), encoding: 'utf8' });
      forbidden.assertNoneCalled();
      assert.notEqual(r.status, 0);
      assert.match(r.stdout + r.stderr, /No generated tree in .* \(group_vars\/all\.yml is missing\): write it with `anklume-gen sync <infra> --base-dir .*` \(make sync\) first\./);
    } finally {
      forbidden.cleanup();
      t.cleanup();
    }
  });
});

/** The children of a process, by /proc/<pid>/stat (comm and parent). */
function children(ppid: number): { pid: number; comm: string }[] {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).flatMap((p) => {
    try {
      const text = readFileSync(`/proc/${p}/stat`, 'utf8');
      const close = text.lastIndexOf(')');
      return Number(text.slice(close + 2).split(' ')[1]) === ppid ? [{ pid: Number(p), comm: text.slice(text.indexOf('(') + 1, close) }] : [];
    } catch {
      return [];
    }
  });
}

describe('an interrupted apply stops ansible before it ends itself', () => {
  it('SIGTERM during the run (stand-in incus, told to be slow): ansible-playbook and its children are stopped, exit 1, the message says to run it again', async () => {
    const t = testEnv();
    const s = StandIns.create();
    try {
      synced(t, `${ROOT}/examples/infra.yml`);
      s.slow(60, '--version');
      const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'generator/cli/bin.ts'), 'apply', '--base-dir', t.baseDir], { env: s.env(t.env), stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += String(d)));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      for (let i = 0; i < 300 && !s.journal().some((e) => e.tool === 'SLOW'); i++) await new Promise((r) => setTimeout(r, 100));
      assert.ok(s.journal().some((e) => e.tool === 'SLOW'), `the first incus call is waiting:\n${stderr}`);
      const ansible = children(child.pid!).find((c) => c.comm.startsWith('ansible-playboo'));
      assert.ok(ansible, 'ansible-playbook runs');
      const started = Date.now();
      child.kill('SIGTERM');
      assert.equal(await exited, 1);
      assert.ok(Date.now() - started < 15_000, 'it did not wait for the slow call');
      assert.match(stderr, /anklume-gen apply: interrupted by SIGTERM: ansible-playbook was stopped; run it again to finish\n$/);
      let alive = true;
      for (let i = 0; i < 50 && alive; i++) {
        try {
          process.kill(ansible.pid, 0);
          await new Promise((r) => setTimeout(r, 100));
        } catch {
          alive = false;
        }
      }
      assert.equal(alive, false, 'ansible-playbook is gone');
      assert.deepEqual(children(ansible.pid), [], 'and so are its children');
    } finally {
      s.cleanup();
      t.cleanup();
    }
  });
});

/**
 * What incus_preflight's filter (anklume_desired.py) asks Incus for, from the tree synced in t: the
 * Python lines given run after `load` (a tree file, parsed) and print JSON. Ansible's Python
 * (Debian's), which has the ansible package the filter imports.
 */
function desired(t: TestEnv, body: string): unknown {
  const script = `import json, sys, yaml
sys.path.insert(0, sys.argv[1])
from anklume_desired import anklume_domains, anklume_machines
tree = sys.argv[2]
load = lambda p: yaml.safe_load(open(tree + p))
${body}`;
  const r = spawnSync('/usr/bin/python3', ['-c', script, join(ROOT, 'roles/incus_preflight/filter_plugins'), t.baseDir], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

describe('what apply asks Incus for (incus_preflight filter, read from a synced tree)', () => {
  it("on a cluster, every machine's NIC filters its source address (security.ipv4_filtering): the other members judge its packets by that address (one host: the next test)", () => {
    const t = testEnv();
    try {
      synced(t, join(ROOT, 'examples/cluster.yml'));
      const out = desired(t, String.raw`
domains = anklume_domains([load('/group_vars/pro.yml')], 'default', {'desk': '192.168.50.1'})
machines = anklume_machines([load('/host_vars/pro-dev.yml'), load('/host_vars/pro-build.yml')], domains, {'type': 'gpu'})
print(json.dumps([[m['name'], m['target'], m['devices']['eth0']] for m in machines]))
`);
      assert.deepEqual(out, [
        ['pro-dev', 'desk', { type: 'nic', name: 'eth0', network: 'net-pro', 'ipv4.address': '10.100.2.10', 'security.ipv4_filtering': 'true' }],
        ['pro-build', 'gpu-box', { type: 'nic', name: 'eth0', network: 'net-pro', 'ipv4.address': '10.100.2.11', 'security.ipv4_filtering': 'true' }],
      ]);
    } finally {
      t.cleanup();
    }
  });

  it("every NIC of the domain's bridge filters its source address, an eth0 that infra.yml writes itself (a machine's or a profile's) too, unless infra.yml sets the key (validation warns when it turns it off); other devices are left as written", () => {
    const t = testEnv();
    try {
      const infra = join(t.dir, 'infra.yml');
      // Incus takes one NIC per instance on a managed bridge: a NIC of infra.yml's on the domain's
      // bridge is an eth0 that replaces anklume's.
      writeFileSync(infra, [
        'project_name: nics',
        'global: {base_subnet: "10.9"}',
        'domains:',
        '  work:',
        '    subnet_id: 5',
        '    profiles: {wired: {devices: {eth0: {type: nic, network: net-work, mtu: "1400"}, data: {type: disk, source: /srv/d, path: /d}}}}',
        '    machines:',
        '      desk:',
        '        ip: "10.9.5.10"',
        '        profiles: [default, wired]',
        '        devices: {eth0: {type: nic, nictype: bridged, parent: net-work, ipv4.address: "10.9.5.10"}}',
        '      open:',
        '        devices: {eth0: {type: nic, network: net-work, security.ipv4_filtering: false}}',
        '',
      ].join('\n'));
      synced(t, infra);
      const out = desired(t, String.raw`
domains = anklume_domains([load('/group_vars/work.yml')], 'default')
machines = anklume_machines([load('/host_vars/desk.yml'), load('/host_vars/open.yml')], domains, {'type': 'gpu'})
wired = [p for p in domains[0]['profiles'] if p['name'] == 'wired'][0]
print(json.dumps({'profile': wired['devices'], 'machines': [m['devices'] for m in machines]}))
`);
      assert.deepEqual(out, {
        profile: {
          eth0: { type: 'nic', network: 'net-work', mtu: '1400', 'security.ipv4_filtering': 'true' },
          data: { type: 'disk', source: '/srv/d', path: '/d' },
        },
        machines: [
          { eth0: { type: 'nic', nictype: 'bridged', parent: 'net-work', 'ipv4.address': '10.9.5.10', 'security.ipv4_filtering': 'true' } },
          { eth0: { type: 'nic', network: 'net-work', 'security.ipv4_filtering': 'false' } },
        ],
      });
    } finally {
      t.cleanup();
    }
  });

  it('renders vm, gpu, eth0 with the fixed IPv4 and its source address filtered (a domain-mate cannot pose as a machine a policy names), profiles, Incus strings for config values, and the domain projects and bridges', () => {
    const t = testEnv();
    try {
      const infra = join(t.dir, 'infra.yml');
      writeFileSync(infra, [
        'project_name: render',
        'global: {base_subnet: "10.9", default_os_image: "images:debian/13"}',
        'domains:',
        '  work:',
        '    subnet_id: 5',
        '    ephemeral: true',
        '    profiles: {big: {config: {limits.cpu: 4}}}',
        '    machines:',
        '      desk: {type: vm, ip: "10.9.5.10", gpu: true, os_image: local-debian, profiles: [default, big], config: {security.nesting: true, limits.memory: 2GiB}}',
        '      bare: {}',
        '',
      ].join('\n'));
      synced(t, infra);
      const got = desired(t, String.raw`
domains = anklume_domains([load('/group_vars/work.yml')], 'default')
machines = anklume_machines([load('/host_vars/desk.yml'), load('/host_vars/bare.yml')], domains, {'type': 'gpu', 'gputype': 'physical'})
print(json.dumps({'domains': domains, 'machines': machines}))
`) as { domains: unknown[]; machines: unknown[] };
      assert.deepEqual(got.domains, [{
        name: 'work',
        project: 'work',
        ephemeral: 'true',
        network: {
          name: 'net-work',
          config: { 'ipv4.address': '10.9.5.254/24', 'ipv4.nat': 'true', 'ipv6.address': 'none', 'user.anklume.domain': 'work', 'user.anklume.ephemeral': 'true' },
        },
        profiles: [
          { name: 'big', config: { 'limits.cpu': '4' }, devices: {} },
          { name: 'default', config: {}, devices: { root: { type: 'disk', path: '/', pool: 'default' } } },
        ],
      }]);
      assert.deepEqual(got.machines, [
        {
          key: 'work/desk',
          name: 'desk',
          project: 'work',
          type: 'virtual-machine',
          image: 'local-debian',
          profiles: ['default', 'big'],
          config: { 'security.nesting': 'true', 'limits.memory': '2GiB', 'user.anklume.domain': 'work', 'user.anklume.ephemeral': 'true' },
          devices: { eth0: { type: 'nic', name: 'eth0', network: 'net-work', 'ipv4.address': '10.9.5.10', 'security.ipv4_filtering': 'true' }, gpu: { type: 'gpu', gputype: 'physical' } },
        },
        {
          key: 'work/bare',
          name: 'bare',
          project: 'work',
          type: 'container',
          image: 'images:debian/13',
          profiles: ['default'],
          config: { 'user.anklume.domain': 'work', 'user.anklume.ephemeral': 'true' },
          // No address in infra.yml: Incus gives the NIC one of the bridge's and filters by it.
          devices: { eth0: { type: 'nic', name: 'eth0', network: 'net-work', 'security.ipv4_filtering': 'true' } },
        },
      ]);
    } finally {
      t.cleanup();
    }
  });
});
