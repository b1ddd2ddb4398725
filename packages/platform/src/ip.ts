import ipaddr from 'ipaddr.js';

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];

/**
 * An IP allow/deny matcher over single addresses and CIDR ranges. Parsing and
 * matching are ipaddr.js's; IPv4-mapped IPv6 (`::ffff:1.2.3.4`, what a
 * dual-stack socket reports) is folded to IPv4 so one entry covers both.
 */
export class IpMatcher {
  private readonly ranges: Range[];

  constructor(entries: readonly string[]) {
    this.ranges = entries.map(parseEntry);
  }

  get size(): number {
    return this.ranges.length;
  }

  matches(address: string): boolean {
    const ip = normalizeIp(address);
    if (!ip) return false;
    const addr = ipaddr.process(ip);
    return this.ranges.some(([net, bits]) => addr.kind() === net.kind() && addr.match([net, bits] as never));
  }
}

function parseEntry(entry: string): Range {
  const [address = '', bits, ...rest] = entry.split('/');
  if (rest.length || !isStrictIp(address)) throw new Error(`not an address: ${entry}`);
  if (bits !== undefined) return ipaddr.parseCIDR(entry);
  const ip = ipaddr.process(address);
  return [ip, ip.kind() === 'ipv4' ? 32 : 128];
}

/** Dotted-quad IPv4 or IPv6 only: ipaddr.js would also take `0x7f.1` or `2130706433`, which no socket reports. */
function isStrictIp(s: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(s) || (s.includes(':') && ipaddr.IPv6.isValid(s));
}

/** Why an IP_DENYLIST entry is not an address or a CIDR range, or undefined when it is one. */
export function invalidIpEntry(entry: string): string | undefined {
  try {
    parseEntry(entry);
    return undefined;
  } catch {
    return `"${entry}" is not an IP address or CIDR range`;
  }
}

/** The canonical text of an address (IPv4-mapped IPv6 folded to IPv4), or undefined when it is not one. */
export function normalizeIp(address: string | undefined): string | undefined {
  if (!address) return undefined;
  const bare = address.trim().replace(/^\[(.*)\]$/, '$1');
  if (!isStrictIp(bare)) return undefined;
  return ipaddr.process(bare).toString();
}
