/** The installed package's root: schema/, templates/ and roles/ sit there, beside generator/ or dist/. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(): string {
  // Sources run from generator/<stage>/, the build from dist/generator/<stage>/.
  for (const candidate of ['../..', '../../..']) {
    const dir = fileURLToPath(new URL(candidate, import.meta.url));
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'schema'))) return dir;
  }
  throw new Error('anklume-gen is installed incompletely: package.json and schema/ not found next to the generator');
}

export const PACKAGE_ROOT = findRoot();

export function packagePath(...parts: string[]): string {
  return join(PACKAGE_ROOT, ...parts);
}
