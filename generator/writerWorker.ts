/**
 * The helper thread of a large sync (see writer.ts). Writes every file the main thread sends and,
 * when it has nothing to write, processes the next output itself; answers once, at the end, with
 * the stamps of what it wrote for the main thread and the outcome of its own outputs.
 */
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { writeAtomic, type FileStamp } from './files.js';
import { planOutputs, processOutputs, type Outcome } from './outputs.js';
import { inlineWriter, type HelperMessage, type HelperReply } from './writer.js';

const port = (workerData as { port: MessagePort }).port;
const stamps: [string, FileStamp][] = [];
let outcome: Outcome | undefined;
let failure: string | undefined;
let sharing = false;
let ended = false;

const describe = (err: unknown): string => (err instanceof Error ? err.message : String(err));

function reply(): void {
  port.postMessage((failure === undefined ? { stamps, outcome } : { error: failure }) satisfies HelperReply);
  port.close();
}

/** Writes first: the main thread's rendering is wasted until its files are on disk. */
function drain(): void {
  for (let next = receiveMessageOnPort(port); next !== undefined; next = receiveMessageOnPort(port)) handle(next.message as HelperMessage);
}

function handle(message: HelperMessage): void {
  for (const [path, content] of message.files ?? []) {
    if (failure !== undefined) break;
    try {
      stamps.push([path, writeAtomic(path, content)]);
    } catch (err) {
      failure = `cannot write ${path}: ${describe(err)}`;
    }
  }
  if (message.end) ended = true;
  if (message.share) {
    sharing = true;
    const { infra, holder, ...job } = message.share;
    // With the inline writer the whole share runs synchronously, polling for writes in between.
    processOutputs(planOutputs(infra, holder), { ...job, writer: inlineWriter() }, drain).then(
      (result) => {
        outcome = result;
        sharing = false;
        if (ended) reply();
      },
      (err: unknown) => {
        failure ??= `processing its outputs: ${describe(err)}`;
        sharing = false;
        if (ended) reply();
      },
    );
  }
  if (ended && !sharing) reply();
}

port.on('message', handle);
