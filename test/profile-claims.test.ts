import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { knownUser, signToken } from './helpers/client';
import { useStack } from './helpers/stack';
import { tryUpgrade } from './helpers/ws';

/**
 * Issue 13, finding 9b: `name` and `picture` are optional profile claims that
 * become the user's displayName and avatarUrl, stored as PostgreSQL text,
 * which cannot hold NUL (nor can a lone surrogate be stored as it is). Such a
 * claim is dropped to null, so the user is let in and their requests work,
 * never an INTERNAL on every request.
 */

const ctx = useStack();

function user(extra: Record<string, unknown>) {
  const n = randomBytes(4).toString('hex');
  return { sub: `claims-${n}`, username: `claims_${n}`, ...extra };
}

/** The profile others see: the participant of a conversation with them. */
async function profileSeenBy(viewer: string, username: string) {
  const res = await ctx.api.get(`/conversations/with/${username}`, viewer);
  expect([200, 201], JSON.stringify(res.body)).toContain(res.status);
  return res.body.data.participant as { displayName: string | null; avatarUrl: string | null };
}

const unstorable: Array<[string, Record<string, unknown>, { displayName: string | null; avatarUrl: string | null }]> = [
  ['a NUL in name', { name: 'Mallory\u0000', picture: 'https://img.example/m.png' }, { displayName: null, avatarUrl: 'https://img.example/m.png' }],
  ['a NUL in picture', { name: 'Mallory', picture: 'https://img.example/\u0000.png' }, { displayName: 'Mallory', avatarUrl: null }],
  ['NUL in both', { name: '\u0000', picture: '\u0000' }, { displayName: null, avatarUrl: null }],
  ['a lone surrogate in name', { name: 'bad \ud800 pair' }, { displayName: null, avatarUrl: null }],
];

describe('name / picture claims PostgreSQL cannot store', () => {
  for (const [what, extra, expected] of unstorable) {
    it(`${what}: REST and the WebSocket upgrade let the user in, and the claim is dropped to null`, async () => {
      const claims = user(extra);
      const token = await signToken(claims);
      const rest = await ctx.api.get('/conversations', token);
      expect(rest.status, JSON.stringify(rest.body)).toBe(200);
      expect((await tryUpgrade(ctx.stack.gateway.port, { token })).status).toBe(101);
      expect((await tryUpgrade(ctx.stack.gateway.port, { headers: { authorization: `Bearer ${token}` } })).status).toBe(101);
      const viewer = await knownUser(ctx.api, 'viewer');
      expect(await profileSeenBy(viewer.token, claims.username as string)).toMatchObject(expected);
    });
  }

  it('a WebSocket upgrade is the first request of such a user: let in as well', async () => {
    const claims = user({ name: 'first\u0000contact' });
    const token = await signToken(claims);
    expect((await tryUpgrade(ctx.stack.gateway.port, { token })).status).toBe(101);
    const viewer = await knownUser(ctx.api, 'viewer');
    expect(await profileSeenBy(viewer.token, claims.username as string)).toMatchObject({ displayName: null });
  });

  it('a name cut at 256 characters never keeps half of a surrogate pair', async () => {
    const claims = user({ name: `${'a'.repeat(255)}😀tail` });
    const token = await signToken(claims);
    expect((await ctx.api.get('/conversations', token)).status).toBe(200);
    const viewer = await knownUser(ctx.api, 'viewer');
    expect((await profileSeenBy(viewer.token, claims.username as string)).displayName).toBe('a'.repeat(255));
  });

  it('storable names and pictures are kept as they are (emoji, accents, RTL)', async () => {
    const claims = user({ name: 'Zoë 😀 زهرة', picture: 'https://img.example/zoë.png' });
    const token = await signToken(claims);
    expect((await ctx.api.get('/conversations', token)).status).toBe(200);
    const viewer = await knownUser(ctx.api, 'viewer');
    expect(await profileSeenBy(viewer.token, claims.username as string)).toMatchObject({ displayName: 'Zoë 😀 زهرة', avatarUrl: 'https://img.example/zoë.png' });
  });
});
