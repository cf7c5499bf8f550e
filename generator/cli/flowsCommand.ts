/** The `flows` command: flags in, answers or pictures out; the work is in flows / flowsView. */
import { extname, resolve } from 'node:path';
import { COMMON_OPTIONS, defaultInfra, EXIT_FAILED, EXIT_OK, reportProblems, stringValue as str, UsageError, type Command } from './command.js';
import { printDiagnostics, printJson, type Streams } from './output.js';
import type { FlowAnswer, FlowProtocol } from '../nftables/flows.js';

// Written out, not imported: importing flows.js would load the ruleset modules for `--help` too.
const PROTOCOLS: readonly FlowProtocol[] = ['tcp', 'udp', 'icmp'];
const FORMATS = ['table', 'mermaid', 'dot'] as const;
/** What --output writes, by the file's extension; svg and png are drawn by graphviz from the DOT picture. */
const OUTPUTS = { '.md': 'markdown', '.mmd': 'mermaid', '.dot': 'dot', '.svg': 'svg', '.png': 'png' } as const;
type OutputKind = (typeof OUTPUTS)[keyof typeof OUTPUTS];
/** The --format each kind of file is drawn in: a --format beside --output must be this one. */
const OUTPUT_FORMAT: Record<OutputKind, (typeof FORMATS)[number]> = { markdown: 'mermaid', mermaid: 'mermaid', dot: 'dot', svg: 'dot', png: 'dot' };
const VERDICTS = ['allow', 'drop'] as const;

interface Request {
  infraPath: string;
  from?: string;
  to?: string;
  protocol: FlowProtocol;
  port?: number;
  format: (typeof FORMATS)[number];
  output?: { path: string; kind: OutputKind };
  /** --expect: the verdict a CI assertion wants (exit 1 when the answer differs). */
  expect?: (typeof VERDICTS)[number];
}

/** Every usage error is found here, before anything is read. */
function request(values: Record<string, unknown>, positionals: string[], cwd: string): Request {
  if (positionals.length > 1) throw new UsageError(`expected one infra path, got ${positionals.length}: ${positionals.join(' ')}`);
  const from = str(values.from);
  const to = str(values.to);
  if ((from === undefined) !== (to === undefined)) throw new UsageError('--from and --to go together (without both: the whole picture)');
  const protocol = str(values.protocol) ?? 'tcp';
  if (!(PROTOCOLS as readonly string[]).includes(protocol)) throw new UsageError(`--protocol must be tcp, udp or icmp, got '${protocol}'`);
  // The whole picture covers every protocol: a --protocol it would ignore is a mistake.
  if (values.protocol !== undefined && from === undefined) throw new UsageError('--protocol asks about one flow: give --from and --to too (the whole picture covers tcp, udp and icmp)');
  const expectText = str(values.expect);
  if (expectText !== undefined) {
    if (!(VERDICTS as readonly string[]).includes(expectText)) throw new UsageError(`--expect must be allow or drop, got '${expectText}'`);
    if (from === undefined) throw new UsageError('--expect checks the verdict of one flow: give --from and --to too');
  }
  const portText = str(values.port);
  let port: number | undefined;
  if (portText !== undefined) {
    if (from === undefined) throw new UsageError('--port asks about one flow: give --from and --to too');
    if (protocol === 'icmp') throw new UsageError('--port does not apply to --protocol icmp (icmp has no ports)');
    port = /^\d+$/.test(portText) ? Number(portText) : NaN;
    if (!(port >= 1 && port <= 65535)) throw new UsageError(`--port must be 1-65535, got '${portText}'`);
  }
  const format = str(values.format) ?? 'table';
  if (!(FORMATS as readonly string[]).includes(format)) throw new UsageError(`--format must be table, mermaid or dot, got '${format}' (an SVG or a PNG: --output flows.svg or flows.png, through graphviz)`);
  if (values.format !== undefined && from !== undefined) throw new UsageError('--format draws the whole picture: leave out --from and --to');
  let output: Request['output'];
  const outputPath = str(values.output);
  if (outputPath !== undefined) {
    if (from !== undefined) throw new UsageError('--output writes the whole picture: leave out --from and --to');
    const kind = OUTPUTS[extname(outputPath).toLowerCase() as keyof typeof OUTPUTS];
    if (!kind) throw new UsageError(`--output must end in .md (Mermaid in Markdown), .mmd, .dot, .svg or .png (both drawn by graphviz), got '${outputPath}'`);
    if (values.format !== undefined && format !== OUTPUT_FORMAT[kind]) {
      throw new UsageError(`--format ${format} cannot be written to '${outputPath}' (drawn in ${OUTPUT_FORMAT[kind]}): the file's extension picks the format, leave out --format`);
    }
    output = { path: resolve(cwd, outputPath), kind };
  } else if (values.format !== undefined && values.json === true) {
    throw new UsageError('--json prints the answers as JSON, not a picture: leave out --format (or write the picture with --output FILE)');
  }
  const expect = expectText as Request['expect'];
  return { infraPath: positionals[0] ?? defaultInfra(cwd), from, to, protocol: protocol as FlowProtocol, port, format: format as Request['format'], output, expect };
}

/** The DOT picture drawn by graphviz's dot as an SVG or a PNG; undefined (and why, on stderr) when it cannot be. */
async function drawn(dot: string, kind: 'svg' | 'png', streams: Streams): Promise<Uint8Array | undefined> {
  const { execa } = await import('execa');
  const r = await execa('dot', [`-T${kind}`], { input: dot, reject: false, encoding: 'buffer' });
  if (r.exitCode === undefined) {
    streams.err(`graphviz's dot is not installed, so no ${kind.toUpperCase()} can be drawn: install it (Debian: apt-get install graphviz; in a clone, make deps installs it), or write the Mermaid picture instead (--output flows.md), or the DOT text (--output flows.dot)`);
    return undefined;
  }
  if (r.exitCode !== 0) {
    streams.err(`dot -T${kind} failed (${r.exitCode}): ${new TextDecoder().decode(r.stderr).trim()}`);
    return undefined;
  }
  return r.stdout;
}

/** Whether --expect holds: the verdict of the flow and of every machine pair listed under it. */
function unexpected(answer: FlowAnswer, expect: FlowAnswer['verdict']): string | undefined {
  const wrong = [answer, ...(answer.exceptions ?? [])].filter((a) => a.verdict !== expect);
  if (!wrong.length) return undefined;
  return `expected ${expect}, got ${wrong.map((a) => `${a.verdict} for ${a.from} -> ${a.to}`).join(', ')}`;
}

export const flowsCommand: Command = {
  summary: 'who may open a connection to whom, and why: one flow (--from/--to) or the whole picture',
  usage: 'anklume-gen flows <infra.yml|infra/> [--from A --to B [--port N] [--protocol tcp|udp|icmp] [--expect allow|drop]] [--ai-domain D] [--format table|mermaid|dot | --output FILE] [--json]',
  options: {
    ...COMMON_OPTIONS,
    from: { type: 'string' },
    to: { type: 'string' },
    port: { type: 'string' },
    protocol: { type: 'string' },
    'ai-domain': { type: 'string' },
    expect: { type: 'string' },
    format: { type: 'string' },
    output: { type: 'string' },
  },
  flags: {
    from: "a machine, a domain, or 'outside' (anything that is not a domain bridge)",
    to: "a machine, a domain, or 'outside'",
    port: 'the destination port (default: every port, and the answer says which are open)',
    protocol: 'tcp (default), udp or icmp (with --from/--to)',
    expect: 'allow or drop: exit 1 unless the flow, and every machine pair listed under it, gets this verdict (CI assertions)',
    'ai-domain': 'answer for this AI access holder (default: the state file, else ai_access_default)',
    format: 'the whole picture as a table (default), Mermaid or DOT (not with --json)',
    output: 'write the whole picture to FILE: .md (Mermaid in Markdown), .mmd, .dot, or .svg/.png (drawn by graphviz)',
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
      const miss = req.expect && unexpected(answer, req.expect);
      if (values.json) printJson(inv.streams, req.expect ? { ...answer, expected: req.expect, as_expected: !miss } : answer);
      else inv.streams.out(view.answerLines(answer).join('\n'));
      if (miss && !values.json) inv.streams.err(`anklume-gen flows: ${miss}`);
      return miss ? EXIT_FAILED : EXIT_OK;
    }

    const answers = flows.flowMatrix(model);
    if (req.output) {
      const kind = req.output.kind;
      const picture = view.renderPicture(model, answers, kind === 'svg' || kind === 'png' ? 'dot' : kind);
      const content = kind === 'svg' || kind === 'png' ? await drawn(picture, kind, inv.streams) : picture;
      if (content === undefined) return EXIT_FAILED;
      const { ensureDirs, writeAtomic } = await import('../core/files.js');
      ensureDirs([req.output.path]);
      writeAtomic(req.output.path, content);
      if (values.json) printJson(inv.streams, { written: [req.output.path] });
      else inv.streams.out(`Wrote ${req.output.path}`);
      return EXIT_OK;
    }
    if (values.json) printJson(inv.streams, view.matrixJson(model, answers));
    else inv.streams.out(req.format === 'table' ? view.matrixTable(model, answers) : view.renderPicture(model, answers, req.format));
    return EXIT_OK;
  },
};
