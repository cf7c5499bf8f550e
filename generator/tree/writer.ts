/**
 * Where a sync's files get written: inline, or by a worker thread so that the main thread renders
 * the next files while the kernel creates the previous ones (a tree of thousands of files costs
 * about as much to write as to render). When the thread falls behind, this thread writes the next
 * batch itself rather than queue it: two threads create files faster than one, and the sync does
 * not end with this thread waiting on a queue it could have shared.
 */
import { dirname, extname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { writeAs, type FileStamp, type WriteMode } from '../core/files.js';
import { FAILED, WRITTEN, type WriterData, type WriterMessage, type WriterReply } from './writerProtocol.js';

export interface Writer {
  write(path: string, content: string, mode: WriteMode): void;
  /**
   * Every write done; the stamp of each written file, in the order of the writes (no map keyed by
   * path on either side: a large tree has thousands). Rejects if any write failed.
   */
  finish(): Promise<FileStamp[]>;
}

export function inlineWriter(): Writer {
  const stamps: FileStamp[] = [];
  return {
    write: (path, content, mode) => void stamps.push(writeAs(path, content, mode)),
    finish: async () => stamps,
  };
}

/** Files per message: few enough messages to be cheap, small enough batches to keep both threads busy. */
const BATCH = 64;
/** The first message is sent sooner: the thread waits for it, idle, since the infra was read. */
const FIRST_BATCH = 8;
/** Files sent and not yet written by the thread from which this thread writes a batch itself. */
const BACKLOG = 2 * BATCH;

export type WriterFile = [path: string, content: string, mode: WriteMode];

function batchMessage(files: WriterFile[]): { message: WriterMessage; transfer: ArrayBuffer[] } {
  let total = 0;
  for (const [, content] of files) total += Buffer.byteLength(content);
  const bytes = Buffer.allocUnsafeSlow(total);
  const ends = new Uint32Array(files.length);
  let at = 0;
  files.forEach(([, content], i) => {
    at += bytes.write(content, at);
    ends[i] = at;
  });
  const message = { paths: files.map((f) => f[0]), modes: files.map((f) => f[2]), ends, bytes };
  return { message, transfer: [bytes.buffer, ends.buffer] };
}

function stampsOf(pairs: Float64Array): FileStamp[] {
  const stamps: FileStamp[] = [];
  for (let i = 0; i < pairs.length; i += 2) stamps.push({ size: pairs[i], mtimeMs: pairs[i + 1] });
  return stamps;
}

function workerSource(): string {
  // `../tree/`: this module also runs from the one-file build in cli/, beside which the worker is
  // not; the worker stays a module of its own (ESM), from the sources or the build.
  const self = fileURLToPath(import.meta.url);
  const fromSources = extname(self) === '.ts';
  const entry = JSON.stringify(pathToFileURL(join(dirname(self), '..', 'tree', `writerWorker${fromSources ? '.ts' : '.js'}`)).href);
  // Run from the TypeScript sources (tests, development), the worker needs tsx's loader too.
  return fromSources
    ? `import('tsx/esm/api').then(({ register }) => { register(); return import(${entry}); })`
    : `import(${entry})`;
}

/**
 * A worker that writes what it is sent, and this thread beside it when it falls behind. Undefined
 * when no worker can be started here.
 * @param source the worker's code (tests give one that dies, or one that is slow)
 * @param backlog files the thread may have waiting before this thread writes a batch itself
 */
export function threadWriter(source = workerSource(), backlog = BACKLOG): Writer | undefined {
  const progress = new Int32Array(new SharedArrayBuffer(8));
  let worker: Worker;
  try {
    worker = new Worker(source, { eval: true, workerData: { progress: progress.buffer as SharedArrayBuffer } satisfies WriterData });
  } catch {
    return undefined;
  }
  let batch: WriterFile[] = [];
  // Everything sent, kept until the thread answers: if the thread itself is lost, this thread
  // writes it all again, atomically (idempotent), so a lost thread costs time, not files.
  const sent: WriterFile[] = [];
  // Each batch in the order written: how many files went to the thread, or the stamps of those
  // this thread wrote itself.
  const batches: (number | FileStamp[])[] = [];
  let ownFailure: unknown;
  const done = new Promise<FileStamp[] | undefined>((resolve, reject) => {
    worker.once('message', (reply: WriterReply) => {
      if (reply.error !== undefined) reject(new Error(reply.error));
      else if (reply.stamps?.length !== 2 * sent.length) reject(new Error(`the writer thread answered for ${(reply.stamps?.length ?? 0) / 2} files of ${sent.length}`));
      else resolve(stampsOf(reply.stamps));
    });
    worker.once('error', () => resolve(undefined));
    worker.once('exit', () => resolve(undefined));
  });
  const flush = (): void => {
    if (!batch.length) return;
    if (ownFailure !== undefined || Atomics.load(progress, FAILED) === 1) {
      // A write failed, here or there: nothing more is written, as with one writer (finish gives
      // the failure).
      batch = [];
      return;
    }
    if (sent.length - Atomics.load(progress, WRITTEN) >= backlog) {
      try {
        batches.push(batch.map(([path, content, mode]) => writeAs(path, content, mode)));
      } catch (err) {
        // Given back by finish, once the thread is stopped.
        ownFailure = err;
      }
    } else {
      const { message, transfer } = batchMessage(batch);
      worker.postMessage(message, transfer);
      sent.push(...batch);
      batches.push(batch.length);
    }
    batch = [];
  };
  return {
    write: (path, content, mode) => {
      batch.push([path, content, mode]);
      if (batch.length >= (batches.length ? BATCH : FIRST_BATCH)) flush();
    },
    finish: async () => {
      flush();
      worker.postMessage({ end: true } satisfies WriterMessage);
      try {
        // This thread's own failure first: from it on, nothing more was sent or written.
        let fromThread = await done.catch((err: unknown) => {
          throw ownFailure ?? err;
        });
        if (ownFailure !== undefined) throw ownFailure;
        if (!fromThread) {
          const fallback = inlineWriter();
          // The thread may have written some of them: a fresh write would find them there.
          for (const [path, content, mode] of sent) fallback.write(path, content, mode === 'fresh' ? 'atomic' : mode);
          fromThread = await fallback.finish();
        }
        const stamps: FileStamp[] = [];
        let next = 0;
        for (const written of batches) {
          if (typeof written === 'number') {
            for (const end = next + written; next < end; next++) stamps.push(fromThread[next]);
          } else stamps.push(...written);
        }
        return stamps;
      } finally {
        void worker.terminate();
      }
    },
  };
}
