/**
 * Issue 19: `flows` on a cluster. It follows the cluster's chain rule for rule, judges a machine
 * pair on two members on both (and says so), and answers domain pairs as on one host. Its verdicts
 * are held to the kernel's across two members in test/cluster-ruleset-e2e.test.ts.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { enrich } from '../generator/infra/enrich.ts';
import { renderRuleset } from '../generator/nftables/nftables.ts';
import { chainRules, flowMatrix, flowModel, judgeFlow, resolveFlowEndpoint, type FlowAnswer } from '../generator/nftables/flows.ts';
import { listing, run } from './helpers/infraText.ts';
import type { Infra } from '../generator/core/types.ts';

const FIXTURE = readFileSync('test/fixtures/cluster/infra.yml', 'utf8');

function model(text: string): Infra {
  const analysis = run(text);
  assert.ok(analysis.infra, listing(analysis.errors));
  return enrich(analysis.infra).infra;
}

/** The same infra on one host: the cluster key and every member key removed. */
const singleHost = (text: string) => text.replace(/^  cluster:\n(?: {4}.*\n)+/m, '').replace(/^ *member: .*\n/gm, '').replace(/, member: [a-z-]+/g, '');

/** The rules of the rendered forward chain, as nft reads them (as test/flows.test.ts reads them). */
function renderedChain(text: string): string[] {
  const body = text.slice(text.indexOf('chain forward {')).split('\n').slice(1).map((l) => l.trim());
  // Up to the chain's own closing brace: the cluster's nat chain follows it.
  return body.slice(0, body.indexOf('}')).filter((l) => l && !l.startsWith('#') && !l.startsWith('type filter hook'));
}

const infra = model(FIXTURE);
const ask = (holder: string | null, from: string, to: string, proto: 'tcp' | 'udp' | 'icmp', port?: number): FlowAnswer =>
  judgeFlow(flowModel(infra, holder), resolveFlowEndpoint(infra, from)!, resolveFlowEndpoint(infra, to)!, proto, port);

describe('flows on a cluster (issue 19)', () => {
  it('follows the cluster chain of the template, rule for rule, in both modes', () => {
    assert.deepEqual(chainRules(true, true), renderedChain(renderRuleset(infra, 'pro')));
    const open: Infra = { ...infra, global: { ...infra.global, ai_access_policy: 'open' } };
    assert.deepEqual(chainRules(false, true), renderedChain(renderRuleset(open, null)));
  });

  it('says where a machine pair is judged: on both members when they differ, on the one they share otherwise', () => {
    const across = ask('pro', 'pro-dev', 'lab-web', 'tcp', 80);
    assert.equal(across.verdict, 'allow');
    assert.deepEqual(across.judged_on, ['desk', 'gpu-box']);
    assert.equal(across.reason, 'allow — policy [1] "pro-dev reaches lab-web\'s web server" (tcp/80) (judged on desk and on gpu-box)');
    const refused = ask('pro', 'pro-build', 'perso-web', 'tcp', 22);
    assert.equal(refused.verdict, 'drop');
    assert.deepEqual(refused.judged_on, ['gpu-box']);
    assert.match(refused.reason, /^drop — no policy from 'pro-build' to 'perso-web' allows tcp\/22 \(judged on gpu-box\)$/);
    const ai = ask('perso', 'pro-build', 'gpu-server', 'tcp', 80);
    assert.match(ai.reason, /^drop — exclusive AI access is held by 'perso' \(judged on gpu-box\)$/);
    assert.equal(ask('pro', 'pro-dev', 'gpu-server', 'icmp').verdict, 'allow');
  });

  it('answers domain pairs as on one host: the same matrix, with the cluster only in the machine exceptions', () => {
    const single = model(singleHost(FIXTURE));
    assert.equal(single.global.cluster, undefined);
    const strip = (answers: FlowAnswer[]) => answers.map(({ exceptions, ...main }) => ({ ...main, exceptions: exceptions?.map(({ judged_on, ...e }) => ({ ...e, reason: e.reason.replace(/ \(judged on [^)]*\)$/, '') })) }));
    for (const holder of ['pro', 'perso', null]) {
      const onCluster = flowMatrix(flowModel(infra, holder));
      assert.ok(onCluster.every((a) => a.judged_on === undefined), 'domain answers name no member');
      assert.deepEqual(strip(onCluster), strip(flowMatrix(flowModel(single, holder))), `holder ${holder}`);
    }
  });

  it('one host has no judged_on anywhere', () => {
    const single = model(singleHost(FIXTURE));
    const answer = judgeFlow(flowModel(single, 'pro'), resolveFlowEndpoint(single, 'pro-dev')!, resolveFlowEndpoint(single, 'lab-web')!, 'tcp', 80);
    assert.equal(answer.judged_on, undefined);
    assert.ok(!answer.reason.includes('judged on'));
  });
});
