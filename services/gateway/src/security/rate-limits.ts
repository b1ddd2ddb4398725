import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { ChatError } from '@chat/contracts';
import type { Config, Logger, Redis } from '@chat/platform';

const WINDOW_S = 60;

/** Where a caller stands in the current window: what the `RateLimit-*` headers say. */
export interface Quota {
  limit: number;
  remaining: number;
  /** Milliseconds until the window ends. */
  resetMs: number;
}

/**
 * One limit of SPEC 6: `points` actions per fixed 60 s window (the window
 * starts at the first counted action of the key and ends 60 s later).
 *
 * The count lives in Redis, so every gateway instance shares it, and the
 * increment is one Lua call, so 100 parallel sends admit exactly `points`.
 * While Redis is away an in-memory limiter of the same size takes over in
 * each instance (rate-limiter-flexible's insurance limiter): limits hold per
 * instance, so N instances admit up to N × the limit until Redis returns
 * (docs/security.md).
 */
export class Limit {
  private readonly limiter: RateLimiterAbstract;

  constructor(
    readonly name: string,
    readonly points: number,
    store: { redis: Redis; keyPrefix: string } | undefined,
    opts: { blockDurationS?: number; windowS?: number } = {},
  ) {
    const common = { points, duration: opts.windowS ?? WINDOW_S, blockDuration: opts.blockDurationS ?? 0 };
    this.limiter = store
      ? new RateLimiterRedis({
          ...common,
          storeClient: store.redis,
          keyPrefix: `${store.keyPrefix}${name}`,
          rejectIfRedisNotReady: true,
          insuranceLimiter: new RateLimiterMemory({ ...common, keyPrefix: name }),
        })
      : new RateLimiterMemory({ ...common, keyPrefix: name });
  }

  /** Counts one action. Never throws for the limit itself: `allowed` says. */
  async consume(key: string): Promise<Quota & { allowed: boolean; consumed: number }> {
    try {
      const r = await this.limiter.consume(key, 1);
      return { allowed: true, consumed: r.consumedPoints, ...this.quota(r) };
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) throw rejection;
      return { allowed: false, consumed: rejection.consumedPoints, ...this.quota(rejection) };
    }
  }

  /** Like consume, but a refusal is a RATE_LIMITED error carrying the retry time. */
  async take(key: string): Promise<Quota> {
    const r = await this.consume(key);
    if (!r.allowed) throw rateLimited(this.name, r.resetMs);
    return r;
  }

  /** The state of a key without counting; undefined when it has none. */
  async peek(key: string): Promise<(Quota & { consumed: number }) | undefined> {
    const r = await this.limiter.get(key);
    return r ? { consumed: r.consumedPoints, ...this.quota(r) } : undefined;
  }

  /** Gives back one action that turned out not to count (a creation that found the row already there). */
  async refund(key: string): Promise<void> {
    await this.limiter.reward(key, 1);
  }

  private quota(r: RateLimiterRes): Quota {
    return { limit: this.points, remaining: Math.max(0, this.points - r.consumedPoints), resetMs: Math.max(0, r.msBeforeNext) };
  }
}

export function rateLimited(what: string, retryAfterMs: number): ChatError {
  const ms = Math.max(1, Math.ceil(retryAfterMs));
  return new ChatError('RATE_LIMITED', `rate limit exceeded (${what}): retry in ${Math.ceil(ms / 1000)} s`, undefined, { retryAfterMs: ms });
}

/** The gateway's limits: per user for sends and creations, per IP for failed authentications, upgrades and tickets. */
export class RateLimits {
  readonly send: Limit;
  readonly createConversation: Limit;
  /** Reactions added and removed, REST and WebSocket together: a limit of their own, so reacting never eats the send quota. */
  readonly reactions: Limit;
  readonly authFailures: Limit;
  /** Upgrade attempts per IP, counted before the credential is looked at: each one costs a handshake and a verification. */
  readonly wsUpgrades: Limit;
  /** POST /ws-ticket per IP: each ticket is a Redis key held for its TTL. */
  readonly wsTickets: Limit;
  /**
   * Frames are limited per connection, and a connection lives on one
   * instance, so its counter is local memory: no Redis round trip per frame.
   */
  readonly wsFrames: Limit;

  constructor(
    redis: Redis,
    config: Pick<
      Config,
      | 'RATE_LIMIT_SEND_PER_MIN'
      | 'RATE_LIMIT_CREATE_CONVERSATION_PER_MIN'
      | 'RATE_LIMIT_REACTIONS_PER_MIN'
      | 'RATE_LIMIT_WS_FRAMES_PER_MIN'
      | 'RATE_LIMIT_WS_UPGRADES_PER_MIN'
      | 'RATE_LIMIT_WS_TICKETS_PER_MIN'
      | 'AUTH_FAILURES_PER_MIN'
      | 'AUTH_BAN_MS'
    >,
    log: Logger,
  ) {
    // The client carries the process's key prefix; these names sit under it.
    const store = { redis, keyPrefix: 'rl:' };
    this.send = new Limit('send', config.RATE_LIMIT_SEND_PER_MIN, store);
    this.createConversation = new Limit('conversation-create', config.RATE_LIMIT_CREATE_CONVERSATION_PER_MIN, store);
    this.reactions = new Limit('reactions', config.RATE_LIMIT_REACTIONS_PER_MIN, store);
    this.authFailures = new Limit('auth-failures', config.AUTH_FAILURES_PER_MIN, store, { blockDurationS: Math.ceil(config.AUTH_BAN_MS / 1000) });
    this.wsFrames = new Limit('ws-frames', config.RATE_LIMIT_WS_FRAMES_PER_MIN, undefined);
    this.wsUpgrades = new Limit('ws-upgrades', config.RATE_LIMIT_WS_UPGRADES_PER_MIN, store);
    this.wsTickets = new Limit('ws-tickets', config.RATE_LIMIT_WS_TICKETS_PER_MIN, store);
    let degraded = false;
    redis.on('error', () => {
      if (!degraded) log.warn('rate limits: Redis is down, each gateway instance now limits on its own; WebSocket tickets are unavailable');
      degraded = true;
    });
    redis.on('ready', () => {
      if (degraded) log.info('rate limits: Redis is back, limits are shared again');
      degraded = false;
    });
  }
}
