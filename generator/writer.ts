/**
 * Where a sync's files get written: inline, or by a helper thread. With thousands of files,
 * rendering (YAML serialisation) and writing cost about the same. The helper writes what the main
 * thread renders and, whenever it has nothing to write, takes the next output itself (the two
 * threads share an atomic cursor): on a fast disk both cores render, on a slow one the helper
 * mostly writes.
 */
import { dirname, extname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessageChannel, Worker } from 'node:worker_threads';
import { writeAtomic, type FileStamp } from './files.js';
import type { Outcome, ShareRequest } from './outputs.js';

export interface Writer {
  write(path: string, content: string): void;
  /** Every write done; the stamp of each written file. Rejects if any write failed. */
  finish(): Promise<Map<string, FileStamp>>;
}

export function inlineWriter(): Writer {
  const stamps = new Map<string, FileStamp>();
  return {
    write: (path, content) => void stamps.set(path, writeAtomic(path, content)),
    finish: async () => stamps,
  };
}

/** Files per message: few enough messages to be cheap, small enough batches to keep both threads busy. */
const BATCH = 32;

/** Messages to the helper, in order on one port: at most one share, then files, then the end. */
export interface HelperMessage {
  share?: ShareRequest;
  files?: [string, string][];
  end?: true;
}

export interface HelperReply {
  stamps?: [string, FileStamp][];
  outcome?: Outcome;
  error?: string;
}

export interface Helper {
  /** Lets the helper take outputs too (call before the first write). */
  share(request: ShareRequest): void;
  /** Writes what the main thread renders; finish() also waits for the helper's own outputs. */
  writer: Writer;
  /** What the helper processed itself, once the writer has finished. */
  outcome(): Promise<Outcome | undefined>;
  stop(): void;
}

/**
 * Starts the helper thread; early, so that it loads its modules while the main thread validates.
 * Undefined when no worker can be started here.
 */
export function startHelper(): Helper | undefined {
  const self = fileURLToPath(import.meta.url);
  const entry = JSON.stringify(pathToFileURL(join(dirname(self), `writerWorker${extname(self)}`)).href);
  // Run from the TypeScript sources (tests, development), the worker needs tsx's loader too.
  const source = extname(self) === '.ts'
    ? `import('tsx/esm/api').then(({ register }) => { register(); return import(${entry}); })`
    : `import(${entry})`;
  const { port1: port, port2 } = new MessageChannel();
  let worker: Worker;
  try {
    worker = new Worker(source, { eval: true, workerData: { port: port2 }, transferList: [port2] });
  } catch {
    return undefined;
  }
  const done = new Promise<HelperReply>((resolve, reject) => {
    port.once('message', (reply: HelperReply) => (reply.error !== undefined ? reject(new Error(reply.error)) : resolve(reply)));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the helper thread stopped (exit code ${code}) before finishing`)));
  });
  // Until finish() is called nobody awaits `done`: keep an early failure from being unhandled.
  done.catch(() => undefined);
  let batch: [string, string][] = [];
  const send = (message: HelperMessage): void => port.postMessage(message);
  const flush = (): void => {
    if (batch.length) send({ files: batch });
    batch = [];
  };
  return {
    share: (request) => send({ share: request }),
    writer: {
      write: (path, content) => {
        batch.push([path, content]);
        if (batch.length >= BATCH) flush();
      },
      finish: async () => {
        flush();
        send({ end: true });
        return new Map((await done).stamps);
      },
    },
    outcome: async () => (await done).outcome,
    stop: () => {
      port.close();
      void worker.terminate();
    },
  };
}
