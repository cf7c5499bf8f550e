/**
 * `anklume-gen flows`: the verdicts and their reasons, the chain they follow, the pictures, the
 * command line. Agreement with the kernel is shown in test/nftables-e2e.test.ts.
 * UPDATE_GOLDEN=1 rewrites test/fixtures/flows/flows.md on purpose.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { analyse } from '../generator/infra/infra.ts';
import { maybeUpdateGolden } from './helpers/golden.ts';
import { enrich } from '../generator/infra/enrich.ts';
import { renderRuleset } from '../generator/nftables/nftables.ts';
import { chainRules, flowMatrix, flowModel, judgeFlow, resolveFlowEndpoint, type FlowAnswer, type FlowProtocol } from '../generator/nftables/flows.ts';
import { renderPicture } from '../generator/nftables/flowsView.ts';
import type { Infra } from '../generator/core/types.ts';
import { runCli, spawnCli } from './helpers/cli.ts';
import { testEnv } from './helpers/env.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURE = join(ROOT, 'test/fixtures/nftables/infra.yml');
const GOLDEN = join(ROOT, 'test/fixtures/flows/flows.md');

function fixture(): Infra {
  const a = analyse([{ file: FIXTURE, text: readFileSync(FIXTURE, 'utf8'), role: 'single' }], { yolo: false });
  assert.ok(a.infra, JSON.stringify(a.errors));
  return enrich(a.infra).infra;
}

const infra = fixture();

function ask(holder: string | null, from: string, to: string, proto: FlowProtocol = 'tcp', port?: number): FlowAnswer {
  const model = flowModel(infra, holder);
  const [a, b] = [from, to].map((n) => resolveFlowEndpoint(infra, n));
  assert.ok(a && b, `${from} or ${to} unknown`);
  return judgeFlow(model, a, b, proto, port);
}

/** The rules of the rendered forward chain, as nft reads them. */
function renderedChain(text: string): string[] {
  const body = text.slice(text.indexOf('chain forward {'));
  return body
    .split('\n')
    .slice(1)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#') && !l.startsWith('type filter hook'))
    .slice(0, -2);
}

describe('flows: the chain it follows', () => {
  it('is the forward chain of the template, rule for rule, in both modes', () => {
    assert.deepEqual(chainRules(true), renderedChain(renderRuleset(infra, 'pro')));
    const open: Infra = { ...infra, global: { ...infra.global, ai_access_policy: 'open' } };
    assert.deepEqual(chainRules(false), renderedChain(renderRuleset(open, null)));
  });
});

describe('flows: one flow', () => {
  it('names the policy that allows it, with its ports', () => {
    const a = ask('pro', 'pro-dev', 'lab-web', 'tcp', 80);
    assert.equal(a.verdict, 'allow');
    assert.equal(a.policy, 0);
    assert.match(a.reason, /^allow — policy \[0\] "pro reaches the lab web servers.*" \(tcp\/80\)$/);
    assert.equal(ask('pro', 'pro-dev', 'lab-web', 'tcp', 22).reason, "drop — no policy from 'pro-dev' to 'lab-web' allows tcp/22");
  });

  it('exclusive AI access: the holder gets in, nobody else; a revoke leaves nobody', () => {
    assert.equal(ask('pro', 'perso-desktop', 'gpu-server', 'tcp', 11434).reason, "drop — exclusive AI access is held by 'pro'");
    assert.equal(ask('perso', 'perso-desktop', 'gpu-server', 'tcp', 11434).verdict, 'allow');
    assert.equal(ask('pro', 'outside', 'ai-tools', 'tcp', 11434).reason, "drop — exclusive AI access is held by 'pro'");
    assert.equal(ask(null, 'pro', 'ai-tools', 'tcp', 11434).reason, 'drop — exclusive AI access is held by nobody');
    assert.equal(ask('pro', 'gpu-server', 'perso-desktop', 'tcp', 11434).verdict, 'drop');
    assert.equal(ask('pro', 'gpu-server', 'pro-dev', 'tcp', 11434).verdict, 'allow', 'the AI policy is bidirectional');
  });

  it('same domain, outbound, the host', () => {
    assert.equal(ask('pro', 'pro-dev', 'pro-web', 'tcp', 9999).reason, 'allow — same domain');
    assert.equal(ask('pro', 'gpu-server', 'outside', 'tcp', 443).reason, 'allow — outbound: the domains always reach the outside');
    assert.match(ask('pro', 'host', 'lab', 'tcp', 22).reason, /not filtered by anklume/);
  });

  it('without a port: which ports are open, per policy', () => {
    const a = ask('pro', 'pro-dev', 'lab-web');
    assert.deepEqual([a.verdict, a.ports, a.port], ['allow', [80, 443], null]);
    const all = ask('pro', 'perso-desktop', 'lab-web', 'udp');
    assert.equal(all.ports, 'all');
    assert.match(all.reason, /policy \[1\] .* \(udp, every port\)$/);
    assert.equal(ask('pro', 'outside', 'guest', 'icmp').verdict, 'allow', 'ports: all means every protocol');
    assert.equal(ask('pro', 'outside', 'lab', 'icmp').verdict, 'drop', 'a port list is not icmp');
  });

  it('a domain side covers its machines, and says which differ', () => {
    const a = ask('pro', 'perso', 'lab');
    assert.equal(a.verdict, 'drop');
    assert.deepEqual(a.exceptions?.map((e) => [e.from, e.to, e.verdict, e.ports]), [['perso', 'lab-web', 'allow', 'all']]);
    const outside = ask('pro', 'outside', 'pro', 'tcp', 443);
    assert.equal(outside.verdict, 'drop');
    assert.deepEqual(outside.exceptions?.map((e) => [e.to, e.verdict, e.policy]), [['pro-web', 'allow', 7]]);
    assert.equal(ask('pro', 'pro', 'guest').exceptions, undefined, 'no machine of either side differs');
  });
});

describe('flows: the whole picture', () => {
  it('covers every ordered pair of outside and the domains, for tcp, udp and icmp', () => {
    const answers = flowMatrix(flowModel(infra, 'pro'));
    const names = ['outside', ...Object.keys(infra.domains)];
    assert.equal(answers.length, names.length * (names.length - 1) * 3);
    for (const a of answers) assert.deepEqual(Object.keys(a).filter((k) => k !== 'exceptions' && k !== 'ports'), ['from', 'to', 'protocol', 'port', 'holder', 'verdict', 'reason', 'policy']);
  });

  it('flows.md (Mermaid) matches the golden file; the AI edge follows the holder', () => {
    const text = renderPicture(flowModel(infra, 'pro'), flowMatrix(flowModel(infra, 'pro')), 'markdown');
    maybeUpdateGolden(GOLDEN, text);
    assert.equal(text, readFileSync(GOLDEN, 'utf8'));
    const perso = renderPicture(flowModel(infra, 'perso'), flowMatrix(flowModel(infra, 'perso')), 'mermaid');
    assert.match(perso, /n_perso ==>\|"AI: tcp\/11434"\| n_ai_tools/);
    assert.doesNotMatch(perso, /n_pro ==>/);
  });

  it('a hostile project name or description cannot break out of the picture', () => {
    const hostile: Infra = { ...infra, project_name: 'x"]\n}\n```\n# y' };
    const model = flowModel(hostile, 'pro');
    const md = renderPicture(model, flowMatrix(model), 'markdown');
    assert.equal(md.split('```').length, 3, 'one fenced block');
    assert.match(md, /^# Who may talk to whom: x y$/m);
  });

  it('the DOT picture is valid for graphviz', { skip: existsSync('/usr/bin/dot') ? false : 'graphviz is not installed' }, async () => {
    const model = flowModel(infra, 'pro');
    const r = await execa('dot', ['-Tsvg'], { input: renderPicture(model, flowMatrix(model), 'dot'), reject: false });
    assert.equal(r.exitCode, 0, String(r.stderr));
    assert.match(String(r.stdout), /<svg/);
  });
});

describe('flows: command line', () => {
  it('--json prints one object; the holder defaults to the state file, else ai_access_default', async () => {
    const t = testEnv();
    try {
      const r = await runCli(['flows', FIXTURE, '--from', 'perso-desktop', '--to', 'gpu-server', '--port', '11434', '--json'], t.env);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), {
        from: 'perso-desktop', to: 'gpu-server', protocol: 'tcp', port: 11434, holder: 'pro', verdict: 'drop', reason: "drop — exclusive AI access is held by 'pro'", policy: null,
      });
      mkdirSync(join(t.dir, 'state'), { recursive: true });
      writeFileSync(t.env.ANKLUME_STATE_FILE!, 'perso\n');
      const switched = JSON.parse((await runCli(['flows', FIXTURE, '--from', 'perso-desktop', '--to', 'gpu-server', '--port', '11434', '--json'], t.env)).stdout);
      assert.deepEqual([switched.holder, switched.verdict], ['perso', 'allow']);
      const asked = JSON.parse((await runCli(['flows', FIXTURE, '--from', 'perso-desktop', '--to', 'gpu-server', '--port', '11434', '--ai-domain', 'guest', '--json'], t.env)).stdout);
      assert.deepEqual([asked.holder, asked.verdict], ['guest', 'drop']);
    } finally {
      t.cleanup();
    }
  });

  it('prints the verdict and the machines that differ; the matrix as a table', async () => {
    const t = testEnv();
    try {
      const one = await runCli(['flows', FIXTURE, '--from', 'perso', '--to', 'lab'], t.env);
      assert.equal(one.code, 0, one.stderr);
      assert.match(one.stdout, /^perso -> lab tcp: drop — no policy from 'perso' to 'lab' allows tcp\n  machines that differ/);
      assert.match(one.stdout, /^    perso -> lab-web: allow — policy \[1\]/m);
      const table = await runCli(['flows', FIXTURE], t.env);
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stdout, /^pro +all +tcp\/11434 \(AI\) +same /m);
    } finally {
      t.cleanup();
    }
  });

  it('make flows writes flows.md under the base dir, FORMAT=svg flows.svg through graphviz', async () => {
    const t = testEnv();
    try {
      mkdirSync(t.baseDir, { recursive: true });
      const make = (...vars: string[]) => execa('make', ['-s', '-f', join(ROOT, 'Makefile'), 'flows', `INFRA=${FIXTURE}`, `BASE_DIR=${t.baseDir}`, ...vars], { env: t.env, reject: false });
      const md = await make();
      assert.equal(md.exitCode, 0, String(md.stderr));
      assert.equal(readFileSync(join(t.baseDir, 'flows.md'), 'utf8'), readFileSync(GOLDEN, 'utf8'));
      if (existsSync('/usr/bin/dot')) {
        const svg = await make('FORMAT=svg');
        assert.equal(svg.exitCode, 0, String(svg.stderr));
        assert.match(readFileSync(join(t.baseDir, 'flows.svg'), 'utf8'), /<svg/);
      }
    } finally {
      t.cleanup();
    }
  });

  it('--output flows.svg without graphviz: a clear message, exit 1, nothing written', async () => {
    const t = testEnv();
    try {
      const out = join(t.dir, 'flows.svg');
      const r = spawnCli(['flows', FIXTURE, '--output', out], { ...t.env, PATH: join(t.dir, 'empty-path') });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /graphviz's dot is not installed.*apt-get install graphviz/);
      assert.equal(existsSync(out), false);
    } finally {
      t.cleanup();
    }
  });

  it('bad input: one message, exit 2 for usage, 1 for an unknown name, nothing written', async () => {
    const t = testEnv();
    try {
      const cases: [string[], number, RegExp][] = [
        [['--from', 'perso-dekstop', '--to', 'lab'], 1, /'perso-dekstop' is not a domain, a machine or 'outside' in .*; did you mean 'perso-desktop'\?/],
        [['--from', 'outsid', '--to', 'lab'], 1, /did you mean 'outside'\?/],
        [['--from', 'pro', '--to', 'lab', '--port', '70000'], 2, /--port must be 1-65535, got '70000'/],
        [['--from', 'pro', '--to', 'lab', '--port', '80', '--protocol', 'icmp'], 2, /--port does not apply to --protocol icmp/],
        [['--from', 'pro', '--to', 'lab', '--protocol', 'sctp'], 2, /--protocol must be tcp, udp or icmp/],
        [['--from', 'pro', '--to', 'lab', '--ai-domain', 'ai-tools'], 2, /Cannot give AI access to 'ai-tools' itself/],
        [['--from', 'pro', '--to', 'lab', '--ai-domain', 'nowhere'], 1, /Domain 'nowhere' not found/],
        [['--format', 'png'], 2, /--format must be table, mermaid or dot, got 'png'/],
        [['--from', 'pro'], 2, /--from and --to go together/],
        [['--output', join(t.dir, 'flows.png')], 2, /--output must end in \.md/],
      ];
      for (const [args, code, message] of cases) {
        const r = await runCli(['flows', FIXTURE, ...args], t.env);
        assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, message, args.join(' '));
        assert.equal(r.stdout, '', args.join(' '));
        assert.ok(!/\n\s+at /.test(r.stderr), 'no stack trace');
      }
      assert.deepEqual(readdirSync(t.dir), [], 'nothing was written');
    } finally {
      t.cleanup();
    }
  });
});

describe('flows: published ports (issue 15: proxy devices are paths into a machine, reported like policies)', () => {
  const PUBLISHED = join(ROOT, 'test/fixtures/flows/published.yml');
  const a = analyse([{ file: PUBLISHED, text: readFileSync(PUBLISHED, 'utf8'), role: 'single' }], { yolo: false });
  assert.ok(a.infra, JSON.stringify(a.errors));
  const published = enrich(a.infra).infra;
  const model = flowModel(published, 'pro');
  const judge = (from: string, to: string, proto: FlowProtocol = 'tcp', port?: number) => {
    const [src, dst] = [from, to].map((n) => resolveFlowEndpoint(published, n));
    assert.ok(src && dst);
    return judgeFlow(model, src, dst, proto, port);
  };

  it('without nat: every domain, ai-tools included, and outside reach the listen port, through the host; the reason names the device', () => {
    for (const from of ['perso-desktop', 'pro', 'gpu-server', 'outside']) {
      const answer = judge(from, 'guest-box', 'tcp', 18080);
      assert.equal(answer.verdict, 'allow', from);
      assert.match(answer.reason, /^allow — published port: proxy device 'web' of 'guest-box' listens on the host's tcp:0\.0\.0\.0:18080/);
      assert.deepEqual(answer.published, [{ machine: 'guest-box', device: 'web', listen: 'tcp:0.0.0.0:18080', connect: 'tcp:127.0.0.1:80', nat: false }]);
      assert.equal(answer.policy, null);
    }
    assert.equal(judge('perso-desktop', 'guest-box', 'tcp', 80).verdict, 'drop', 'the machine itself stays closed');
    assert.equal(judge('perso-desktop', 'guest-box', 'udp', 18080).verdict, 'drop', 'the published protocol only');
  });

  it('without a port, the open ports include the published ones; a domain as a whole is not published, its machine is an exception', () => {
    assert.deepEqual(judge('perso-desktop', 'guest-box').ports, [18080]);
    const domain = judge('perso', 'guest');
    assert.equal(domain.verdict, 'drop');
    assert.deepEqual(domain.exceptions?.map((e) => `${e.to} ${e.verdict} ${JSON.stringify(e.ports)}`), ['guest-box allow [18080]']);
    const udp = judge('outside', 'guest', 'udp');
    assert.deepEqual(udp.exceptions?.map((e) => `${e.to} ${JSON.stringify(e.ports)}`), ['guest-dns [5353,5354]'], 'from a profile, a port range; not where the machine removes it');
    assert.match(udp.exceptions![0].reason, /proxy device 'dns' \(profile 'dns'\) of 'guest-dns'/);
  });

  it('with nat: the ruleset judges the translated connection (a policy to its address and port), and the reason says so', () => {
    const allowed = judge('pro-dev', 'guest-box', 'tcp', 18443);
    assert.equal(allowed.verdict, 'allow');
    assert.match(allowed.reason, /published port \(nat\): proxy device 'dnat' of 'guest-box' translates the host's tcp:192\.0\.2\.1:18443 to tcp:10\.100\.3\.10:443, which the ruleset judges, allowed by policy \[1\]/);
    assert.equal(allowed.policy, 1);
    const dropped = judge('perso-desktop', 'guest-box', 'tcp', 18443);
    assert.equal(dropped.verdict, 'drop');
    assert.match(dropped.reason, /^drop — proxy device 'dnat' of 'guest-box' \(nat\) translates/);
  });

  it('nothing is published on loopback, with bind: instance, or once the machine removes the device', () => {
    assert.deepEqual(model.published.map((p) => `${p.machine}/${p.device}`), ['guest-box/web', 'guest-box/dnat', 'guest-dns/dns']);
    for (const port of [18081, 18082]) assert.equal(judge('outside', 'guest-box', 'tcp', port).verdict, 'drop', String(port));
    assert.equal(judge('outside', 'guest-quiet', 'udp', 5353).verdict, 'drop');
  });

  it('the command prints it, the matrix lists the published ports, and --json carries the devices', async () => {
    const t = testEnv('anklume-flows-published-');
    try {
      const one = await runCli(['flows', PUBLISHED, '--from', 'perso-desktop', '--to', 'guest-box', '--port', '18080', '--json'], t.env);
      assert.equal(one.code, 0, one.stderr);
      const answer = JSON.parse(one.stdout) as FlowAnswer;
      assert.equal(answer.verdict, 'allow');
      assert.equal(answer.published?.[0].device, 'web');
      const table = await runCli(['flows', PUBLISHED], t.env);
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stdout, /^Published ports \(proxy devices;.*\n  guest-box tcp:0\.0\.0\.0:18080 -> tcp:127\.0\.0\.1:80 \(device 'web'\)\n  guest-box tcp:192\.0\.2\.1:18443 -> tcp:10\.100\.3\.10:443 \(device 'dnat', nat\)\n  guest-dns udp:0\.0\.0\.0:5353-5354 -> udp:127\.0\.0\.1:53 \(device 'dns', profile 'dns'\)$/m);
      assert.match(table.stdout, /^perso +all +- +- +same +- \*$/m, 'perso -> guest: only some machines');
    } finally {
      t.cleanup();
    }
  });
});
