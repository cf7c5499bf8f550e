/** Probes run inside real instances (python3 of the test image). */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';

/** Prints open, timeout or refused: a TCP connection to argv[2]:argv[3] from the source address argv[1]. */
export const CONNECT_FROM = String.raw`
import socket, sys
s = socket.socket()
s.settimeout(2)
s.bind((sys.argv[1], 0))
try:
    s.connect((sys.argv[2], int(sys.argv[3])))
    print("open")
except socket.timeout:
    print("timeout")
except OSError:
    print("refused")
`;

/**
 * A TCP connection held open by anklume-hold in an instance (argv: the command that runs it, e.g.
 * `incus exec ...`): `connected` first, then each ping says whether the same connection still
 * passes. The process goes into `holds` before anything is awaited, for the suite's clean-up.
 */
export async function holdConnection(argv: string[], label: string, holds: ChildProcessWithoutNullStreams[], env?: NodeJS.ProcessEnv): Promise<{ ping: () => Promise<string> }> {
  const child = spawn(argv[0], argv.slice(1), { stdio: 'pipe', ...(env ? { env } : {}) });
  holds.push(child);
  const lines: string[] = [];
  const waiters: ((l: string) => void)[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => (waiters.length ? waiters.shift()!(l) : lines.push(l)));
  const next = () => new Promise<string>((resolve, reject) => {
    if (lines.length) return resolve(lines.shift()!);
    const timer = setTimeout(() => reject(new Error(`hold ${label}: no answer`)), 10_000);
    waiters.push((l) => { clearTimeout(timer); resolve(l); });
  });
  assert.equal(await next(), 'connected');
  let n = 0;
  return {
    ping: async () => {
      const token = `t${++n}`;
      child.stdin.write(`${token} 1500\n`);
      return (await next()).replace(` ${token}`, '');
    },
  };
}
