import type { Result } from 'ioredis';
import { ChatError } from '@chat/contracts';
import type { Config, Logger, Redis } from '@chat/platform';

/** One admitted socket, counted against its user and its IP until released. */
export interface Slot {
  readonly id: string;
  readonly userId: string;
  readonly ip: string;
}

/**
 * KEYS user set, ip set · ARGV now, expiry, member, max per user, max per IP, key TTL (ms)
 * → 0 admitted, 1 the user is at the cap, 2 the IP is. Entries whose expiry
 * passed belong to a gateway that stopped refreshing them (it died): they go
 * first, so a crashed instance's sockets stop counting after one TTL.
 */
const ACQUIRE = `
local now = ARGV[1]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return 2 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 0
`;

/**
 * KEYS user set, ip set, … (two per slot) · ARGV expiry, key TTL, member, …
 * (one per slot). Adds as well as refreshes: entries lost while Redis was
 * away (or flushed) count again from the next heartbeat.
 */
const REFRESH = `
for i = 1, #KEYS do
  local member = ARGV[2 + math.floor((i + 1) / 2)]
  redis.call('ZADD', KEYS[i], ARGV[1], member)
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
return 0
`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    wsCapAcquire(userKey: string, ipKey: string, now: number, expiry: number, member: string, maxUser: number, maxIp: number, ttlMs: number): Result<number, Context>;
    wsCapRefresh(numberOfKeys: number, ...keysAndArgs: Array<string | number>): Result<number, Context>;
  }
}

/** Slots per refresh script call: a few thousand keys per call keeps each one short. */
const REFRESH_CHUNK = 500;

const userKey = (userId: string) => `wsconn:user:${userId}`;
const ipKey = (ip: string) => `wsconn:ip:${ip}`;

/**
 * Open WebSockets per user and per client IP, across every gateway instance.
 *
 * Each socket is a member of two sorted sets in the gateway's Redis key space
 * (`wsconn:user:<id>`, `wsconn:ip:<ip>`), scored by an expiry that the hub's
 * presence heartbeat pushes forward; the admission check and the add are one
 * Lua call, so racing upgrades on any instances never overshoot. A socket's
 * entries go when it closes; a crashed gateway's age out after `ttlMs`.
 *
 * Every instance also counts its own sockets in memory and refuses past the
 * same caps, so while Redis is away (admission then fails open, with a
 * warning, as the rate limits do) each instance still holds the caps for
 * what it sees.
 */
export class ConnectionCaps {
  private readonly slots = new Map<string, Slot>();
  private readonly perUser = new Map<string, number>();
  private readonly perIp = new Map<string, number>();
  private readonly maxPerUser: number;
  private readonly maxPerIp: number;
  private degraded = false;

  constructor(
    private readonly redis: Redis,
    config: Pick<Config, 'WS_MAX_CONNECTIONS_PER_USER' | 'WS_MAX_CONNECTIONS_PER_IP'>,
    private readonly ttlMs: number,
    private readonly log: Logger,
  ) {
    this.maxPerUser = config.WS_MAX_CONNECTIONS_PER_USER;
    this.maxPerIp = config.WS_MAX_CONNECTIONS_PER_IP;
    redis.defineCommand('wsCapAcquire', { numberOfKeys: 2, lua: ACQUIRE });
    redis.defineCommand('wsCapRefresh', { lua: REFRESH });
  }

  /** A slot for one more socket of `userId` from `ip`, or RATE_LIMITED naming the cap it would pass. */
  async acquire(userId: string, ip: string): Promise<Slot> {
    if ((this.perUser.get(userId) ?? 0) >= this.maxPerUser) throw tooMany('user', this.maxPerUser);
    if ((this.perIp.get(ip) ?? 0) >= this.maxPerIp) throw tooMany('ip', this.maxPerIp);
    // Held in memory before Redis answers, so concurrent upgrades on this instance see each other.
    const slot: Slot = { id: crypto.randomUUID(), userId, ip };
    this.hold(slot);
    let verdict: number;
    try {
      const now = Date.now();
      verdict = await this.redis.wsCapAcquire(userKey(userId), ipKey(ip), now, now + this.ttlMs, slot.id, this.maxPerUser, this.maxPerIp, this.ttlMs);
      this.recovered();
    } catch (err) {
      // Availability over strictness, as with the rate limits: the in-memory caps above still hold per instance.
      if (!this.degraded) this.log.warn({ err: (err as Error).message }, 'websocket caps: Redis does not answer, each gateway instance now caps on its own');
      this.degraded = true;
      return slot;
    }
    if (verdict !== 0) {
      this.unhold(slot);
      throw verdict === 1 ? tooMany('user', this.maxPerUser) : tooMany('ip', this.maxPerIp);
    }
    return slot;
  }

  /** Once per slot; a second call does nothing. */
  async release(slot: Slot): Promise<void> {
    if (!this.unhold(slot)) return;
    try {
      await Promise.all([this.redis.zrem(userKey(slot.userId), slot.id), this.redis.zrem(ipKey(slot.ip), slot.id)]);
    } catch {
      // Its entries expire by themselves within ttlMs.
    }
  }

  /** At shutdown: removes whatever slots remain, so a restarted gateway's users are not counted twice until the entries expire. */
  async releaseAll(): Promise<void> {
    await Promise.all([...this.slots.values()].map((slot) => this.release(slot)));
  }

  /** Pushes every live slot's expiry forward (and puts back any Redis lost). Called on the hub's heartbeat. */
  async refresh(): Promise<void> {
    if (this.slots.size === 0) return;
    const all = [...this.slots.values()];
    const expiry = Date.now() + this.ttlMs;
    try {
      await Promise.all(
        chunks(all, REFRESH_CHUNK).map((chunk) => {
          const keys = chunk.flatMap((s) => [userKey(s.userId), ipKey(s.ip)]);
          return this.redis.wsCapRefresh(keys.length, ...keys, expiry, this.ttlMs, ...chunk.map((s) => s.id));
        }),
      );
      this.recovered();
    } catch (err) {
      if (!this.degraded) this.log.warn({ err: (err as Error).message }, 'websocket caps: refresh failed; entries expire unless a later heartbeat refreshes them');
      this.degraded = true;
    }
  }

  /** Live slots on this instance (for tests and metrics). */
  get size(): number {
    return this.slots.size;
  }

  private recovered(): void {
    if (this.degraded) this.log.info('websocket caps: Redis is back, caps are shared again');
    this.degraded = false;
  }

  private hold(slot: Slot): void {
    this.slots.set(slot.id, slot);
    this.perUser.set(slot.userId, (this.perUser.get(slot.userId) ?? 0) + 1);
    this.perIp.set(slot.ip, (this.perIp.get(slot.ip) ?? 0) + 1);
  }

  private unhold(slot: Slot): boolean {
    if (!this.slots.delete(slot.id)) return false;
    decrement(this.perUser, slot.userId);
    decrement(this.perIp, slot.ip);
    return true;
  }
}

function decrement(counts: Map<string, number>, key: string): void {
  const n = (counts.get(key) ?? 0) - 1;
  if (n > 0) counts.set(key, n);
  else counts.delete(key);
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * A connection cap is not a rate, so there is no window to wait out: the
 * retry hint is a guess at how soon a socket of the user's might close, long
 * enough that a reconnect loop does not hammer the gateway.
 */
const CAP_RETRY_AFTER_MS = 30_000;

function tooMany(per: 'user' | 'ip', max: number): ChatError {
  const who = per === 'user' ? 'this user' : 'this address';
  return new ChatError('RATE_LIMITED', `too many open WebSocket connections for ${who} (at most ${max}): close one first`, undefined, {
    retryAfterMs: CAP_RETRY_AFTER_MS,
  });
}
