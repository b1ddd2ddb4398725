import { SignJWT, generateKeyPair } from 'jose';
import { describe, expect, it, vi } from 'vitest';
import { ChatError } from '@chat/contracts';
import { bearerToken, createTokenVerifier, principalFromClaims } from '../src/auth';

const SECRET = 'unit-secret-0123456789-0123456789-abcdef';
const key = (s = SECRET) => new TextEncoder().encode(s);
const now = () => Math.floor(Date.now() / 1000);
const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
const base = { JWT_SECRET: SECRET, JWT_JWKS_URL: undefined, JWT_ISSUER: undefined, JWT_AUDIENCE: undefined };
const claims = { sub: 'user-1', username: 'alice', name: 'Alice A.', picture: 'https://img.example/a.png' };

function sign(c: Record<string, unknown>, opts: { secret?: string; alg?: string; exp?: number | null } = {}) {
  const jwt = new SignJWT(c).setProtectedHeader({ alg: opts.alg ?? 'HS256', typ: 'JWT' }).setIssuedAt();
  if (opts.exp !== null) jwt.setExpirationTime(opts.exp ?? now() + 3600);
  return jwt.sign(key(opts.secret));
}

async function rejects(p: Promise<unknown>, message?: RegExp) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ChatError);
  expect((err as ChatError).code).toBe('UNAUTHORIZED');
  if (message) expect((err as ChatError).message).toMatch(message);
}

describe('createTokenVerifier with a shared secret (HS256)', () => {
  const verify = createTokenVerifier(base);

  it('accepts a valid token and maps its claims to a Principal', async () => {
    const exp = now() + 600;
    expect(await verify(await sign(claims, { exp }))).toEqual({
      id: 'user-1',
      username: 'alice',
      displayName: 'Alice A.',
      avatarUrl: 'https://img.example/a.png',
      expiresAt: exp * 1000,
    });
  });

  it('rejects an expired token, but allows 30 s of clock skew', async () => {
    await rejects(verify(await sign(claims, { exp: now() - 60 })), /expired/);
    await expect(verify(await sign(claims, { exp: now() - 10 }))).resolves.toMatchObject({ id: 'user-1' });
  });

  it('honours nbf with the same leeway', async () => {
    await rejects(verify(await sign({ ...claims, nbf: now() + 60 })));
    await expect(verify(await sign({ ...claims, nbf: now() + 10 }))).resolves.toMatchObject({ id: 'user-1' });
  });

  it('requires exp', async () => {
    await rejects(verify(await sign(claims, { exp: null })));
  });

  it('rejects alg: none', async () => {
    await rejects(verify(`${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ ...claims, exp: now() + 600 })}.`));
  });

  it('rejects a token signed with another secret, and an algorithm not pinned (HS512)', async () => {
    await rejects(verify(await sign(claims, { secret: 'other-secret-0123456789-0123456789-abcdef' })), /signature/);
    await rejects(verify(await sign(claims, { alg: 'HS512' })), /algorithm/);
  });

  it('rejects an RS256 token (no algorithm confusion) and garbage', async () => {
    const { privateKey } = await generateKeyPair('RS256');
    const rs = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256' }).setExpirationTime('1h').sign(privateKey);
    await rejects(verify(rs));
    for (const junk of ['', 'abc', 'a.b.c', `${b64url({ alg: 'HS256' })}.notjson.sig`]) await rejects(verify(junk));
  });

  it('ignores iss and aud when none are configured', async () => {
    await expect(verify(await sign({ ...claims, iss: 'anyone', aud: 'anything' }))).resolves.toMatchObject({ id: 'user-1' });
  });
});

describe('createTokenVerifier with JWT_ISSUER and JWT_AUDIENCE', () => {
  const verify = createTokenVerifier({ ...base, JWT_ISSUER: 'https://auth.example', JWT_AUDIENCE: 'chat' });

  it('accepts matching iss and aud', async () => {
    await expect(verify(await sign({ ...claims, iss: 'https://auth.example', aud: 'chat' }))).resolves.toMatchObject({ id: 'user-1' });
    await expect(verify(await sign({ ...claims, iss: 'https://auth.example', aud: ['other', 'chat'] }))).resolves.toMatchObject({ id: 'user-1' });
  });

  it('rejects a wrong or missing iss, and a wrong or missing aud', async () => {
    await rejects(verify(await sign({ ...claims, iss: 'https://evil.example', aud: 'chat' })), /iss/);
    await rejects(verify(await sign({ ...claims, aud: 'chat' })), /iss/);
    await rejects(verify(await sign({ ...claims, iss: 'https://auth.example', aud: 'billing' })), /aud/);
    await rejects(verify(await sign({ ...claims, iss: 'https://auth.example' })), /aud/);
  });
});

describe('principalFromClaims', () => {
  it('takes preferred_username when username is absent; username wins when both are present', () => {
    expect(principalFromClaims({ sub: 'u', preferred_username: 'pref.name', exp: 10 }).username).toBe('pref.name');
    expect(principalFromClaims({ sub: 'u', username: 'main', preferred_username: 'pref', exp: 10 }).username).toBe('main');
  });

  it('maps missing or empty name/picture to null and exp to milliseconds', () => {
    expect(principalFromClaims({ sub: 'u-2', username: 'bob', name: '', exp: 1_700_000_000 })).toEqual({
      id: 'u-2',
      username: 'bob',
      displayName: null,
      avatarUrl: null,
      expiresAt: 1_700_000_000_000,
    });
  });

  it('rejects a missing or over-long sub and a username outside 3-32 of [A-Za-z0-9_.-]', () => {
    const bad = [
      { username: 'alice' },
      { sub: '', username: 'alice' },
      { sub: 'x'.repeat(129), username: 'alice' },
      { sub: 'u' },
      { sub: 'u', username: 'ab' },
      { sub: 'u', username: 'a'.repeat(33) },
      { sub: 'u', username: 'has space' },
      { sub: 'u', username: 'émile' },
      { sub: 'u', username: 42 },
    ];
    for (const c of bad) expect(() => principalFromClaims(c as never), JSON.stringify(c)).toThrow(ChatError);
    expect(principalFromClaims({ sub: 'x'.repeat(128), username: 'a'.repeat(32) }).id).toHaveLength(128);
  });
});

describe('bearerToken', () => {
  it('reads `Bearer <jwt>` case-insensitively and nothing else', () => {
    expect(bearerToken('Bearer abc.def.ghi')).toBe('abc.def.ghi');
    expect(bearerToken('bearer   abc ')).toBe('abc');
    for (const h of [undefined, '', 'Bearer', 'Basic abc', 'Bearer a b', 'abc']) expect(bearerToken(h)).toBeUndefined();
  });
});

describe('a verified HS256 token is remembered, never past its expiry', () => {
  it('answers a repeat from memory, and refuses the token once exp plus the leeway has passed', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const verify = createTokenVerifier({ ...base, JWT_JWKS_COOLDOWN_MS: 30_000 });
      const token = await sign(claims, { exp: now() + 10 });
      expect((await verify(token)).id).toBe('user-1');
      expect((await verify(token)).id).toBe('user-1');
      // 10 s to exp, 30 s of leeway: 45 s on, the remembered verification has lapsed and jose refuses it.
      vi.setSystemTime(Date.now() + 45_000);
      await rejects(verify(token), /expired/);
      // A forged twin (same claims, another key) is never taken for the remembered one.
      vi.setSystemTime(Date.now() - 45_000);
      await rejects(verify(await sign(claims, { secret: 'another-secret-0123456789-0123456789-xyz', exp: now() + 10 })), /signature/);
    } finally {
      vi.useRealTimers();
    }
  });
});
