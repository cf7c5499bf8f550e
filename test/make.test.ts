/**
 * The make targets users type: they pick the infra, pass the base dir, and never let a value such
 * as DOMAIN reach a shell unquoted. Runs `make` for real (it builds dist/ first when needed); where
 * a target must refuse, ansible-playbook, incus and nft are stand-ins first on PATH that fail if
 * called (test/helpers/standins.ts, ForbiddenTools), and the test says so in its name.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { testEnv } from './helpers/env.ts';
import { ForbiddenTools } from './helpers/standins.ts';

const ROOT = process.cwd();

/**
 * The environment of a nested make: without the variables an outer `make test` exports, which
 * would otherwise win over the Makefile's defaults.
 */
const OUTER_MAKE = new Set(['INFRA', 'BASE_DIR', 'DOMAIN', 'MAKEFLAGS', 'MAKELEVEL', 'MFLAGS']);

function makeEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([key]) => !OUTER_MAKE.has(key)));
}

function make(args: string[], env: NodeJS.ProcessEnv, cwd = ROOT): { code: number; stdout: string; stderr: string } {
  const r = spawnSync('make', ['-s', '-C', cwd, ...args], { env: makeEnv(env), encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe('make targets', () => {
  it('make sync writes the tree for INFRA into BASE_DIR; sync-check then passes; sync-dry writes nothing', () => {
    const t = testEnv();
    try {
      const dry = make(['sync-dry', `INFRA=${ROOT}/examples/infra.yml`, `BASE_DIR=${t.baseDir}`], t.env);
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(dry.stdout, /Would write: host_vars\/pro-dev\.yml/);
      assert.ok(!existsSync(t.baseDir));
      const sync = make(['sync', `INFRA=${ROOT}/examples/infra.yml`, `BASE_DIR=${t.baseDir}`], t.env);
      assert.equal(sync.code, 0, sync.stderr);
      assert.deepEqual(readdirSync(t.baseDir).sort(), ['.anklume-gen', 'group_vars', 'host_vars', 'inventory', 'nftables']);
      assert.equal(make(['sync-check', `INFRA=${ROOT}/examples/infra.yml`, `BASE_DIR=${t.baseDir}`], t.env).code, 0);
    } finally {
      t.cleanup();
    }
  });

  it('picks infra/ when infra/base.yml exists, else infra.yml (make -f from a project directory)', () => {
    const t = testEnv();
    try {
      const project = join(t.dir, 'project');
      mkdirSync(project, { recursive: true });
      const run = () => spawnSync('make', ['-s', '-f', join(ROOT, 'Makefile'), 'validate'], { cwd: project, env: makeEnv(t.env), encoding: 'utf8' });
      writeFileSync(join(project, 'infra.yml'), 'project_name: single\nglobal: {base_subnet: "10.1"}\ndomains: {solo: {subnet_id: 1}}\n');
      const single = run();
      assert.equal(single.status, 0, single.stderr);
      assert.match(single.stdout, /^infra\.yml: valid$/m);
      cpSync(join(ROOT, 'examples', 'infra'), join(project, 'infra'), { recursive: true });
      const split = run();
      assert.equal(split.status, 0, split.stderr);
      assert.match(split.stdout, /^infra: valid$/m);
    } finally {
      t.cleanup();
    }
  });

  it('a DOMAIN with shell syntax is refused as a domain name and runs nothing (ansible-playbook, incus, nft: stand-ins that fail if called)', () => {
    const t = testEnv();
    const forbidden = ForbiddenTools.create();
    try {
      const marker = join(t.dir, 'pwned');
      const r = make(['ai-switch', `INFRA=${ROOT}/examples/infra.yml`, `BASE_DIR=${t.baseDir}`, `DOMAIN=x"; touch ${marker}; echo "`, 'DRY_RUN=1'], forbidden.env(t.env));
      forbidden.assertNoneCalled();
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /Invalid domain name: x"; touch .*pwned; echo " \(must be DNS-safe\)/);
      assert.ok(!existsSync(marker), 'the injected command did not run');
    } finally {
      forbidden.cleanup();
      t.cleanup();
    }
  });

  // On an Incus cluster ai-status and audit reach the members through BASE_DIR's inventory/_cluster.yml.
  it('make ai-status and make audit read the tree in BASE_DIR; without one there, they name the real paths and make commands (ansible-playbook, incus, nft: stand-ins that fail if called)', () => {
    const t = testEnv();
    const forbidden = ForbiddenTools.create();
    try {
      const infra = `${ROOT}/examples/cluster.yml`;
      assert.equal(make(['sync', `INFRA=${infra}`, `BASE_DIR=${t.baseDir}`], t.env).code, 0);
      const status = make(['ai-status', `INFRA=${infra}`, `BASE_DIR=${t.baseDir}`], forbidden.env(t.env));
      assert.equal(status.code, 2, 'the stand-ins fail: make reports the failed recipe');
      assert.match(status.stdout, /^Member desk: NOT READ \(/m, status.stderr);
      assert.ok(forbidden.calls().some((c) => c.tool === 'ansible-playbook' && c.args.includes(`-i ${t.baseDir}/inventory/_cluster.yml`)), 'through the inventory of BASE_DIR');
      forbidden.reset();
      const nowhere = join(t.dir, 'nowhere');
      for (const target of ['ai-status', 'audit']) {
        const r = make([target, `INFRA=${infra}`, `BASE_DIR=${nowhere}`], forbidden.env(t.env));
        assert.equal(r.code, 2, 'make reports the failed recipe');
        assert.match(r.stderr, new RegExp(`write it with 'anklume-gen sync ${infra} --base-dir ${nowhere}' \\(make sync INFRA=${infra} BASE_DIR=${nowhere}\\), or name the tree that has it: .*\\(make ${target} BASE_DIR=DIR\\)`), r.stderr);
        assert.doesNotMatch(r.stderr, /<infra>/);
      }
      forbidden.assertNoneCalled();
    } finally {
      forbidden.cleanup();
      t.cleanup();
    }
  });

  it('make ai-switch without DOMAIN says which argument is missing (ansible-playbook, incus, nft: stand-ins that fail if called)', () => {
    const t = testEnv();
    const forbidden = ForbiddenTools.create();
    try {
      const r = make(['ai-switch', `INFRA=${ROOT}/examples/infra.yml`, `BASE_DIR=${t.baseDir}`, 'DRY_RUN=1'], forbidden.env(t.env));
      forbidden.assertNoneCalled();
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /Missing required --domain argument/);
    } finally {
      forbidden.cleanup();
      t.cleanup();
    }
  });
});

/** The commands of a README block of shell lines, each without its `# comment`. */
function readmeBlock(index: number): string[] {
  const blocks = [...readFileSync(join(ROOT, 'README.md'), 'utf8').matchAll(/^```sh\n([\s\S]*?)^```$/gm)];
  return blocks[index][1].split('\n').filter(Boolean).map((line) => line.replace(/\s+#\s.*$/, ''));
}

describe("the README's first lines", () => {
  it('are the two lines CI runs, as they are written (.ci/run)', () => {
    const ci = [...readFileSync(join(ROOT, '.ci/run'), 'utf8').matchAll(/^run '([^']*)'$/gm)].map((m) => m[1]);
    assert.deepEqual(ci, readmeBlock(0));
    assert.deepEqual(ci, ['npm ci && npx anklume-gen examples/infra.yml --dry-run', 'make deps && make test']);
  });
});

/**
 * make deps as root, as a user with sudo, as a user without: `id`, `sudo` and `apt-get` are
 * stand-ins in a directory that is the whole PATH (with bash and dirname beside them, so that no
 * real sudo can be found). The `id` stand-in says FAKE_UID (1000 unless set); the `sudo` stand-in
 * records its arguments and runs them with FAKE_UID=0; the `apt-get` stand-in records its
 * arguments and refuses `install`, so that .ci/incus-setup is never reached.
 */
describe('make deps (stand-ins first and alone on PATH: id, sudo, apt-get)', () => {
  const makeBin = spawnSync('bash', ['-c', 'command -v make'], { encoding: 'utf8' }).stdout.trim();
  const packages = /^DEB_PACKAGES := (.*)$/m.exec(readFileSync(join(ROOT, 'Makefile'), 'utf8'))![1];

  function standIns(withSudo: boolean): { bin: string; log: string; env: NodeJS.ProcessEnv; cleanup: () => void } {
    const t = testEnv();
    const bin = join(t.dir, 'bin');
    const log = join(t.dir, 'calls');
    mkdirSync(bin);
    for (const tool of ['bash', 'dirname']) symlinkSync(spawnSync('bash', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim(), join(bin, tool));
    const script = (name: string, body: string) => writeFileSync(join(bin, name), `#!/bin/bash\n${body}\n`, { mode: 0o755 });
    script('id', '[ "$1" = -u ] || exit 64\necho "${FAKE_UID:-1000}"');
    script('apt-get', `echo "apt-get uid=$(id -u) $*" >> ${log}\n[ "$1" != install ] || { echo "stand-in: apt-get install stops here" >&2; exit 42; }`);
    if (withSudo) script('sudo', `echo "sudo $*" >> ${log}\nexec /usr/bin/env FAKE_UID=0 "$@"`);
    const env: NodeJS.ProcessEnv = { ...makeEnv(t.env), PATH: bin, ANKLUME_TEST_CACHE: join(t.dir, 'cache with space') };
    delete env.FAKE_UID;
    return { bin, log, env, cleanup: t.cleanup };
  }

  const calls = (log: string) => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : []);

  it('as a user with sudo: runs itself again through sudo (keeping ANKLUME_TEST_CACHE), and says so', () => {
    const s = standIns(true);
    try {
      const r = spawnSync(makeBin, ['-s', '-C', ROOT, 'deps'], { env: s.env, encoding: 'utf8' });
      assert.notEqual(r.status, 0, 'the apt-get stand-in refuses install');
      assert.match(r.stderr, /make deps: not root, so it runs again through sudo: sudo .*\/\.ci\/deps ansible /);
      assert.deepEqual(calls(s.log), [
        `sudo ANKLUME_TEST_CACHE=${s.env.ANKLUME_TEST_CACHE} ${ROOT}/.ci/deps ${packages}`,
        'apt-get uid=0 update -qq',
        `apt-get uid=0 install -y -qq --no-install-recommends ${packages}`,
      ]);
      assert.match(r.stderr, /stand-in: apt-get install stops here/);
    } finally {
      s.cleanup();
    }
  });

  it('as root: installs directly, sudo not called', () => {
    const s = standIns(true);
    try {
      const r = spawnSync(makeBin, ['-s', '-C', ROOT, 'deps'], { env: { ...s.env, FAKE_UID: '0' }, encoding: 'utf8' });
      assert.notEqual(r.status, 0, 'the apt-get stand-in refuses install');
      assert.doesNotMatch(r.stderr, /sudo/);
      assert.deepEqual(calls(s.log), ['apt-get uid=0 update -qq', `apt-get uid=0 install -y -qq --no-install-recommends ${packages}`]);
    } finally {
      s.cleanup();
    }
  });

  it('as a user without sudo: says to run it as root, installs nothing', () => {
    const s = standIns(false);
    try {
      const r = spawnSync(makeBin, ['-s', '-C', ROOT, 'deps'], { env: s.env, encoding: 'utf8' });
      assert.equal(r.status, 2, 'make reports the failed recipe');
      assert.match(r.stderr, new RegExp(`make deps: installing Debian packages needs root; you are not root and sudo is not installed\\. Run it as root: su -c 'make -C ${ROOT} deps'`));
      assert.deepEqual(calls(s.log), []);
    } finally {
      s.cleanup();
    }
  });
});
