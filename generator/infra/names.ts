/** Name rules, read from the schema so that the CLI checks and the schema never disagree. */
import { readFileSync } from 'node:fs';
import { packagePath } from '../core/packageRoot.js';
import { closest } from '../core/suggest.js';

interface SchemaDocument {
  definitions: { dnsName: { pattern: string }; bridgeName: { pattern: string } };
}

export const SCHEMA_FILE = packagePath('schema', 'infra.schema.json');
export const SCHEMA_TEXT = readFileSync(SCHEMA_FILE, 'utf8');
export const infraSchema = JSON.parse(SCHEMA_TEXT) as SchemaDocument & object;

const DNS_NAME = new RegExp(infraSchema.definitions.dnsName.pattern);
const BRIDGE_NAME = new RegExp(infraSchema.definitions.bridgeName.pattern);
export const MAX_DOMAIN_NAME = 11;

export function isDomainName(value: string): boolean {
  return DNS_NAME.test(value) && value.length <= MAX_DOMAIN_NAME;
}

/** Whether a NIC's network or parent has the shape of a domain bridge (net-<domain>). */
export function isBridgeName(value: string): boolean {
  return BRIDGE_NAME.test(value);
}

/** `Domain 'prso' not found in x.yml; did you mean 'perso'?`, the guess taken among `domains`. */
export function domainNotFound(domain: string, domains: readonly string[], infraPath: string): string {
  const guess = domains.find((d) => d === domain.toLowerCase()) ?? closest(domain, domains);
  const hint = guess ? `; did you mean '${guess}'?` : domains.length ? ` (its domains: ${domains.join(', ')})` : '';
  return `Domain '${domain}' not found in ${infraPath}${hint}`;
}
