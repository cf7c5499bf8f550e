/**
 * Every member of an Incus cluster read over Ansible, read-only, in one play (members in
 * parallel): its holder sets, whether table inet anklume is loaded, its tracked connections and
 * its interfaces. Each member's answer is written on this machine beside the run; a member that
 * Ansible cannot reach, or whose read fails, comes back as the reason, and is never taken for clean.
 * `audit` and `ai-status` on a cluster read the members this way, as `apply` reaches them: the
 * inventory sync wrote (inventory/_cluster.yml), the user's own Ansible settings and -e variables.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConntrackEntry, Read } from './auditChecks.js';
import { parseConntrack } from './hostReader.js';
import { memberTaskTimeoutS, noAnswer } from '../aiswitch/readLimit.js';
import { AI_HOLDER_SET, holdersFromSetJson, TABLE_FAMILY, TABLE_NAME } from '../nftables/nftables.js';

/** The set that names the holder's subnet on a cluster (templates/nftables/anklume.nft.hbs). */
export const AI_HOLDER_SUBNET_SET = 'ai_holder_subnet';

/** What can be read on a member; `ai-status` asks for the holder sets alone. */
export type MemberPart = 'holders' | 'table' | 'conntrack' | 'links';

/** The commands, one per part: constant text, no input of anyone's (the names are anklume's). */
const COMMANDS: Record<MemberPart | 'subnets', string> = {
  holders: `nft -j list set ${TABLE_FAMILY} ${TABLE_NAME} ${AI_HOLDER_SET}`,
  subnets: `nft -j list set ${TABLE_FAMILY} ${TABLE_NAME} ${AI_HOLDER_SUBNET_SET}`,
  table: `nft --stateless list table ${TABLE_FAMILY} ${TABLE_NAME} >/dev/null`,
  conntrack: 'conntrack -L -f ipv4',
  links: 'ip -j link show',
};

export interface MemberReadings {
  /** Domains in the member's ai_holder set; undefined: the set is not loaded. */
  holders: Read<string[] | undefined>;
  /** Subnets in its ai_holder_subnet set (a.b.c.d/len); undefined: the set is not loaded. */
  holderSubnets: Read<string[] | undefined>;
  /** Whether table inet anklume is loaded there. */
  table: Read<boolean>;
  conntrack: Read<ConntrackEntry[]>;
  links: Read<{ ifname: string; master?: string }[]>;
}

/** Each member of the inventory, with what was read on it or why it could not be. */
export type MembersRead = Record<string, Read<MemberReadings>>;

/**
 * The script each member runs: every part in its section, with its exit status. Each command in a
 * group whose stderr joins the section: the table's own `>/dev/null` then drops its listing alone,
 * not nft's "No such file or directory" that says the table is not loaded.
 */
export function readScript(parts: MemberPart[]): string {
  const names = parts.flatMap((p) => (p === 'holders' ? ['holders', 'subnets'] : [p])) as (MemberPart | 'subnets')[];
  return names.map((name) => `echo '@@begin ${name}'; { ${COMMANDS[name]}; } 2>&1; echo "@@end ${name} $?"`).join('\n');
}

/** The sections of a member's answer: name → its output and exit status. */
export function sections(stdout: string): Map<string, { rc: number; text: string }> {
  const out = new Map<string, { rc: number; text: string }>();
  for (const m of stdout.replace(/\r/g, '').matchAll(/^@@begin (\w+)\n([\s\S]*?)^@@end \1 (\d+)$/gm)) out.set(m[1], { rc: Number(m[3]), text: m[2].trimEnd() });
  return out;
}

const missingSet = (text: string) => /No such file or directory/.test(text);
const firstLine = (text: string) => text.trim().split('\n').find((l) => /error|denied|not permitted|not found/i.test(l)) ?? text.trim().split('\n')[0] ?? '';

/**
 * A section as a value, or why it could not be read (the command and what it said). `missing`:
 * the value when nft says the table or set is not there (not loaded is an answer, not a failure).
 */
function part<T>(s: Map<string, { rc: number; text: string }>, name: MemberPart | 'subnets', parse: (text: string) => T, missing?: { value: T }): Read<T> {
  const command = COMMANDS[name].split(' >')[0];
  const got = s.get(name);
  if (!got) return { ok: false, why: `${command}: no answer` };
  if (got.rc !== 0) {
    if (missing && missingSet(got.text)) return { ok: true, value: missing.value };
    return { ok: false, why: `${command}: ${got.rc === 127 ? `${command.split(' ')[0]} is not installed there` : firstLine(got.text)}` };
  }
  try {
    return { ok: true, value: parse(got.text) };
  } catch (err) {
    return { ok: false, why: `${command}: ${(err as Error).message}` };
  }
}

/** The elements of `nft -j list set … ai_holder_subnet`: prefixes as a.b.c.d/len, addresses as they are. */
export function subnetsFromSetJson(json: string): string[] {
  const doc = JSON.parse(json) as { nftables?: { set?: { name?: string; elem?: unknown[] } }[] };
  const set = doc.nftables?.map((i) => i.set).find((s) => s?.name === AI_HOLDER_SUBNET_SET);
  if (!set) throw new Error(`the JSON holds no set ${AI_HOLDER_SUBNET_SET}`);
  return (set.elem ?? []).map((e) => {
    if (typeof e === 'string') return e;
    const prefix = (e as { prefix?: { addr?: unknown; len?: unknown } }).prefix;
    if (prefix && typeof prefix.addr === 'string') return `${prefix.addr}/${String(prefix.len)}`;
    throw new Error(`unexpected ${AI_HOLDER_SUBNET_SET} element ${JSON.stringify(e)}`);
  });
}

/** One member's answer (Ansible's registered result of the read) as readings. */
export function memberReadings(result: { unreachable?: boolean; failed?: boolean; rc?: number; stdout?: string; msg?: string }): Read<MemberReadings> {
  // The task's time limit passed: Ansible stopped the read (a hung nft, SSH that stopped answering)
  // and says so in its message alone (the registered result keeps no other trace of it).
  const timedOut = /failed to execute in the expected time frame \((\d+)\)/.exec(result.msg ?? '');
  if (timedOut) return { ok: false, why: `${noAnswer(Number(timedOut[1]))} (its read was stopped)` };
  if (result.unreachable) return { ok: false, why: `Ansible cannot reach it: ${(result.msg ?? 'unreachable').trim().split('\n')[0]}` };
  const s = sections(result.stdout ?? '');
  if (s.size === 0) return { ok: false, why: `its read failed: ${(result.msg ?? `exit ${String(result.rc)}`).trim().split('\n')[0]}` };
  const json = <T>(text: string) => JSON.parse(text) as T;
  return {
    ok: true,
    value: {
      holders: part<string[] | undefined>(s, 'holders', holdersFromSetJson, { value: undefined }),
      holderSubnets: part<string[] | undefined>(s, 'subnets', subnetsFromSetJson, { value: undefined }),
      table: part(s, 'table', () => true, { value: false }),
      conntrack: part(s, 'conntrack', parseConntrack),
      links: part(s, 'links', json<{ ifname: string; master?: string }[]>),
    },
  };
}

/** The play: read on every member, then write each member's answer on this machine. */
const PLAYBOOK = `---
# Written by anklume-gen (audit, ai-status) for one run, then removed: it reads, it changes nothing.
- name: Read every member of the Incus cluster (read-only)
  hosts: anklume_cluster
  gather_facts: false
  tasks:
    - name: Read the holder sets, the table, the connections and the interfaces
      ansible.builtin.shell:
        cmd: "{{ anklume_read_script }}"
      register: anklume_read
      changed_when: false
      failed_when: false
      # A read past its time limit fails the task (failed_when does not apply): its answer is still kept.
      ignore_errors: true
      ignore_unreachable: true
      timeout: "{{ anklume_read_timeout }}"
      check_mode: false
    - name: Keep the answer on this machine
      ansible.builtin.copy:
        content: "{{ anklume_read | ansible.builtin.to_json }}"
        dest: "{{ anklume_read_dir }}/member@{{ inventory_hostname }}.json"
        mode: "0600"
      delegate_to: localhost
      changed_when: false
      check_mode: false
`;

export interface MembersReadRun {
  env: NodeJS.ProcessEnv;
  /** inventory/_cluster.yml under the tree. */
  inventory: string;
  /** The members infra.yml names: each one gets an answer, read or not. */
  members: string[];
  vars: Record<string, unknown>;
  parts: MemberPart[];
  /** The run's time limit in seconds; each member's read gets half of it (readLimit.ts). */
  seconds: number;
}

export async function readMembers(run: MembersReadRun): Promise<MembersRead> {
  const { runPlaybook } = await import('../aiswitch/ansible.js');
  const dir = mkdtempSync(join(tmpdir(), 'anklume-members-read-'));
  try {
    const playbook = join(dir, 'read-members.yml');
    const varsFile = join(dir, 'vars.json');
    const answers = join(dir, 'answers');
    writeFileSync(playbook, PLAYBOOK);
    // The user's -e first, then ours: the script and the folder are not theirs to change.
    writeFileSync(varsFile, JSON.stringify({ ...run.vars, anklume_read_script: readScript(run.parts), anklume_read_dir: answers, anklume_read_timeout: memberTaskTimeoutS(run.seconds) }));
    mkdirSync(answers);
    let output = '';
    const limit = AbortSignal.timeout(run.seconds * 1000);
    const result = await runPlaybook({
      tempDir: dir, playbook, varsFile, extraArgs: ['-i', run.inventory], env: run.env, color: false, onOutput: (chunk) => void (output += chunk), signal: limit,
    });
    const files = new Set(readdirSync(answers));
    const failure = limit.aborted
      ? `${noAnswer(run.seconds)} (ansible-playbook was stopped)`
      : result.spawnError ? `ansible-playbook could not be started (${result.spawnError})` : `no answer from it (ansible-playbook ${result.ok ? 'said nothing of it' : `exit ${result.exitCode ?? result.signal}`}: ${output.trim().split('\n').slice(-2).join(' ')})`;
    return Object.fromEntries(run.members.map((m): [string, Read<MemberReadings>] => {
      if (!files.has(`member@${m}.json`)) return [m, { ok: false, why: failure }];
      return [m, memberReadings(JSON.parse(readFileSync(join(answers, `member@${m}.json`), 'utf8')) as Parameters<typeof memberReadings>[0])];
    }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
