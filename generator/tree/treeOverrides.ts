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

export function treeOverrides(files: TreeFile[]): Diagnostic[] {
  const problems: Diagnostic[] = [];
  for (const { path, text } of files) {
    const span = blockSpan(text);
    const outside = span ? text.slice(0, span.start) + text.slice(span.end) : text;
    // Most files have nothing of their own: no parse.
    if (!hasContent(outside)) continue;
    const at = (offset: number) => ({ file: path, line: text.slice(0, offset).split('\n').length, column: offset - text.lastIndexOf('\n', offset - 1) });
    const tooDeep = depthProblem(text);
    if (tooDeep) {
      problems.push({ ...at(tooDeep.offset), message: `${tooDeep.message}: not read; remove it, or write the file again with 'anklume-gen sync' (make sync)` });
      continue;
    }
    const { parseDocument, isMap, isScalar } = yaml();
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
      if (!isScalar(pair.key) || !pair.key.range || inBlock(pair.key.range[0])) continue;
      const key = String(pair.key.value);
      const again = managed.has(key);
      // A merge key (`<<: {...}` or an alias) brings whatever keys the block does not set.
      const merge = key === '<<';
      if (!again && !merge && !isAnklumeVariable(key)) continue;
      problems.push({
        ...at(pair.key.range[0]),
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
