/**
 * The make targets users type: they pick the infra, pass the base dir, and never let a value such
 * as DOMAIN reach a shell unquoted. Runs `make` for real (it builds dist/ first when needed); where
 * a target must refuse, ansible-playbook, incus and nft are stand-ins first on PATH that fail if
 * called (test/helpers/standins.ts, ForbiddenTools), and the test says so in its name.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
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
