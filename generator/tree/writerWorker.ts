/** The writer thread (see writer.ts): writes every file it is sent, answers once with all stamps. */
import { parentPort } from 'node:worker_threads';
import { writeAs, type FileStamp } from '../core/files.js';
import type { WriterMessage, WriterReply } from './writer.js';

const stamps: [string, FileStamp][] = [];
let failure: string | undefined;

parentPort?.on('message', (message: WriterMessage) => {
  for (const [path, content, mode] of message.files ?? []) {
    if (failure !== undefined) break;
    try {
      stamps.push([path, writeAs(path, content, mode)]);
    } catch (err) {
      failure = err instanceof Error ? err.message : `cannot write ${path}: ${String(err)}`;
    }
  }
  if (message.end) parentPort?.postMessage((failure === undefined ? { stamps } : { error: failure }) satisfies WriterReply);
});
