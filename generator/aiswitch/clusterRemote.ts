/**
 * Whether the Incus that `incus` reaches (its default remote) is the cluster of infra.yml: the
 * cluster's record of the holder and the instances audit judges are read from it, and a default
 * remote that is another Incus (this machine's own, another cluster) would be reported as the
 * cluster's. Clustered (`environment.server_clustered` of /1.0), and its members are the ones
 * global.cluster names (/1.0/cluster/members); read-only, within the read's time limit.
 */
import { noAnswer, type Read } from './readLimit.js';
import { runLimited } from './limitedRun.js';

const list = (names: string[]) => names.join(', ') || 'none';

async function query(path: string, env: NodeJS.ProcessEnv, seconds: number): Promise<Read<unknown>> {
  const r = await runLimited(['incus', 'query', path], env, seconds);
  if (r.timedOut) return { ok: false, why: `incus query ${path}: ${noAnswer(seconds)} (without quorum the cluster's database does not answer)` };
  if (r.missing) return { ok: false, why: 'incus is not installed' };
  if (r.exitCode !== 0) return { ok: false, why: `incus query ${path}: ${(r.stderr || r.message).trim().split('\n').slice(-1)[0]}` };
  try {
    return { ok: true, value: JSON.parse(r.stdout) as unknown };
  } catch (err) {
    return { ok: false, why: `incus query ${path}: ${(err as Error).message}` };
  }
}

/** ok: the default remote is the cluster of `members`; else why it is not, or why it could not be told. */
export async function checkClusterRemote(env: NodeJS.ProcessEnv, members: string[], seconds: number): Promise<Read<true>> {
  const server = await query('/1.0', env, seconds);
  if (!server.ok) return server;
  const environment = (server.value as { environment?: { server_clustered?: unknown; server_name?: unknown } }).environment ?? {};
  if (environment.server_clustered !== true) {
    return { ok: false, why: `the Incus that 'incus' reaches (its default remote, server '${String(environment.server_name ?? '?')}') is not clustered, so it is not the cluster of infra.yml (members ${list(members)}): point the default remote at a member (incus remote switch)` };
  }
  const listed = await query('/1.0/cluster/members', env, seconds);
  if (!listed.ok) return listed;
  const names = (Array.isArray(listed.value) ? listed.value : []).map((url) => String(url).split('/').pop() ?? '').filter(Boolean).sort();
  const expected = [...members].sort();
  if (names.length !== expected.length || names.some((n, i) => n !== expected[i])) {
    return { ok: false, why: `the Incus that 'incus' reaches (its default remote) is a cluster of members ${list(names)}, not infra.yml's (${list(expected)}): point the default remote at a member of infra.yml's cluster (incus remote switch), or correct global.cluster` };
  }
  return { ok: true, value: true };
}
