/**
 * `anklume-gen apply` on a REAL Incus cluster (issue 19): three incusd members built by
 * `.ci/incus-cluster up --image --ssh`, each in its own network and mount namespace with an sshd
 * on its address (Ansible's way to the members, as to real ones). The CLI runs in member m1's
 * network namespace (the machine that runs anklume-gen is a member, as at home) with m1's Incus
 * socket. What is proven:
 *   - the preflight refuses before anything is made (a member Incus does not list, another
 *     address, a one-host tree on a cluster, a run that would load the ruleset without the
 *     inventory of the members, a member link that is missing or another member's link name on a
 *     member, members Ansible cannot reach);
 *   - the apply makes each bridge on every member (Incus's two steps) without NAT, the ruleset,
 *     routes and proxy ARP on every member (over SSH), and each instance on its member
 *     (--target); a second apply changes nothing;
 *   - real TCP between real containers on different members: with the ruleset apply loaded,
 *     domain isolation and the exclusive AI access hold across members; with the tables removed
 *     every pair connects (the routes work); `apply-nftables` (and its --dry-run) puts them back
 *     on every member;
 *   - a machine whose member changes is stopped, moved and started, every member's routes follow,
 *     and then nothing is left to do;
 *   - `apply --check` says all of it beforehand: Incus's objects, and each member's table and
 *     routes (the members' play under --check), and nothing once applied;
 *   - `ai-status` and `audit` read every member (over SSH, read-only: every member's ruleset,
 *     routes and boot copy are the same after them): clean once applied; a holder set flushed on
 *     one member and a route deleted on another are named with their member, exit 1; a member
 *     whose sshd is killed is NOT READ / NOT CHECKED, exit 1, the others still checked.
 * The members share the machine's filesystem: the ruleset's boot copy goes to a folder per member
 * under the test's own, and no boot configuration is touched.
 *
 * Needs root, Incus >= 6.0, the test image cached by .ci/incus-setup, and sshd. Without them, or
 * when a cluster of .ci/incus-cluster is already up (someone else's), the suite is skipped with
 * the reason, except in CI (CI=true), where it fails. The cluster it built is removed at the end,
 * failures included (`.ci/incus-cluster down`), and only that one; the machine's own Incus daemon
 * is never asked anything.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { killSshd } from './helpers/cluster.ts';
import { testEnv, type TestEnv } from './helpers/env.ts';
import { CONNECT_FROM } from './helpers/probes.ts';

const ROOT = process.cwd();
const CLUSTER_SCRIPT = join(ROOT, '.ci/incus-cluster');
const AKC_ROOT = '/tmp/anklume-cluster';
const M1_DIR = `${AKC_ROOT}/m1`;
const CACHE = process.env.ANKLUME_TEST_CACHE ?? '/var/cache/anklume-test';
const IMAGE = process.env.ANKLUME_TEST_IMAGE ?? 'anklume-test-debian12';
const FIXTURES = join(ROOT, 'test/fixtures/incus');
const PORT = 80;

const MEMBERS: Record<string, string> = { m1: '100.64.1.101', m2: '100.64.1.102', m3: '100.64.1.103' };
/** Machines spread over the three members; pro on m1 and m2, ai-tools on m2, perso on m3. */
const MACHINES: Record<string, { project: string; ip: string; member: string }> = {
  'pro-dev': { project: 'pro', ip: '10.120.2.10', member: 'm1' },
  'pro-build': { project: 'pro', ip: '10.120.2.11', member: 'm2' },
  'gpu-server': { project: 'ai-tools', ip: '10.120.10.10', member: 'm2' },
  'perso-desktop': { project: 'perso', ip: '10.120.1.10', member: 'm3' },
};
const DOMAINS = { 'ai-tools': 10, pro: 2, perso: 1 };

/** The infra: `members` as infra.yml lists them (null: no global.cluster), `placed` each machine's member. */
function infraText(members: Record<string, string> | null, placed: Record<string, string> = {}): string {
  const cluster = members ? `  cluster:\n    member_link: eth0\n    members:\n${Object.entries(members).map(([n, a]) => `      ${n}: { address: ${a} }`).join('\n')}\n` : '';
  const domains = Object.entries(DOMAINS).map(([d, sid]) => {
    const machines = Object.entries(MACHINES).filter(([, m]) => m.project === d)
      .map(([name, m]) => `      ${name}: { ip: "${m.ip}"${members ? `, member: ${placed[name] ?? m.member}` : ''} }`);
    return `  ${d}:\n    subnet_id: ${sid}\n    machines:\n${machines.join('\n')}`;
  });
  return `project_name: cluster-e2e\nglobal:\n  base_subnet: "10.120"\n  default_os_image: ${IMAGE}\n  ai_access_policy: exclusive\n  ai_access_default: pro\n${cluster}domains:\n${domains.join('\n')}\n`;
}

/** What the promise allows: the same domain, or ai-tools with the holder (pro), both ways. */
const allowed = (a: string, b: string) => {
  const [x, y] = [MACHINES[a].project, MACHINES[b].project];
  return x === y || (x === 'ai-tools' && y === 'pro') || (x === 'pro' && y === 'ai-tools');
};

async function skipReason(): Promise<string | false> {
  if (process.getuid?.() !== 0) return 'needs root';
  if ((await execa('incus', ['--version'], { reject: false }).catch(() => ({ exitCode: 1 }))).exitCode !== 0) return 'incus is not installed (.ci/incus-setup)';
  if (!existsSync(join(CACHE, 'rootfs.tar.gz'))) return `no cached test image in ${CACHE} (.ci/incus-setup)`;
  if (!existsSync('/usr/sbin/sshd')) return 'no sshd (apt-get install openssh-server; .ci/incus-setup does)';
  if (existsSync(AKC_ROOT) || existsSync('/run/netns/akc-m1')) return `a cluster of .ci/incus-cluster is already up (${AKC_ROOT}): not ours to remove`;
  return false;
}
const reason = await skipReason();
const inCi = process.env.CI === 'true';

describe('apply on a real Incus cluster of three members (issue 19)', { skip: inCi ? false : reason }, () => {
  let t: TestEnv;
  let env: NodeJS.ProcessEnv;
  /** Whether this run built the cluster: only then does it remove it (another's stays up). */
  let built = false;
  const tree = (name = 'tree') => join(t.dir, name);

  /** The incus client against m1 (the cluster forwards to the member that has the object). */
  const incus = async (args: string[]) => {
    const r = await execa('incus', args, { env: { ...process.env, INCUS_DIR: M1_DIR }, reject: false, stdin: 'ignore', timeout: 120_000 });
    return { code: r.exitCode ?? -1, out: String(r.stdout), err: String(r.stderr) };
  };
  const query = async <T,>(path: string): Promise<T> => {
    const r = await incus(['query', path]);
    assert.equal(r.code, 0, r.err);
    return JSON.parse(r.out) as T;
  };
  /** A command in member `m`'s network namespace. */
  const inMember = async (m: string, argv: string[], input?: string) => {
    const r = await execa('ip', ['netns', 'exec', `akc-${m}`, ...argv], { reject: false, ...(input === undefined ? { stdin: 'ignore' as const } : { input }) });
    assert.equal(r.exitCode, 0, `${m}: ${argv.join(' ')}: ${String(r.stderr)}`);
    return String(r.stdout);
  };
  /** anklume-gen as a real process in m1's network namespace, talking to m1's Incus. */
  const cli = async (args: string[]) => {
    const r = await execa('nsenter', [`--net=/run/netns/akc-m1`, '--', process.execPath, '--import', 'tsx', join(ROOT, 'generator/cli/bin.ts'), ...args],
      { env, reject: false, stdin: 'ignore', cwd: ROOT, timeout: 300_000 });
    return { code: r.exitCode ?? -1, out: `${String(r.stdout)}\n${String(r.stderr)}` };
  };
  const sync = async (text: string, name: string) => {
    const file = join(t.dir, `${name}.yml`);
    writeFileSync(file, text);
    const r = await cli(['sync', file, '--base-dir', tree(name), '-q']);
    assert.equal(r.code, 0, r.out);
    return file;
  };
  /** The members share one filesystem: each keeps its boot copy of the ruleset in a folder of its own. */
  /** Each member's own files in a folder of its own (the members share this machine's filesystem). */
  const perMember = () => JSON.stringify({ incus_nftables_install_dir: `${join(t.dir, 'nft')}/{{ inventory_hostname }}`, incus_nftables_boot_include: false, cluster_routes_boot_root: `${join(t.dir, 'boot')}/{{ inventory_hostname }}` });
  /** What member m reads at boot (role cluster_routes), under its folder. */
  const bootFile = (m: string, path: string) => join(t.dir, 'boot', m, path);
  const apply = (name = 'tree') => cli(['apply', '--base-dir', tree(name), '--', '-e', perMember()]);
  /** apply --check: Incus's plan, and the members' play under --check. */
  const plan = () => cli(['apply', '--check', '--base-dir', tree(), '--', '-e', perMember()]);
  /** Each member's routes of anklume (proto 250), as `dst via`. */
  const routes = async (m: string) => (JSON.parse(await inMember(m, ['ip', '-j', '-4', 'route', 'show', 'proto', '250'])) as { dst: string; gateway: string }[]).map((r) => `${r.dst} via ${r.gateway}`).sort();
  /** What each member should route: every machine of another member, through it. */
  const expectedRoutes = (m: string, placed: Record<string, string> = {}) => Object.entries(MACHINES).filter(([n, x]) => (placed[n] ?? x.member) !== m).map(([n, x]) => `${x.ip} via ${MEMBERS[placed[n] ?? x.member]}`).sort();
  /** What Incus has of ours: projects and bridges besides its own. */
  const ours = async () => ({
    projects: (await query<{ name: string }[]>('/1.0/projects?recursion=1')).map((p) => p.name).filter((n) => n !== 'default').sort(),
    bridges: (await query<{ name: string; managed: boolean }[]>('/1.0/networks?recursion=1')).filter((n) => n.managed).map((n) => n.name).sort(),
  });
  const timed = async <T,>(label: string, work: () => Promise<T>): Promise<T> => {
    const start = performance.now();
    try {
      return await work();
    } finally {
      console.log(`# ${label}: ${((performance.now() - start) / 1000).toFixed(1)} s`);
    }
  };

  /**
   * Ansible reaches the members as root with a key of the cluster's (their sshd knows no other),
   * and with nothing of this machine's: no known_hosts (each cluster has new host keys), no
   * identity but the key, its connections kept under the test's folder, one folder per key.
   */
  const sshEnv = (key: string): NodeJS.ProcessEnv => ({
    ANSIBLE_PRIVATE_KEY_FILE: `${AKC_ROOT}/ssh/${key}`,
    ANSIBLE_REMOTE_USER: 'root',
    ANSIBLE_HOST_KEY_CHECKING: 'False',
    ANSIBLE_SSH_ARGS: '-o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes',
    ANSIBLE_SSH_CONTROL_PATH_DIR: join(t.dir, `ssh-${key}`),
  });

  before(async () => {
    assert.equal(reason, false, `in CI this suite must run: ${String(reason)}`);
    t = testEnv('anklume-cluster-apply-');
    env = { ...t.env, INCUS_DIR: M1_DIR, ...sshEnv('id_ed25519') };
    const up = await timed('cluster up (3 members, image imported, sshd)', () => execa(CLUSTER_SCRIPT, ['up', '--image', '--ssh'], { reject: false, stdin: 'ignore' }));
    // A failed `up` removes what it made itself.
    assert.equal(up.exitCode, 0, String(up.stderr));
    built = true;
    await sync(infraText(MEMBERS), 'tree');
  });
  after(async () => {
    t?.cleanup();
    if (!built) return;
    // Failures included: instances, daemons, namespaces, cgroups, the directory.
    const down = await timed('cluster down', () => execa(CLUSTER_SCRIPT, ['down'], { reject: false, stdin: 'ignore' }));
    assert.equal(down.exitCode, 0, String(down.stderr));
  });

  it('refused before anything is made, on every member too: a run by hand that would load the ruleset without the members, a member Incus does not list or lists at another address, a one-host tree on a cluster, a missing member link or another member\'s link name, members Ansible cannot reach', async () => {
    const byHand = await execa('nsenter', ['--net=/run/netns/akc-m1', '--', 'ansible-playbook', join(ROOT, 'site.yml'), '-e', perMember()],
      { env: { ...env, ANKLUME_BASE_DIR: tree() }, reject: false, stdin: 'ignore' });
    assert.notEqual(byHand.exitCode, 0);
    assert.match(String(byHand.stdout), /The tree is an Incus cluster's \(global\.cluster\) and this run loads its ruleset, but no member of\s+inventory\/_cluster\.yml is in the inventory/);
    assert.ok(!existsSync(join(t.dir, 'nft')), 'no ruleset installed');

    await sync(infraText({ m1: '100.64.1.109', m2: MEMBERS.m2, m4: '100.64.1.104' }, { 'perso-desktop': 'm4' }), 'wrong');
    const wrong = await apply('wrong');
    assert.equal(wrong.code, 1, wrong.out);
    assert.match(wrong.out, /Member 'm1': infra\.yml gives its address as 100\.64\.1\.109, but Incus lists it at https:\/\/100\.64\.1\.101:8443/);
    assert.match(wrong.out, /Member 'm4' of global\.cluster is not in this Incus cluster \(incus cluster list: m1, m2, m3\)/);
    await sync(infraText(null), 'single');
    const single = await apply('single');
    assert.equal(single.code, 1, single.out);
    assert.match(single.out, /This Incus is a cluster \(members m1, m2, m3\) but infra\.yml has no global\.cluster/);
    // A member link that is not there; another member's link name on a member (a veth eth1 on m1,
    // while infra.yml says m2's link is eth1; this kernel has no dummy interfaces).
    await sync(infraText(MEMBERS).replace('m2: { address: 100.64.1.102 }', 'm2: { address: 100.64.1.102, member_link: eth1 }'), 'links');
    await inMember('m1', ['ip', 'link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'eth1p']);
    try {
      const links = await apply('links');
      assert.equal(links.code, 1, links.out);
      assert.match(links.out, /Member 'm1': it has an interface named eth1, another member's link: the ruleset would take what crosses it for another member's/);
      assert.match(links.out, /Member 'm2': its member link eth1 is not an interface of it \(ip link\)/);
    } finally {
      await inMember('m1', ['ip', 'link', 'del', 'eth1']);
    }
    // The members as infra.yml and Incus say, but Ansible cannot log in to them (another key).
    const locked = await execa('nsenter', ['--net=/run/netns/akc-m1', '--', process.execPath, '--import', 'tsx', join(ROOT, 'generator/cli/bin.ts'), 'apply', '--base-dir', tree(), '--', '-e', perMember()],
      { env: { ...env, ...sshEnv('no-such-key') }, reject: false, stdin: 'ignore', cwd: ROOT });
    assert.equal(locked.exitCode, 1, String(locked.stderr));
    assert.match(String(locked.stderr), /failed: \[localhost -> m1\] \(item=m1\) => .*Permission denied \(publickey\)/);
    assert.deepEqual(await ours(), { projects: [], bridges: [] }, 'nothing was made');
    for (const m of Object.keys(MEMBERS)) assert.deepEqual(await routes(m), [], `${m}: no route`);
    assert.notEqual((await execa('ip', ['netns', 'exec', 'akc-m2', 'nft', 'list', 'table', 'inet', 'anklume'], { reject: false })).exitCode, 0, 'no table on m2, whose sshd the refused trees could reach');
  });

  it('apply: each bridge on every member without NAT, the ruleset, routes and proxy ARP on every member, each instance running on its member; a second apply changes nothing', async () => {
    // One member whose ruleset cannot be installed: the run ends there, and no instance is made.
    const m3Fails = JSON.stringify({ ...JSON.parse(perMember()) as object, incus_nftables_install_dir: `{{ '/proc/anklume-cannot' if inventory_hostname == 'm3' else '${join(t.dir, 'nft')}/' ~ inventory_hostname }}` });
    const failed = await timed('apply with m3 failing', () => cli(['apply', '--base-dir', tree(), '--', '-e', m3Fails]));
    assert.equal(failed.code, 1, failed.out);
    assert.match(failed.out, /fatal: \[m3\]/);
    assert.deepEqual(await query<unknown[]>('/1.0/instances?recursion=1&all-projects=true'), [], 'no instance made while m3 does not judge its bridges');
    const first = await timed('apply (3 projects, 3 bridges, ruleset and routes on 3 members, 4 containers)', () => apply());
    assert.equal(first.code, 0, first.out);
    assert.match(first.out, /applied \(\d+ object\(s\) changed\)/);
    const networks = await query<{ name: string; status: string; locations: string[]; config: Record<string, string> }[]>('/1.0/networks?recursion=1');
    for (const [d, sid] of Object.entries(DOMAINS)) {
      const n = networks.find((x) => x.name === `net-${d}`);
      assert.ok(n, `net-${d}`);
      assert.equal(n.status, 'Created');
      assert.deepEqual([...n.locations].sort(), Object.keys(MEMBERS));
      assert.equal(n.config['ipv4.address'], `10.120.${sid}.254/24`);
      assert.equal(n.config['ipv4.nat'], 'false', 'routed between members: no masquerade');
    }
    const instances = await query<{ name: string; project: string; location: string; status: string }[]>('/1.0/instances?recursion=1&all-projects=true');
    assert.deepEqual(instances.map((i) => `${i.project}/${i.name}@${i.location} ${i.status}`).sort(),
      Object.entries(MACHINES).map(([n, m]) => `${m.project}/${n}@${m.member} Running`).sort());
    for (const m of Object.keys(MEMBERS)) {
      assert.match(await inMember(m, ['nft', 'list', 'set', 'inet', 'anklume', 'member_links']), /elements = \{ "eth0" \}/, `${m}: the cluster's table is loaded`);
      assert.deepEqual(await routes(m), expectedRoutes(m), `${m}: a route to each machine of the other members`);
      const proxyArp = await inMember(m, ['sysctl', '-n', 'net.ipv4.ip_forward', ...Object.keys(DOMAINS).map((d) => `net.ipv4.conf.net-${d}.proxy_arp`)]);
      assert.deepEqual(proxyArp.trim().split('\n'), ['1', '1', '1', '1'], `${m}: forwarding and proxy ARP`);
      assert.ok(existsSync(join(t.dir, 'nft', m, 'anklume.nft')), `${m}: its boot copy`);
      // What it reads at boot: its routes, its sysctls, and the unit that loads the routes, enabled.
      assert.deepEqual(readFileSync(bootFile(m, 'etc/anklume/cluster-routes.batch'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#')).sort(),
        expectedRoutes(m).map((r) => `route replace ${r} dev eth0 proto 250`), `${m}: the routes for its next boot`);
      assert.deepEqual(readFileSync(bootFile(m, 'etc/sysctl.d/60-anklume-cluster.conf'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#')).sort(),
        ['net.ipv4.ip_forward = 1', ...Object.keys(DOMAINS).map((d) => `net.ipv4.conf.net-${d}.proxy_arp = 1`)].sort(), `${m}: the sysctls for its next boot`);
      assert.equal(readlinkSync(bootFile(m, 'etc/systemd/system/multi-user.target.wants/anklume-cluster-routes.service')), '/etc/systemd/system/anklume-cluster-routes.service');
    }
    assert.match(first.out, /applied \((\d+) object\(s\) changed\)/);
    const again = await timed('second apply', () => apply());
    assert.equal(again.code, 0, again.out);
    assert.match(again.out, /already applied, nothing changed/);
    const nothing = await timed('apply --check', plan);
    assert.equal(nothing.code, 0, nothing.out);
    assert.match(nothing.out, /nothing to do: Incus and the ruleset and routes of every member are what the tree describes/);
  });

  it('real TCP across members: with the ruleset apply loaded on every member, isolation and the AI access hold; with the tables removed every pair connects (routes, proxy ARP); apply-nftables loads them again on every member; after a reboot of m2, what it reads at boot (run as systemd and udev run it) puts its routes and sysctls back', async () => {
    const exec = (name: string, argv: string[]) => incus(['exec', name, '--project', MACHINES[name].project, '--', ...argv]);
    await timed('listeners', async () => {
      await Promise.all(Object.keys(MACHINES).map(async (name) => {
        for (const [file, dest] of [['echo.py', '/usr/local/bin/anklume-echo'], ['probe.py', '/usr/local/bin/anklume-probe']]) {
          const push = await incus(['file', 'push', join(FIXTURES, file), `${name}${dest}`, '--project', MACHINES[name].project, '--create-dirs']);
          assert.equal(push.code, 0, push.err);
        }
        await exec(name, ['systemctl', 'is-system-running', '--wait']);
        const unit = await exec(name, ['systemd-run', '--unit=listener', 'python3', '/usr/local/bin/anklume-echo', String(PORT)]);
        assert.equal(unit.code, 0, unit.err);
      }));
    });
    const pairs = Object.keys(MACHINES).flatMap((a) => Object.keys(MACHINES).filter((b) => b !== a).map((b) => [a, b] as const));
    const probeAll = async () => {
      const results = new Map<string, string>();
      await Promise.all(Object.keys(MACHINES).map(async (from) => {
        const targets = pairs.filter(([a]) => a === from).map(([, b]) => b);
        const r = await exec(from, ['python3', '/usr/local/bin/anklume-probe', '1500', ...targets.map((b) => `${MACHINES[b].ip}:${PORT}`)]);
        assert.equal(r.code, 0, r.err);
        (JSON.parse(r.out) as string[]).forEach((v, i) => results.set(`${from} -> ${targets[i]}`, v));
      }));
      return results;
    };
    const judged = await timed('probes with the ruleset apply loaded on every member', probeAll);
    const wrong = pairs.filter(([a, b]) => (judged.get(`${a} -> ${b}`) === 'open') !== allowed(a, b)).map(([a, b]) => `${a} -> ${b}: ${judged.get(`${a} -> ${b}`)}, allowed ${allowed(a, b)}`);
    assert.deepEqual(wrong, []);
    assert.ok(pairs.some(([a, b]) => !allowed(a, b) && MACHINES[a].member !== MACHINES[b].member), 'denied pairs across members were tried');
    // Without the table, the same routes let every pair connect: the drops were the ruleset's.
    for (const m of Object.keys(MEMBERS)) await inMember(m, ['nft', 'delete', 'table', 'inet', 'anklume']);
    const open = await timed('probes with the tables removed', probeAll);
    assert.deepEqual([...open].filter(([, v]) => v !== 'open'), [], 'the routes and proxy ARP of apply join the members');
    const planned = await plan();
    assert.equal(planned.code, 1, planned.out);
    assert.deepEqual(planned.out.split('\n').filter((l) => /^(create|update|delete) /.test(l)), ['update ruleset:live@m1', 'update ruleset:live@m2', 'update ruleset:live@m3'], 'apply --check: each member\'s table, nothing else');
    // apply-nftables puts the tables back on every member, and says so first under --dry-run.
    const nftables = (...extra: string[]) => cli(['apply-nftables', '--base-dir', tree(), ...extra, '--', '-e', perMember()]);
    const drift = await nftables('--dry-run');
    assert.equal(drift.code, 0, drift.out);
    assert.match(drift.out, /the live table would change \(3 change\(s\)\); nothing was applied/, 'one table to load on each member');
    for (const m of Object.keys(MEMBERS)) assert.notEqual((await execa('ip', ['netns', 'exec', `akc-${m}`, 'nft', 'list', 'table', 'inet', 'anklume'], { reject: false })).exitCode, 0, `${m}: --dry-run loaded nothing`);
    const back = await timed('apply-nftables on 3 members', () => nftables());
    assert.equal(back.code, 0, back.out);
    assert.match(back.out, /applied \(3 change\(s\)\)/, 'the live table of each member, loaded again');
    assert.match((await nftables()).out, /already applied, nothing changed/);
    assert.deepEqual([...(await probeAll())].filter(([pair, v]) => (v === 'open') !== allowed(...(pair.split(' -> ') as [string, string]))), [], 'the promise again');

    // m2 reboots (pro-build and ai-tools run there), as far as the network goes: its routes and
    // forwarding are gone, and Incus makes its bridges again, proxy ARP off (set off here). What it
    // reads at boot puts them back. No systemd here: what systemd and udev would run is run by
    // hand, each as they run it: systemd-sysctl at boot (the bridges are not there yet: the
    // forwarding), udev's line for each bridge as Incus creates it, the unit's ExecStart.
    const bridges = Object.keys(DOMAINS).map((d) => `net-${d}`);
    await inMember('m2', ['ip', 'route', 'flush', 'proto', '250']);
    await inMember('m2', ['sysctl', '-qw', 'net.ipv4.ip_forward=0', ...bridges.map((b) => `net.ipv4.conf.${b}.proxy_arp=0`)]);
    const cut = await timed('probes with m2 rebooted', probeAll);
    assert.ok(pairs.some(([a, b]) => allowed(a, b) && MACHINES[a].member !== MACHINES[b].member && [a, b].some((x) => MACHINES[x].member === 'm2') && cut.get(`${a} -> ${b}`) !== 'open'), 'the reboot cut m2\'s machines off from the other members');
    const sysctls = bootFile('m2', 'etc/sysctl.d/60-anklume-cluster.conf');
    await inMember('m2', ['/lib/systemd/systemd-sysctl', '--prefix=/net/ipv4/ip_forward', sysctls]);
    for (const b of bridges) await inMember('m2', ['/lib/systemd/systemd-sysctl', `--prefix=/net/ipv4/conf/${b}`, sysctls]);
    const execStart = /^ExecStart=(.*)$/m.exec(readFileSync(bootFile('m2', 'etc/systemd/system/anklume-cluster-routes.service'), 'utf8'))?.[1].split(' ') ?? [];
    assert.deepEqual(execStart, ['/sbin/ip', '-force', '-batch', '/etc/anklume/cluster-routes.batch']);
    await inMember('m2', [...execStart.slice(0, -1), bootFile('m2', execStart.at(-1)!)]);
    assert.deepEqual(await routes('m2'), expectedRoutes('m2'), 'm2: its routes, from its boot files');
    assert.deepEqual((await inMember('m2', ['sysctl', '-n', 'net.ipv4.ip_forward', ...bridges.map((b) => `net.ipv4.conf.${b}.proxy_arp`)])).trim().split('\n'), bridges.map(() => '1').concat('1'));
    assert.deepEqual([...(await probeAll())].filter(([pair, v]) => (v === 'open') !== allowed(...(pair.split(' -> ') as [string, string]))), [], 'the promise after the reboot, without apply');
    const rebooted = await plan();
    assert.equal(rebooted.code, 0, rebooted.out);
  });

  it("an instance cannot send from another address than its own (security.ipv4_filtering on every NIC, what the other members judge by); apply puts the filter back when it is gone", async () => {
    const exec = (argv: string[]) => incus(['exec', 'pro-dev', '--project', 'pro', '--', ...argv]);
    // A TCP connection to the bridge's own address on pro-dev's member (dnsmasq's DNS), from a source address.
    const connect = async (source: string) => (await exec(['python3', '-c', CONNECT_FROM, source, '10.120.2.254', '53'])).out.trim();
    const added = await exec(['ip', 'addr', 'add', '10.120.2.99/24', 'dev', 'eth0']);
    assert.equal(added.code, 0, added.err);
    try {
      assert.deepEqual([await connect(MACHINES['pro-dev'].ip), await connect('10.120.2.99')], ['open', 'timeout'], 'its own address passes, another one of its subnet does not');
      // The drop is Incus's filter: without it the same connection opens, and apply --check says so.
      const unset = await incus(['config', 'device', 'unset', 'pro-dev', 'eth0', 'security.ipv4_filtering', '--project', 'pro']);
      assert.equal(unset.code, 0, unset.err);
      assert.equal(await connect('10.120.2.99'), 'open');
      const planned = await plan();
      assert.equal(planned.code, 1, planned.out);
      assert.deepEqual(planned.out.split('\n').filter((l) => /^(create|update|delete) /.test(l)).map((l) => l.replace(/ \(.*$/, '')), ['update instance:pro/pro-dev']);
      const applied = await apply();
      assert.equal(applied.code, 0, applied.out);
      assert.equal(await connect('10.120.2.99'), 'timeout', 'apply put the filter back');
    } finally {
      await exec(['ip', 'addr', 'del', '10.120.2.99/24', 'dev', 'eth0']);
    }
  });

  it('a machine placed on another member is stopped, moved and started; then nothing is left to do', async () => {
    await sync(infraText(MEMBERS, { 'perso-desktop': 'm1' }), 'tree');
    const planned = await plan();
    assert.equal(planned.code, 1, planned.out);
    assert.deepEqual(planned.out.split('\n').filter((l) => /^(create|update|delete) /.test(l)),
      ['update routes:m1', 'update routes:m2', 'update routes:m3', 'update instance:perso/perso-desktop (location: "m3" → "m1")'], 'apply --check: the move, and the routes of every member');
    const moved = await timed('apply with one machine moved', () => apply());
    assert.equal(moved.code, 0, moved.out);
    assert.match(moved.out, /applied \(4 object\(s\) changed\)/, 'the instance, and the routes of the three members');
    const perso = await query<{ location: string; status: string }>('/1.0/instances/perso-desktop?project=perso');
    assert.deepEqual([perso.location, perso.status], ['m1', 'Running']);
    for (const m of Object.keys(MEMBERS)) assert.deepEqual(await routes(m), expectedRoutes(m, { 'perso-desktop': 'm1' }), `${m}: the routes follow the machine`);
    const again = await apply();
    assert.equal(again.code, 0, again.out);
    assert.match(again.out, /already applied, nothing changed/);
  });
  it('ai-status and audit read every member, read-only: clean after apply; drift on one member is named with it (exit 1); a member whose sshd is killed is NOT CHECKED (exit 1)', async () => {
    const infra = join(t.dir, 'tree.yml');
    const status = () => cli(['ai-status', '--infra', infra, '--base-dir', tree()]);
    const audit = (...extra: string[]) => cli(['audit', '--infra', infra, '--base-dir', tree(), ...extra, '--', '-e', perMember()]);
    /** What a read-only command must leave as it was: each member's ruleset, routes, sysctls, boot copy. */
    const state = async () => Promise.all(Object.keys(MEMBERS).map(async (m) => [
      await inMember(m, ['nft', '--stateless', 'list', 'ruleset']),
      await inMember(m, ['ip', '-4', 'route', 'show', 'table', 'all']),
      await inMember(m, ['sysctl', 'net.ipv4.ip_forward', ...Object.keys(DOMAINS).map((d) => `net.ipv4.conf.net-${d}.proxy_arp`)]),
      ...readdirSync(join(t.dir, 'nft', m)).map((f) => readFileSync(join(t.dir, 'nft', m, f), 'utf8')),
    ].join('\n')));
    const before = await state();
    const ok = await timed('ai-status on 3 members', status);
    assert.equal(ok.code, 0, ok.out);
    for (const m of Object.keys(MEMBERS)) assert.match(ok.out, new RegExp(`^Member ${m}: agrees \\(ai_holder: net-pro; ai_holder_subnet: 10\\.120\\.2\\.0/24\\)$`, 'm'));
    assert.match(ok.out, /^Cluster record \(user\.anklume\.ai_holder on project ai-tools\): not written \(no switch on this cluster yet\)$/m);
    const clean = await timed('audit on 3 members', () => audit());
    assert.equal(clean.code, 0, clean.out);
    assert.match(clean.out, /^clean: every member of the cluster \(m1, m2, m3\) is what the tree and infra\.yml say$/m);
    assert.deepEqual(await state(), before, 'ai-status and audit changed nothing on any member');

    // Drift by hand: m2's holder set emptied, one of m3's routes removed.
    await inMember('m2', ['nft', 'flush', 'set', 'inet', 'anklume', 'ai_holder']);
    const [gone] = expectedRoutes('m3', { 'perso-desktop': 'm1' });
    await inMember('m3', ['ip', 'route', 'del', gone.split(' ')[0], 'proto', '250']);
    const drift = await timed('audit with drift on m2 and m3', () => audit());
    assert.equal(drift.code, 1, drift.out);
    const findings = drift.out.split('\n').filter((l) => l.startsWith('FINDING'));
    assert.deepEqual(findings, [
      'FINDING (ruleset): member m2: its live table inet anklume is not the ruleset of the tree',
      "FINDING (holder): member m2: its live ai_holder set gives AI access to nobody (ai_holder_subnet: 10.120.2.0/24), the state file to 'pro'",
      'FINDING (routes): member m3: its routes to the machines of the other members, IPv4 forwarding, proxy ARP on the domain bridges or what it reads at boot to set them again are not what the tree says: machines on other members are not reached as infra.yml places them, or will not be after a reboot',
    ]);
    const disagree = await status();
    assert.equal(disagree.code, 1, disagree.out);
    assert.match(disagree.out, /^Member m2: DISAGREES \(ai_holder: empty; ai_holder_subnet: 10\.120\.2\.0\/24\)$/m);
    assert.match(disagree.out, /^Member m1: agrees/m);

    // m2 unreachable: every sshd of its namespace killed (the listener and any session), new SSH
    // connections (no master of an earlier run to reuse).
    await killSshd('m2');
    env = { ...env, ANSIBLE_SSH_CONTROL_PATH_DIR: join(t.dir, 'ssh-after-kill') };
    const lost = await timed('audit with m2 unreachable', () => audit());
    assert.equal(lost.code, 1, lost.out);
    // ssh's own words, or Ansible's when ssh ended before it could write the module (a race in Ansible).
    assert.match(lost.out, /^NOT CHECKED \(members\): member m2 was not read: Ansible cannot reach it: .*(Connection refused|Broken pipe)/m);
    assert.match(lost.out, /^FINDING \(routes\): member m3: /m, 'the other members are still checked');
    assert.match(lost.out, /members checked: m1, m3; NOT CHECKED: m2: not a clean cluster$/m);
    const unread = await status();
    assert.equal(unread.code, 1, unread.out);
    assert.match(unread.out, /^Member m2: NOT READ \(Ansible cannot reach it: .*(Connection refused|Broken pipe)/m);
  });
});
