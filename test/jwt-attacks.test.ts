import { constants, createHmac, createPrivateKey, randomBytes, sign as cryptoSign, type JsonWebKey } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, exportSPKI, generateKeyPair, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_SECRET, useStack, type StackContext } from './helpers/stack';
import { signToken } from './helpers/client';
import { tryUpgrade } from './helpers/ws';

/**
 * Token attacks per RFC 8725 (JWT best current practices) against the REST
 * API and the WebSocket upgrade. SPEC 3: exp required, nbf honoured, 30 s of
 * leeway; algorithms pinned by configuration; `alg: none` and algorithm
 * confusion rejected; missing, malformed, expired or badly signed → 401.
 */

const now = () => Math.floor(Date.now() / 1000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const b64url = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
let counter = 0;
/** Claims of a fresh, valid user. */
const claims = (extra: Record<string, unknown> = {}) => {
  const n = `${Date.now().toString(36)}${(++counter).toString(36)}${randomBytes(2).toString('hex')}`;
  return { sub: `user-jwt-${n}`, username: `jwt_${n}`.slice(0, 32), iat: now(), exp: now() + 3600, ...extra };
};
/** A JWS built by hand, HMAC over `header.payload`: any header, any algorithm, any key. */
function hmacJwt(header: Record<string, unknown>, payload: Record<string, unknown>, key: string | Buffer, hash: 'sha256' | 'sha384' | 'sha512' = 'sha256') {
  const input = `${b64url(header)}.${b64url(payload)}`;
  return `${input}.${createHmac(hash, key).update(input).digest('base64url')}`;
}
/** An RSA JWS built by hand (RS384 or PS256), which jose's signer would not make with an RS256 key. */
async function rsaJwt(header: Record<string, unknown>, payload: Record<string, unknown>, privateJwk: JWK, hash: 'sha256' | 'sha384', pss: boolean) {
  const input = `${b64url(header)}.${b64url(payload)}`;
  const key = createPrivateKey({ key: privateJwk as JsonWebKey, format: 'jwk' });
  const signature = cryptoSign(hash, Buffer.from(input), pss ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } : key);
  return `${input}.${signature.toString('base64url')}`;
}
const unsigned = (header: Record<string, unknown>, payload: Record<string, unknown>, signature = '') => `${b64url(header)}.${b64url(payload)}.${signature}`;

/** 401 in the SPEC envelope, and nothing of the token in the answer. */
function expect401(res: { status: number; body: any }, token: string | undefined, what: string) {
  expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(401);
  expect(res.body?.error, what).toMatchObject({ code: 'UNAUTHORIZED', message: expect.any(String), requestId: expect.any(String) });
  expectNoEcho(res.body, token, what);
}
function expectNoEcho(body: unknown, token: string | undefined, what: string) {
  if (!token) return;
  const text = JSON.stringify(body);
  expect(text, what).not.toContain(token);
  for (const part of token.split('.')) if (part.length >= 16) expect(text, `${what}: echoes a token segment`).not.toContain(part);
}

async function expectRejectedEverywhere(ctx: StackContext, token: string, what: string) {
  expect401(await ctx.api.get('/conversations', token), token, `REST ${what}`);
  expect401(await tryUpgrade(ctx.stack.gateway.port, { token }), token, `WS ?token= ${what}`);
  expect401(await tryUpgrade(ctx.stack.gateway.port, { headers: { authorization: `Bearer ${token}` } }), token, `WS Authorization ${what}`);
}
async function expectAcceptedEverywhere(ctx: StackContext, token: string, what: string) {
  const res = await ctx.api.get('/conversations', token);
  expect(res.status, `REST ${what}: ${JSON.stringify(res.body)}`).toBe(200);
  expect((await tryUpgrade(ctx.stack.gateway.port, { token })).status, `WS ${what}`).toBe(101);
}

describe('HS256 (shared secret): RFC 8725 attacks', () => {
  const ctx = useStack();
  const secret = new TextEncoder().encode(TEST_SECRET);

  const rejected: Array<[string, () => Promise<string> | string]> = [
    ['alg none, empty signature', () => unsigned({ alg: 'none', typ: 'JWT' }, claims())],
    ['alg None (mixed case)', () => unsigned({ alg: 'None', typ: 'JWT' }, claims())],
    ['alg NONE with a signature appended', () => unsigned({ alg: 'NONE' }, claims(), 'c2lnbmF0dXJl')],
    ['no alg at all', () => hmacJwt({ typ: 'JWT' }, claims(), TEST_SECRET)],
    ['HS256 signed with a wrong secret', () => hmacJwt({ alg: 'HS256', typ: 'JWT' }, claims(), 'wrong-secret-0123456789-0123456789-abcdef')],
    ['HS256 signed with an empty secret', () => hmacJwt({ alg: 'HS256', typ: 'JWT' }, claims(), '')],
    ['HS384 with the right secret', () => hmacJwt({ alg: 'HS384', typ: 'JWT' }, claims(), TEST_SECRET, 'sha384')],
    ['HS512 with the right secret', () => hmacJwt({ alg: 'HS512', typ: 'JWT' }, claims(), TEST_SECRET, 'sha512')],
    ['HS512 signature under an HS256 header', () => hmacJwt({ alg: 'HS256', typ: 'JWT' }, claims(), TEST_SECRET, 'sha512')],
    ['no exp', () => hmacJwt({ alg: 'HS256' }, { ...claims(), exp: undefined }, TEST_SECRET)],
    ['exp as a string', () => hmacJwt({ alg: 'HS256' }, { ...claims(), exp: String(now() + 3600) }, TEST_SECRET)],
    ['expired beyond the 30 s leeway (45 s ago)', () => hmacJwt({ alg: 'HS256' }, claims({ exp: now() - 45 }), TEST_SECRET)],
    ['expired long ago', () => hmacJwt({ alg: 'HS256' }, claims({ exp: 1_000_000 }), TEST_SECRET)],
    ['nbf beyond the leeway (60 s ahead)', () => hmacJwt({ alg: 'HS256' }, claims({ nbf: now() + 60 }), TEST_SECRET)],
    ['no sub', () => hmacJwt({ alg: 'HS256' }, { ...claims(), sub: undefined }, TEST_SECRET)],
    ['empty sub', () => hmacJwt({ alg: 'HS256' }, claims({ sub: '' }), TEST_SECRET)],
    ['sub of 129 characters', () => hmacJwt({ alg: 'HS256' }, claims({ sub: 's'.repeat(129) }), TEST_SECRET)],
    ['numeric sub', () => hmacJwt({ alg: 'HS256' }, claims({ sub: 12345 }), TEST_SECRET)],
    ['sub as an object', () => hmacJwt({ alg: 'HS256' }, claims({ sub: { id: 'x' } }), TEST_SECRET)],
    ['no username claim', () => hmacJwt({ alg: 'HS256' }, { ...claims(), username: undefined }, TEST_SECRET)],
    ['username with a space', () => hmacJwt({ alg: 'HS256' }, claims({ username: 'al ice' }), TEST_SECRET)],
    ['username of 2 characters', () => hmacJwt({ alg: 'HS256' }, claims({ username: 'ab' }), TEST_SECRET)],
    ['username of 33 characters', () => hmacJwt({ alg: 'HS256' }, claims({ username: 'u'.repeat(33) }), TEST_SECRET)],
    ['username with markup', () => hmacJwt({ alg: 'HS256' }, claims({ username: '<script>x</script>' }), TEST_SECRET)],
    ['numeric username', () => hmacJwt({ alg: 'HS256' }, claims({ username: 123456 }), TEST_SECRET)],
    ['bad preferred_username and no username', () => hmacJwt({ alg: 'HS256' }, { ...claims(), username: undefined, preferred_username: 'no way!' }, TEST_SECRET)],
    ['an unknown crit header', () => hmacJwt({ alg: 'HS256', crit: ['x-must-understand'], 'x-must-understand': true }, claims(), TEST_SECRET)],
    ['crit naming a standard claim', () => hmacJwt({ alg: 'HS256', crit: ['exp'] }, claims(), TEST_SECRET)],
    ['crit b64: false (unencoded payload)', () => hmacJwt({ alg: 'HS256', crit: ['b64'], b64: false }, claims(), TEST_SECRET)],
    ['an empty crit list', () => hmacJwt({ alg: 'HS256', crit: [] }, claims(), TEST_SECRET)],
    ['a garbage token', () => 'garbage'],
    ['three empty segments', () => '..'],
    ['three random segments', () => `${randomBytes(12).toString('base64url')}.${randomBytes(30).toString('base64url')}.${randomBytes(32).toString('base64url')}`],
    ['a header that is not JSON', () => `${b64url('not json')}.${b64url(claims())}.${randomBytes(32).toString('base64url')}`],
    ['a payload that is not a JSON object', () => hmacJwt({ alg: 'HS256' }, ['array'] as unknown as Record<string, unknown>, TEST_SECRET)],
    ['a JWE-shaped five-segment token', () => 'eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..aGVsbG8.d29ybGQ.dGFn'],
    [
      'a valid token with a fourth segment',
      async () => `${await signToken(claims())}.${randomBytes(8).toString('base64url')}`,
    ],
    [
      'a valid token whose payload was swapped (signature kept)',
      async () => {
        const [h, , s] = (await signToken(claims())).split('.');
        return `${h}.${b64url(claims({ sub: 'user-victim', username: 'victim_user' }))}.${s}`;
      },
    ],
    [
      'a valid token with its signature cut',
      async () => {
        const t = await signToken(claims());
        return t.slice(0, t.lastIndexOf('.') + 1);
      },
    ],
  ];

  for (const [what, make] of rejected) {
    it(`401 for ${what} (REST and WebSocket upgrade)`, async () => {
      await expectRejectedEverywhere(ctx, await make(), what);
    });
  }

  it('accepts exp 25 s in the past and nbf 20 s ahead (within the 30 s leeway); sub of 128 and usernames of 3 and 32 characters', async () => {
    await expectAcceptedEverywhere(ctx, hmacJwt({ alg: 'HS256', typ: 'JWT' }, claims({ exp: now() - 25 }), TEST_SECRET), 'exp -25 s');
    await expectAcceptedEverywhere(ctx, hmacJwt({ alg: 'HS256', typ: 'JWT' }, claims({ nbf: now() + 20 }), TEST_SECRET), 'nbf +20 s');
    await expectAcceptedEverywhere(ctx, hmacJwt({ alg: 'HS256' }, claims({ sub: `s${randomBytes(4).toString('hex')}`.padEnd(128, 'x') }), TEST_SECRET), 'sub of 128');
    await expectAcceptedEverywhere(ctx, hmacJwt({ alg: 'HS256' }, claims({ username: `a${randomBytes(1).toString('hex')}`.slice(0, 3) }), TEST_SECRET), 'username of 3');
    await expectAcceptedEverywhere(ctx, hmacJwt({ alg: 'HS256' }, claims({ username: `u_${randomBytes(15).toString('hex')}`.slice(0, 32) }), TEST_SECRET), 'username of 32');
    // jose's own signer, for good measure.
    await expectAcceptedEverywhere(ctx, await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256' }).sign(secret), 'jose HS256');
  });

  it('a token that is not sent as Bearer is 401: Basic, Token, no scheme, a query parameter, a cookie', async () => {
    const token = await signToken(claims());
    expect((await ctx.api.get('/conversations', token)).status).toBe(200); // the token itself is good
    for (const authorization of [`Basic ${token}`, `Basic ${Buffer.from(`user:${token}`).toString('base64')}`, `Token ${token}`, token, `Bearer`, `Bearer ${token} extra`, `Bearer${token}`]) {
      const res = await ctx.api.call('GET', '/conversations', { headers: { authorization } });
      expect401(res, token, `Authorization: ${authorization.slice(0, 12)}…`);
    }
    expect401(await ctx.api.call('GET', `/conversations?token=${token}&access_token=${token}`), token, 'REST ?token=');
    expect401(await ctx.api.call('GET', '/conversations', { headers: { cookie: `token=${token}; access_token=${token}` } }), token, 'cookie');
    for (const authorization of [`Basic ${token}`, `Token ${token}`, token]) {
      expect401(await tryUpgrade(ctx.stack.gateway.port, { headers: { authorization } }), token, `WS Authorization: ${authorization.slice(0, 12)}…`);
    }
  });

  it('a 401 never carries the token, even when it is long or carries markup', async () => {
    const token = hmacJwt({ alg: 'HS256', kid: '<img src=x onerror=alert(1)>' }, claims({ username: '"><script>alert(1)</script>', junk: 'x'.repeat(4000) }), TEST_SECRET);
    const res = await ctx.api.get('/conversations', token);
    expect401(res, token, 'long token');
    expect(JSON.stringify(res.body)).not.toContain('<script>');
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  });
});

describe('issuer and audience pinned (JWT_ISSUER, JWT_AUDIENCE)', () => {
  const ctx = useStack({ JWT_ISSUER: 'https://issuer.test', JWT_AUDIENCE: 'chat' });
  const tok = (extra: Record<string, unknown>) => hmacJwt({ alg: 'HS256', typ: 'JWT' }, { ...claims(), ...extra }, TEST_SECRET);

  it('401 without iss or aud, with a wrong, look-alike or differently cased one', async () => {
    for (const [what, extra] of [
      ['no iss', { aud: 'chat' }],
      ['no aud', { iss: 'https://issuer.test' }],
      ['neither', {}],
      ['wrong iss', { iss: 'https://evil.test', aud: 'chat' }],
      ['iss with a trailing slash', { iss: 'https://issuer.test/', aud: 'chat' }],
      ['iss in upper case', { iss: 'HTTPS://ISSUER.TEST', aud: 'chat' }],
      ['iss as an array', { iss: ['https://issuer.test'], aud: 'chat' }],
      ['wrong aud', { iss: 'https://issuer.test', aud: 'chat-admin' }],
      ['aud in upper case', { iss: 'https://issuer.test', aud: 'CHAT' }],
      ['aud array without chat', { iss: 'https://issuer.test', aud: ['other', 'chat2'] }],
      ['empty aud array', { iss: 'https://issuer.test', aud: [] }],
    ] as const) {
      await expectRejectedEverywhere(ctx, tok(extra), what);
    }
  });

  it('accepts the right iss and aud, and an aud array that includes chat', async () => {
    await expectAcceptedEverywhere(ctx, tok({ iss: 'https://issuer.test', aud: 'chat' }), 'right iss/aud');
    await expectAcceptedEverywhere(ctx, tok({ iss: 'https://issuer.test', aud: ['other', 'chat'] }), 'aud array');
  });

  it('the other attacks still fail with iss/aud right', async () => {
    const good = { iss: 'https://issuer.test', aud: 'chat' };
    await expectRejectedEverywhere(ctx, unsigned({ alg: 'none' }, claims(good)), 'alg none');
    await expectRejectedEverywhere(ctx, hmacJwt({ alg: 'HS256' }, claims(good), 'wrong-secret-0123456789-0123456789-abcdef'), 'wrong secret');
    await expectRejectedEverywhere(ctx, hmacJwt({ alg: 'HS256' }, claims({ ...good, exp: now() - 60 }), TEST_SECRET), 'expired');
  });
});

describe('JWKS (JWT_JWKS_URL): RS256, ES256, EdDSA from a key set', () => {
  type Key = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
  interface KeyPair {
    kid: string;
    alg: string;
    privateKey: Key;
    publicKey: Key;
    jwk: JWK;
  }
  type Mode = 'ok' | 'error' | 'not-json' | 'hang';
  const state = { mode: 'ok' as Mode, served: [] as JWK[], fetches: 0, strayFetches: 0 };
  let server: Server;
  let jwksPort = 0;
  let rsaA: KeyPair;
  let rsaB: KeyPair;
  let ec: KeyPair;
  let ed: KeyPair;
  let encKey: KeyPair;
  let stranger: KeyPair;

  async function keyPair(alg: 'RS256' | 'ES256' | 'EdDSA', kid: string, use = 'sig'): Promise<KeyPair> {
    const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
    return { kid, alg, privateKey, publicKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use } };
  }
  const sign = (k: KeyPair, extra: Record<string, unknown> = {}, header: Record<string, unknown> = {}) =>
    new SignJWT(claims(extra)).setProtectedHeader({ alg: k.alg, kid: k.kid, typ: 'JWT', ...header }).sign(k.privateKey);

  function handle(req: IncomingMessage, res: ServerResponse) {
    if (req.url !== '/jwks.json') {
      state.strayFetches++; // jku / x5u / anything else: must never be fetched
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: [stranger.jwk] }));
      return;
    }
    state.fetches++;
    if (state.mode === 'hang') return; // accepts and never answers
    if (state.mode === 'error') {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('identity provider is down');
      return;
    }
    if (state.mode === 'not-json') {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>maintenance</html>');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys: state.served }));
  }

  // Registered before useStack's, so it runs first: the stack needs the port.
  beforeAll(async () => {
    [rsaA, rsaB, ec, ed, encKey, stranger] = await Promise.all([
      keyPair('RS256', 'rsa-a'),
      keyPair('RS256', 'rsa-b'),
      keyPair('ES256', 'ec-1'),
      keyPair('EdDSA', 'ed-1'),
      keyPair('RS256', 'rsa-enc', 'enc'),
      keyPair('RS256', 'stranger'),
    ]);
    state.served = [rsaA.jwk, ec.jwk, ed.jwk, encKey.jwk];
    server = createServer(handle);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    jwksPort = (server.address() as AddressInfo).port;
  });
  const ctx = useStack(() => ({ JWT_JWKS_URL: `http://127.0.0.1:${jwksPort}/jwks.json`, JWT_JWKS_COOLDOWN_MS: 200 }));
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  /** Past the 200 ms cooldown: the next unknown kid refetches. */
  const cooledDown = () => sleep(300);

  it('an RS256 token with the served kid is accepted (REST and WebSocket)', async () => {
    await expectAcceptedEverywhere(ctx, await sign(rsaA), 'RS256');
    expect(state.fetches).toBeGreaterThanOrEqual(1);
  });

  it('ES256 and EdDSA keys of the set work too', async () => {
    await expectAcceptedEverywhere(ctx, await sign(ec), 'ES256');
    await expectAcceptedEverywhere(ctx, await sign(ed), 'EdDSA');
  });

  it('a token signed by an unknown key is 401, not 500: unknown kid, no kid, a served kid on a foreign signature', async () => {
    await cooledDown();
    const forged = { ...stranger, kid: 'never-served' };
    await expectRejectedEverywhere(ctx, await sign(forged), 'unknown kid');
    const noKid = await new SignJWT(claims()).setProtectedHeader({ alg: 'RS256' }).sign(stranger.privateKey);
    await expectRejectedEverywhere(ctx, noKid, 'no kid, foreign key');
    await expectRejectedEverywhere(ctx, await sign({ ...stranger, kid: rsaA.kid }), 'kid A, foreign key');
    // A served kid with its header algorithm swapped to one of another key type, or one not pinned.
    await expectRejectedEverywhere(ctx, await sign(ec, {}, { kid: rsaA.kid }), 'ES256 header, kid of an RSA key');
    const privateA = await exportJWK(rsaA.privateKey);
    await expectRejectedEverywhere(ctx, await rsaJwt({ alg: 'PS256', kid: rsaA.kid }, claims(), privateA, 'sha256', true), 'PS256 with A');
    await expectRejectedEverywhere(ctx, await rsaJwt({ alg: 'RS384', kid: rsaA.kid }, claims(), privateA, 'sha384', false), 'RS384 with A');
    // Control: the hand-built signer is right (RS256 by it is accepted).
    expect((await ctx.api.get('/conversations', await rsaJwt({ alg: 'RS256', kid: rsaA.kid }, claims(), privateA, 'sha256', false))).status).toBe(200);
    // A key served for encryption (use: enc) does not verify signatures.
    await expectRejectedEverywhere(ctx, await sign(encKey), 'key with use enc');
  });

  it('HS256 is not accepted at all: with the configured secret, or keyed with the RSA public key (PEM or JWK JSON) — algorithm confusion', async () => {
    const pem = await exportSPKI(rsaA.publicKey);
    const body = claims();
    const tokens: Array<[string, string]> = [
      ['HS256 with JWT_SECRET', hmacJwt({ alg: 'HS256', typ: 'JWT' }, body, TEST_SECRET)],
      ['HS256 keyed with the PEM', hmacJwt({ alg: 'HS256', kid: rsaA.kid }, body, pem)],
      ['HS256 keyed with the PEM, no kid', hmacJwt({ alg: 'HS256' }, body, pem)],
      ['HS256 keyed with the PEM less its trailing newline', hmacJwt({ alg: 'HS256', kid: rsaA.kid }, body, pem.trimEnd())],
      ['HS256 keyed with the JWK JSON', hmacJwt({ alg: 'HS256', kid: rsaA.kid }, body, JSON.stringify(rsaA.jwk))],
      ['HS256 keyed with the served set', hmacJwt({ alg: 'HS256', kid: rsaA.kid }, body, JSON.stringify({ keys: state.served }))],
      ['HS256 keyed with the modulus', hmacJwt({ alg: 'HS256', kid: rsaA.kid }, body, Buffer.from(rsaA.jwk.n!, 'base64url'))],
      ['HS512 keyed with the PEM', hmacJwt({ alg: 'HS512', kid: rsaA.kid }, body, pem, 'sha512')],
      ['alg none', unsigned({ alg: 'none', kid: rsaA.kid }, body)],
      ['alg none, no kid', unsigned({ alg: 'none' }, body)],
    ];
    for (const [what, token] of tokens) await expectRejectedEverywhere(ctx, token, what);
  });

  it('keys named in the token (embedded jwk, jku, x5u) are never trusted or fetched', async () => {
    await cooledDown();
    const strayBefore = state.strayFetches;
    const embedded = await sign({ ...stranger, kid: 'embedded' }, {}, { jwk: stranger.jwk });
    await expectRejectedEverywhere(ctx, embedded, 'embedded jwk');
    const embeddedNoKid = await new SignJWT(claims()).setProtectedHeader({ alg: 'RS256', jwk: { kty: stranger.jwk.kty, n: stranger.jwk.n, e: stranger.jwk.e } as JWK }).sign(stranger.privateKey);
    await expectRejectedEverywhere(ctx, embeddedNoKid, 'embedded jwk, no kid');
    const jku = await sign(stranger, {}, { jku: `http://127.0.0.1:${jwksPort}/attacker-jwks.json` });
    await expectRejectedEverywhere(ctx, jku, 'jku');
    const x5u = await sign(stranger, {}, { x5u: `http://127.0.0.1:${jwksPort}/attacker-cert.pem` });
    await expectRejectedEverywhere(ctx, x5u, 'x5u');
    expect(state.strayFetches - strayBefore).toBe(0);
  });

  it('hostile kid values are a 401, not a 500', async () => {
    for (const kid of ["' OR 1=1 --", '../../../../etc/passwd', 'http://127.0.0.1:1/x', '\u0000', 'k'.repeat(2000), '%00%0d%0a', '{"$ne":null}']) {
      await cooledDown();
      await expectRejectedEverywhere(ctx, await sign({ ...stranger, kid }), `kid ${JSON.stringify(kid.slice(0, 20))}`);
    }
  }, 30_000);

  it('50 concurrent tokens with random unknown kids cause at most 2 refetches within the cooldown', async () => {
    await cooledDown();
    const tokens = await Promise.all(Array.from({ length: 50 }, () => sign({ ...stranger, kid: `random-${randomBytes(8).toString('hex')}` })));
    const before = state.fetches;
    const started = performance.now();
    const answers = await Promise.all(tokens.map((t) => ctx.api.get('/conversations', t)));
    const elapsed = performance.now() - started;
    for (const [i, res] of answers.entries()) expect401(res, tokens[i], `random kid ${i}`);
    const refetches = state.fetches - before;
    console.info(`JWKS flood: ${refetches} fetch(es) for 50 concurrent forged kids, answered in ${elapsed.toFixed(0)} ms`);
    expect(refetches, `${refetches} JWKS fetches for 50 forged kids in ${elapsed.toFixed(0)} ms`).toBeGreaterThanOrEqual(1);
    expect(refetches, `${refetches} JWKS fetches for 50 forged kids in ${elapsed.toFixed(0)} ms`).toBeLessThanOrEqual(2);
  });

  it('key rotation: once the IdP serves only key B, a kid-B token is accepted after the cooldown, and kid A is refused after that refetch', async () => {
    expect((await ctx.api.get('/conversations', await sign(rsaA))).status).toBe(200);
    state.served = [rsaB.jwk];
    await cooledDown();
    const before = state.fetches;
    await expectAcceptedEverywhere(ctx, await sign(rsaB), 'kid B after rotation');
    expect(state.fetches - before).toBeGreaterThanOrEqual(1);
    await expectRejectedEverywhere(ctx, await sign(rsaA), 'kid A after the refetch');
    // ES256/EdDSA keys left the set with the rotation as well.
    await expectRejectedEverywhere(ctx, await sign(ec), 'ES256 key no longer served');
  });

  it('the IdP answering 500 is 503 SERVICE_UNAVAILABLE for a token it would have to look up, and the cached keys keep working', async () => {
    state.mode = 'error';
    try {
      await cooledDown();
      const unknown = await sign({ ...stranger, kid: `after-outage-${randomBytes(4).toString('hex')}` });
      const res = await ctx.api.get('/conversations', unknown);
      expect(res.status, JSON.stringify(res.body)).toBe(503);
      expect(res.body.error).toMatchObject({ code: 'SERVICE_UNAVAILABLE', requestId: expect.any(String) });
      expectNoEcho(res.body, unknown, 'IdP 500');
      expect((await ctx.api.get('/conversations', await sign(rsaB))).status).toBe(200);
    } finally {
      state.mode = 'ok';
    }
  });

  it('the IdP answering something that is not JSON is 503 as well, not 401', async () => {
    state.mode = 'not-json';
    try {
      await cooledDown();
      const unknown = await sign({ ...stranger, kid: `html-${randomBytes(4).toString('hex')}` });
      const res = await ctx.api.get('/conversations', unknown);
      expect(res.status, JSON.stringify(res.body)).toBe(503);
      expect(res.body.error.code).toBe('SERVICE_UNAVAILABLE');
    } finally {
      state.mode = 'ok';
    }
  });

  it('a failing IdP is not hammered: 20 forged kids in a row while it answers 500 cause at most 2 fetches', async () => {
    state.mode = 'error';
    try {
      await cooledDown();
      const before = state.fetches;
      for (let i = 0; i < 20; i++) {
        const res = await ctx.api.get('/conversations', await sign({ ...stranger, kid: `hammer-${i}-${randomBytes(4).toString('hex')}` }));
        expect([401, 503]).toContain(res.status);
      }
      const fetches = state.fetches - before;
      expect(fetches, `${fetches} JWKS fetches for 20 forged kids while the IdP fails`).toBeLessThanOrEqual(2);
    } finally {
      state.mode = 'ok';
    }
  });

  it('an IdP that never answers: 503 within the fetch timeout, no hang; cached keys keep working meanwhile', async () => {
    state.mode = 'hang';
    try {
      await cooledDown();
      const unknown = await sign({ ...stranger, kid: `hang-${randomBytes(4).toString('hex')}` });
      const started = Date.now();
      const pending = ctx.api.get('/conversations', unknown);
      // While the refetch hangs, a token with a cached key is not held up behind it.
      const cachedStarted = Date.now();
      expect((await ctx.api.get('/conversations', await sign(rsaB))).status).toBe(200);
      expect(Date.now() - cachedStarted).toBeLessThan(1000);
      const res = await pending;
      const took = Date.now() - started;
      expect(res.status, JSON.stringify(res.body)).toBe(503);
      expect(res.body.error.code).toBe('SERVICE_UNAVAILABLE');
      expect(took).toBeLessThan(5000);
      const ws = await tryUpgrade(ctx.stack.gateway.port, { token: await sign({ ...stranger, kid: `hang-ws-${randomBytes(4).toString('hex')}` }) });
      expect(ws.status).toBe(503);
      expect(ws.body.error.code).toBe('SERVICE_UNAVAILABLE');
    } finally {
      state.mode = 'ok';
      server.closeAllConnections();
    }
  }, 20_000);

  it('the JWKS server stopped: a token that needs the set is a prompt 503 SERVICE_UNAVAILABLE (REST and upgrade), never 500; cached keys still work', async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await cooledDown();
    const unknown = await sign({ ...stranger, kid: `stopped-${randomBytes(4).toString('hex')}` });
    const started = Date.now();
    const res = await ctx.api.get('/conversations', unknown);
    expect(Date.now() - started).toBeLessThan(3500);
    expect(res.status, JSON.stringify(res.body)).toBe(503);
    expect(res.body.error).toMatchObject({ code: 'SERVICE_UNAVAILABLE', message: expect.any(String), requestId: expect.any(String) });
    expectNoEcho(res.body, unknown, 'JWKS down');
    await cooledDown();
    const ws = await tryUpgrade(ctx.stack.gateway.port, { token: await sign({ ...stranger, kid: `stopped-ws-${randomBytes(4).toString('hex')}` }) });
    expect(ws.status).toBe(503);
    expect(ws.body.error.code).toBe('SERVICE_UNAVAILABLE');
    // Still a 401 for what needs no key set at all.
    expect401(await ctx.api.get('/conversations', unsigned({ alg: 'none' }, claims())), undefined, 'alg none while JWKS down');
    expect((await ctx.api.get('/conversations', await sign(rsaB))).status).toBe(200);
  });
});
