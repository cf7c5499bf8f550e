/** The `flows` command: flags in, answers or pictures out; the work is in flows / flowsView. */
import { extname, resolve } from 'node:path';
import { COMMON_OPTIONS, defaultInfra, EXIT_FAILED, EXIT_OK, reportProblems, stringValue as str, UsageError, type Command } from './command.js';
import { printDiagnostics, printJson, type Streams } from './output.js';
import type { FlowProtocol } from '../nftables/flows.js';

// Written out, not imported: importing flows.js would load the ruleset modules for `--help` too.
const PROTOCOLS: readonly FlowProtocol[] = ['tcp', 'udp', 'icmp'];
const FORMATS = ['table', 'mermaid', 'dot'] as const;
/** What --output writes, by the file's extension. */
const OUTPUTS = { '.md': 'markdown', '.mmd': 'mermaid', '.dot': 'dot', '.svg': 'svg' } as const;

interface Request {
  infraPath: string;
  from?: string;
  to?: string;
  protocol: FlowProtocol;
  port?: number;
  format: (typeof FORMATS)[number];
  output?: { path: string; kind: (typeof OUTPUTS)[keyof typeof OUTPUTS] };
}

/** Every usage error is found here, before anything is read. */
function request(values: Record<string, unknown>, positionals: string[], cwd: string): Request {
  if (positionals.length > 1) throw new UsageError(`expected one infra path, got ${positionals.length}: ${positionals.join(' ')}`);
  const from = str(values.from);
  const to = str(values.to);
  if ((from === undefined) !== (to === undefined)) throw new UsageError('--from and --to go together (without both: the whole picture)');
  const protocol = str(values.protocol) ?? 'tcp';
  if (!(PROTOCOLS as readonly string[]).includes(protocol)) throw new UsageError(`--protocol must be tcp, udp or icmp, got '${protocol}'`);
  const portText = str(values.port);
  let port: number | undefined;
  if (portText !== undefined) {
    if (from === undefined) throw new UsageError('--port asks about one flow: give --from and --to too');
    if (protocol === 'icmp') throw new UsageError('--port does not apply to --protocol icmp (icmp has no ports)');
    port = /^\d+$/.test(portText) ? Number(portText) : NaN;
    if (!(port >= 1 && port <= 65535)) throw new UsageError(`--port must be 1-65535, got '${portText}'`);
  }
  const format = str(values.format) ?? 'table';
  if (!(FORMATS as readonly string[]).includes(format)) throw new UsageError(`--format must be table, mermaid or dot, got '${format}' (an SVG: --output flows.svg, through graphviz)`);
  if (values.format !== undefined && from !== undefined) throw new UsageError('--format draws the whole picture: leave out --from and --to');
  let output: Request['output'];
  const outputPath = str(values.output);
  if (outputPath !== undefined) {
    if (from !== undefined) throw new UsageError('--output writes the whole picture: leave out --from and --to');
    const kind = OUTPUTS[extname(outputPath) as keyof typeof OUTPUTS];
    if (!kind) throw new UsageError(`--output must end in .md (Mermaid in Markdown), .mmd, .dot or .svg, got '${outputPath}'`);
    output = { path: resolve(cwd, outputPath), kind };
  }
  return { infraPath: positionals[0] ?? defaultInfra(cwd), from, to, protocol: protocol as FlowProtocol, port, format: format as Request['format'], output };
}

async function svgOf(dot: string, streams: Streams): Promise<string | undefined> {
  const { execa } = await import('execa');
  const r = await execa('dot', ['-Tsvg'], { input: dot, reject: false });
  if (r.exitCode === undefined) {
    streams.err("graphviz's dot is not installed, so no SVG can be drawn: install it (Debian: apt-get install graphviz), or write the Mermaid picture instead (make flows, or --output flows.md)");
    return undefined;
  }
  if (r.exitCode !== 0) {
    streams.err(`dot -Tsvg failed (${r.exitCode}): ${String(r.stderr).trim()}`);
    return undefined;
  }
  return String(r.stdout);
}

export const flowsCommand: Command = {
  summary: 'who may open a connection to whom, and why: one flow (--from/--to) or the whole picture',
  usage: 'anklume-gen flows <infra.yml|infra/> [--from A --to B [--port N] [--protocol tcp|udp|icmp]] [--ai-domain D] [--format table|mermaid|dot] [--output FILE] [--json]',
  options: {
    ...COMMON_OPTIONS,
    from: { type: 'string' },
    to: { type: 'string' },
    port: { type: 'string' },
    protocol: { type: 'string' },
    'ai-domain': { type: 'string' },
    format: { type: 'string' },
    output: { type: 'string' },
  },
  flags: {
    from: "a machine, a domain, or 'outside' (anything that is not a domain bridge)",
    to: "a machine, a domain, or 'outside'",
    port: 'the destination port (default: every port, and the answer says which are open)',
    protocol: 'tcp (default), udp or icmp',
    'ai-domain': 'answer for this AI access holder (default: the state file, else ai_access_default)',
    format: 'the whole picture as a table (default), Mermaid or DOT',
    output: 'write the whole picture to FILE: .md (Mermaid in Markdown), .mmd, .dot, or .svg (needs graphviz)',
  },
  async run(values, positionals, inv) {
    const req = request(values, positionals, inv.cwd);
    const [{ prepare }, { chooseHolder, HolderRefused }, flows, view, { closest }] = await Promise.all([
      import('../infra/pipeline.js'),
      import('./holderOption.js'),
      import('../nftables/flows.js'),
      import('../nftables/flowsView.js'),
      import('../core/suggest.js'),
    ]);
    const { report, infra, holder } = await prepare(req.infraPath, inv.env);
    if (!infra) {
      reportProblems(inv, values.json === true, report.errors, report.warnings);
      return EXIT_FAILED;
    }
    if (!values.json) printDiagnostics(inv.streams, [], report.warnings);
    let aiDomain: string | null;
    try {
      aiDomain = chooseHolder(infra, req.infraPath, holder, values['ai-domain']);
    } catch (err) {
      if (!(err instanceof HolderRefused)) throw err;
      reportProblems(inv, values.json === true, [{ message: err.message }], []);
      return EXIT_FAILED;
    }
    const model = flows.flowModel(infra, aiDomain);

    if (req.from !== undefined && req.to !== undefined) {
      const ends = [req.from, req.to].map((name) => ({ name, endpoint: flows.resolveFlowEndpoint(infra, name) }));
      const unknown = ends.filter((e) => !e.endpoint);
      if (unknown.length) {
        const errors = unknown.map(({ name }) => {
          const guess = closest(name, flows.endpointNames(infra));
          return { message: `'${name}' is not a domain, a machine or 'outside' in ${req.infraPath}${guess ? `; did you mean '${guess}'?` : ''}` };
        });
        reportProblems(inv, values.json === true, errors, []);
        return EXIT_FAILED;
      }
      const answer = flows.judgeFlow(model, ends[0].endpoint!, ends[1].endpoint!, req.protocol, req.port);
      if (values.json) printJson(inv.streams, answer);
      else inv.streams.out(view.answerLines(answer).join('\n'));
      return EXIT_OK;
    }

    const answers = flows.flowMatrix(model);
    if (req.output) {
      const picture = view.renderPicture(model, answers, req.output.kind === 'svg' ? 'dot' : req.output.kind);
      const content = req.output.kind === 'svg' ? await svgOf(picture, inv.streams) : picture;
      if (content === undefined) return EXIT_FAILED;
      const { ensureDirs, writeAtomic } = await import('../core/files.js');
      ensureDirs([req.output.path]);
      writeAtomic(req.output.path, content);
      if (values.json) printJson(inv.streams, { written: [req.output.path] });
      else inv.streams.out(`Wrote ${req.output.path}`);
      return EXIT_OK;
    }
    if (values.json) printJson(inv.streams, answers);
    else inv.streams.out(req.format === 'table' ? view.matrixTable(model, answers) : view.renderPicture(model, answers, req.format));
    return EXIT_OK;
  },
};
