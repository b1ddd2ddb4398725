import SwaggerParser from '@apidevtools/swagger-parser';
import { Writable } from 'node:stream';
import { decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import { v5 as uuidv5 } from 'uuid';
import { afterAll, describe, expect, it } from 'vitest';
import { DEV_JWT_SECRET, SEED_USERNAMES as PLATFORM_USERNAMES } from '@chat/platform';
import { devSignInEnabled } from '../services/gateway/src/dev-sign-in';
import { SEED_USERNAMES, userIdFor } from '../scripts/seed-data';
import { ISO_MS, newUser, signToken, type ApiResponse } from './helpers/client';
import { extraGateway, useStack, type StackContext } from './helpers/stack';

// Ids the seeded users had before they moved to @chat/platform: tokens and
// seeded databases made earlier must keep naming the same users.
const KNOWN_IDS: Record<string, string> = {
  alice: '6abf3d81-89d2-5aa8-86c3-878f247115dc',
  bob: '08805529-71f7-5b5e-bbbc-cb40462d4c95',
  judy: 'fa352c90-b5b6-5de4-aee1-4474dcf9a998',
};
const USER_NAMESPACE = '6f1d7c1e-2b0a-4b8e-9a51-3c7f2d9e8a10';

type Gateway = Awaited<ReturnType<typeof extraGateway>>;

/** Captures a gateway's log lines. */
function logSink() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  return { lines, stream };
}

function expectError(res: ApiResponse, status: number, code: string) {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
  expect(res.body.error.code).toBe(code);
  expect(res.body.error.requestId).toBe(res.headers.get('x-request-id'));
}

/** The answer without what differs between any two requests. */
const shape = (res: ApiResponse) => ({ status: res.status, code: res.body?.error?.code, message: res.body?.error?.message, type: res.headers.get('content-type') });

/** Both routes answer exactly as an unknown API route does, with and without a token. */
async function expectAbsent(client: StackContext['api'], token: string) {
  for (const [method, path, body] of [
    ['GET', '/dev/users', undefined],
    ['POST', '/dev/token', { username: 'alice' }],
  ] as const) {
    const unknown = await client.call(method, '/dev/nope', { body });
    const anonymous = await client.call(method, path, { body });
    expect(shape(anonymous), `${method} ${path}`).toEqual(shape(unknown));
    const unknownWithToken = await client.call(method, '/dev/nope', { body, token });
    const withToken = await client.call(method, path, { body, token });
    expect(shape(withToken), `${method} ${path} with a token`).toEqual(shape(unknownWithToken));
    expectError(withToken, 404, 'NOT_FOUND');
  }
}

describe('the seeded users in @chat/platform', () => {
  it('scripts see the same list and ids as before the move', () => {
    expect(SEED_USERNAMES).toBe(PLATFORM_USERNAMES);
    expect(SEED_USERNAMES).toHaveLength(10);
    for (const [name, id] of Object.entries(KNOWN_IDS)) expect(userIdFor(name)).toBe(id);
    for (const name of SEED_USERNAMES) {
      expect(userIdFor(name)).toBe(uuidv5(name, USER_NAMESPACE));
      expect(userIdFor(name.toUpperCase())).toBe(userIdFor(name));
    }
  });
});

describe('devSignInEnabled', () => {
  const dev = { JWT_SECRET: DEV_JWT_SECRET, NODE_ENV: 'development', JWT_JWKS_URL: undefined } as const;

  it('holds only with the development secret, outside production, without a JWKS', () => {
    expect(devSignInEnabled(dev)).toBe(true);
    expect(devSignInEnabled({ ...dev, NODE_ENV: 'test' })).toBe(true);
    expect(devSignInEnabled({ ...dev, NODE_ENV: 'production' })).toBe(false);
    expect(devSignInEnabled({ ...dev, JWT_JWKS_URL: 'https://idp.example/jwks' })).toBe(false);
    expect(devSignInEnabled({ ...dev, JWT_SECRET: `${DEV_JWT_SECRET}x` })).toBe(false);
    expect(devSignInEnabled({ ...dev, JWT_SECRET: 'an-operator-chosen-secret-of-32-bytes!!' })).toBe(false);
  });
});

describe('development sign-in with the development secret', () => {
  const ctx = useStack({ JWT_SECRET: DEV_JWT_SECRET });
  const gateways: Gateway[] = [];
  afterAll(async () => {
    for (const g of gateways) await g.stop();
  });

  it('GET /dev/users lists the 10 seeded users with the ids the scripts give them, without a token', async () => {
    const res = await ctx.api.get('/dev/users');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.body.data).toEqual(SEED_USERNAMES.map((u) => ({ id: userIdFor(u), username: u, displayName: u.charAt(0).toUpperCase() + u.slice(1) })));
    expect(res.body.data).toHaveLength(10);
    expect(res.body.data[0]).toEqual({ id: KNOWN_IDS.alice, username: 'alice', displayName: 'Alice' });
  });

  it('POST /dev/token gives a 24 h HS256 token for the seeded user, which the API accepts', async () => {
    const before = Math.floor(Date.now() / 1000);
    const res = await ctx.api.post('/dev/token', undefined, { username: 'Bob' });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const { token, expiresAt } = res.body.data as { token: string; expiresAt: string };
    expect(Object.keys(res.body.data).sort()).toEqual(['expiresAt', 'token']);
    expect(decodeProtectedHeader(token).alg).toBe('HS256');
    const { payload } = await jwtVerify(token, new TextEncoder().encode(DEV_JWT_SECRET), { algorithms: ['HS256'] });
    expect(payload.sub).toBe(userIdFor('bob'));
    expect(payload.sub).toBe(KNOWN_IDS.bob);
    expect(payload.username).toBe('bob');
    expect(payload.name).toBe('Bob');
    expect(payload.exp! - payload.iat!).toBe(24 * 60 * 60);
    expect(payload.iat!).toBeGreaterThanOrEqual(before);
    expect(expiresAt).toMatch(ISO_MS);
    expect(Date.parse(expiresAt)).toBe(payload.exp! * 1000);

    const conversations = await ctx.api.get('/conversations', token);
    expect(conversations.status, JSON.stringify(conversations.body)).toBe(200);
    expect(conversations.body.data).toEqual([]);
    // And the WebSocket's ticket, the web chat's next step.
    expect((await ctx.api.post('/ws-ticket', token)).status).toBe(200);
  });

  it('a username that is not seeded is 404 USER_NOT_FOUND', async () => {
    for (const username of ['mallory', 'alice2', 'ALICE ', 'x'.repeat(64)]) expectError(await ctx.api.post('/dev/token', undefined, { username }), 404, 'USER_NOT_FOUND');
  });

  it('a bad body is 400 VALIDATION_FAILED (415 when not JSON) in the SPEC envelope', async () => {
    const json = { 'content-type': 'application/json' };
    for (const raw of ['', '{}', '[]', 'null', '{"username":5}', '{"username":""}', '{"username":"alice","admin":true}', `{"username":"${'a'.repeat(65)}"}`, '{nope'])
      expectError(await ctx.api.call('POST', '/dev/token', { raw, headers: json }), 400, 'VALIDATION_FAILED');
    expectError(await ctx.api.call('POST', '/dev/token', { raw: '{"username":"alice"}', headers: { 'content-type': 'text/plain' } }), 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectError(await ctx.api.call('POST', '/dev/token', { raw: JSON.stringify({ username: 'a'.repeat(70 * 1024) }), headers: json }), 413, 'PAYLOAD_TOO_LARGE');
  });

  it('the OpenAPI document lists both routes, public and marked development-only, exactly as the router has them', async () => {
    const doc = (await ctx.api.get('/openapi.json')).body as { paths: Record<string, Record<string, any>> };
    await SwaggerParser.validate(structuredClone(doc) as never);
    expect(Object.keys(doc.paths).filter((p) => p.startsWith('/dev/')).sort()).toEqual(['/dev/token', '/dev/users']);
    for (const op of [doc.paths['/dev/users']!.get, doc.paths['/dev/token']!.post]) {
      expect(op.security).toEqual([]);
      expect(op.description).toMatch(/only in development/i);
    }
    expect(Object.keys(doc.paths['/dev/token']!.post.responses)).toEqual(expect.arrayContaining(['200', '400', '404', '413', '415']));
    const routed = ctx.stack.gateway.app.routes.filter((r) => r.method !== 'ALL' && r.path.startsWith('/api/chat/dev/')).map((r) => `${r.method} ${r.path}`);
    expect([...new Set(routed)].sort()).toEqual(['GET /api/chat/dev/users', 'POST /api/chat/dev/token']);
  });

  it('says so once at start, and sets iss and aud when they are configured', async () => {
    const sink = logSink();
    const gateway = await extraGateway(ctx.stack, { LOG_LEVEL: 'info', JWT_ISSUER: 'https://issuer.example', JWT_AUDIENCE: 'chat' }, sink.stream);
    gateways.push(gateway);
    expect(sink.lines.filter((l) => l.includes('development sign-in enabled'))).toHaveLength(1);
    const { token } = (await gateway.api.post('/dev/token', undefined, { username: 'carol' })).body.data as { token: string };
    expect(decodeJwt(token)).toMatchObject({ iss: 'https://issuer.example', aud: 'chat', sub: userIdFor('carol') });
    expect((await gateway.api.get('/conversations', token)).status).toBe(200);
  });

  it('is absent under NODE_ENV=production or with a JWKS, even with the development secret', async () => {
    // loadConfig refuses the development secret in production; this proves the routes would not exist even past that.
    const token = await signToken({ sub: 'user-prod', username: 'produser' }, { secret: DEV_JWT_SECRET });
    const sink = logSink();
    const production = await extraGateway(ctx.stack, { NODE_ENV: 'production', LOG_LEVEL: 'info' }, sink.stream);
    gateways.push(production);
    await expectAbsent(production.api, token);
    expect(sink.lines.join('\n')).not.toContain('development sign-in');
    expect(Object.keys(((await production.api.get('/openapi.json')).body as { paths: object }).paths).filter((p) => p.startsWith('/dev/'))).toEqual([]);

    const withJwks = await extraGateway(ctx.stack, { JWT_JWKS_URL: 'http://127.0.0.1:9/jwks.json' });
    gateways.push(withJwks);
    // No token: a token would send the gateway to the (unreachable) key set for an answer.
    for (const [method, path, body] of [
      ['GET', '/dev/users', undefined],
      ['POST', '/dev/token', { username: 'alice' }],
    ] as const) {
      const res = await withJwks.api.call(method, path, { body });
      expect(shape(res), path).toEqual(shape(await withJwks.api.call(method, '/dev/nope', { body })));
      expectError(res, 401, 'UNAUTHORIZED');
    }
  });
});

describe('development sign-in with any other secret', () => {
  const ctx = useStack();

  it('both routes answer as an unknown API route does, and the document leaves them out', async () => {
    const user = await newUser('nodev');
    await expectAbsent(ctx.api, user.token);
    expectError(await ctx.api.get('/dev/users'), 401, 'UNAUTHORIZED');
    const doc = (await ctx.api.get('/openapi.json')).body as { paths: object };
    expect(Object.keys(doc.paths).filter((p) => p.startsWith('/dev/'))).toEqual([]);
    expect(ctx.stack.gateway.app.routes.filter((r) => r.path.startsWith('/api/chat/dev'))).toEqual([]);
  });
});
