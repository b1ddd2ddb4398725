import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { IpMatcher, normalizeIp } from '@chat/platform';
import { clientIp } from '../src/security/client-ip';
import { Limit } from '../src/security/rate-limits';

describe('Limit: fixed windows on the real Redis', () => {
  const prefix = `unit-${randomBytes(4).toString('hex')}:`;
  const redis = new Redis('redis://127.0.0.1:6379', { keyPrefix: prefix });
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys.map((k) => k.slice(prefix.length)));
    redis.disconnect();
  });

  it('admits `points` per window; the window starts at the first action and a new one starts whole', async () => {
    const limit = new Limit('edge', 3, { redis, keyPrefix: 'rl:' }, { windowS: 1 });
    const first = await limit.consume('k');
    expect(first).toMatchObject({ allowed: true, remaining: 2, limit: 3 });
    expect(first.resetMs).toBeGreaterThan(500);
    expect(first.resetMs).toBeLessThanOrEqual(1000);
    await limit.consume('k');
    expect((await limit.consume('k')).remaining).toBe(0);
    const refused = await limit.consume('k');
    expect(refused.allowed).toBe(false);
    expect(refused.resetMs).toBeLessThanOrEqual(1000);
    // Documented edge of fixed windows: right after the reset the whole budget is back,
    // so up to 2 × points can pass within a little more than one window.
    await new Promise((r) => setTimeout(r, refused.resetMs + 50));
    const again = await Promise.all([limit.consume('k'), limit.consume('k'), limit.consume('k'), limit.consume('k')]);
    expect(again.filter((r) => r.allowed)).toHaveLength(3);
  });

  it('take() turns a refusal into RATE_LIMITED with the time to wait', async () => {
    const limit = new Limit('take', 1, { redis, keyPrefix: 'rl:' });
    await limit.take('u');
    const err = await limit.take('u').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'RATE_LIMITED' });
    expect((err as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(59_000);
  });

  it('a ban (blockDuration) outlasts the window', async () => {
    const limit = new Limit('ban', 2, { redis, keyPrefix: 'rl:' }, { windowS: 1, blockDurationS: 3 });
    for (let i = 0; i < 3; i++) await limit.consume('ip');
    const state = await limit.peek('ip');
    expect(state!.consumed).toBe(3);
    expect(state!.resetMs).toBeGreaterThan(2000);
  });
});

describe('client IP and the denylist', () => {
  it('ignores X-Forwarded-For unless the proxy is trusted, and then takes the hop the proxy appended', () => {
    expect(clientIp('10.1.1.1', '203.0.113.9', false)).toBe('10.1.1.1');
    expect(clientIp('10.1.1.1', '203.0.113.9', true)).toBe('203.0.113.9');
    // A client may put anything on the left; only the right-most entry is the proxy's.
    expect(clientIp('10.1.1.1', '1.1.1.1, 203.0.113.9', true)).toBe('203.0.113.9');
    expect(clientIp('10.1.1.1', 'garbage', true)).toBe('10.1.1.1');
    expect(clientIp('::ffff:127.0.0.1', undefined, false)).toBe('127.0.0.1');
  });

  it('matches addresses and CIDR ranges, IPv4-mapped IPv6 included, and nothing that is not an address', () => {
    const m = new IpMatcher(['203.0.113.0/24', '198.51.100.7', '2001:db8::/32']);
    expect(m.matches('203.0.113.200')).toBe(true);
    expect(m.matches('::ffff:203.0.113.1')).toBe(true);
    expect(m.matches('198.51.100.7')).toBe(true);
    expect(m.matches('198.51.100.8')).toBe(false);
    expect(m.matches('2001:db8:1::5')).toBe(true);
    expect(m.matches('2001:db9::1')).toBe(false);
    expect(m.matches('203.0.114.1')).toBe(false);
    expect(m.matches('not-an-ip')).toBe(false);
    expect(normalizeIp('0x7f.1')).toBeUndefined();
  });
});
