/**
 * How `flows` answers reach a person: one answer as lines, the matrix as a terminal table, and the
 * data the Mermaid, DOT and Markdown templates (templates/flows/) draw. Pure.
 */
import { OUTSIDE_ENDPOINT, AI_DOMAIN } from '../infra/validate.js';
import { render } from '../core/templates.js';
import type { FlowAnswer, FlowModel } from './flows.js';

const what = (a: FlowAnswer) => (a.protocol === 'icmp' ? 'icmp' : a.port === null ? a.protocol : `${a.protocol}/${a.port}`);

export function answerLines(a: FlowAnswer): string[] {
  const lines = [`${a.from} -> ${a.to} ${what(a)}: ${a.reason}`];
  if (a.exceptions?.length) {
    lines.push(`  machines that differ (machine-level policies, published ports):`);
    for (const e of a.exceptions) lines.push(`    ${e.from} -> ${e.to}: ${e.reason}`);
  }
  return lines;
}

/** What one protocol lets through, in a few characters: `tcp/80,443`, `udp`, `icmp`, or ''. */
function opened(a: FlowAnswer): string {
  if (a.verdict !== 'allow') return '';
  if (a.protocol === 'icmp' || a.ports === 'all') return a.protocol;
  return `${a.protocol}/${(a.ports ?? []).join(',')}`;
}

/** What the answers of one pair (one per protocol) let through: `all`, `tcp/80 udp`..., or ''. */
function summary(group: FlowAnswer[]): string {
  const all = group.length === 3 && group.every((a) => a.verdict === 'allow' && (a.protocol === 'icmp' || a.ports === 'all'));
  return all ? 'all' : group.map(opened).filter(Boolean).join(' ');
}

interface Cell {
  from: string;
  to: string;
  /** `all`, `tcp/80 udp/53`..., or '' when nothing is open. */
  text: string;
  /** Some machines of a side are allowed something else (machine-level policies). */
  exceptions: boolean;
  /** The AI holder and ai-tools, in exclusive mode. */
  ai: boolean;
}

function cells(model: FlowModel, answers: FlowAnswer[]): Cell[] {
  const byPair = new Map<string, FlowAnswer[]>();
  for (const a of answers) byPair.set(`${a.from}\u0000${a.to}`, [...(byPair.get(`${a.from}\u0000${a.to}`) ?? []), a]);
  const exclusive = model.infra.global.ai_access_policy === 'exclusive';
  return [...byPair.values()].map((group) => {
    const { from, to } = group[0];
    const text = summary(group);
    const ai = text !== '' && exclusive && model.holder !== null && ((from === model.holder && to === AI_DOMAIN) || (from === AI_DOMAIN && to === model.holder));
    return { from, to, text, exceptions: group.some((a) => (a.exceptions?.length ?? 0) > 0), ai };
  });
}

/** The matrix as a table: one row per source, one column per destination. */
export function matrixTable(model: FlowModel, answers: FlowAnswer[]): string {
  const names = [OUTSIDE_ENDPOINT, ...Object.keys(model.infra.domains)];
  const byPair = new Map(cells(model, answers).map((c) => [`${c.from}\u0000${c.to}`, c]));
  const text = (from: string, to: string): string => {
    if (from === to) return 'same';
    const c = byPair.get(`${from}\u0000${to}`);
    if (!c) return '';
    return `${c.text || '-'}${c.ai ? ' (AI)' : ''}${c.exceptions ? ' *' : ''}`;
  };
  const rows = [['from \\ to', ...names], ...names.map((from) => [from, ...names.map((to) => text(from, to))])];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const lines = rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd());
  const holder = model.infra.global.ai_access_policy === 'exclusive' ? `AI access holder: ${model.holder ?? '<none>'}` : 'ai_access_policy: open';
  return [
    ...lines,
    '',
    `${holder}. Cells: what new connections may use (all = every protocol and port; - = nothing).`,
    '(AI): exclusive AI access. *: some machines differ (machine-level policies, published ports; ask with --from/--to).',
    'Every domain reaches the outside; replies always come back.',
    ...publishedLines(model),
  ].join('\n');
}

/**
 * `flows --json` without a question: the answers of the table (every ordered pair of outside and
 * the domains, per protocol, with their machine-level exceptions), who they were answered for,
 * and the ports proxy devices publish.
 */
export function matrixJson(model: FlowModel, answers: FlowAnswer[]) {
  return {
    project: model.infra.project_name,
    ai_access_policy: model.infra.global.ai_access_policy,
    holder: model.holder,
    matrix: answers,
    published: model.published.map(({ machine, domain, device, profile, protocol, ports, listen, connect, nat }) => ({
      machine, domain, device, ...(profile ? { profile } : {}), protocol, ports, listen, connect, nat,
    })),
  };
}

/** The ports proxy devices publish on the host: paths into a machine that the table's cells do not show. */
function publishedLines(model: FlowModel): string[] {
  if (!model.published.length) return [];
  return [
    "Published ports (proxy devices; without nat every domain and outside reach them through the host's addresses, with nat the ruleset judges them):",
    ...model.published.map((p) => `  ${p.machine} ${p.listen} -> ${p.connect} (device '${p.device}'${p.profile ? `, profile '${p.profile}'` : ''}${p.nat ? ', nat' : ''})`),
  ];
}

function nodeId(name: string): string {
  return `n_${name.replace(/-/g, '_')}`;
}

/** An edge says this many machine pairs at most; the rest are counted, and asked with --from/--to. */
const EDGE_MACHINE_LINES = 6;

const pairKey = (from: string, to: string) => `${from}\u0000${to}`;

/**
 * The machine pairs of a domain pair that get something else than the domains (machine-level
 * policies, published ports), each with everything it may use: an answer lists a machine pair
 * only for the protocols where it differs, so the others are the domains' own.
 */
function machinePairs(group: FlowAnswer[]): { from: string; to: string; what: string }[] {
  const pairs = new Map<string, Map<FlowAnswer['protocol'], FlowAnswer>>();
  for (const a of group) for (const e of a.exceptions ?? []) {
    const byProto = pairs.get(pairKey(e.from, e.to)) ?? new Map<FlowAnswer['protocol'], FlowAnswer>();
    byProto.set(e.protocol, e);
    pairs.set(pairKey(e.from, e.to), byProto);
  }
  return [...pairs.values()].map((byProto) => {
    const first = [...byProto.values()][0];
    return { from: first.from, to: first.to, what: summary(group.map((a) => byProto.get(a.protocol) ?? a)) || 'nothing' };
  });
}

/** Nodes and edges for the pictures: every domain and outside; an edge per allowed flow. */
function graph(model: FlowModel, answers: FlowAnswer[]) {
  const names = [OUTSIDE_ENDPOINT, ...Object.keys(model.infra.domains)];
  const nodes = names.map((name) => ({ id: nodeId(name), name, outside: name === OUTSIDE_ENDPOINT, ai: name === AI_DOMAIN }));
  const groups = new Map<string, FlowAnswer[]>();
  for (const a of answers) groups.set(pairKey(a.from, a.to), [...(groups.get(pairKey(a.from, a.to)) ?? []), a]);
  const exceptions: { from: string; to: string; what: string }[] = [];
  const edges = cells(model, answers)
    .filter((c) => c.to !== OUTSIDE_ENDPOINT && (c.text || c.exceptions))
    .map((c) => {
      const machines = machinePairs(groups.get(pairKey(c.from, c.to)) ?? []);
      exceptions.push(...machines);
      const shown = machines.slice(0, machines.length > EDGE_MACHINE_LINES ? EDGE_MACHINE_LINES - 1 : EDGE_MACHINE_LINES);
      return {
        from: nodeId(c.from),
        to: nodeId(c.to),
        fromName: c.from,
        toName: c.to,
        /** What the whole domain may use: `all`, `tcp/80,443`..., or '' (some machines only). */
        text: c.text,
        machines: shown,
        /** Machine pairs left out of the label: ask them with --from/--to. */
        more: machines.length - shown.length,
        ai: c.ai,
        partial: !c.text,
      };
    });
  const holder = model.infra.global.ai_access_policy === 'exclusive' ? `AI access holder: ${model.holder ?? '<none>'}` : 'ai_access_policy: open';
  return { project: model.infra.project_name, holder, nodes, edges, exceptions };
}

export function renderPicture(model: FlowModel, answers: FlowAnswer[], format: 'mermaid' | 'dot' | 'markdown'): string {
  const data = graph(model, answers);
  if (format === 'markdown') return render('flows/flows.md.hbs', { ...data, mermaid: render('flows/mermaid.hbs', data) });
  return render(format === 'dot' ? 'flows/flows.dot.hbs' : 'flows/mermaid.hbs', data);
}
