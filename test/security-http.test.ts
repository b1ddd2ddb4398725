import { afterAll, describe, expect, it } from 'vitest';
import { api, conversationPair, knownUser, newUser, signToken } from './helpers/client';
import { extraGateway, useStack } from './helpers/stack';
import { connect, tryUpgrade } from './helpers/ws';

const ALLOWED = 'http://localhost:3000';
type Gateway = Awaited<ReturnType<typeof extraGateway>>;

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
};

describe('security headers and CORS (SPEC 8)', () => {
  const ctx = useStack({ CORS_ORIGINS: `${ALLOWED},https://app.example.com` });

  it('every answer carries the security headers; authenticated ones also no-store; no HSTS without TLS', async () => {
    const user = await knownUser(ctx.api, 'hdr');
    const base = ctx.stack.baseUrl;
    const answers = [
      await fetch(`${base}/healthz`),
      await fetch(`${base}/api/chat/conversations`, { headers: { authorization: `Bearer ${user.token}` } }),
      await fetch(`${base}/api/chat/conversations`),
      await fetch(`${base}/api/nope`),
      await fetch(`${base}/api/chat/conversations/with/x`, { method: 'POST', headers: { authorization: `Bearer ${user.token}` } }),
    ];
    for (const res of answers) {
      for (const [name, value] of Object.entries(SECURITY_HEADERS)) expect(res.headers.get(name), `${res.url} ${name}`).toBe(value);
      expect(res.headers.get('strict-transport-security')).toBeNull();
      expect(res.headers.get('x-powered-by')).toBeNull();
    }
    expect(answers[1]!.headers.get('cache-control')).toBe('no-store');
    expect(answers[1]!.headers.get('content-type')).toBe('application/json; charset=utf-8');
  });

  it('CORS answers exactly the listed origins, with credentials, never *', async () => {
    const user = await knownUser(ctx.api, 'cors');
    const res = await fetch(`${ctx.stack.baseUrl}/api/chat/conversations`, { headers: { origin: ALLOWED, authorization: `Bearer ${user.token}` } });
    expect(res.headers.get('access-control-allow-origin')).toBe(ALLOWED);
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');
    expect(res.headers.get('vary')?.toLowerCase()).toContain('origin');
    const preflight = await fetch(`${ctx.stack.baseUrl}/api/chat/conversations/x/messages`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
    });
    expect(preflight.status).toBeLessThan(300);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    expect(preflight.headers.get('access-control-allow-methods')).toContain('POST');
  });

  const lookAlikes = [
    'http://localhost:3000.evil.com',
    'http://evil-localhost:3000',
    'http://localhost:30000',
    'https://localhost:3000',
    'http://LOCALHOST:3000',
    'http://localhost:3000/',
    'null',
    'https://app.example.com.attacker.net',
    'https://xapp.example.com',
  ];

  it('look-alike origins get no CORS headers (REST, preflight) and a 403 ORIGIN_NOT_ALLOWED at the upgrade', async () => {
    const user = await knownUser(ctx.api, 'look');
    for (const origin of lookAlikes) {
      const res = await fetch(`${ctx.stack.baseUrl}/api/chat/conversations`, { headers: { origin, authorization: `Bearer ${user.token}` } });
      expect(res.headers.get('access-control-allow-origin'), origin).toBeNull();
      expect(res.headers.get('access-control-allow-credentials'), origin).toBeNull();
      const pre = await fetch(`${ctx.stack.baseUrl}/api/chat/conversations`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
      });
      expect(pre.headers.get('access-control-allow-origin'), origin).toBeNull();
      const up = await tryUpgrade(ctx.stack.gateway.port, { token: user.token, origin });
      expect(up.status, origin).toBe(403);
      expect(up.body.error.code).toBe('ORIGIN_NOT_ALLOWED');
    }
    expect((await tryUpgrade(ctx.stack.gateway.port, { token: user.token, origin: ALLOWED })).status).toBe(101);
  });
});

describe('IP denylist, proxies and the auth-failure ban', () => {
  const ctx = useStack({ AUTH_FAILURES_PER_MIN: 5, AUTH_BAN_MS: 2000 });
  const gateways: Gateway[] = [];
  afterAll(async () => {
    for (const g of gateways) await g.stop();
  });
  const gateway = async (overrides: Parameters<typeof extraGateway>[1]) => {
    const g = await extraGateway(ctx.stack, overrides);
    gateways.push(g);
    return g;
  };

  it('a denied socket address gets 403 IP_BLOCKED on REST and at the upgrade; X-Forwarded-For is ignored without TRUST_PROXY', async () => {
    const g = await gateway({ IP_DENYLIST: ['127.0.0.0/8', '::1'] });
    const user = await newUser('denied');
    const res = await g.api.call('GET', '/conversations', { token: user.token, headers: { 'x-forwarded-for': '198.51.100.1' } });
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('IP_BLOCKED');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    const up = await tryUpgrade(g.port, { token: user.token, headers: { 'x-forwarded-for': '198.51.100.1' } });
    expect(up.status).toBe(403);
    expect(up.body.error.code).toBe('IP_BLOCKED');
  });

  it('under TRUST_PROXY the right-most X-Forwarded-For hop is the client: CIDR and single entries, IPv6 too', async () => {
    const g = await gateway({ TRUST_PROXY: true, IP_DENYLIST: ['203.0.113.0/24', '2001:db8::/32', '198.51.100.9'] });
    const user = await newUser('proxied');
    const as = (xff: string) => g.api.call('GET', '/conversations', { token: user.token, headers: { 'x-forwarded-for': xff } });
    for (const xff of ['203.0.113.7', '198.51.100.9', '2001:db8::5', '198.51.100.1, 203.0.113.200']) {
      const r = await as(xff);
      expect(r.status, xff).toBe(403);
      expect(r.body.error.code).toBe('IP_BLOCKED');
    }
    // A spoofed left-most entry cannot get a client blocked or unblocked.
    expect((await as('203.0.113.7, 198.51.100.1')).status).toBe(200);
    expect((await as('198.51.100.10')).status).toBe(200);
    expect((await tryUpgrade(g.port, { token: user.token, headers: { 'x-forwarded-for': '203.0.113.1' } })).status).toBe(403);
    expect((await tryUpgrade(g.port, { token: user.token, headers: { 'x-forwarded-for': '192.0.2.1' } })).status).toBe(101);
  });

  it('more than AUTH_FAILURES_PER_MIN bad credentials ban the IP (REST and upgrade, valid tokens too) until AUTH_BAN_MS passes', async () => {
    const g = await gateway({ TRUST_PROXY: true });
    const good = await newUser('victim');
    const bad = await signToken({ sub: 'x', username: 'xxx' }, { secret: 'another-secret-another-secret-another-secret' });
    const from = (ip: string, token: string | undefined) =>
      g.api.call('GET', '/conversations', { ...(token ? { token } : {}), headers: { 'x-forwarded-for': ip } });
    // No credential at all is not a guess: it never counts.
    for (let i = 0; i < 10; i++) expect((await from('192.0.2.50', undefined)).status).toBe(401);
    expect((await from('192.0.2.50', good.token)).status).toBe(200);
    // Failures over REST and at the upgrade count together.
    for (let i = 0; i < 3; i++) expect((await from('192.0.2.51', bad)).status).toBe(401);
    for (let i = 0; i < 2; i++) expect((await tryUpgrade(g.port, { token: bad, headers: { 'x-forwarded-for': '192.0.2.51' } })).status).toBe(401);
    expect((await from('192.0.2.51', good.token)).status).toBe(200); // five failures: at the limit, not past it
    expect((await tryUpgrade(g.port, { ticket: 'A'.repeat(43), headers: { 'x-forwarded-for': '192.0.2.51' } })).status).toBe(401); // the sixth
    const banned = await from('192.0.2.51', good.token);
    expect(banned.status).toBe(403);
    expect(banned.body.error.code).toBe('IP_BLOCKED');
    expect(Number(banned.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(banned.headers.get('retry-after'))).toBeLessThanOrEqual(2);
    const up = await tryUpgrade(g.port, { token: good.token, headers: { 'x-forwarded-for': '192.0.2.51' } });
    expect(up.status).toBe(403);
    expect(up.body.error.code).toBe('IP_BLOCKED');
    // Other addresses are untouched.
    expect((await from('192.0.2.52', good.token)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 2100));
    expect((await from('192.0.2.51', good.token)).status).toBe(200);
  });
});

describe('WebSocket tickets (POST /ws-ticket)', () => {
  const ctx = useStack({ WS_TICKET_TTL_MS: 1500 });
  const gateways: Gateway[] = [];
  afterAll(async () => {
    for (const g of gateways) await g.stop();
  });

  it('a ticket opens one socket as its user, once, on any instance; then it is spent', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const issued = await ctx.api.post('/ws-ticket', alice.token);
    expect(issued.status).toBe(200);
    expect(issued.headers.get('cache-control')).toBe('no-store');
    const { ticket, expiresAt } = issued.body.data;
    expect(ticket).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const ttl = Date.parse(expiresAt) - Date.now();
    expect(ttl).toBeGreaterThan(500);
    expect(ttl).toBeLessThanOrEqual(1500);
    // Redeemed on another gateway instance: tickets live in the shared Redis.
    const other = await extraGateway(ctx.stack);
    gateways.push(other);
    const { client, hello } = await connect(other.port, { ticket });
    try {
      expect(hello.payload.userId).toBe(alice.id);
      await ctx.api.post(`/conversations/${conv}/messages`, bob.token, { content: 'via ticket' });
      expect((await client.nextOf('message.new')).payload.message.content).toBe('via ticket');
    } finally {
      await client.close();
    }
    const again = await tryUpgrade(ctx.stack.gateway.port, { ticket });
    expect(again.status).toBe(401);
    expect(again.body.error.code).toBe('UNAUTHORIZED');
  });

  it('two racing redemptions of one ticket: exactly one socket opens', async () => {
    const user = await knownUser(ctx.api, 'race');
    const { ticket } = (await ctx.api.post('/ws-ticket', user.token)).body.data;
    const results = await Promise.all(Array.from({ length: 5 }, () => tryUpgrade(ctx.stack.gateway.port, { ticket })));
    expect(results.filter((r) => r.status === 101)).toHaveLength(1);
    expect(results.filter((r) => r.status === 401)).toHaveLength(4);
  });

  it('expired, forged and missing tickets are 401; issuing one needs a token', async () => {
    const user = await knownUser(ctx.api, 'exp');
    const { ticket } = (await ctx.api.post('/ws-ticket', user.token)).body.data;
    await new Promise((r) => setTimeout(r, 1700));
    expect((await tryUpgrade(ctx.stack.gateway.port, { ticket })).status).toBe(401);
    for (const forged of ['', 'x', 'A'.repeat(43), `${'A'.repeat(42)}!`, user.token]) {
      const r = await tryUpgrade(ctx.stack.gateway.port, { ticket: forged });
      expect(r.status, forged).toBe(401);
      expect(r.body.error.code).toBe('UNAUTHORIZED');
    }
    expect((await ctx.api.post('/ws-ticket', undefined)).status).toBe(401);
    const anonymous = api(ctx.stack.baseUrl);
    expect((await anonymous.post('/ws-ticket', 'not-a-token')).status).toBe(401);
  });
});
