/**
 * Set element keys: the only nft text built in code. Short tuples (`"net-a" . 10.0.0.1 . tcp . 80`)
 * whose interface names go through nftString and whose other fields are checked numbers, addresses
 * and subnets. The same key string identifies an element when two rulesets are diffed.
 */
import { nftString } from '../core/templates.js';
import type { Protocol } from '../core/types.js';

export const BRIDGE_PREFIX = 'net-';

export type Field = { ifname: string } | { addr: string } | { subnet: string } | { proto: Protocol } | { port: number };

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function checkedAddress(text: string): string {
  const ok = IPV4.exec(text);
  if (!ok || ok.slice(1).some((p) => Number(p) > 255)) throw new Error(`not an IPv4 address: ${JSON.stringify(text)}`);
  return text;
}

function formatField(field: Field): string {
  if ('ifname' in field) return nftString(field.ifname);
  if ('addr' in field) return checkedAddress(field.addr);
  if ('subnet' in field) {
    const [address, length, ...rest] = field.subnet.split('/');
    if (rest.length || !/^\d{1,2}$/.test(length ?? '') || Number(length) > 32) throw new Error(`not an IPv4 subnet: ${JSON.stringify(field.subnet)}`);
    return `${checkedAddress(address)}/${length}`;
  }
  if ('proto' in field) {
    if (field.proto !== 'tcp' && field.proto !== 'udp') throw new Error(`not a protocol: ${JSON.stringify(field.proto)}`);
    return field.proto;
  }
  if (!Number.isInteger(field.port) || field.port < 1 || field.port > 65535) throw new Error(`not a port: ${JSON.stringify(field.port)}`);
  return String(field.port);
}

export function elementKey(fields: Field[]): string {
  return fields.map(formatField).join(' . ');
}

export function bridgeOf(domain: string): string {
  return BRIDGE_PREFIX + domain;
}
