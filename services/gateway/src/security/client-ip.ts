import { normalizeIp } from '@chat/platform';

/**
 * The caller's address. Behind a proxy (TRUST_PROXY) it is the right-most
 * entry of X-Forwarded-For: the one our own proxy appended, which the client
 * cannot forge; entries left of it are whatever the client claimed. Without
 * TRUST_PROXY the header is ignored, since anyone can send it.
 */
export function clientIp(remoteAddress: string | undefined, forwardedFor: string | undefined, trustProxy: boolean): string {
  if (trustProxy && forwardedFor) {
    const hops = forwardedFor.split(',').map((h) => h.trim()).filter(Boolean);
    const nearest = normalizeIp(hops.at(-1));
    if (nearest) return nearest;
  }
  return normalizeIp(remoteAddress) ?? 'unknown';
}
