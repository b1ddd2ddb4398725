import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair, type JWK } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { useStack } from './helpers/stack';
import { tryUpgrade } from './helpers/ws';

/**
 * Issue 13, finding 4: jose refetches a key set older than its cacheMaxAge
 * (10 minutes) before each verification, and fails the verification when the
 * refetch fails. An identity provider down for longer than that would log
 * everyone out (503) although the keys it served last still verify their
 * tokens. The gateway keeps using them while the IdP fails, for at most
 * JWT_JWKS_MAX_STALE_S past the 10 minutes.
 *
 * The clock is vitest's, Date only (jose measures the set's age, and checks
 * `exp`, with Date); it moves on by itself, and jumps where the test says.
 */

const MAX_STALE_S = 3600;
const MINUTE = 60_000;

type Key = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
let privateKey: Key;
let jwk: JWK;
let idp: Server | undefined;
let port = 0;
let fetches = 0;

/** The IdP: serves the key set on `port` (the same port again after a restart). */
async function startIdp(): Promise<void> {
  idp = createServer((req, res) => {
    fetches++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((resolve) => idp!.listen(port, '127.0.0.1', resolve));
  port = (idp.address() as AddressInfo).port;
}
async function stopIdp(): Promise<void> {
  if (!idp) return;
  idp.closeAllConnections();
  await new Promise((r) => idp!.close(r));
  idp = undefined;
}

// Registered before useStack's, so the stack gets the IdP's port.
beforeAll(async () => {
  const pair = await generateKeyPair('RS256', { extractable: true });
  privateKey = pair.privateKey;
  jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  await startIdp();
});
const ctx = useStack(() => ({ JWT_JWKS_URL: `http://127.0.0.1:${port}/jwks.json`, JWT_JWKS_COOLDOWN_MS: 200, JWT_JWKS_MAX_STALE_S: MAX_STALE_S }));
afterEach(() => {
  vi.useRealTimers();
});
afterAll(async () => {
  await stopIdp();
});

/** A fresh user's token, valid for an hour from the (possibly moved) clock. */
function token(kid = 'k1'): Promise<string> {
  const n = randomBytes(4).toString('hex');
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ sub: `stale-${n}`, username: `stale_${n}`, iat: now, exp: now + 3600 }).setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' }).sign(privateKey);
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Moved by `advance` since the last fetch (the real time the test takes comes on top). */
let moved = 0;
/** Moves the clock on; the wait lets the IdP fetch's failure cooldown (200 ms of the moved clock) pass too. */
const advance = async (ms: number) => {
  moved += ms;
  vi.setSystemTime(Date.now() + ms);
  await sleep(250);
};
async function status(t: string): Promise<{ rest: number; ws: number; code?: string }> {
  const rest = await ctx.api.get('/conversations', t);
  const ws = await tryUpgrade(ctx.stack.gateway.port, { token: t });
  return { rest: rest.status, ws: ws.status, code: rest.body?.error?.code };
}

describe('the identity provider down for longer than the key set is fresh', () => {
  it('tokens keep verifying with its last keys up to JWT_JWKS_MAX_STALE_S past the 10 minutes, then 503; back up, they verify again', async () => {
    vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true });
    expect(await status(await token())).toEqual({ rest: 200, ws: 101 });
    expect(fetches).toBe(1);

    await stopIdp();
    // Within the 10 minutes nothing is fetched at all.
    await advance(5 * MINUTE);
    expect(await status(await token())).toEqual({ rest: 200, ws: 101 });

    // Past them the gateway asks the IdP, which fails: the keys it served still verify.
    await advance(6 * MINUTE);
    expect(await status(await token())).toEqual({ rest: 200, ws: 101 });
    await advance(30 * MINUTE);
    expect(await status(await token())).toEqual({ rest: 200, ws: 101 });
    // A kid the old set does not know may be a new key: only the IdP can tell, so 503, not 401.
    expect(await status(await token('k2'))).toMatchObject({ rest: 503, ws: 503, code: 'SERVICE_UNAVAILABLE' });

    // 10 minutes + JWT_JWKS_MAX_STALE_S after the last fetch: too old to trust, 503 as before.
    await advance(10 * MINUTE + MAX_STALE_S * 1000 - MINUTE - moved);
    expect(await status(await token())).toEqual({ rest: 200, ws: 101 });
    await advance(MINUTE);
    expect(await status(await token())).toMatchObject({ rest: 503, ws: 503, code: 'SERVICE_UNAVAILABLE' });

    // The IdP back: verified again, with a fresh set.
    await startIdp();
    await advance(1000);
    expect(await status(await token())).toEqual({ rest: 200, ws: 101 });
    expect(fetches).toBe(2);
  }, 30_000);
});
