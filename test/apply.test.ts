/**
 * `make apply` where no Incus can help: its refusals (Incus missing, daemon down, no tree) run the
 * real ansible-playbook and the real incus client, and must stop before anything is made. And what
 * the roles ask Incus for (incus_preflight's filter, read by the real Python of Ansible) for the
 * cases the real-Incus test cannot start here: `type: vm`, a real `gpu` device, config values
 * that are numbers or booleans in infra.yml. The real thing is test/incus-apply-e2e.test.ts.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { testEnv, type TestEnv } from './helpers/env.ts';

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
  it('without Incus: one message naming the fix (install from bookworm-backports), exit non-zero', () => {
    const t = testEnv();
    try {
      synced(t, `${ROOT}/examples/infra.yml`);
      const r = make(['apply', `BASE_DIR=${t.baseDir}`], { ...t.env, PATH: pathWithoutIncus(t.dir) });
      assert.notEqual(r.code, 0);
      assert.match(r.out, /Incus is not installed \(no `incus` command\)\. Install Incus >= 6\.0: on Debian 12, enable bookworm-backports and run `apt-get install -t bookworm-backports incus`/);
      assert.doesNotMatch(r.out, /changed: /);
    } finally {
      t.cleanup();
    }
  });

  it('with the daemon down (the real client, pointed at a socket nobody serves): says to start it', { skip: hasIncus ? false : 'incus is not installed here' }, () => {
    const t = testEnv();
    try {
      synced(t, `${ROOT}/examples/infra.yml`);
      const r = make(['apply', `BASE_DIR=${t.baseDir}`], { ...t.env, INCUS_SOCKET: join(t.dir, 'no-daemon.socket') });
      assert.notEqual(r.code, 0);
      assert.match(r.out, /The Incus daemon is not running or not reachable: start it \(`systemctl start incus`/);
      assert.match(r.out, /doesn't appear to be started/);
      assert.doesNotMatch(r.out, /changed: /);
    } finally {
      t.cleanup();
    }
  });

  it('without a generated tree: says to run make sync first', { skip: hasIncus ? false : 'incus is not installed here (that refusal comes first)' }, () => {
    const t = testEnv();
    try {
      mkdirSync(t.baseDir, { recursive: true });
      const r = make(['apply', `BASE_DIR=${t.baseDir}`], t.env);
      assert.notEqual(r.code, 0);
      assert.match(r.out, /No generated tree in .* \(group_vars\/all\.yml is missing\): run `make sync` first\./);
    } finally {
      t.cleanup();
    }
  });
});

describe('what apply asks Incus for (incus_preflight filter, read from a synced tree)', () => {
  it('renders vm, gpu, eth0 with the fixed IPv4, profiles, Incus strings for config values, and the domain projects and bridges', () => {
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
      const script = String.raw`
import json, sys, yaml
sys.path.insert(0, sys.argv[1])
from anklume_desired import anklume_domains, anklume_machines
tree = sys.argv[2]
load = lambda p: yaml.safe_load(open(tree + p))
domains = anklume_domains([load('/group_vars/work.yml')], 'default')
machines = anklume_machines([load('/host_vars/desk.yml'), load('/host_vars/bare.yml')], domains, {'type': 'gpu', 'gputype': 'physical'})
print(json.dumps({'domains': domains, 'machines': machines}))
`;
      // Ansible's Python (Debian's), which has the ansible package the filter imports.
      const r = spawnSync('/usr/bin/python3', ['-c', script, join(ROOT, 'roles/incus_preflight/filter_plugins'), t.baseDir], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const got = JSON.parse(r.stdout) as { domains: unknown[]; machines: unknown[] };
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
          devices: { eth0: { type: 'nic', name: 'eth0', network: 'net-work', 'ipv4.address': '10.9.5.10' }, gpu: { type: 'gpu', gputype: 'physical' } },
        },
        {
          key: 'work/bare',
          name: 'bare',
          project: 'work',
          type: 'container',
          image: 'images:debian/13',
          profiles: ['default'],
          config: { 'user.anklume.domain': 'work', 'user.anklume.ephemeral': 'true' },
          devices: { eth0: { type: 'nic', name: 'eth0', network: 'net-work' } },
        },
      ]);
    } finally {
      t.cleanup();
    }
  });
});
