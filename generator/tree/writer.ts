/**
 * Where a sync's files get written: inline, or by a worker thread so that the main thread renders
 * the next files while the kernel creates the previous ones (a tree of thousands of files costs
 * about as much to write as to render). When the thread keeps up, it is also offered new files to
 * render itself, so that both threads stay busy until the end.
 */
import { dirname, extname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { writeAs, type FileStamp, type WriteMode } from '../core/files.js';
import { digest } from './cache.js';
import { managedBlock, mergeManaged } from './managedBlock.js';

/** A file written: its stamp and, for one the writer rendered, the digest of its managed block. */
export interface Written extends FileStamp {
  digest?: string;
}

export interface Writer {
  write(path: string, content: string, mode: WriteMode): void;
  /**
   * A new file whose directory no reader sees yet (tree/staging.ts), made of the managed block of
   * these variables: true when the writer takes it and renders it itself; false when the caller
   * renders and write()s it. Absent: the writer never takes one.
   */
  offer?(path: string, vars: object): boolean;
  /** Every write done; what each written file became. Rejects if any write failed. */
  finish(): Promise<Map<string, Written>>;
}

/** What the thread is sent: a file's content and how to write it, or the variables of a new managed file. */
export type WriterFile = [path: string, content: string, mode: WriteMode] | [path: string, vars: object, mode: 'render'];

/**
 * One file as the thread writes it, and as this thread writes it again when the thread is lost
 * (`again`: a fresh write could find the file there, so it is written atomically).
 */
export function writeFile(file: WriterFile, again = false): Written {
  if (file[2] === 'render') {
    const block = managedBlock(file[1]);
    return { ...writeAs(file[0], mergeManaged(undefined, block), again ? 'atomic' : 'fresh'), digest: digest(block) };
  }
  const [path, content, mode] = file;
  return writeAs(path, content, again && mode === 'fresh' ? 'atomic' : mode);
}

export function inlineWriter(): Writer {
  const written = new Map<string, Written>();
  return {
    write: (path, content, mode) => void written.set(path, writeAs(path, content, mode)),
    finish: async () => written,
  };
}

/** Files per message: few enough messages to be cheap, small enough batches to keep both threads busy. */
const BATCH = 64;
/**
 * Files the thread may still have to write when it is offered one more to render: enough that it
 * never waits for the next batch, few enough that this thread renders the rest itself while the
 * thread is behind.
 */
const OFFER_BACKLOG = 2 * BATCH;

export interface WriterMessage {
  files?: WriterFile[];
  end?: true;
}

export interface WriterReply {
  written?: [string, Written][];
  error?: string;
}

/** The thread's start-up data: `done` counts the files it has written, for this thread to read as it goes. */
export interface WriterData {
  done: Int32Array;
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
 * A worker that writes what it is sent. Undefined when no worker can be started here.
 * @param source the worker's code (tests give one that dies, to prove nothing is lost)
 */
export function threadWriter(source = workerSource()): Writer | undefined {
  const done = new Int32Array(new SharedArrayBuffer(4));
  let worker: Worker;
  try {
    worker = new Worker(source, { eval: true, workerData: { done } satisfies WriterData });
  } catch {
    return undefined;
  }
  let batch: WriterFile[] = [];
  // Everything sent, kept until the thread answers: if the thread itself is lost, this thread
  // writes it all again, atomically (idempotent), so a lost thread costs time, not files.
  const sent: WriterFile[] = [];
  const result = new Promise<Map<string, Written> | undefined>((resolve, reject) => {
    worker.once('message', (reply: WriterReply) => {
      if (reply.error !== undefined) reject(new Error(reply.error));
      else resolve(new Map(reply.written));
    });
    worker.once('error', () => resolve(undefined));
    worker.once('exit', () => resolve(undefined));
  });
  const flush = (): void => {
    if (batch.length) worker.postMessage({ files: batch } satisfies WriterMessage);
    for (const file of batch) sent.push(file);
    batch = [];
  };
  const send = (file: WriterFile): void => {
    batch.push(file);
    if (batch.length >= BATCH) flush();
  };
  return {
    write: (path, content, mode) => send([path, content, mode]),
    offer: (path, vars) => {
      if (sent.length + batch.length - Atomics.load(done, 0) > OFFER_BACKLOG) return false;
      send([path, vars, 'render']);
      return true;
    },
    finish: async () => {
      flush();
      worker.postMessage({ end: true } satisfies WriterMessage);
      try {
        const written = await result;
        if (written) return written;
        const again = new Map<string, Written>();
        for (const file of sent) again.set(file[0], writeFile(file, true));
        return again;
      } finally {
        void worker.terminate();
      }
    },
  };
}
