/**
 * What the main thread and the writer thread (writer.ts, writerWorker.ts) say to each other, in a
 * module of its own so that the thread loads no more than it needs.
 */
import type { WriteMode } from '../core/files.js';

/**
 * A batch of files for the thread: their contents as UTF-8 in one buffer, transferred, not copied
 * (the thread writes each file's bytes as they are, with no string to copy in and encode again).
 */
export interface WriterMessage {
  paths?: string[];
  modes?: WriteMode[];
  /** Where each file's bytes end in `bytes`. */
  ends?: Uint32Array;
  bytes?: Uint8Array;
  end?: true;
}

/**
 * What the thread is given: where it counts the files it has written (WRITTEN), and says that a
 * write failed (FAILED), for the main thread to read.
 */
export interface WriterData {
  progress: SharedArrayBuffer;
}

export const WRITTEN = 0;
export const FAILED = 1;

export interface WriterReply {
  /** Each file's size and mtime, one pair per file in the order sent (transferred, not copied). */
  stamps?: Float64Array;
  error?: string;
}
