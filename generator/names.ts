/** Name rules, read from the schema so that the CLI checks and the schema never disagree. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface SchemaDocument {
  definitions: { dnsName: { pattern: string } };
}

function locateSchema(): string {
  // Sources run from generator/, the build from dist/generator/: the schema sits at the root of both.
  for (const candidate of ['../schema/infra.schema.json', '../../schema/infra.schema.json']) {
    const path = fileURLToPath(new URL(candidate, import.meta.url));
    try {
      readFileSync(path);
      return path;
    } catch {
      continue;
    }
  }
  throw new Error('schema/infra.schema.json is missing from the installation');
}

export const SCHEMA_FILE = locateSchema();
export const infraSchema = JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')) as SchemaDocument & object;

const DNS_NAME = new RegExp(infraSchema.definitions.dnsName.pattern);
export const MAX_DOMAIN_NAME = 11;

export function isDomainName(value: string): boolean {
  return DNS_NAME.test(value) && value.length <= MAX_DOMAIN_NAME;
}
