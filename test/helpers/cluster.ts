/** What the real-cluster suites (.ci/incus-cluster: members in network namespaces akc-<member>) share. */
import { readFileSync } from 'node:fs';
import { execa } from 'execa';

/** The sshd processes of a member's network namespace: its listener and every session (Ansible's kept connections). */
export async function sshdOf(member: string): Promise<string[]> {
  const pids = (await execa('ip', ['netns', 'pids', `akc-${member}`], { reject: false })).stdout.split('\n').filter(Boolean);
  return pids.filter((pid) => {
    try {
      // A killed process stays listed until its parent reaps it (state Z): it serves nothing.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sshd' && stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
    } catch {
      return false;
    }
  });
}

/**
 * Every sshd of a member killed, and gone (waited for, not timed): a session sshd forks while the
 * first ones die still holds the listening socket, which would accept a connection and drop it.
 */
export async function killSshd(member: string): Promise<void> {
  let left = await sshdOf(member);
  while (left.length) {
    for (const pid of left) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    await new Promise((r) => setTimeout(r, 20));
    left = await sshdOf(member);
  }
}
