/** The writer thread (see writer.ts): writes every file it is sent, answers once with what each became. */
import { parentPort, workerData } from 'node:worker_threads';
import { writeFile, type WriterData, type WriterMessage, type WriterReply, type Written } from './writer.js';

const written: [string, Written][] = [];
const done = (workerData as Partial<WriterData> | undefined)?.done;
let failure: string | undefined;

parentPort?.on('message', (message: WriterMessage) => {
  for (const file of message.files ?? []) {
    if (failure !== undefined) break;
    try {
      written.push([file[0], writeFile(file)]);
    } catch (err) {
      failure = err instanceof Error ? err.message : `cannot write ${file[0]}: ${String(err)}`;
    }
    if (done) Atomics.add(done, 0, 1);
  }
  if (message.end) parentPort?.postMessage((failure === undefined ? { written } : { error: failure }) satisfies WriterReply);
});
