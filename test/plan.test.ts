/**
 * apply's plan: roles/incus_preflight/filter_plugins/anklume_plan.py, the one comparison of the
 * tree with Incus, run by Debian's Python (the one that runs Ansible) on live states made up here,
 * so every step, object, refusal and orphan is seen without Incus. The plan on a real host, and
 * that apply changes exactly what it says, is in test/incus-apply-e2e.test.ts. Also the -e
 * variables that apply and audit read for it (generator/cli/extraVars.ts).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { extraVars, installedRuleset } from '../generator/cli/extraVars.ts';
import { planLines, rulesetObjects } from '../generator/audit/incusPlan.ts';
import { testEnv } from './helpers/env.ts';

const PLUGINS = fileURLToPath(new URL('../roles/incus_preflight/filter_plugins', import.meta.url));

interface Step { op: string; kind: string; id: string; argv: string[]; changes: Record<string, [unknown, unknown]>; role: string; stdin?: string }
interface Plan { problems: string[]; steps: Step[]; objects: { op: string; kind: string; id: string; changes: Record<string, [unknown, unknown]> }[]; orphans: { kind: string; label: string; protected: boolean }[] }

const domain = (name: string, sid: number, profiles: Record<string, unknown>[] = [{ name: 'default', config: {}, devices: { root: { type: 'disk', path: '/', pool: 'default' } } }]) => ({
  name, project: name, ephemeral: 'false',
  network: { name: `net-${name}`, config: { 'ipv4.address': `10.9.${sid}.254/24`, 'ipv4.nat': 'true', 'ipv6.address': 'none', 'user.anklume.domain': name, 'user.anklume.ephemeral': 'false' } },
  profiles,
});
const machine = (project: string, name: string, extra: Record<string, unknown> = {}) => ({
  key: `${project}/${name}`, name, project, type: 'container', image: 'img', profiles: ['default'],
  config: { 'user.anklume.domain': project, 'user.anklume.ephemeral': 'false' },
  devices: { eth0: { type: 'nic', name: 'eth0', network: `net-${project}` } },
  ...extra,
});
const EMPTY = { pool: 'default', pools: [{ name: 'default' }], networks: [], projects: [], profiles: {}, instances: [], resources: { gpu: { cards: [] } }, aliases: [{ name: 'img' }], images: [], remotes: { images: {} }, routes: [] };

function plan(domains: unknown[], machines: unknown[], live: Record<string, unknown>, options: Record<string, unknown> = {}): Plan {
  const script = 'import json, sys\nsys.path.insert(0, sys.argv[1])\nfrom anklume_plan import anklume_plan\nd = json.load(sys.stdin)\nprint(json.dumps(anklume_plan(d["domains"], d["machines"], d["live"], d["options"])))';
  const r = spawnSync('/usr/bin/python3', ['-c', script, PLUGINS], { input: JSON.stringify({ domains, machines, live: { ...EMPTY, ...live }, options: { features: { 'features.images': 'false' }, ...options } }), encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Plan;
}

const ours = (name: string) => ({ name, config: { 'user.anklume.domain': name } });
const bridge = (name: string, sid: number, over: Record<string, string> = {}) => ({ name: `net-${name}`, managed: true, config: { ...domain(name, sid).network.config, ...over } });
const running = (project: string, name: string, over: Record<string, unknown> = {}) => ({
  name, project, type: 'container', status: 'Running', profiles: ['default'], architecture: 'x86_64', ephemeral: false, stateful: false, description: '',
  config: { 'user.anklume.domain': project, 'user.anklume.ephemeral': 'false', 'volatile.uuid': 'x' },
  devices: { eth0: { type: 'nic', name: 'eth0', network: `net-${project}` } },
  ...over,
});
const built = (extra: Record<string, unknown> = {}) => ({
  projects: [ours('pro')], networks: [bridge('pro', 2)], profiles: { pro: [{ name: 'default', config: {}, devices: { root: { type: 'disk', path: '/', pool: 'default' } }, description: '' }] },
  instances: [running('pro', 'dev')], ...extra,
});

describe('apply\'s plan (anklume_plan.py)', () => {
  it('on an empty host: the project, its default profile (updated: Incus makes it with the project), the bridge, the instance created then started, in that order', () => {
    const p = plan([domain('pro', 2)], [machine('pro', 'dev')], {});
    assert.deepEqual(p.problems, []);
    assert.deepEqual(p.steps.map((s) => `${s.role} ${s.op} ${s.id}`), [
      'projects create project:pro', 'projects update profile:pro/default', 'networks create bridge:net-pro', 'instances create instance:pro/dev', 'instances start instance:pro/dev',
    ]);
    assert.deepEqual(p.objects.map((o) => `${o.op} ${o.id}`), ['create project:pro', 'update profile:pro/default', 'create bridge:net-pro', 'create instance:pro/dev']);
    assert.deepEqual(p.steps[0].argv, ['incus', 'project', 'create', 'pro', '--config=features.images=false', '--config=user.anklume.domain=pro']);
    assert.deepEqual(JSON.parse(p.steps[3].stdin!), { config: machine('pro', 'dev').config, devices: machine('pro', 'dev').devices, profiles: ['default'] });
    assert.deepEqual(p.objects[3].changes.state, [null, 'Running'], 'the start is part of the new instance');
  });

  it('on a built host: nothing; each drift is one object with its keys old -> new, and one step that corrects it', () => {
    assert.deepEqual(plan([domain('pro', 2)], [machine('pro', 'dev')], built()).steps, []);
    const drift = plan([domain('pro', 2)], [machine('pro', 'dev', { config: { ...machine('pro', 'dev').config, 'limits.cpu': '1' } })], built({
      networks: [bridge('pro', 2, { 'ipv4.nat': 'false' })],
      instances: [running('pro', 'dev', { status: 'Stopped', devices: { ...running('pro', 'dev').devices, eth1: { type: 'nic', network: 'net-x' } } })],
    }));
    assert.deepEqual(drift.objects, [
      { op: 'update', kind: 'bridge', id: 'bridge:net-pro', changes: { 'config.ipv4.nat': ['false', 'true'] } },
      { op: 'update', kind: 'instance', id: 'instance:pro/dev', changes: { 'config.limits.cpu': [null, '1'], 'devices.eth1': [{ type: 'nic', network: 'net-x' }, null], state: ['Stopped', 'Running'] } },
    ]);
    assert.deepEqual(drift.steps.map((s) => s.argv.slice(0, 4).join(' ')), ['incus network set net-pro', 'incus query -X PUT', 'incus start dev --project']);
    const put = JSON.parse(drift.steps[1].argv.at(-1)!.slice('--data='.length)) as { config: Record<string, string>; devices: Record<string, unknown> };
    assert.equal(put.config['volatile.uuid'], 'x', "Incus's own keys are kept");
    assert.deepEqual(Object.keys(put.devices), ['eth0'], 'the devices are exactly the tree\'s');
  });

  it('orphans: reported; deleted only when asked and unprotected, instances before bridges', () => {
    const live = built({ projects: [ours('pro')], networks: [bridge('pro', 2), { ...bridge('old', 7), config: { ...bridge('old', 7).config, 'user.anklume.ephemeral': 'true' } }], instances: [running('pro', 'dev'), running('pro', 'stray'), { ...running('pro', 'tmp'), config: { 'user.anklume.ephemeral': 'true' } }] });
    const kept = plan([domain('pro', 2)], [machine('pro', 'dev')], live);
    assert.deepEqual(kept.orphans.map((o) => `${o.kind} ${o.label} ${o.protected}`), ['instance pro/stray true', 'instance pro/tmp false', 'bridge net-old false']);
    assert.deepEqual(kept.steps, []);
    const deleted = plan([domain('pro', 2)], [machine('pro', 'dev')], live, { delete_orphans: true });
    assert.deepEqual(deleted.steps.map((s) => s.argv.join(' ')), ['incus delete --force tmp --project pro', 'incus network delete net-old']);
  });

  it('refusals come before any step: a foreign bridge or project, a missing pool, image or remote, a GPU the host lacks, a routed subnet, another instance type', () => {
    const p = plan([domain('pro', 2), domain('lab', 4)], [
      machine('pro', 'dev', { image: 'missing' }),
      machine('pro', 'web', { image: 'nowhere:debian/13' }),
      machine('lab', 'box', { devices: { g: { type: 'gpu', pci: '0000:99:00.0' } } }),
      machine('lab', 'vm1', { type: 'virtual-machine' }),
    ], {
      pools: [],
      networks: [{ name: 'net-pro', managed: false, config: {} }],
      projects: [{ name: 'pro', config: {} }],
      routes: [{ dst: '10.9.4.0/24', dev: 'wg0' }, { dst: 'default', dev: 'eth0' }],
      instances: [{ ...running('lab', 'vm1'), type: 'container' }],
      resources: { gpu: { cards: [{ pci_address: '0000:01:00.0', vendor_id: '10de', product_id: '2204', drm: { id: 0 } }] } },
    });
    assert.equal(p.problems.length, 8, p.problems.join('\n'));
    for (const expected of [
      /^Incus has no storage pool 'default'/,
      /^Bridge 'net-pro' already exists and is not anklume's \(an interface Incus does not manage\)/,
      /^Incus project 'pro' already exists and is not anklume's/,
      /^Domain 'lab': its subnet 10\.9\.4\.254\/24 is already routed on this host \(10\.9\.4\.0\/24 via wg0\)/,
      /^Machine 'dev': no image 'missing' in Incus/,
      /^Machine 'web': image 'nowhere:debian\/13' names the remote 'nowhere'/,
      /^Machine 'box': device 'g' asks for a GPU \(pci=0000:99:00\.0\) that this host does not have \(incus info --resources lists 1 GPU\(s\)\)/,
      /^lab\/vm1 exists as a container but infra\.yml makes it a virtual-machine/,
    ]) assert.ok(p.problems.some((m) => expected.test(m)), `${expected}\n${p.problems.join('\n')}`);
    assert.deepEqual(p.steps, [], 'no step runs');
    assert.ok(p.objects.length > 0, 'the objects still say how far Incus is from the tree (the audit reports them)');
    const gpu = plan([domain('lab', 4)], [machine('lab', 'box', { devices: { g: { type: 'gpu', pci: '0000:01:00.0' } } })], { resources: { gpu: { cards: [{ pci_address: '0000:01:00.0' }] } } });
    assert.deepEqual(gpu.problems, [], 'a GPU the host has');
    const fromProfile = plan([domain('lab', 4, [{ name: 'default', config: {}, devices: { g: { type: 'gpu' } } }])], [machine('lab', 'box')], {});
    assert.match(fromProfile.problems[0] ?? '', /^Machine 'box': device 'g' asks for a GPU \(type gpu\) that this host does not have/, 'a gpu device from a profile counts');
    const mig = plan([domain('lab', 4)], [machine('lab', 'box', { devices: { g: { type: 'gpu', gputype: 'mig' } } })], { resources: { gpu: { cards: [{ pci_address: '0000:01:00.0' }] } } });
    assert.match(mig.problems[0] ?? '', /asks for a GPU \(gputype=mig\)/, 'gputype mig needs an NVIDIA card');

  });
});

describe('apply\'s plan on an Incus cluster (issue 19)', () => {
  const CLUSTER = { desk: '100.64.1.101', gpu: '100.64.1.102' };
  const member = (name: string, address: string, status = 'Online') => ({ server_name: name, url: `https://${address}:8443`, status, message: status === 'Online' ? 'Fully operational' : 'No heartbeat' });
  const clustered = (members = [member('desk', '100.64.1.101'), member('gpu', '100.64.1.102'), member('spare', '100.64.1.103')]) =>
    ({ server: { environment: { server_clustered: true } }, members });
  const routed = (name: string, sid: number) => ({ ...domain(name, sid), network: { ...domain(name, sid).network, config: { ...domain(name, sid).network.config, 'ipv4.nat': 'false' } } });

  it('bridges in Incus\'s two steps (pending on every member Incus lists, then created with the config), instances with --target; one object each', () => {
    const p = plan([routed('pro', 2)], [machine('pro', 'dev', { target: 'gpu' })], clustered(), { cluster: CLUSTER });
    assert.deepEqual(p.problems, []);
    assert.deepEqual(p.steps.filter((s) => s.role !== 'projects').map((s) => s.argv.filter((a) => !a.includes('=')).join(' ')), [
      'incus network create net-pro --type bridge --project default --target desk',
      'incus network create net-pro --type bridge --project default --target gpu',
      'incus network create net-pro --type bridge --project default --target spare',
      'incus network create net-pro --type bridge --project default',
      'incus create img dev --project pro --target gpu',
      'incus start dev --project pro',
    ]);
    assert.ok(p.steps.find((s) => s.argv.includes('ipv4.nat=false')), 'no NAT on a routed bridge');
    assert.deepEqual(p.objects.map((o) => `${o.op} ${o.id}`), ['create project:pro', 'update profile:pro/default', 'create bridge:net-pro', 'create instance:pro/dev']);
    assert.deepEqual(p.objects[3].changes.location, [null, 'gpu']);
  });

  it('built: nothing to do; a bridge left pending is finished on the members it lacks; an instance on another member is stopped, moved and started', () => {
    const net = { ...bridge('pro', 2, { 'ipv4.nat': 'false' }), status: 'Created', locations: ['desk', 'gpu', 'spare'] };
    const done = built({ ...clustered(), networks: [net], instances: [running('pro', 'dev', { location: 'gpu' })] });
    assert.deepEqual(plan([routed('pro', 2)], [machine('pro', 'dev', { target: 'gpu' })], done, { cluster: CLUSTER }).steps, []);
    const pending = plan([routed('pro', 2)], [machine('pro', 'dev', { target: 'gpu' })], { ...done, networks: [{ name: 'net-pro', managed: true, config: {}, status: 'Pending', locations: ['desk'] }] }, { cluster: CLUSTER });
    assert.deepEqual(pending.steps.map((s) => s.argv.slice(3).filter((a) => !a.includes('=')).join(' ')), ['net-pro --type bridge --project default --target gpu', 'net-pro --type bridge --project default --target spare', 'net-pro --type bridge --project default']);
    const moved = plan([routed('pro', 2)], [machine('pro', 'dev', { target: 'desk' })], done, { cluster: CLUSTER });
    assert.deepEqual(moved.steps.map((s) => s.argv.join(' ')), ['incus stop dev --project pro', 'incus move dev --project pro --target desk', 'incus start dev --project pro']);
    assert.deepEqual(moved.objects, [{ op: 'update', kind: 'instance', id: 'instance:pro/dev', changes: { location: ['gpu', 'desk'] } }]);
  });

  it('refusals before anything is made: Incus not clustered, a member it does not list, at another address, or not online; a cluster without global.cluster', () => {
    const alone = plan([routed('pro', 2)], [machine('pro', 'dev', { target: 'gpu' })], {}, { cluster: CLUSTER });
    assert.deepEqual(alone.problems, ["infra.yml sets global.cluster (members desk, gpu) but this Incus is not clustered (incus query /1.0: environment.server_clustered is false): form the cluster first (incus admin init on each member; docs/multi-host.md), or remove global.cluster from infra.yml and sync. Nothing was changed."]);
    assert.deepEqual(alone.steps, []);
    const wrong = plan([routed('pro', 2)], [machine('pro', 'dev', { target: 'gpu' })], clustered([member('desk', '100.64.1.109'), member('spare', '100.64.1.103', 'Offline')]), { cluster: { ...CLUSTER, spare: '100.64.1.103' } });
    assert.deepEqual(wrong.problems, [
      "Member 'desk': infra.yml gives its address as 100.64.1.101, but Incus lists it at https://100.64.1.109:8443 (incus cluster list): the routes between members go to infra.yml's address. Fix global.cluster.members.desk.address and sync. Nothing was changed.",
      "Member 'gpu' of global.cluster is not in this Incus cluster (incus cluster list: desk, spare): add it (incus cluster add gpu, then incus admin init on it), or fix its name in infra.yml. Nothing was changed.",
      "Member 'spare' is OFFLINE in incus cluster list (No heartbeat): a bridge is defined on every member at once, so nothing can be made while one is down. Bring it back, then apply again. Nothing was changed.",
    ]);
    assert.deepEqual(wrong.steps, []);
    const single = plan([domain('pro', 2)], [machine('pro', 'dev')], clustered());
    assert.match(single.problems[0] ?? '', /^This Incus is a cluster \(members desk, gpu, spare\) but infra\.yml has no global\.cluster/);
    assert.deepEqual(single.steps, []);
  });
});

describe('plan: its text, and the variables apply and audit read', () => {
  it('one line per object: create lists the new values, update old -> new', () => {
    assert.deepEqual(planLines([
      { op: 'create', kind: 'bridge', id: 'bridge:net-pro', changes: { 'config.ipv4.nat': [null, 'true'] } },
      { op: 'update', kind: 'instance', id: 'instance:pro/dev', changes: { state: ['Stopped', 'Running'], 'devices.eth1': [{ type: 'nic' }, null] } },
    ]), ['create bridge:net-pro (config.ipv4.nat: "true")', 'update instance:pro/dev (state: "Stopped" → "Running"; devices.eth1: {"type":"nic"} → (none))']);
    assert.deepEqual(rulesetObjects({ liveTable: undefined, treeTable: 't', installedText: 'x', treeText: 'x', installedPath: '/b' }).map((o) => `${o.op} ${o.id}`), ['create ruleset:live']);
    assert.deepEqual(rulesetObjects({ liveTable: 'u', treeTable: 't', installedText: undefined, treeText: 'x', installedPath: '/b' }).map((o) => `${o.op} ${o.id}`), ['update ruleset:live', 'create ruleset:boot']);
  });

  it('-e JSON, @file (JSON or YAML), key=value, merged in order; the boot copy where the role installs it', async () => {
    const t = testEnv();
    try {
      const file = join(t.dir, 'vars.yml');
      writeFileSync(file, 'incus_nftables_install_dir: /srv/nft\nincus_preflight_pool: ssd\n');
      const vars = await extraVars(['-e', `@${file}`, '--extra-vars', '{"incus_preflight_pool": "fast", "x": [1]}', '-e', 'a=1 b=two', '--tags', 'incus']);
      assert.deepEqual(vars, { incus_nftables_install_dir: '/srv/nft', incus_preflight_pool: 'fast', x: [1], a: '1', b: 'two' });
      assert.equal(installedRuleset(vars, '/etc/nftables.d/anklume.nft'), '/srv/nft/anklume.nft');
      assert.equal(installedRuleset({}, '/etc/nftables.d/anklume.nft'), '/etc/nftables.d/anklume.nft');
      await assert.rejects(extraVars(['-e', '@/nonexistent/vars.json']), /-e @\/nonexistent\/vars\.json: cannot read the file \(ENOENT\)/);
      await assert.rejects(extraVars(['-e', 'novalue']), /expected key=value, JSON or @file/);
    } finally {
      t.cleanup();
    }
  });
});
