#!/usr/bin/env node
// The anklume-gen command: the one-file build of the CLI through V8's code cache (codeCache.cts),
// so that a command starts in about Node's own start-up time; without that build (sources run
// through tsc alone), the CLI's modules.
import { homedir } from 'node:os';
import { join } from 'node:path';
import { loadBundle } from './codeCache.cjs';

interface CliBundle {
  runProcess: () => void;
}

/** The user's cache folder, if there is one (no HOME and no passwd entry: none). */
function userCache(): string[] {
  const xdgCache = process.env.XDG_CACHE_HOME;
  try {
    return [join(xdgCache?.startsWith('/') ? xdgCache : join(homedir(), '.cache'), 'anklume-gen')];
  } catch {
    return [];
  }
}

const bundle = loadBundle<CliBundle>(join(__dirname, 'anklume-gen.bundle.cjs'), [join(__dirname, '..', '..', 'code-cache'), ...userCache()]);
if (bundle) bundle.exports.runProcess();
else void import('./main.js').then((cli) => cli.runProcess());
