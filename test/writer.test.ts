import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, it } from 'node:test';
import { setTimeout } from 'node:timers/promises';
import { threadWriter, type Writer } from '../generator/tree/writer.ts';
import { WRITTEN } from '../generator/tree/writerProtocol.ts';

function writeMany(writer: Writer, dir: string, count: number): string[] {
  const paths = Array.from({ length: count }, (_, i) => join(dir, `f${i}.yml`));
  paths.forEach((p, i) => writer.write(p, `n: ${i}\n`, 'atomic'));
  return paths;
}

describe('writer thread', () => {
  it('writes every file it is sent and returns their stamps', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'anklume-writer-'));
    try {
      const writer = threadWriter();
      assert.ok(writer);
      const paths = writeMany(writer, dir, 200);
      const stamps = await writer.finish();
      assert.equal(stamps.length, 200);
      paths.forEach((p, i) => assert.equal(readFileSync(p, 'utf8'), `n: ${i}\n`));
      // In the order written: each stamp is its own file's.
      paths.forEach((p, i) => assert.deepEqual(stamps[i], { size: statSync(p).size, mtimeMs: statSync(p).mtimeMs }, p));
      assert.equal(stamps[7].size, 'n: 7\n'.length);
      assert.equal(stamps[123].size, 'n: 123\n'.length);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a thread that dies loses no file: this thread writes them all', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'anklume-writer-'));
    try {
      const writer = threadWriter('process.exit(3)');
      assert.ok(writer);
      const paths = writeMany(writer, dir, 150);
      const stamps = await writer.finish();
      assert.equal(stamps.length, 150);
      paths.forEach((p, i) => assert.deepEqual(stamps[i], { size: statSync(p).size, mtimeMs: statSync(p).mtimeMs }, p));
      paths.forEach((p, i) => assert.equal(readFileSync(p, 'utf8'), `n: ${i}\n`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a thread that dies half-way through fresh writes loses no file: this thread writes them all again, over those it finds', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'anklume-writer-'));
    try {
      // The real worker, which dies once it has written its second batch of 64.
      const entry = JSON.stringify(pathToFileURL(join(import.meta.dirname, '..', 'generator', 'tree', 'writerWorker.ts')).href);
      const source = `import('tsx/esm/api').then(({ register }) => { register(); return import(${entry}); }).then(async () => {
        const { parentPort } = await import('node:worker_threads');
        let batches = 0;
        parentPort.on('message', () => { if (++batches === 2) process.exit(3); });
      })`;
      const writer = threadWriter(source);
      assert.ok(writer);
      const paths = Array.from({ length: 200 }, (_, i) => join(dir, `f${i}.yml`));
      paths.forEach((p, i) => writer.write(p, `n: ${i}\n`, 'fresh'));
      const stamps = await writer.finish();
      assert.equal(stamps.length, 200);
      paths.forEach((p, i) => assert.equal(readFileSync(p, 'utf8'), `n: ${i}\n`));
      paths.forEach((p, i) => assert.deepEqual(stamps[i], { size: statSync(p).size, mtimeMs: statSync(p).mtimeMs }, p));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a write that fails is an error, not a silent loss', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'anklume-writer-'));
    try {
      const writer = threadWriter();
      assert.ok(writer);
      writer.write(join(dir, 'missing-dir', 'x.yml'), 'x: 1\n', 'atomic');
      await assert.rejects(writer.finish(), /cannot write .*x\.yml/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a thread that answers for fewer files than it was sent is an error: no file goes into the cache with another\'s stamp', async () => {
    const writer = threadWriter(`const { parentPort } = require('node:worker_threads');
      parentPort.on('message', (m) => { if (m.end) parentPort.postMessage({ stamps: new Float64Array([5, 1]) }); });`);
    assert.ok(writer);
    writer.write('/nonexistent/a.yml', 'a: 1\n', 'atomic');
    writer.write('/nonexistent/b.yml', 'b: 1\n', 'atomic');
    await assert.rejects(writer.finish(), /the writer thread answered for 1 files of 2/);
  });

  it('a thread that falls behind: this thread writes the next batches itself; every file written once, the stamps in the order written', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'anklume-writer-'));
    try {
      // A thread that speaks the writer's protocol slowly: each batch waits 50 ms, and the paths
      // it writes are logged.
      const log = join(dir, 'thread.log');
      const source = `const { parentPort, workerData } = require('node:worker_threads');
        const fs = require('node:fs');
        const progress = new Int32Array(workerData.progress);
        const stamps = [];
        parentPort.on('message', (m) => {
          if (m.paths) {
            Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
            m.paths.forEach((p, i) => {
              fs.writeFileSync(p, m.bytes.subarray(i ? m.ends[i - 1] : 0, m.ends[i]), { flag: 'wx' });
              const st = fs.statSync(p);
              stamps.push(st.size, st.mtimeMs);
              fs.appendFileSync(${JSON.stringify(log)}, p + '\\n');
              Atomics.add(progress, ${WRITTEN}, 1);
            });
          }
          if (m.end) {
            const pairs = Float64Array.from(stamps);
            parentPort.postMessage({ stamps: pairs }, [pairs.buffer]);
          }
        });`;
      const writer = threadWriter(source, 64);
      assert.ok(writer);
      const paths = Array.from({ length: 600 }, (_, i) => join(dir, `f${i}.yml`));
      paths.forEach((p, i) => writer.write(p, `n: ${i}\n`, 'fresh'));
      const stamps = await writer.finish();
      const byThread = readFileSync(log, 'utf8').trim().split('\n');
      assert.ok(byThread.length >= 8 && byThread.length < 600, `the thread wrote ${byThread.length} of 600, this thread the rest`);
      assert.equal(new Set(byThread).size, byThread.length, 'no file sent twice');
      assert.equal(stamps.length, 600);
      paths.forEach((p, i) => assert.equal(readFileSync(p, 'utf8'), `n: ${i}\n`));
      paths.forEach((p, i) => assert.deepEqual(stamps[i], { size: statSync(p).size, mtimeMs: statSync(p).mtimeMs }, p));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a write of this thread\'s own that fails is an error at the end, once the thread is stopped', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'anklume-writer-'));
    try {
      // A backlog of 0: this thread writes every batch itself.
      const writer = threadWriter(undefined, 0);
      assert.ok(writer);
      const paths = Array.from({ length: 100 }, (_, i) => join(dir, i === 50 ? 'missing-dir' : '', `f${i}.yml`));
      paths.forEach((p, i) => writer.write(p, `n: ${i}\n`, 'atomic'));
      await assert.rejects(writer.finish(), /cannot write .*missing-dir.*f50\.yml/);
      // As with one writer: nothing after the failed file is written, by either thread.
      assert.deepEqual(paths.filter((p) => existsSync(p)), paths.slice(0, 50));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a write of the thread\'s that fails stops this thread\'s writes too: what comes after it is not written', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'anklume-writer-'));
    try {
      const writer = threadWriter();
      assert.ok(writer);
      // File 3 is in the first batch, the thread's: once it has failed there, the rest comes.
      const paths = Array.from({ length: 3000 }, (_, i) => join(dir, i === 3 ? 'missing-dir' : '', `f${i}.yml`));
      paths.slice(0, 8).forEach((p, i) => writer.write(p, `n: ${i}\n`, 'atomic'));
      while (!existsSync(paths[2])) await setTimeout(10);
      await setTimeout(50);
      paths.slice(8).forEach((p, i) => writer.write(p, `n: ${i + 8}\n`, 'atomic'));
      await assert.rejects(writer.finish(), /cannot write .*missing-dir.*f3\.yml/);
      // Neither thread wrote anything after the failure: this thread would have taken the
      // batches over, the thread's count being stuck (2,800 and more files, before).
      assert.deepEqual(paths.filter((p) => existsSync(p)), paths.slice(0, 3));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
