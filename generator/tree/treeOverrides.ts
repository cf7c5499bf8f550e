/**
 * What apply would read from the tree that infra.yml's checks never saw: one of anklume's variables
 * set outside a file's managed block. The roles read each tree file whole, and in YAML a key set
 * again later wins, so `instance_devices` below `# === END MANAGED ===` would give a machine a NIC
 * on ai-tools' bridge that validation refuses in infra.yml. Pure: files in, located problems out.
 */
import { blockSpan } from './managedBlock.js';
import { depthProblem } from '../infra/depth.js';
import { yaml } from '../infra/yamlLibrary.js';
import type { Diagnostic } from '../core/types.js';

export interface TreeFile {
  /** The file, as messages name it (host_vars/x.yml, group_vars/all.yml, inventory/x.yml, under the tree). */
  path: string;
  text: string;
}

/**
 * anklume's variables (the tree's keys, docs/spec §6, as tree/tree.ts writes them): its prefixes,
 * and the few keys of group_vars without one. test/tree-overrides.test.ts holds every key that
 * buildTree writes to this rule.
 */
const ANKLUME_PREFIX = /^(?:instance|domain|incus|anklume|psot)_/;
const ANKLUME_KEYS = new Set(['project_name', 'base_subnet', 'default_os_image', 'network_policies', 'subnet_id']);
const ANKLUME_NAMES = `instance_*, domain_*, incus_*, anklume_*, psot_*, ${[...ANKLUME_KEYS].join(', ')}`;

export function isAnklumeVariable(key: string): boolean {
  return ANKLUME_PREFIX.test(key) || ANKLUME_KEYS.has(key);
}

/** Whether text has anything but blank lines, comments and a document start. */
const hasContent = (text: string): boolean => text.split('\n').some((line) => !/^\s*(?:#.*)?$/.test(line) && !/^---\s*$/.test(line));

const FIX = "set it in infra.yml and run 'anklume-gen sync' (make sync), or remove it from this file";

/**
 * What Ansible's YAML 1.1 reader takes for a line break and the `yaml` library (YAML 1.2) does not
 * (NEL, LS, PS, a CR alone), and directives: sync never writes them, and past them the two readers
 * see different keys.
 */
const READERS_DISAGREE = /[\u0085\u2028\u2029]|\r(?!\n)|^%/m;

export function treeOverrides(files: TreeFile[]): Diagnostic[] {
  const problems: Diagnostic[] = [];
  for (const { path, text } of files) {
    const at = (offset: number) => ({ file: path, line: text.slice(0, offset).split('\n').length, column: offset - text.lastIndexOf('\n', offset - 1) });
    const odd = READERS_DISAGREE.exec(text);
    if (odd) {
      problems.push({ ...at(odd.index), message: `${odd[0] === '%' ? 'a YAML directive' : 'a line break that only YAML 1.1 readers take for one (NEL, LS, PS or a lone CR)'}: Ansible and anklume would not read the same keys from this file, and sync never writes one; write the file again with 'anklume-gen sync' (make sync)` });
      continue;
    }
    const span = blockSpan(text);
    const outside = span ? text.slice(0, span.start) + text.slice(span.end) : text;
    // Most files have nothing of their own: no parse.
    if (!hasContent(outside)) continue;
    const tooDeep = depthProblem(text);
    if (tooDeep) {
      problems.push({ ...at(tooDeep.offset), message: `${tooDeep.message}: not read; remove it, or write the file again with 'anklume-gen sync' (make sync)` });
      continue;
    }
    const { parseDocument, isMap, isNode, isScalar } = yaml();
    const doc = parseDocument(text, { uniqueKeys: false, prettyErrors: false });
    if (doc.errors.length) {
      problems.push({ ...at(doc.errors[0].pos[0]), message: `not YAML that Ansible can read (${doc.errors[0].message.split('\n')[0]}): apply would stop there; write it again with 'anklume-gen sync' (make sync)` });
      continue;
    }
    if (!isMap(doc.contents)) continue;
    const inBlock = (offset: number) => span !== undefined && offset >= span.start && offset < span.end;
    const managed = new Set<string>();
    for (const pair of doc.contents.items) {
      if (isScalar(pair.key) && pair.key.range && inBlock(pair.key.range[0])) managed.add(String(pair.key.value));
    }
    for (const pair of doc.contents.items) {
      const keyAt = isNode(pair.key) && pair.key.range ? pair.key.range[0] : undefined;
      if (keyAt !== undefined && inBlock(keyAt)) {
        // Indented lines after the block's end continue the value of its last key.
        const valueEnd = isNode(pair.value) && pair.value.range ? pair.value.range[1] : keyAt;
        if (span !== undefined && valueEnd > span.end) problems.push({ ...at(span.end), message: `the lines after the managed block continue the value of its last key ('${String(isScalar(pair.key) ? pair.key.value : '?')}'): Ansible would read them as part of it although infra.yml's checks never saw them; start your own variables at the beginning of a line, or ${FIX}` });
        continue;
      }
      // Only plain text names a key as it reads: an alias, a tag (!!merge) or a YAML 1.1 merge key could be any key.
      if (!isScalar(pair.key) || typeof pair.key.value !== 'string' || pair.key.tag !== undefined || keyAt === undefined) {
        problems.push({ ...at(keyAt ?? 0), message: `a key that is not plain text (an alias, a tag or a merge) outside the managed block: it can be any of anklume's variables for Ansible; write the key out, outside anklume's (${ANKLUME_NAMES}), or remove it from this file` });
        continue;
      }
      const key = pair.key.value;
      const again = managed.has(key);
      // A merge key (`<<: {...}` or an alias) brings whatever keys the block does not set.
      const merge = key === '<<';
      if (!again && !merge && !isAnklumeVariable(key)) continue;
      problems.push({
        ...at(keyAt),
        message: merge
          ? `a merge key (<<) outside the managed block: it can set anklume's variables that the block does not, and apply would read them although infra.yml's checks never saw them; write the keys out, outside anklume's (${ANKLUME_NAMES}), or remove it from this file`
          : again
          ? `'${key}' is set again outside the managed block: Ansible reads the file whole and keeps the later value, so apply would build what infra.yml's checks never saw (a device or a profile there can put a machine on another domain's bridge); ${FIX}`
          : `'${key}' is one of anklume's variables, set outside the managed block: apply would read it although infra.yml's checks never saw it (a device or a profile there can put a machine on another domain's bridge); ${FIX}`,
      });
    }
  }
  return problems;
}
