/** The writer thread (see writer.ts): writes every file it is sent, answers once with all stamps. */
import { parentPort, workerData } from 'node:worker_threads';
import { writeAs } from '../core/files.js';
import { FAILED, WRITTEN, type WriterData, type WriterMessage, type WriterReply } from './writerProtocol.js';

/** Files written so far, and whether a write failed, for the main thread to see (writer.ts). */
const progress = new Int32Array((workerData as WriterData).progress);

/** Size and mtime of each file written, in the order sent. */
const stamps: number[] = [];
let failure: string | undefined;

parentPort?.on('message', (message: WriterMessage) => {
  const { paths = [], modes = [], ends = new Uint32Array(0), bytes = new Uint8Array(0) } = message;
  for (let i = 0; i < paths.length && failure === undefined; i++) {
    try {
      const stamp = writeAs(paths[i], bytes.subarray(i ? ends[i - 1] : 0, ends[i]), modes[i]);
      stamps.push(stamp.size, stamp.mtimeMs);
      Atomics.add(progress, WRITTEN, 1);
    } catch (err) {
      failure = err instanceof Error ? err.message : `cannot write ${paths[i]}: ${String(err)}`;
      Atomics.store(progress, FAILED, 1);
    }
  }
  if (!message.end) return;
  if (failure !== undefined) parentPort?.postMessage({ error: failure } satisfies WriterReply);
  else {
    const pairs = Float64Array.from(stamps);
    parentPort?.postMessage({ stamps: pairs } satisfies WriterReply, [pairs.buffer]);
  }
});
