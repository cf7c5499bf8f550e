/** An isolated environment for a test: temp dirs for the Ansible tree, /etc/anklume and the AI state. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestEnv {
  dir: string;
  baseDir: string;
  env: NodeJS.ProcessEnv;
  cleanup: () => void;
}

export function testEnv(prefix = 'anklume-test-'): TestEnv {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ANKLUME_CONF_DIR: join(dir, 'etc-anklume'),
    ANKLUME_STATE_FILE: join(dir, 'state', 'ai-access-current'),
    ANKLUME_LOG_FILE: join(dir, 'log', 'ai-switch.log'),
    NO_COLOR: '1',
  };
  return { dir, baseDir: join(dir, 'tree'), env, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
