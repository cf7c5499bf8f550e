/** The writer thread (see writer.ts): writes every file it is sent, answers once with all stamps. */
import { parentPort } from 'node:worker_threads';
import { writeAs } from '../core/files.js';
import type { WriterMessage, WriterReply } from './writer.js';

/** Size and mtime of each file written, in the order sent. */
const stamps: number[] = [];
let failure: string | undefined;

parentPort?.on('message', (message: WriterMessage) => {
  for (const [path, content, mode] of message.files ?? []) {
    if (failure !== undefined) break;
    try {
      const stamp = writeAs(path, content, mode);
      stamps.push(stamp.size, stamp.mtimeMs);
    } catch (err) {
      failure = err instanceof Error ? err.message : `cannot write ${path}: ${String(err)}`;
    }
  }
  if (!message.end) return;
  if (failure !== undefined) parentPort?.postMessage({ error: failure } satisfies WriterReply);
  else {
    const pairs = Float64Array.from(stamps);
    parentPort?.postMessage({ stamps: pairs } satisfies WriterReply, [pairs.buffer]);
  }
});
