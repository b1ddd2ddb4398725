import { SignJWT } from 'jose';
import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';

/** The JWT secret every test stack is started with. */
export const TEST_SECRET = 'test-secret-0123456789-0123456789-abcdef';

/** An ISO 8601 UTC time with milliseconds, as the API writes every time. */
export const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
/** A version 7 UUID: the ids the services mint. */
export const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
/** A UUID of any version. */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface TestUser {
  id: string;
  username: string;
  token: string;
}

/** A fresh user per test: ids and names never collide with another test's. */
export async function newUser(prefix = 'u', claims: Record<string, unknown> = {}): Promise<TestUser> {
  const suffix = randomBytes(5).toString('hex');
  const username = `${prefix}_${suffix}`.slice(0, 32);
  const id = `user-${suffix}`;
  return { id, username, token: await signToken({ sub: id, username, ...claims }) };
}

export async function signToken(claims: Record<string, unknown>, opts: { secret?: string; expiresIn?: string | number; alg?: string } = {}) {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: opts.alg ?? 'HS256', typ: 'JWT' }).setIssuedAt();
  if (opts.expiresIn !== undefined) jwt.setExpirationTime(opts.expiresIn);
  else if (claims.exp === undefined) jwt.setExpirationTime('1h');
  return jwt.sign(new TextEncoder().encode(opts.secret ?? TEST_SECRET));
}

export interface ApiResponse<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

/** A small REST client for tests: JSON in, JSON out, the status kept. */
export function api(baseUrl: string) {
  async function call<T = any>(method: string, path: string, opts: { token?: string; body?: unknown; headers?: Record<string, string>; raw?: string } = {}): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    let body: string | undefined = opts.raw;
    if (opts.body !== undefined) {
      headers['content-type'] ??= 'application/json';
      body = JSON.stringify(opts.body);
    }
    const res = await fetch(`${baseUrl}/api/chat${path}`, { method, headers, ...(body === undefined ? {} : { body }) });
    const text = await res.text();
    let parsed: any = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON: keep the text */
    }
    return { status: res.status, body: parsed as T, headers: res.headers };
  }
  return {
    call,
    get: <T = any>(path: string, token?: string) => call<T>('GET', path, { token }),
    post: <T = any>(path: string, token: string | undefined, body?: unknown) => call<T>('POST', path, { token, body }),
    put: <T = any>(path: string, token: string | undefined, body?: unknown) => call<T>('PUT', path, { token, body }),
    del: <T = any>(path: string, token?: string) => call<T>('DELETE', path, { token }),
  };
}
export type Api = ReturnType<typeof api>;

/** A fresh user known to chat: one authenticated GET /conversations registers them. */
export async function knownUser(client: Api, prefix = 'u', claims: Record<string, unknown> = {}): Promise<TestUser> {
  const user = await newUser(prefix, claims);
  const res = await client.get('/conversations', user.token);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return user;
}

/** Polls until `check` passes or `timeoutMs` runs out; for derived views that follow events. */
export async function eventually<T>(check: () => Promise<T>, timeoutMs = 3000, intervalMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }
}

/** Two known users and the conversation between them (created: 201). */
export async function conversationPair(a: Api): Promise<{ alice: TestUser; bob: TestUser; conv: string }> {
  const [alice, bob] = await Promise.all([knownUser(a, 'alice'), knownUser(a, 'bob')]);
  const res = await a.get(`/conversations/with/${bob.username}`, alice.token);
  if (res.status !== 201) throw new Error(`opening a conversation answered ${res.status}: ${JSON.stringify(res.body)}`);
  return { alice, bob, conv: res.body.data.id as string };
}
