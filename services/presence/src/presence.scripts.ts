import type { Result } from 'ioredis';

/**
 * The Lua scripts behind every write to the presence key space. Each runs
 * atomically in Redis, so any number of presence replicas (and gateways) can
 * call them at once: a user's online → offline transition is decided inside
 * one script, by whichever call removes the user from `index`, exactly once.
 *
 * Keys (under REDIS_PREFIX + "presence:"):
 *   conns:<userId>     sorted set: connection id → expiry (ms since epoch)
 *   index              sorted set: user id → their latest connection expiry;
 *                      a user is in it from the call that announced them
 *                      online until the call that announces them offline
 *   lastseen:<userId>  ISO time the user was last seen online: when their
 *                      last connection ended, or, when it expired instead,
 *                      when it was last refreshed (its expiry − TTL)
 *
 * A connection counts while its expiry is in the future (score > now).
 */

/** KEYS conns, index · ARGV userId, connectionId, now, expiry → 1 when the user went online. */
const CONNECT = `
local conns, index = KEYS[1], KEYS[2]
local user, conn, now, expiry = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local announced = redis.call('ZSCORE', index, user)
redis.call('ZREMRANGEBYSCORE', conns, '-inf', now)
redis.call('ZADD', conns, expiry, conn)
local top = redis.call('ZRANGE', conns, -1, -1, 'WITHSCORES')
redis.call('ZADD', index, top[2], user)
if announced then return 0 end
return 1
`;

/**
 * What is left of a user after their expired connections are dropped: their
 * latest expiry is written to the index, or, with none left, they leave the
 * index (went offline: lastseen = seenIso, returns 1) unless they were not in it.
 */
const SETTLE = `
local function settle(conns, index, lastseen, user, now, seenIso)
  redis.call('ZREMRANGEBYSCORE', conns, '-inf', now)
  local top = redis.call('ZRANGE', conns, -1, -1, 'WITHSCORES')
  if top[1] then
    redis.call('ZADD', index, top[2], user)
    return 0
  end
  if redis.call('ZREM', index, user) == 1 then
    redis.call('SET', lastseen, seenIso)
    return 1
  end
  return 0
end
`;

/** KEYS conns, index, lastseen · ARGV userId, connectionId, now, nowIso → 1 when the user went offline (last seen now). */
const DISCONNECT = `${SETTLE}
redis.call('ZREM', KEYS[1], ARGV[2])
return settle(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[3], ARGV[4])
`;

/**
 * The sweeper's step for one user it saw in the index with score ≤ now.
 * KEYS conns, index, lastseen · ARGV userId, now, score seen, seenIso → 1 when the user went offline.
 * Does nothing unless the user's index score is still the one the sweeper saw:
 * another replica may have taken them offline, or a connect/heartbeat may have
 * refreshed them, since it looked (a changed score is looked at again next pass).
 * seenIso is when their last connection was last refreshed (score − TTL).
 */
const EXPIRE = `${SETTLE}
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[3]) or tonumber(score) > tonumber(ARGV[2]) then return 0 end
return settle(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[4])
`;

/**
 * KEYS index, conns:<u1>, conns:<u2>, … · ARGV expiry, now, u1, c1, u2, c2, …
 * Pushes each listed connection's expiry forward only if the connection still
 * exists: a heartbeat never brings back a connection already disconnected or
 * expired by the sweeper. Also drops the listed users' other expired
 * connections (a dead gateway's), which the sweeper leaves alone while the
 * user has a live one. Returns how many were refreshed.
 */
const HEARTBEAT = `
local index, expiry, now, n = KEYS[1], ARGV[1], ARGV[2], 0
for i = 2, #KEYS do
  local user, conn = ARGV[2 * i - 1], ARGV[2 * i]
  if redis.call('ZSCORE', KEYS[i], conn) then
    redis.call('ZADD', KEYS[i], 'GT', expiry, conn)
    redis.call('ZADD', index, 'GT', expiry, user)
    n = n + 1
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
end
return n
`;

/**
 * Read-only: the state of many users in one call (one command, one reply,
 * instead of three commands per user). KEYS index, then conns and lastseen of
 * each user · ARGV now, then the user ids → per user: live connections,
 * lastseen (nil) and their index score (nil).
 */
const QUERY = `
local out = {}
local now = ARGV[1]
for i = 2, #ARGV do
  local k = 2 * (i - 1)
  out[#out + 1] = redis.call('ZCOUNT', KEYS[k], '(' .. now, '+inf')
  out[#out + 1] = redis.call('GET', KEYS[k + 1])
  out[#out + 1] = redis.call('ZSCORE', KEYS[1], ARGV[i])
end
return out
`;

export const presenceScripts = {
  presenceConnect: { numberOfKeys: 2, lua: CONNECT },
  presenceDisconnect: { numberOfKeys: 3, lua: DISCONNECT },
  presenceExpire: { numberOfKeys: 3, lua: EXPIRE },
  // The number of keys varies: it is the first argument of each call.
  presenceHeartbeat: { lua: HEARTBEAT },
  presenceQuery: { lua: QUERY },
} as const;

type Arg = string | number;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    presenceConnect(conns: string, index: string, userId: string, connectionId: string, now: Arg, expiry: Arg): Result<number, Context>;
    presenceDisconnect(conns: string, index: string, lastseen: string, userId: string, connectionId: string, now: Arg, nowIso: string): Result<number, Context>;
    presenceExpire(conns: string, index: string, lastseen: string, userId: string, now: Arg, score: Arg, seenIso: string): Result<number, Context>;
    presenceHeartbeat(numberOfKeys: number, ...keysThenArgs: Arg[]): Result<number, Context>;
    presenceQuery(numberOfKeys: number, ...keysThenArgs: Arg[]): Result<Array<number | string | null>, Context>;
  }
}
