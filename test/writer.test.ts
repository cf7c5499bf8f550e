import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, it } from 'node:test';
import { threadWriter, type Writer } from '../generator/tree/writer.ts';
import { digest } from '../generator/tree/cache.ts';
import { managedBlock, mergeManaged } from '../generator/tree/managedBlock.ts';

/** Offers `count` new managed files; writes those the writer does not take. Returns each path, its vars, and whether it was taken. */
function offerMany(writer: Writer, dir: string, count: number) {
  return Array.from({ length: count }, (_, i) => {
    const path = join(dir, `h${i}.yml`);
    const vars = { instance_name: `m${i}`, instance_roles: ['base_system'], odd: i % 7 === 0 ? 'yes' : '{{ x }}', n: i };
    const taken = writer.offer?.(path, vars) ?? false;
    if (!taken) writer.write(path, mergeManaged(undefined, managedBlock(vars)), 'fresh');
    return { path, vars, taken };
  });
}

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
      assert.equal(stamps.size, 200);
      paths.forEach((p, i) => assert.equal(readFileSync(p, 'utf8'), `n: ${i}\n`));
      assert.equal(stamps.get(paths[7])?.size, 'n: 7\n'.length);
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
      assert.equal(stamps.size, 150);
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
      assert.equal(stamps.size, 200);
      paths.forEach((p, i) => assert.equal(readFileSync(p, 'utf8'), `n: ${i}\n`));
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

  it('renders the new managed files it takes: the bytes this thread would write, and the digest of their block (issue 18)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'anklume-writer-'));
    try {
      const writer = threadWriter();
      assert.ok(writer);
      const files = offerMany(writer, dir, 400);
      assert.ok(files.some((f) => f.taken), 'the thread took files to render');
      assert.ok(files.filter((f) => f.taken).length <= 400);
      const written = await writer.finish();
      assert.equal(written.size, 400);
      for (const { path, vars, taken } of files) {
        const block = managedBlock(vars);
        assert.equal(readFileSync(path, 'utf8'), mergeManaged(undefined, block), path);
        assert.equal(written.get(path)?.digest, taken ? digest(block) : undefined, path);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a thread lost with files it took to render: this thread renders and writes them, with their digest', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'anklume-writer-'));
    try {
      const writer = threadWriter('process.exit(3)');
      assert.ok(writer);
      const files = offerMany(writer, dir, 200);
      // It never writes one: it is offered files until its backlog is full, then no more.
      assert.deepEqual([files.filter((f) => f.taken).length, files.slice(0, 10).every((f) => f.taken)], [129, true]);
      const written = await writer.finish();
      assert.equal(written.size, 200);
      for (const { path, vars, taken } of files) {
        const block = managedBlock(vars);
        assert.equal(readFileSync(path, 'utf8'), mergeManaged(undefined, block));
        if (taken) assert.equal(written.get(path)?.digest, digest(block));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
