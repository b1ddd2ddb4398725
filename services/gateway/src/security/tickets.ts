import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { ChatError } from '@chat/contracts';
import type { Redis } from '@chat/platform';
import type { Principal } from '../auth';

const StoredPrincipal = z.object({
  id: z.string(),
  username: z.string(),
  displayName: z.string().nullable(),
  avatarUrl: z.string().nullable(),
  expiresAt: z.number(),
});

/**
 * Single-use WebSocket tickets (POST /ws-ticket → `?ticket=`), so a browser
 * never puts its long-lived token in a URL, where proxies and histories keep
 * it. A ticket is 256 random bits; Redis holds only its SHA-256 (a dump of
 * Redis yields nothing usable), with the caller's principal, for the TTL.
 * Redeeming is GETDEL: atomic, so a ticket works once across all instances.
 */
export class WsTickets {
  constructor(
    private readonly redis: Redis,
    private readonly ttlMs: number,
  ) {}

  async issue(principal: Principal): Promise<{ ticket: string; expiresAt: string }> {
    const ticket = randomBytes(32).toString('base64url');
    // The ticket never outlives the token it stands for.
    const ttl = Math.min(this.ttlMs, principal.expiresAt - Date.now());
    if (ttl <= 0) throw new ChatError('UNAUTHORIZED', 'token expired');
    try {
      await this.redis.set(key(ticket), JSON.stringify(principal), 'PX', ttl);
    } catch {
      throw new ChatError('SERVICE_UNAVAILABLE', 'tickets are unavailable: Redis does not answer; connect with the token instead', { dependency: 'redis' });
    }
    return { ticket, expiresAt: new Date(Date.now() + ttl).toISOString() };
  }

  /** The principal the ticket was issued to; UNAUTHORIZED when unknown, used or expired. */
  async redeem(ticket: string): Promise<Principal> {
    if (!/^[A-Za-z0-9_-]{43}$/.test(ticket)) throw new ChatError('UNAUTHORIZED', 'invalid ticket');
    let raw: string | null;
    try {
      raw = await this.redis.getdel(key(ticket));
    } catch {
      throw new ChatError('SERVICE_UNAVAILABLE', 'tickets are unavailable: Redis does not answer', { dependency: 'redis' });
    }
    const parsed = raw ? StoredPrincipal.safeParse(JSON.parse(raw)) : undefined;
    if (!parsed?.success) throw new ChatError('UNAUTHORIZED', 'ticket unknown, used or expired');
    if (parsed.data.expiresAt <= Date.now()) throw new ChatError('UNAUTHORIZED', 'token expired');
    return parsed.data;
  }
}

const key = (ticket: string) => `ws-ticket:${createHash('sha256').update(ticket).digest('base64url')}`;
