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

  it('the picture has a title (project, holder), a legend, and edges that say which machines and ports', () => {
    const model = flowModel(infra, 'pro');
    const dot = renderPicture(model, flowMatrix(model), 'dot');
    assert.match(dot, /^  label="Who may talk to whom: nft-fixture \(AI access holder: pro\)";$/m);
    assert.match(dot, /"legend:" \[shape=plaintext/);
    for (const meaning of ['the whole domain may open these', 'only the machines named may', 'exclusive AI access']) assert.ok(dot.includes(meaning), meaning);
    // A dashed edge names its machines and what each may use; a solid one adds the machines that get more.
    assert.match(dot, /^  "perso" -> "lab" \[label="some machines:\\lperso -> lab-web: all\\l", style=dashed\];$/m);
    assert.match(dot, /^  "pro" -> "lab" \[label="tcp\/80,443\\lpro-web -> lab-db: tcp\/80,443,5432\\l"\];$/m);
    assert.match(dot, /^  "pro" -> "ai-tools" \[label="AI: tcp\/11434\\l", penwidth=3/m);
    const mermaid = renderPicture(model, flowMatrix(model), 'mermaid');
    assert.match(mermaid, /^---\ntitle: "Who may talk to whom: nft-fixture \(AI access holder: pro\)"\n---\nflowchart LR\n/);
    assert.match(mermaid, /^  n_perso -\.->\|"some machines:<br\/>perso -> lab-web: all"\| n_lab$/m);
    assert.match(mermaid, /^  subgraph legend_box /m);
    const open = renderPicture(flowModel({ ...infra, global: { ...infra.global, ai_access_policy: 'open' } }, null), flowMatrix(flowModel({ ...infra, global: { ...infra.global, ai_access_policy: 'open' } }, null)), 'dot');
    assert.match(open, /label="Who may talk to whom: nft-fixture \(ai_access_policy: open\)"/);
  });

  it('an edge lists a few machine pairs and counts the rest', () => {
    const many: Infra = structuredClone(infra);
    const machines = many.domains.lab.machines!;
    const policies = many.network_policies!;
    for (let i = 0; i < 8; i++) {
      machines[`lab-m${i}`] = { ...structuredClone(machines['lab-web']), ip: `10.100.3.${40 + i}` };
      policies.push({ ...structuredClone(policies[1]), to: `lab-m${i}`, description: `perso reaches lab-m${i}` });
    }
    const model = flowModel(many, 'pro');
    const answers = flowMatrix(model);
    const perso = answers.find((a) => a.from === 'perso' && a.to === 'lab' && a.protocol === 'tcp')!;
    const pairs = perso.exceptions!.length;
    assert.ok(pairs > 6, `${pairs} machine pairs`);
    const dot = renderPicture(model, answers, 'dot');
    const label = /^  "perso" -> "lab" \[label="([^"]*)"/m.exec(dot)![1];
    assert.equal(label.split('\\l').filter(Boolean).length, 1 + 5 + 1, label);
    assert.ok(label.includes(`+${pairs - 5} more (ask with --from/--to)`), label);
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

  it('--output flows.svg or flows.png without graphviz: how to get it, exit 1, nothing written', async () => {
    const t = testEnv();
    try {
      for (const kind of ['svg', 'png']) {
        const out = join(t.dir, `flows.${kind}`);
        const r = spawnCli(['flows', FIXTURE, '--output', out], { ...t.env, PATH: join(t.dir, 'empty-path') });
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, new RegExp(`graphviz's dot is not installed, so no ${kind.toUpperCase()} can be drawn: install it \\(Debian: apt-get install graphviz`));
        assert.equal(existsSync(out), false);
      }
      assert.deepEqual(readdirSync(t.dir), []);
    } finally {
      t.cleanup();
    }
  });

  it('--output flows.png and flows.svg: the picture drawn by graphviz', { skip: existsSync('/usr/bin/dot') ? false : 'graphviz is not installed' }, async () => {
    const t = testEnv();
    try {
      const png = join(t.dir, 'pictures', 'flows.png');
      const r = await runCli(['flows', FIXTURE, '--output', png], t.env);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `Wrote ${png}\n`);
      assert.deepEqual([...readFileSync(png).subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG file');
      const svg = join(t.dir, 'flows.svg');
      const j = await runCli(['flows', FIXTURE, '--output', svg, '--format', 'dot', '--json'], t.env);
      assert.equal(j.code, 0, j.stderr);
      assert.deepEqual(JSON.parse(j.stdout), { written: [svg] });
      const text = readFileSync(svg, 'utf8');
      assert.match(text, /<svg/);
      assert.match(text, />Who may talk to whom: nft&#45;fixture \(AI access holder: pro\)</);
      assert.match(text, />perso &#45;&gt; lab&#45;web: all</);
    } finally {
      t.cleanup();
    }
  });

  it('--expect allow|drop: exit 0 when the flow gets that verdict, 1 when it does not, for the domain and every machine pair under it', async () => {
    const t = testEnv();
    try {
      const expect = (from: string, to: string, verdict: string, ...more: string[]) => runCli(['flows', FIXTURE, '--from', from, '--to', to, '--expect', verdict, ...more], t.env);
      const held = await expect('pro', 'gpu-server', 'allow', '--port', '11434');
      assert.equal(held.code, 0, held.stderr);
      assert.match(held.stdout, /^pro -> gpu-server tcp\/11434: allow/);
      assert.equal(held.stderr, '');
      const not = await expect('perso-desktop', 'gpu-server', 'allow', '--port', '11434');
      assert.equal(not.code, 1);
      assert.match(not.stdout, /^perso-desktop -> gpu-server tcp\/11434: drop — exclusive AI access is held by 'pro'/, 'the answer as always');
      assert.equal(not.stderr, 'anklume-gen flows: expected allow, got drop for perso-desktop -> gpu-server\n');
      assert.equal((await expect('perso-desktop', 'gpu-server', 'drop', '--port', '11434')).code, 0);
      // perso -> lab is dropped, but perso may reach lab-web: "drop" does not hold for the whole domain.
      const domain = await expect('perso', 'lab', 'drop');
      assert.equal(domain.code, 1);
      assert.match(domain.stderr, /expected drop, got allow for perso -> lab-web/);
      assert.equal((await expect('perso', 'lab-db', 'drop')).code, 0);
      const udp = await expect('guest', 'lab', 'allow', '--protocol', 'udp', '--port', '53');
      assert.equal(udp.code, 0, udp.stdout + udp.stderr);
      assert.equal((await expect('guest', 'lab', 'allow', '--port', '53')).code, 1, 'tcp/53 is not open: the protocol asked is the one judged');
      const json = await expect('perso', 'lab', 'drop', '--json');
      assert.equal(json.code, 1);
      assert.equal(json.stderr, '');
      const doc = JSON.parse(json.stdout) as FlowAnswer & { expected: string; as_expected: boolean };
      assert.deepEqual([doc.verdict, doc.expected, doc.as_expected, doc.exceptions?.map((e) => e.to)], ['drop', 'drop', false, ['lab-web']]);
    } finally {
      t.cleanup();
    }
  });

  it('--json without a question: one object, the matrix and who it was answered for', async () => {
    const t = testEnv();
    try {
      const r = await runCli(['flows', FIXTURE, '--json'], t.env);
      assert.equal(r.code, 0, r.stderr);
      const doc = JSON.parse(r.stdout) as { project: string; ai_access_policy: string; holder: string; matrix: FlowAnswer[]; published: unknown[] };
      assert.deepEqual(Object.keys(doc), ['project', 'ai_access_policy', 'holder', 'matrix', 'published']);
      assert.deepEqual([doc.project, doc.ai_access_policy, doc.holder], ['nft-fixture', 'exclusive', 'pro']);
      assert.deepEqual(doc.matrix, JSON.parse(JSON.stringify(flowMatrix(flowModel(infra, 'pro')))));
      assert.deepEqual(doc.published, []);
      const perso = JSON.parse((await runCli(['flows', FIXTURE, '--ai-domain', 'perso', '--json'], t.env)).stdout) as { holder: string };
      assert.equal(perso.holder, 'perso');
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
        [['--output', join(t.dir, 'flows.jpg')], 2, /--output must end in \.md \(Mermaid in Markdown\), \.mmd, \.dot, \.svg or \.png .*got '.*flows\.jpg'/],
        // A flag that the chosen format or question cannot honour is refused, never ignored.
        [['--format', 'dot', '--output', join(t.dir, 'flows.md')], 2, /--format dot cannot be written to '.*flows\.md' \(drawn in mermaid\)/],
        [['--format', 'table', '--output', join(t.dir, 'flows.png')], 2, /--format table cannot be written to/],
        [['--protocol', 'udp'], 2, /--protocol asks about one flow: give --from and --to too/],
        [['--expect', 'drop'], 2, /--expect checks the verdict of one flow: give --from and --to too/],
        [['--from', 'pro', '--to', 'lab', '--expect', 'deny'], 2, /--expect must be allow or drop, got 'deny'/],
      ];
      for (const [args, code, message] of cases) {
        const r = await runCli(['flows', FIXTURE, ...args], t.env);
        assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, message, args.join(' '));
        assert.equal(r.stdout, '', args.join(' '));
        assert.ok(!/\n\s+at /.test(r.stderr), 'no stack trace');
      }
      // Under --json the usage error is the JSON document.
      const json = await runCli(['flows', FIXTURE, '--json', '--format', 'dot'], t.env);
      assert.equal(json.code, 2);
      assert.match((JSON.parse(json.stdout) as { errors: { message: string }[] }).errors[0].message, /--json prints the answers as JSON, not a picture: leave out --format/);
      assert.deepEqual(readdirSync(t.dir), [], 'nothing was written');
    } finally {
      t.cleanup();
    }
  });
});

describe('flows: what the README and docs/flows.md show is what the command prints', () => {
  /** The text of the first fenced block of `doc` that starts with `first`. */
  const block = (doc: string, first: string): string => {
    const text = readFileSync(join(ROOT, doc), 'utf8');
    const start = text.indexOf('```\n' + first);
    assert.ok(start >= 0, `${doc}: no block starting with ${first}`);
    return text.slice(start + 4, text.indexOf('```', start + 4));
  };

  it("the matrices as printed, the Mermaid picture as drawn; the pictures' PNG files are there", async () => {
    const t = testEnv();
    try {
      for (const [doc, infraFile] of [['README.md', 'examples/infra.yml'], ['docs/flows.md', 'examples/network-policies.yml']]) {
        const command = `$ ${doc === 'README.md' ? 'npx ' : ''}anklume-gen flows ${infraFile}\n`;
        const printed = await runCli(['flows', join(ROOT, infraFile)], t.env);
        assert.equal(block(doc, command), command + printed.stdout, `${doc}: paste the output of ${command}`);
      }
      const mermaid = await runCli(['flows', join(ROOT, 'examples/network-policies.yml'), '--format', 'mermaid'], t.env);
      const text = readFileSync(join(ROOT, 'docs/flows.md'), 'utf8');
      const start = text.indexOf('```mermaid\n') + '```mermaid\n'.length;
      assert.equal(text.slice(start, text.indexOf('```', start)), mermaid.stdout, 'docs/flows.md: paste the output of --format mermaid');
      for (const png of ['docs/flows-example.png', 'docs/flows-network-policies.png']) {
        assert.deepEqual([...readFileSync(join(ROOT, png)).subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], png);
      }
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
      const matrix = JSON.parse((await runCli(['flows', PUBLISHED, '--json'], t.env)).stdout) as { published: Record<string, unknown>[] };
      assert.deepEqual(matrix.published[0], { machine: 'guest-box', domain: 'guest', device: 'web', protocol: 'tcp', ports: [18080], listen: 'tcp:0.0.0.0:18080', connect: 'tcp:127.0.0.1:80', nat: false });
      assert.deepEqual(matrix.published.map((p) => p.profile), [undefined, undefined, 'dns']);
      const table = await runCli(['flows', PUBLISHED], t.env);
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stdout, /^Published ports \(proxy devices;.*\n  guest-box tcp:0\.0\.0\.0:18080 -> tcp:127\.0\.0\.1:80 \(device 'web'\)\n  guest-box tcp:192\.0\.2\.1:18443 -> tcp:10\.100\.3\.10:443 \(device 'dnat', nat\)\n  guest-dns udp:0\.0\.0\.0:5353-5354 -> udp:127\.0\.0\.1:53 \(device 'dns', profile 'dns'\)$/m);
      assert.match(table.stdout, /^perso +all +- +- +same +- \*$/m, 'perso -> guest: only some machines');
    } finally {
      t.cleanup();
    }
  });
});
