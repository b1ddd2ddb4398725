import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { TEST_SECRET, useStack } from './helpers/stack';
import { UUID, newUser, signToken, type ApiResponse } from './helpers/client';

const ctx = useStack();

const now = () => Math.floor(Date.now() / 1000);
const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

function expectError(res: ApiResponse, status: number, code: string) {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  expect(res.body.error).toMatchObject({ code, message: expect.any(String), requestId: expect.any(String) });
  expect(res.body.error.requestId.length).toBeGreaterThan(0);
  expect(res.headers.get('x-request-id')).toBe(res.body.error.requestId);
  const text = JSON.stringify(res.body);
  expect(text).not.toMatch(/\bat .+\.(ts|js):\d+|node_modules|"stack"/);
}

describe('authentication: 401 UNAUTHORIZED', () => {
  const claims = () => ({ sub: `user-${Math.random().toString(36).slice(2)}`, username: `auth_${Math.random().toString(36).slice(2, 10)}` });

  const rejected: Array<[string, () => Promise<string | undefined>]> = [
    ['no Authorization header', async () => undefined],
    ['a malformed token', async () => 'not.a.jwt'],
    ['alg: none (unsigned)', async () => `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ ...claims(), exp: now() + 3600 })}.`],
    ['an expired token (beyond 30 s leeway)', async () => signToken({ ...claims(), exp: now() - 120 })],
    ['a token signed with another secret', async () => signToken(claims(), { secret: 'another-secret-0123456789-0123456789-xyz' })],
    ['a token without exp', async () => new SignJWT(claims()).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().sign(new TextEncoder().encode(TEST_SECRET))],
    ['nbf in the future beyond the leeway', async () => signToken({ ...claims(), nbf: now() + 120 })],
    ['no username claim', async () => signToken({ sub: 'user-nousername' })],
    ['an invalid username claim', async () => signToken({ sub: 'user-bad', username: 'a b' })],
    ['no sub claim', async () => signToken({ username: 'nosub_user' })],
    ['HS512 (an algorithm not pinned)', async () => signToken(claims(), { alg: 'HS512' })],
  ];

  for (const [name, make] of rejected) {
    it(`rejects ${name}`, async () => {
      const token = await make();
      const res = await ctx.api.get('/conversations', token);
      expectError(res, 401, 'UNAUTHORIZED');
    });
  }

  it('rejects a scheme other than Bearer', async () => {
    const user = await newUser('basic');
    expectError(await ctx.api.call('GET', '/conversations', { headers: { authorization: `Basic ${user.token}` } }), 401, 'UNAUTHORIZED');
  });

  it('accepts exp and nbf within the 30 s leeway', async () => {
    const user = await newUser('skew', { exp: now() - 10, nbf: now() + 10 });
    expect((await ctx.api.get('/conversations', user.token)).status).toBe(200);
  });

  it('accepts preferred_username in place of username', async () => {
    const alice = await newUser('alice');
    const id = `user-pref-${Date.now()}`;
    const username = `pref_${Date.now().toString(36)}`;
    const token = await signToken({ sub: id, preferred_username: username });
    expect((await ctx.api.get('/conversations', token)).status).toBe(200);
    expect((await ctx.api.get('/conversations', alice.token)).status).toBe(200);
    const conv = await ctx.api.get(`/conversations/with/${username}`, alice.token);
    expect(conv.status).toBe(201);
    expect(conv.body.data.participant).toMatchObject({ id, username });
  });
});

describe('request ids', () => {
  it('echoes a client X-Request-Id on success and in error bodies', async () => {
    const user = await newUser('rid');
    const ok = await ctx.api.call('GET', '/conversations', { token: user.token, headers: { 'x-request-id': 'client-id-123' } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('x-request-id')).toBe('client-id-123');
    const bad = await ctx.api.call('GET', '/conversations', { headers: { 'x-request-id': 'client-id-456' } });
    expectError(bad, 401, 'UNAUTHORIZED');
    expect(bad.body.error.requestId).toBe('client-id-456');
  });

  it('generates a fresh id when none is sent', async () => {
    const user = await newUser('rid');
    const first = await ctx.api.get('/conversations', user.token);
    const second = await ctx.api.get('/conversations', user.token);
    expect(first.headers.get('x-request-id')).toMatch(UUID);
    expect(second.headers.get('x-request-id')).toMatch(UUID);
    expect(first.headers.get('x-request-id')).not.toBe(second.headers.get('x-request-id'));
  });
});

describe('error envelope', () => {
  it('an unknown route is 404 NOT_FOUND, inside and outside /api/chat', async () => {
    const user = await newUser('nf');
    expectError(await ctx.api.get('/no/such/route', user.token), 404, 'NOT_FOUND');
    // Under /api/ but outside /api/chat: every other path belongs to the web chat (test/web-serving.test.ts).
    const outside = await fetch(`${ctx.stack.baseUrl}/api/nope`);
    expect(outside.status).toBe(404);
    expect(((await outside.json()) as any).error.code).toBe('NOT_FOUND');
  });

  it('a body over 64 KiB is 413 PAYLOAD_TOO_LARGE', async () => {
    const user = await newUser('big');
    const conv = '00000000-0000-7000-8000-000000000000';
    const raw = JSON.stringify({ content: 'x'.repeat(64 * 1024 + 1) });
    const res = await ctx.api.call('POST', `/conversations/${conv}/messages`, { token: user.token, raw, headers: { 'content-type': 'application/json' } });
    expectError(res, 413, 'PAYLOAD_TOO_LARGE');
  });

  it('a text/plain body is 415 UNSUPPORTED_MEDIA_TYPE', async () => {
    const user = await newUser('mt');
    const res = await ctx.api.call('POST', '/blocks', { token: user.token, raw: '{"username":"someone"}', headers: { 'content-type': 'text/plain' } });
    expectError(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  it('invalid JSON is 400 VALIDATION_FAILED', async () => {
    const user = await newUser('js');
    const res = await ctx.api.call('POST', '/blocks', { token: user.token, raw: '{"username": ', headers: { 'content-type': 'application/json' } });
    expectError(res, 400, 'VALIDATION_FAILED');
    expect(res.body.error.details).toEqual([expect.objectContaining({ path: '(root)' })]);
  });

  it('an unknown body field is 400 VALIDATION_FAILED', async () => {
    const user = await newUser('uf');
    const res = await ctx.api.post('/blocks', user.token, { username: 'someone', admin: true });
    expectError(res, 400, 'VALIDATION_FAILED');
    expect(JSON.stringify(res.body.error.details)).toContain('admin');
  });

  it('out-of-range limit is 400 VALIDATION_FAILED naming limit', async () => {
    const user = await newUser('lim');
    for (const limit of ['0', '101', 'abc']) {
      const res = await ctx.api.get(`/conversations?limit=${limit}`, user.token);
      expectError(res, 400, 'VALIDATION_FAILED');
      expect(res.body.error.details).toEqual([expect.objectContaining({ path: 'limit' })]);
    }
  });
});

describe('health and readiness', () => {
  it('/healthz is 200', async () => {
    const res = await fetch(`${ctx.stack.baseUrl}/healthz`);
    expect(res.status).toBe(200);
  });

  it('/readyz is 200 with NATS and every service ok', async () => {
    const res = await fetch(`${ctx.stack.baseUrl}/readyz`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { ready: boolean; checks: Record<string, string> };
    expect(body.ready).toBe(true);
    expect(body.checks).toEqual({
      nats: 'ok',
      conversations: 'ok',
      messages: 'ok',
      blocks: 'ok',
      presence: 'ok',
      notifications: 'ok',
    });
  });
});

describe('security headers', () => {
  it('JSON answers carry nosniff, no-referrer, DENY and a strict CSP; authenticated ones no-store', async () => {
    const user = await newUser('sec');
    const authed = await ctx.api.get('/conversations', user.token);
    const failed = await ctx.api.get('/conversations');
    for (const res of [authed, failed]) {
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('referrer-policy')).toBe('no-referrer');
      expect(res.headers.get('x-frame-options')).toBe('DENY');
      expect(res.headers.get('content-security-policy')).toBe("default-src 'none'; frame-ancestors 'none'");
    }
    expect(authed.headers.get('cache-control')).toBe('no-store');
    expect(authed.headers.get('content-type')).toMatch(/^application\/json/);
    expect(authed.headers.get('strict-transport-security')).toBeNull();
  });

  it('CORS answers only the configured origins', async () => {
    const user = await newUser('cors');
    const allowed = await ctx.api.call('GET', '/conversations', { token: user.token, headers: { origin: 'http://localhost:3000' } });
    expect(allowed.headers.get('access-control-allow-origin')).toBe('http://localhost:3000');
    const other = await ctx.api.call('GET', '/conversations', { token: user.token, headers: { origin: 'https://evil.example' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });
});
