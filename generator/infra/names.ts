/** Name rules, read from the schema so that the CLI checks and the schema never disagree. */
import { readFileSync } from 'node:fs';
import { packagePath } from '../core/packageRoot.js';

interface SchemaDocument {
  definitions: { dnsName: { pattern: string } };
}

export const SCHEMA_FILE = packagePath('schema', 'infra.schema.json');
export const SCHEMA_TEXT = readFileSync(SCHEMA_FILE, 'utf8');
export const infraSchema = JSON.parse(SCHEMA_TEXT) as SchemaDocument & object;

const DNS_NAME = new RegExp(infraSchema.definitions.dnsName.pattern);
export const MAX_DOMAIN_NAME = 11;

export function isDomainName(value: string): boolean {
  return DNS_NAME.test(value) && value.length <= MAX_DOMAIN_NAME;
}
