import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, it } from 'node:test';
import { defaultStreams, hasColors, paintDiff } from '../generator/cli/output.ts';
import { closest } from '../generator/core/suggest.ts';
import { runCli, spawnCli, type CliResult } from './helpers/cli.ts';
import { ForbiddenTools, STANDINS_BIN } from './helpers/standins.ts';
import { testEnv } from './helpers/env.ts';

const EXAMPLE = 'examples/infra.yml';
/** Valid, with one warning (its place is in the fixture's `# ^` comment). */
const SHARED_GPU = 'test/fixtures/invalid/gpu-shared.yml';

describe('CLI contract', () => {
  it('a reader that stops reading (| head) is no failure: no stack trace, exit 0', () => {
    const t = testEnv();
    try {
      const r = spawnSync('bash', ['-c', `node --import tsx generator/cli/bin.ts ${EXAMPLE} --dry-run --diff --base-dir "$1" | head -1; exit \${PIPESTATUS[0]}`, 'bash', t.baseDir], { env: t.env, encoding: 'utf8' });
      assert.equal(r.stdout, '--- /dev/null\n');
      assert.equal(r.status, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /EPIPE|\n\s+at /);
    } finally {
      t.cleanup();
    }
  });

  it('anklume-gen <infra> --dry-run is sync: prints Would write and writes nothing', async () => {
    const t = testEnv();
    try {
      const r = await runCli([EXAMPLE, '--dry-run', '--base-dir', t.baseDir], t.env);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^Would write: group_vars\/all\.yml$/m);
      assert.match(r.stderr, /INFO: ai_access_policy is 'exclusive' — auto-created network policy from 'pro' to 'ai-tools'/);
      assert.ok(!existsSync(t.baseDir));
    } finally {
      t.cleanup();
    }
  });

  it('sync --json has exactly the documented keys: written for a real sync, would_write for --dry-run and --check; --check exits 1 only when out of date', async () => {
    const t = testEnv();
    try {
      const dry = await runCli(['sync', EXAMPLE, '--base-dir', t.baseDir, '--dry-run', '--json'], t.env);
      assert.equal(dry.code, 0, dry.stderr);
      const would = JSON.parse(dry.stdout) as Record<string, unknown>;
      assert.deepEqual(Object.keys(would).sort(), ['orphans', 'unchanged', 'warnings', 'would_delete', 'would_write']);
      assert.equal((would.would_write as string[]).length, 11);
      assert.ok(!existsSync(t.baseDir), '--dry-run wrote nothing');
      const first = await runCli(['sync', EXAMPLE, '--base-dir', t.baseDir, '--json'], t.env);
      assert.equal(first.code, 0, first.stderr);
      const doc = JSON.parse(first.stdout) as Record<string, unknown>;
      assert.deepEqual(Object.keys(doc).sort(), ['deleted', 'orphans', 'unchanged', 'warnings', 'written']);
      assert.equal((doc.written as string[]).length, 11, 'ten Ansible files and the ruleset');
      assert.deepEqual(doc.written, would.would_write, 'what --dry-run said would be written');
      const check = await runCli(['sync', EXAMPLE, '--base-dir', t.baseDir, '--check'], t.env);
      assert.equal(check.code, 0, check.stdout);
      writeFileSync(join(t.baseDir, 'inventory/pro.yml'), '---\n');
      const drift = await runCli(['sync', EXAMPLE, '--base-dir', t.baseDir, '--check'], t.env);
      assert.equal(drift.code, 1);
      assert.match(drift.stdout, /Out of date: inventory\/pro\.yml/);
      const driftJson = await runCli(['sync', EXAMPLE, '--base-dir', t.baseDir, '--check', '--json'], t.env);
      assert.equal(driftJson.code, 1);
      assert.deepEqual((JSON.parse(driftJson.stdout) as { would_write: string[] }).would_write, ['inventory/pro.yml']);
      assert.equal(readFileSync(join(t.baseDir, 'inventory/pro.yml'), 'utf8'), '---\n', '--check wrote nothing');
      // An orphan: --clean-orphans --dry-run names it under would_delete (and says so), and deletes nothing.
      writeFileSync(join(t.baseDir, 'host_vars/gone.yml'), 'instance_name: gone\n');
      const orphanJson = JSON.parse((await runCli(['sync', EXAMPLE, '--base-dir', t.baseDir, '--dry-run', '--clean-orphans', '--json'], t.env)).stdout) as Record<string, unknown>;
      assert.deepEqual(orphanJson.would_delete, ['host_vars/gone.yml']);
      assert.equal(orphanJson.deleted, undefined);
      const orphanText = await runCli(['sync', EXAMPLE, '--base-dir', t.baseDir, '--dry-run', '--clean-orphans'], t.env);
      assert.match(orphanText.stdout, /^ORPHAN: host_vars\/gone\.yml\nWould delete: host_vars\/gone\.yml$/m);
      assert.ok(existsSync(join(t.baseDir, 'host_vars/gone.yml')), '--dry-run deleted nothing');
    } finally {
      t.cleanup();
    }
  });

  it('validate --json: errors and warnings alike with message, file, line, column, path', async () => {
    const t = testEnv();
    try {
      const bad = join(t.dir, 'bad.yml');
      writeFileSync(bad, readFileSync(EXAMPLE, 'utf8').replace('ip: "10.100.1.10"', 'ip: "10.100.1.999"'));
      const r = await runCli(['validate', bad, '--json'], t.env);
      assert.equal(r.code, 1);
      const doc = JSON.parse(r.stdout) as { errors: Record<string, unknown>[]; warnings: unknown[] };
      assert.deepEqual(Object.keys(doc).sort(), ['errors', 'warnings']);
      assert.equal(doc.errors.length, 1);
      assert.deepEqual(Object.keys(doc.errors[0]).sort(), ['column', 'file', 'line', 'message', 'path']);
      assert.match(String(doc.errors[0].message), /^Machine 'perso-desktop': invalid IP 10\.100\.1\.999/);
      assert.equal(doc.errors[0].file, bad);
      assert.equal(typeof doc.errors[0].line, 'number');
      const ok = await runCli(['validate', EXAMPLE, '--json'], t.env);
      assert.equal(ok.code, 0);
      assert.deepEqual(JSON.parse(ok.stdout), { errors: [], warnings: [] });
      const warned = await runCli(['validate', SHARED_GPU, '--json'], t.env);
      assert.equal(warned.code, 0, warned.stdout);
      assert.deepEqual((JSON.parse(warned.stdout) as { warnings: unknown[] }).warnings, [{
        message: "GPU policy is 'shared': 2 instances have GPU access: gpu-server, trainer; there is no VRAM isolation between them",
        file: SHARED_GPU, line: 12, column: 7, path: '/domains/ai-tools/machines/trainer',
      }], 'located like an error (the fixture says where)');
    } finally {
      t.cleanup();
    }
  });

  it('human errors are file:line:column: error: message, on stderr, never a stack trace', async () => {
    const t = testEnv();
    try {
      const bad = join(t.dir, 'tab.yml');
      writeFileSync(bad, 'project_name: x\nglobal:\n\tbase_subnet: "10.100"\n');
      const r = spawnCli(['validate', bad], t.env);
      assert.equal(r.code, 1);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3:1: error: YAML syntax error`, 'm'));
      assert.doesNotMatch(r.stderr, /at .*\.(ts|js):\d+/);
    } finally {
      t.cleanup();
    }
  });

  it('resolve --json is the enriched model in infra.yml shape, and reads back to itself', async () => {
    const t = testEnv();
    try {
      const r = await runCli(['resolve', EXAMPLE, '--json'], t.env);
      assert.equal(r.code, 0, r.stderr);
      const model = JSON.parse(r.stdout) as { network_policies: { from: string; to: string }[]; domains: Record<string, unknown> };
      assert.deepEqual(model.network_policies.map((p) => [p.from, p.to]), [['pro', 'ai-tools']]);
      const saved = join(t.dir, 'resolved.yml');
      writeFileSync(saved, r.stdout);
      const again = await runCli(['resolve', saved, '--json'], t.env);
      assert.equal(again.code, 0, again.stderr);
      assert.deepEqual(JSON.parse(again.stdout), model, 'resolving the resolved model changes nothing');
      assert.doesNotMatch(again.stderr, /auto-created/, 'no second auto-created policy');
    } finally {
      t.cleanup();
    }
  });

  it('resolve --raw only reads and merges: no defaults, no validation', async () => {
    const t = testEnv();
    try {
      const dir = join(t.dir, 'infra');
      mkdirSync(join(dir, 'domains'), { recursive: true });
      writeFileSync(join(dir, 'base.yml'), 'project_name: p\nglobal: {base_subnet: "10.1", bogus: 1}\n');
      writeFileSync(join(dir, 'domains', 'a.yml'), 'a: {subnet_id: 1}\n');
      const r = await runCli(['resolve', dir, '--raw', '--json'], t.env);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), { project_name: 'p', global: { base_subnet: '10.1', bogus: 1 }, domains: { a: { subnet_id: 1 } } });
    } finally {
      t.cleanup();
    }
  });

  it('usage errors exit 2; --help exits 0 on every command', async () => {
    const t = testEnv();
    try {
      const unknown = await runCli(['sync', EXAMPLE, '--frobnicate'], t.env);
      assert.equal(unknown.code, 2);
      assert.match(unknown.stderr, /Usage: /);
      assert.equal((await runCli([], t.env)).code, 2);
      for (const command of ['sync', 'validate', 'resolve']) {
        const help = await runCli([command, '--help'], t.env);
        assert.equal(help.code, 0);
        assert.match(help.stdout, /Usage|anklume-gen/);
      }
      const top = await runCli(['--help'], t.env);
      assert.equal(top.code, 0);
      assert.match(top.stdout, /Commands:/);
    } finally {
      t.cleanup();
    }
  });

  it('a missing infra file is a clear error, exit 1', async () => {
    const t = testEnv();
    try {
      const r = await runCli(['validate', join(t.dir, 'nope.yml')], t.env);
      assert.equal(r.code, 1);
      assert.equal(r.stderr.split('\n')[0], `${join(t.dir, 'nope.yml')}: error: cannot read (no such file)`, 'the path once');
    } finally {
      t.cleanup();
    }
  });

  it('--version and -V print the package version; --json makes it a document', async () => {
    const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const r = spawnCli([flag], { ...process.env, NO_COLOR: '1' });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `anklume-gen ${version}\n`);
    }
    assert.deepEqual(JSON.parse((await runCli(['-V', '--json'], process.env)).stdout), { version });
  });

  it('an unknown command is a usage error with a did-you-mean, and nothing is read or written', async () => {
    const t = testEnv();
    try {
      const r = await runCli(['valdiate', 'x.yml', '--base-dir', t.baseDir], t.env, t.dir);
      assert.equal(r.code, 2);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^anklume-gen: unknown command 'valdiate'; did you mean 'validate'\?/);
      assert.equal((await runCli(['frobnicate'], t.env, t.dir)).code, 2);
      assert.deepEqual(readdirSync(t.dir).sort(), ['etc-anklume', 'log', 'state'].filter((d) => existsSync(join(t.dir, d))));
    } finally {
      t.cleanup();
    }
  });

  it('an unknown option is a usage error in a few words, with a did-you-mean among the command\'s options', async () => {
    const r = await runCli(['sync', EXAMPLE, '--dryrun'], process.env);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.split('\n')[0], "anklume-gen sync: unknown option '--dryrun'; did you mean '--dry-run'?");
    assert.match(r.stderr, /^Usage: anklume-gen \[sync\]/m);
    const far = await runCli(['validate', '--frobnicate', EXAMPLE], process.env);
    assert.equal(far.code, 2);
    assert.equal(far.stderr.split('\n')[0], "anklume-gen validate: unknown option '--frobnicate'");
  });

  it('help names a command or lists them all; help for an unknown one is a usage error', async () => {
    const all = await runCli(['help'], process.env);
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, /^Commands:$/m);
    const one = await runCli(['help', 'flows'], process.env);
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stdout, /^Options:$/m);
    assert.match(one.stdout, /--ai-domain VALUE/);
    const unknown = await runCli(['help', 'flow'], process.env);
    assert.equal(unknown.code, 2);
    assert.equal(unknown.stdout, '');
    assert.match(unknown.stderr, /^anklume-gen: unknown command 'flow'; did you mean 'flows'\?/);
  });

  it('anklume-gen <infra> still syncs when <infra> exists, ends in .yml/.yaml, or is a path', async () => {
    const t = testEnv();
    try {
      // Paths are read from the process's directory (the repository here), like every infra path.
      const dir = await runCli(['examples', '--dry-run', '--base-dir', t.baseDir], t.env);
      assert.equal(dir.code, 1, 'an existing directory is an infra path, here one without base.yml');
      assert.match(dir.stderr, /^examples/m);
      const file = await runCli([join(t.dir, '..', basename(t.dir), 'x'), '--base-dir', t.baseDir], t.env);
      assert.equal(file.code, 1, 'a path with a slash is an infra path, even a missing one');
      const ok = await runCli([EXAMPLE, '--dry-run', '--base-dir', t.baseDir], t.env);
      assert.equal(ok.code, 0, ok.stderr);
      const missing = await runCli(['gone.yaml', '--base-dir', t.baseDir], t.env);
      assert.equal(missing.code, 1, 'a .yaml name is an infra path, even a missing one');
      assert.match(missing.stderr, /gone\.yaml: error: cannot read \(no such file\)/);
      assert.ok(!existsSync(t.baseDir));
    } finally {
      t.cleanup();
    }
  });

  it('usage errors follow --json: one document on stdout, exit 2, nothing on stderr', async () => {
    const t = testEnv();
    for (const args of [['sync', EXAMPLE, '--frobnicate', '--json'], ['valdiate', '--json'], ['validate', 'a.yml', 'b.yml', '--json']]) {
      const r = await runCli(args, t.env);
      assert.equal(r.code, 2, args.join(' '));
      assert.equal(r.stderr, '');
      const doc = JSON.parse(r.stdout) as { errors: { message: string }[]; warnings: unknown[]; usage: string };
      assert.equal(doc.errors.length, 1);
      assert.deepEqual(Object.keys(doc.errors[0]).sort(), ['column', 'file', 'line', 'message', 'path']);
      assert.deepEqual(doc.warnings, []);
      assert.match(doc.usage, /anklume-gen/);
    }
    t.cleanup();
  });

  it('--quiet (-q) drops the INFO: lines of sync, validate and resolve; warnings and errors still print', async () => {
    const t = testEnv();
    try {
      // Two GPU machines under gpu_policy: shared: a warning.
      const warned = join(t.dir, 'warned.yml');
      writeFileSync(warned, readFileSync(EXAMPLE, 'utf8').replace('  ai_access_default: pro ', '  gpu_policy: shared\n  ai_access_default: pro ').replace('ip: "10.100.2.10"\n', 'ip: "10.100.2.10"\n        gpu: true\n'));
      const INFO = /^INFO: ai_access_policy is 'exclusive'/m;
      const WARNING = /^[^\n]*warned\.yml:\d+:\d+: WARNING: GPU policy is 'shared'/m;
      const loud = await runCli(['sync', warned, '--base-dir', t.baseDir, '--dry-run'], t.env);
      assert.equal(loud.code, 0, loud.stderr);
      assert.match(loud.stderr, INFO);
      assert.match(loud.stderr, WARNING);
      for (const args of [['sync', warned, '--base-dir', t.baseDir, '--dry-run', '--quiet'], ['sync', warned, '--base-dir', t.baseDir, '-q'], ['validate', warned, '-q'], ['resolve', warned, '--quiet']]) {
        const r = await runCli(args, t.env);
        assert.equal(r.code, 0, r.stderr);
        assert.doesNotMatch(r.stderr, /INFO/, args.join(' '));
        assert.match(r.stderr, WARNING, args.join(' '));
      }
      const synced = await runCli(['sync', warned, '--base-dir', t.baseDir, '-q'], t.env);
      assert.match(synced.stdout, /^0 file\(s\) written, 11 unchanged$/m, 'the results still print');
      const broken = join(t.dir, 'broken.yml');
      writeFileSync(broken, readFileSync(EXAMPLE, 'utf8').replace('ip: "10.100.1.10"', 'ip: "10.100.1.999"'));
      const failed = await runCli(['sync', broken, '--base-dir', t.baseDir, '-q'], t.env);
      assert.equal(failed.code, 1);
      assert.match(failed.stderr, /error: Machine 'perso-desktop': invalid IP/);
      const help = await runCli(['sync', '--help'], t.env);
      assert.match(help.stdout, /^ {2}-q, --quiet +no INFO: lines/m);
    } finally {
      t.cleanup();
    }
  });

  it("--domain and --ai-domain values get a did-you-mean: 'prso' is 'perso', not 'pro' (a missed key keeps every typed letter)", async () => {
    for (const args of [['nftables', EXAMPLE, '--ai-domain', 'prso'], ['flows', EXAMPLE, '--ai-domain', 'prso']]) {
      const r = await runCli(args, process.env);
      assert.equal(r.code, 1, args.join(' '));
      assert.equal(r.stderr, `error: Domain 'prso' not found in ${EXAMPLE}; did you mean 'perso'?\n`);
    }
    const far = await runCli(['nftables', EXAMPLE, '--ai-domain', 'zzz'], process.env);
    assert.equal(far.stderr, `error: Domain 'zzz' not found in ${EXAMPLE} (its domains: pro, perso)\n`);
    assert.equal(closest('prso', ['pro', 'perso']), 'perso');
    assert.equal(closest('prso', ['perso', 'pro']), 'perso');
    assert.equal(closest('pro', ['prod', 'pros']), 'prod', 'the first of two that both hold every letter');
    assert.equal(closest('xyz', ['pro', 'perso']), undefined);
  });

  it('apply and apply-nftables take the same words for check mode: --check and --dry-run (ansible-playbook: a stand-in that records its arguments; incus: a stand-in that fails if called)', async () => {
    const t = testEnv();
    try {
      assert.equal((await runCli(['sync', EXAMPLE, '--base-dir', t.baseDir], t.env)).code, 0);
      // An ansible-playbook stand-in that records its arguments and ends like a play with nothing
      // to change; an incus that refuses, so that apply's plan cannot read this machine's Incus.
      const bin = join(t.dir, 'bin');
      mkdirSync(bin);
      const argsFile = join(t.dir, 'args');
      writeFileSync(join(bin, 'ansible-playbook'), `#!/bin/sh\necho "$@" > '${argsFile}'\necho 'localhost : ok=1 changed=0 unreachable=0 failed=0'\n`, { mode: 0o755 });
      writeFileSync(join(bin, 'incus'), `#!/bin/sh\necho 'stand-in: incus must not be called by this test' >&2\nexit 1\n`, { mode: 0o755 });
      const env = { ...t.env, PATH: `${bin}:${process.env.PATH}` };
      const ran = async (...args: string[]) => {
        rmSync(argsFile, { force: true });
        const r = await runCli([...args, '--base-dir', t.baseDir], env);
        assert.equal(r.code, 0, r.stderr);
        return readFileSync(argsFile, 'utf8').trim().split(' ').slice(1);
      };
      // apply's check mode is its plan (issue 16), which reads Incus and runs no playbook.
      const plans = await Promise.all(['--check', '--dry-run'].map((w) => runCli(['apply', w, '--base-dir', t.baseDir], env)));
      for (const p of plans) {
        assert.equal(p.code, 1);
        assert.match(p.stderr, /cannot read Incus: .*stand-in: incus must not be called/);
      }
      assert.equal(plans[0].stderr, plans[1].stderr);
      assert.ok(!existsSync(argsFile), 'no playbook ran');
      assert.ok(!(await ran('apply')).includes('--check'));
      assert.deepEqual(await ran('apply-nftables', '--dry-run'), ['--tags', 'nftables', '--check']);
      assert.deepEqual(await ran('apply-nftables', '--check'), ['--tags', 'nftables', '--check']);
      assert.deepEqual(await ran('apply-nftables'), ['--tags', 'nftables']);
      for (const [cmd, word, other] of [['apply', '--check', '--dry-run'], ['apply-nftables', '--dry-run', '--check']]) {
        const help = await runCli([cmd, '--help'], t.env);
        assert.match(help.stdout, new RegExp(`\\[${word}\\|${other}\\]`), `${cmd} --help: usage`);
        assert.match(help.stdout, new RegExp(`^ {2}${other} +the same as ${word}`, 'm'), `${cmd} --help: options`);
      }
    } finally {
      t.cleanup();
    }
  });


  it("colour by Node's hasColors(): a terminal that has them, FORCE_COLOR anywhere, never NO_COLOR (unless empty, no-color.org) or TERM=dumb", () => {
    const tty = { isTTY: true };
    const pipe = { isTTY: false };
    const term = { TERM: 'xterm-256color' };
    assert.equal(hasColors(tty, term), true);
    assert.equal(hasColors(tty, {}), false, 'a terminal of unknown kind');
    assert.equal(hasColors(tty, { ...term, NO_COLOR: '' }), true);
    assert.equal(hasColors(tty, { ...term, NO_COLOR: '1' }), false);
    assert.equal(hasColors(tty, { TERM: 'dumb' }), false);
    assert.equal(hasColors(pipe, term), false, 'not into a pipe');
    assert.equal(hasColors(pipe, { FORCE_COLOR: '1' }), true, 'unless FORCE_COLOR says so');
    assert.equal(hasColors(pipe, { FORCE_COLOR: '1', NO_COLOR: '1' }), true, 'FORCE_COLOR wins');
    assert.equal(hasColors(tty, { ...term, FORCE_COLOR: '0' }), false);
    // Each stream for itself: messages go to stderr, results (the diffs) to stdout.
    const streams = defaultStreams(term, tty, pipe);
    assert.deepEqual([streams.color, streams.outColor], [true, false]);
    assert.deepEqual([defaultStreams(term, pipe, tty).color, defaultStreams(term, pipe, tty).outColor], [false, true]);
  });

  it('sync --diff is coloured only where stdout takes colours (here FORCE_COLOR), and is otherwise the same bytes', () => {
    const t = testEnv();
    try {
      const args = ['sync', EXAMPLE, '--base-dir', t.baseDir, '--dry-run', '--diff'];
      const plain = spawnCli(args, t.env);
      assert.equal(plain.code, 0, plain.stderr);
      assert.doesNotMatch(plain.stdout + plain.stderr, /\x1b\[/, 'a pipe takes no colour');
      const { NO_COLOR: _, ...env } = t.env;
      const forced = spawnCli(args, { ...env, FORCE_COLOR: '1' });
      assert.equal(forced.code, 0, forced.stderr);
      assert.match(forced.stdout, /^\x1b\[1m\+\+\+ inventory\/pro\.yml\x1b\[0m$/m);
      assert.match(forced.stdout, /^\x1b\[36m@@ -0,0 \+1,\d+ @@\x1b\[0m$/m);
      assert.match(forced.stdout, /^\x1b\[32m\+---\x1b\[0m$/m);
      assert.equal(forced.stdout.replace(/\x1b\[\d+m/g, ''), plain.stdout, 'the colours are all that differs');
      const json = spawnCli([...args, '--json'], { ...env, FORCE_COLOR: '1' });
      assert.doesNotMatch(json.stdout, /\x1b\[/, 'never in JSON');
    } finally {
      t.cleanup();
    }
  });

  it('paintDiff: file names bold, @@ cyan, removed red, added green; a removed line that reads like a header is a removed line', () => {
    const diff = '--- f\n+++ f\n@@ -1,3 +1,3 @@\n a\n--- x\n+++ x\n\\ No newline at end of file';
    const on = { out: () => {}, err: () => {}, color: false, outColor: true };
    assert.equal(paintDiff(on, diff), '\x1b[1m--- f\x1b[0m\n\x1b[1m+++ f\x1b[0m\n\x1b[36m@@ -1,3 +1,3 @@\x1b[0m\n a\n\x1b[31m--- x\x1b[0m\n\x1b[32m+++ x\x1b[0m\n\\ No newline at end of file');
    assert.equal(paintDiff({ ...on, outColor: false }, diff), diff);
    assert.equal(paintDiff({ ...on, outColor: undefined, color: true }, diff), diff, "stderr's colours are not stdout's");
  });
});

// The library's answers are tested in test/flows.test.ts; here, that the command asks them with
// the protocol it was given (an answer for tcp to a question about udp would look just as plausible).
describe('flows: the command asks about the protocol it was given', () => {
  const POLICIES = 'examples/network-policies.yml';
  const ask = (env: NodeJS.ProcessEnv, ...args: string[]) => spawnCli(['flows', POLICIES, '--from', 'lab', '--to', 'admin-ctl', ...args], env);

  it('--protocol udp: lab may send syslog to admin-ctl over udp/514, and not over tcp', () => {
    const t = testEnv();
    try {
      const udp = ask(t.env, '--protocol', 'udp', '--port', '514');
      assert.equal(udp.code, 0, udp.stderr);
      assert.match(udp.stdout, /^lab -> admin-ctl udp\/514: allow — policy \[2\] .*\(udp\/514\)$/m);
      const tcp = ask(t.env, '--protocol', 'tcp', '--port', '514');
      assert.equal(tcp.code, 0, tcp.stderr);
      assert.match(tcp.stdout, /^lab -> admin-ctl tcp\/514: drop\b/m);
      const byDefault = ask(t.env, '--port', '514');
      assert.match(byDefault.stdout, /^lab -> admin-ctl tcp\/514: drop\b/m, 'tcp unless told otherwise');

      const json = ask(t.env, '--protocol', 'udp', '--port', '514', '--json');
      assert.equal(json.code, 0, json.stderr);
      const one = JSON.parse(json.stdout) as { protocol: string; verdict: string; policy: number | null };
      assert.deepEqual([one.protocol, one.verdict, one.policy], ['udp', 'allow', 2]);
      const every = JSON.parse(ask(t.env, '--protocol', 'udp', '--json').stdout) as { protocol: string; verdict: string; ports: number[] };
      assert.deepEqual([every.protocol, every.verdict, every.ports], ['udp', 'allow', [514]], 'without --port: the udp ports that are open');
      const tcpJson = JSON.parse(ask(t.env, '--protocol', 'tcp', '--json').stdout) as { protocol: string; verdict: string };
      assert.deepEqual([tcpJson.protocol, tcpJson.verdict], ['tcp', 'drop']);
    } finally {
      t.cleanup();
    }
  });
});

// The README's `--json` table is the contract: each row is run here, and its document must have
// the keys the row says are always there, and no key that the row does not name.
describe('the --json contract (the README table, row by row)', () => {
  interface Row {
    commands: string[];
    keys: string[];
    /** Keys the row names besides the braces: present when they apply. */
    optional: string[];
  }

  function contractRows(): Row[] {
    const readme = readFileSync('README.md', 'utf8');
    const section = readme.slice(readme.indexOf('### `--json`'));
    const start = section.indexOf('| command |');
    const table = section.slice(start, section.indexOf('\n\n', start));
    return table
      .split('\n')
      .slice(2)
      .map((line) => {
        const [command, doc] = line.replace(/^\| /, '').replace(/ \|$/, '').split(' | ');
        const braces = /`\{([^}]*)\}`/.exec(doc);
        const rest = braces ? doc.slice(braces.index + braces[0].length) : doc;
        return {
          commands: [...command.matchAll(/`([^`]+)`/g)].map((m) => m[1]).concat(command.includes('`') ? [] : [command]),
          keys: braces ? braces[1].split(', ') : [],
          optional: [...rest.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]),
        };
      });
  }

  const DIAGNOSTIC_KEYS = ['column', 'file', 'line', 'message', 'path'];

  it('every row: exactly its keys, and every error and warning located alike', async () => {
    const t = testEnv('anklume-json-contract-');
    const forbidden = ForbiddenTools.create();
    symlinkSync(join(STANDINS_BIN, 'must-not-run'), join(forbidden.bin, 'conntrack'));
    try {
      const tree = join(t.dir, 'tree');
      assert.equal((await runCli(['sync', EXAMPLE, '--base-dir', tree, '-q'], t.env)).code, 0);
      const bad = join(t.dir, 'bad.yml');
      writeFileSync(bad, readFileSync(EXAMPLE, 'utf8').replace('ip: "10.100.1.10"', 'ip: "10.100.1.999"'));
      const host = forbidden.env(t.env);
      // What each row's command is run as: hermetic (ansible-playbook, incus, nft and conntrack are
      // stand-ins that fail if called: the commands that read the host report what they could not read).
      const runs: Record<string, () => CliResult | Promise<CliResult>> = {
        validate: () => runCli(['validate', SHARED_GPU, '--json'], t.env),
        sync: () => runCli(['sync', SHARED_GPU, '--base-dir', join(t.dir, 'gpu-tree'), '--diff', '--json'], t.env),
        'sync --dry-run': () => runCli(['sync', SHARED_GPU, '--base-dir', join(t.dir, 'dry'), '--dry-run', '--json'], t.env),
        'sync --check': () => runCli(['sync', EXAMPLE, '--base-dir', tree, '--check', '--json'], t.env),
        init: () => runCli(['init', join(t.dir, 'started'), '--json'], t.env),
        resolve: () => runCli(['resolve', EXAMPLE, '--json'], t.env),
        nftables: () => runCli(['nftables', EXAMPLE, '--json'], t.env),
        'flows --from A --to B': () => runCli(['flows', 'examples/network-policies.yml', '--from', 'pro', '--to', 'lab', '--expect', 'drop', '--json'], t.env),
        flows: () => runCli(['flows', 'examples/network-policies.yml', '--json'], t.env),
        'flows --output FILE': () => runCli(['flows', EXAMPLE, '--output', join(t.dir, 'flows.dot'), '--json'], t.env),
        apply: () => spawnCli(['apply', '--base-dir', join(t.dir, 'no-tree'), '--json'], host),
        'apply-nftables': () => spawnCli(['apply-nftables', '--base-dir', join(t.dir, 'no-tree'), '--json'], host),
        'apply --check': () => spawnCli(['apply', '--check', '--base-dir', tree, '--json'], host),
        audit: () => spawnCli(['audit', '--infra', EXAMPLE, '--base-dir', tree, '--json'], host),
        'ai-switch': () => spawnCli(['ai-switch', '--domain', 'perso', '--dry-run', '--infra', EXAMPLE, '--base-dir', tree, '--json'], host),
        'ai-status': () => spawnCli(['ai-status', '--infra', EXAMPLE, '--json'], host),
        '--version': () => runCli(['--version', '--json'], t.env),
        'an invalid infra (exit 1)': () => runCli(['validate', bad, '--json'], t.env),
        'a usage error (exit 2)': () => runCli(['flows', EXAMPLE, '--format', 'dot', '--json'], t.env),
      };
      const rows = contractRows();
      assert.deepEqual(rows.flatMap((r) => r.commands).sort(), Object.keys(runs).sort(), 'a runner for every row of the table, a row for every runner');
      // Every command the CLI lists has a row: a new command cannot be left out of the contract.
      const listed = [...(await runCli(['--help'], t.env)).stdout.matchAll(/^ {2}([a-z-]+) {2,}/gm)].map((m) => m[1]);
      assert.ok(listed.length > 8, 'the help lists the commands');
      for (const name of listed) assert.ok(Object.keys(runs).some((k) => k.split(' ')[0] === name), `'${name}' has no row in the README's --json table`);
      for (const row of rows) {
        for (const command of row.commands) {
          const r = await runs[command]();
          let doc: Record<string, unknown>;
          try {
            doc = JSON.parse(r.stdout) as Record<string, unknown>;
          } catch {
            assert.fail(`${command}: not one JSON document: ${r.stdout}${r.stderr}`);
          }
          if (command === 'resolve') {
            assert.equal(doc.project_name, 'anklume-example');
            continue;
          }
          const keys = Object.keys(doc);
          for (const key of row.keys) assert.ok(keys.includes(key), `${command}: '${key}' is missing from ${keys.join(', ')}`);
          for (const key of keys) assert.ok(row.keys.includes(key) || row.optional.includes(key), `${command}: '${key}' is not in the README's row`);
          for (const list of ['errors', 'warnings']) {
            for (const d of (doc[list] as Record<string, unknown>[] | undefined) ?? []) assert.deepEqual(Object.keys(d).sort(), DIAGNOSTIC_KEYS, `${command}: ${list}`);
          }
        }
      }
      assert.deepEqual(forbidden.calls().map((c) => c.tool).filter((tool) => tool === 'ansible-playbook'), [], 'no playbook ran');
    } finally {
      forbidden.cleanup();
      t.cleanup();
    }
  });

  it('warnings are located under --json and in text, also when the sync cache answers (nothing parsed)', async () => {
    const t = testEnv();
    try {
      const located = [[SHARED_GPU, 12, '/domains/ai-tools/machines/trainer']];
      const runs = [['validate', SHARED_GPU], ['sync', SHARED_GPU, '--base-dir', t.baseDir, '--dry-run'], ['sync', SHARED_GPU, '--base-dir', t.baseDir], ['sync', SHARED_GPU, '--base-dir', t.baseDir]];
      for (const [i, args] of runs.entries()) {
        const doc = JSON.parse((await runCli([...args, '--json'], t.env)).stdout) as { warnings: { file: string; line: number; path: string }[]; written?: string[] };
        assert.deepEqual(doc.warnings.map((w) => [w.file, w.line, w.path]), located, args.join(' '));
        if (i === 3) assert.deepEqual(doc.written, [], 'the second sync was the cached one');
      }
      const text = await runCli(['sync', SHARED_GPU, '--base-dir', t.baseDir], t.env);
      assert.match(text.stderr, /^test\/fixtures\/invalid\/gpu-shared\.yml:12:7: WARNING: GPU policy is 'shared'/m);
    } finally {
      t.cleanup();
    }
  });
});
