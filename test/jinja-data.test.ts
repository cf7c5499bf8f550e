/**
 * Generated values are data, not templates: text that Jinja would evaluate (a description with
 * `{{ ... }}`, `{% ... %}`, `{# ... #}`) reaches Ansible's variables literally, through a real
 * ansible-playbook run over the tree sync wrote — and, without the `!unsafe` tag, would not.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { execa } from 'execa';
import { sync } from '../generator/tree/sync.ts';
import { testEnv } from './helpers/env.ts';

const INSTANCE = "{{ 6 * 7 }} {{ lookup('pipe', 'touch MARKER') }} {# note #}";
const DOMAIN = 'lab {% if true %}evaluated{% endif %}';
const POLICY = '{{ 6 * 7 }}: ssh';

const INFRA = `project_name: jinja
global: {base_subnet: "10.1"}
domains:
  lab:
    subnet_id: 1
    description: ${JSON.stringify(DOMAIN)}
    machines:
      lab-box: {ip: "10.1.1.10", description: ${JSON.stringify(INSTANCE)}}
  other:
    subnet_id: 2
network_policies:
  - {description: ${JSON.stringify(POLICY)}, from: lab, to: other, ports: [22]}
`;

/** Beside the tree, so that Ansible reads its group_vars/ and host_vars/ as the playbook's own. */
const PLAYBOOK = `---
- name: Write what Ansible holds in the variables
  hosts: lab-box
  connection: local
  gather_facts: false
  tasks:
    - name: Copy the variables to a file, as JSON
      ansible.builtin.copy:
        dest: "{{ out }}"
        content: "{{ {'instance': instance_description, 'domain': domain_description, 'policy': network_policies[0].description} | to_json }}"
        mode: "0644"
`;

describe('values Jinja would evaluate reach Ansible literally', () => {
  it('a description with {{ }}, {% %} and {# #} arrives as written, and runs nothing', async () => {
    const t = testEnv();
    try {
      const infra = join(t.dir, 'infra.yml');
      writeFileSync(infra, INFRA.replace('MARKER', join(t.dir, 'pwned')));
      const report = await sync({ infraPath: infra, baseDir: t.baseDir, env: t.env });
      assert.deepEqual(report.errors, []);
      writeFileSync(join(t.baseDir, 'show.yml'), PLAYBOOK);
      const play = async (out: string) => {
        const r = await execa('ansible-playbook', ['-i', join(t.baseDir, 'inventory'), join(t.baseDir, 'show.yml'),
          '-e', JSON.stringify({ out, ansible_python_interpreter: '/usr/bin/python3' })],
        { env: { ...t.env, ANSIBLE_LOCAL_TEMP: join(t.dir, 'ansible-tmp'), ANSIBLE_NOCOLOR: '1', ANSIBLE_LOCALHOST_WARNING: 'false' }, reject: false });
        assert.equal(r.exitCode, 0, r.stdout + r.stderr);
        return JSON.parse(readFileSync(out, 'utf8')) as Record<string, string>;
      };

      const seen = await play(join(t.dir, 'seen.json'));
      assert.deepEqual(seen, { instance: INSTANCE.replace('MARKER', join(t.dir, 'pwned')), domain: DOMAIN, policy: POLICY });
      assert.ok(!existsSync(join(t.dir, 'pwned')), 'the lookup never ran');

      // The control: the same files without the tag, and Ansible evaluates the text.
      for (const file of ['host_vars/lab-box.yml', 'group_vars/lab.yml', 'group_vars/all.yml']) {
        const path = join(t.baseDir, file);
        writeFileSync(path, readFileSync(path, 'utf8').replaceAll('!unsafe ', ''));
      }
      const evaluated = await play(join(t.dir, 'evaluated.json'));
      assert.equal(evaluated.domain, 'lab evaluated');
      assert.match(evaluated.instance, /^42 /);
      assert.equal(evaluated.policy, '42: ssh');
      assert.ok(existsSync(join(t.dir, 'pwned')), 'untagged, the lookup ran');
    } finally {
      t.cleanup();
    }
  });
});
