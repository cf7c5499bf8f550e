/**
 * End-to-end: the generated ruleset, loaded in a host namespace that forwards between bridges
 * net-<domain>, decides who reaches whom with real TCP connections — before and after moving AI
 * access, and once loaded through ansible-playbook with the incus_nftables role.
 * Everything runs in namespaces this test creates (see test/helpers/netns.ts); needs root.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { analyse } from '../generator/infra.ts';
import { enrich } from '../generator/enrich.ts';
import { liveHolderMatches, renderRuleset, switchBatch } from '../generator/nftables.ts';
import { liveTableListing, nftApply, nftCheck, NftError, readLiveHolders } from '../generator/nft.ts';
import type { Infra, NetworkPolicy } from '../generator/types.ts';
import { canRunNetns, Lab, labSpecFromInfra, type LabMachine } from './helpers/netns.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURE = join(ROOT, 'test/fixtures/nftables/infra.yml');
const PORTS = [22, 80, 443, 5432, 8080, 11434, 9999];
/** A bridge named net-* that infra.yml does not know: it must be isolated too. */
const ROGUE = { name: 'rogue', subnetId: 99, machines: [{ name: 'rogue-box', ip: '10.100.99.10' }] };

async function fixture(): Promise<Infra> {
  const text = await readFile(FIXTURE, 'utf8');
  const a = analyse([{ file: FIXTURE, text, role: 'single' }], { yolo: false });
  assert.ok(a.infra, JSON.stringify(a.errors));
  return enrich(a.infra).infra;
}

/**
 * The oracle: the spec's semantics written out independently of the generator.
 * Same domain passes; unknown domains are isolated; ai-tools talks only to the holder; otherwise a
 * policy must match (domain or machine name), on its ports (tcp) or all, in its direction(s).
 */
function allowed(infra: Infra, holder: string | null, src: LabMachine, dst: LabMachine, port: number): boolean {
  if (src.domain === dst.domain) return true;
  if (!(src.domain in infra.domains) || !(dst.domain in infra.domains)) return false;
  const ai = 'ai-tools';
  if (src.domain === ai && dst.domain !== holder) return false;
  if (dst.domain === ai && src.domain !== holder) return false;
  const is = (ref: string, m: LabMachine) => ref === m.name || ref === m.domain;
  const portOk = (p: NetworkPolicy) => p.ports === 'all' || p.ports === undefined || ((p.protocol ?? 'tcp') === 'tcp' && p.ports.includes(port));
  return (infra.network_policies ?? []).some((p) => {
    const targetsAi = p.to === ai || infra.domains[ai]?.machines?.[p.to] !== undefined;
    const from = targetsAi ? holder : p.from;
    if (from === null || !portOk(p)) return false;
    return (is(from, src) && is(p.to, dst)) || (p.bidirectional === true && is(from, dst) && is(p.to, src));
  });
}

interface Probe {
  from: string;
  to: string;
  port: number;
}

async function checkMatrix(lab: Lab, infra: Infra, holder: string | null): Promise<void> {
  const machines = [...lab.machines.values()];
  const probes: Probe[] = machines.flatMap((s) => machines.filter((d) => d !== s).flatMap((d) => PORTS.map((port) => ({ from: s.name, to: d.name, port }))));
  const results = await lab.probeMany(probes);
  const wrong = probes
    .map((p, i) => ({ ...p, got: results[i], want: allowed(infra, holder, lab.machines.get(p.from)!, lab.machines.get(p.to)!, p.port) ? 'open' : 'timeout' }))
    .filter((r) => r.got !== r.want)
    .map((r) => `${r.from} -> ${r.to}:${r.port}: got ${r.got}, want ${r.want}`);
  assert.deepEqual(wrong, [], `holder ${holder}: ${wrong.length} of ${probes.length} probes disagree`);
}

/** A few cases spelled out, so that a bug shared by the oracle and the generator still shows. */
async function spotChecks(lab: Lab, holder: 'pro' | 'perso'): Promise<void> {
  const cases: [string, string, number, 'open' | 'timeout'][] = [
    ['pro-dev', 'lab-web', 80, 'open'],
    ['pro-dev', 'lab-web', 22, 'timeout'],
    ['lab-web', 'pro-dev', 80, 'timeout'],
    ['perso-desktop', 'lab-web', 22, 'open'],
    ['perso-desktop', 'lab-db', 22, 'timeout'],
    ['pro-web', 'lab-db', 5432, 'open'],
    ['lab-db', 'pro-web', 5432, 'open'],
    ['pro-dev', 'lab-db', 5432, 'timeout'],
    ['lab-db', 'guest-box', 8080, 'open'],
    ['lab-web', 'guest-box', 8080, 'timeout'],
    ['pro-dev', 'gpu-server', 11434, holder === 'pro' ? 'open' : 'timeout'],
    ['perso-desktop', 'gpu-server', 11434, holder === 'perso' ? 'open' : 'timeout'],
    ['pro-dev', 'gpu-server', 22, 'timeout'],
    ['gpu-server', 'pro-dev', 80, 'timeout'],
    ['rogue-box', 'pro-dev', 80, 'timeout'],
    ['pro-dev', 'rogue-box', 80, 'timeout'],
    ['pro-dev', 'pro-web', 9999, 'open'],
  ];
  const got = await lab.probeMany(cases.map(([from, to, port]) => ({ from, to, port })));
  assert.deepEqual(got, cases.map((c) => c[3]), JSON.stringify(cases.map((c, i) => `${c[0]}->${c[1]}:${c[2]}=${got[i]}`)));
}

/** The kernel's listing of a ruleset file loaded in a throwaway namespace (inside the lab). */
async function listingOf(lab: Lab, file: string): Promise<string> {
  const r = await lab.host(['unshare', '--net', '--', 'sh', '-c', 'nft -f "$1" && nft -s list table inet anklume', 'sh', file]);
  assert.equal(r.exitCode, 0, r.stderr);
  return r.stdout;
}

async function liveHolder(lab: Lab, expected: string | null): Promise<boolean> {
  return liveHolderMatches(await lab.nft(['-j', 'list', 'set', 'inet', 'anklume', 'ai_holder']), expected);
}

const support = await canRunNetns();

describe('nftables end to end (network namespaces)', { skip: support.ok ? false : support.why }, () => {
  let lab: Lab | undefined;
  let tmp = '';
  let infra: Infra;

  before(async () => {
    infra = await fixture();
    tmp = await mkdtemp(join(tmpdir(), 'anklume-nft-e2e-'));
    lab = await Lab.create(labSpecFromInfra(infra, [ROGUE]), { prefix: 'aknft' });
    await lab.listen(PORTS);
  });

  after(async () => {
    await lab?.teardown();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('loads the full ruleset and enforces the whole matrix (holder pro)', async () => {
    const netns = lab!.hostNs;
    assert.equal(await readLiveHolders({ netns }), undefined, 'no table yet');
    assert.equal(await liveTableListing({ netns }), undefined);
    await nftCheck(renderRuleset(infra, 'pro'), { netns });
    await nftApply(renderRuleset(infra, 'pro'), { netns });
    assert.deepEqual(await readLiveHolders({ netns }), ['pro']);
    assert.match((await liveTableListing({ netns })) ?? '', /chain forward/);
    await assert.rejects(nftApply(switchBatch(infra, 'perso', 'guest'), { netns }), NftError, 'a batch for another holder is refused');
    assert.ok(await liveHolder(lab!, 'pro'));
    await spotChecks(lab!, 'pro');
    await checkMatrix(lab!, infra, 'pro');
  });

  it('revokes live: an established connection to ai-tools stops passing data', async () => {
    const held = await lab!.hold('pro-dev', 'gpu-server', 11434);
    try {
      assert.equal(await held.ping(), true, 'the connection works before the revoke');
      await lab!.nft(['-f', '-'], switchBatch(infra, 'pro', null));
      assert.ok(await liveHolder(lab!, null));
      assert.equal(await held.ping(400), false, 'no packet of the old connection passes after the revoke');
      await checkMatrix(lab!, infra, null);
    } finally {
      held.close();
    }
  });

  it('grants the new holder with one set update, equal to a fresh load', async () => {
    const held = await lab!.hold('perso-desktop', 'lab-web', 80);
    await lab!.nft(['-f', '-'], switchBatch(infra, null, 'perso'));
    assert.ok(await liveHolder(lab!, 'perso'));
    assert.equal(await held.ping(), true, 'unrelated connections survive the switch');
    held.close();
    await spotChecks(lab!, 'perso');
    await checkMatrix(lab!, infra, 'perso');
    const fresh = join(tmp, 'perso.nft');
    await writeFile(fresh, renderRuleset(infra, 'perso'));
    assert.equal(await lab!.nft(['-s', 'list', 'table', 'inet', 'anklume']), await listingOf(lab!, fresh));
  });

  it('is applied by ansible-playbook with the incus_nftables role: changed only when the live table differs', async () => {
    const src = join(tmp, 'base/nftables/anklume.nft');
    const installDir = join(tmp, 'nftables.d');
    const bootConf = join(tmp, 'nftables.conf');
    await mkdir(join(tmp, 'base/nftables'), { recursive: true });
    await writeFile(src, renderRuleset(infra, 'pro'));
    await writeFile(bootConf, '#!/usr/sbin/nft -f\n');
    // anklume_base_dir is what `make nftables` passes; the role finds nftables/anklume.nft under it.
    const vars = { anklume_base_dir: join(tmp, 'base'), incus_nftables_install_dir: installDir, incus_nftables_boot_conf: bootConf, ansible_python_interpreter: '/usr/bin/python3' };
    const playbook = async (...extra: string[]): Promise<number> => {
      const r = await lab!.host(['env', `ANSIBLE_LOCAL_TEMP=${tmp}/ansible`, 'ANSIBLE_NOCOLOR=1', 'ANSIBLE_LOCALHOST_WARNING=false',
        'ansible-playbook', '-i', 'localhost,', join(ROOT, 'site.yml'), '--tags', 'nftables', '-e', JSON.stringify(vars), ...extra]);
      assert.equal(r.exitCode, 0, r.stdout + r.stderr);
      const recap = /localhost\s*:\s*ok=\d+\s+changed=(\d+)/.exec(r.stdout);
      assert.ok(recap, r.stdout);
      return Number(recap[1]);
    };

    assert.ok((await playbook()) > 0, 'the first run changes the live table (perso -> pro)');
    assert.ok(await liveHolder(lab!, 'pro'));
    assert.equal(await readFile(join(installDir, 'anklume.nft'), 'utf8'), await readFile(src, 'utf8'));
    assert.match(await readFile(bootConf, 'utf8'), new RegExp(`include "${installDir}/\\*\\.nft"`));
    await checkMatrix(lab!, infra, 'pro');

    assert.equal(await playbook(), 0, 'a second run changes nothing');
    assert.equal(await playbook('--check'), 0, 'check mode with nothing to do');

    // A live table changed behind the role's back is seen and repaired.
    await lab!.nft(['add', 'element', 'inet', 'anklume', 'allow_bridges', '{ "net-guest" . "net-pro" }']);
    assert.equal((await lab!.probe('guest-box', [{ to: 'pro-dev', port: 22 }]))[0], 'open');
    assert.equal(await playbook(), 1, 'only the apply task changes');
    assert.equal((await lab!.probe('guest-box', [{ to: 'pro-dev', port: 22 }]))[0], 'timeout');

    // Check mode reports the change a new file would make, and changes nothing.
    await writeFile(src, renderRuleset(infra, 'perso'));
    assert.ok((await playbook('--check')) > 0);
    assert.ok(await liveHolder(lab!, 'pro'), 'check mode left the live table alone');
    assert.match(await readFile(join(installDir, 'anklume.nft'), 'utf8'), /the bridge that holds AI access: pro/);
  });
});
