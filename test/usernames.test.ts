import { createHash, randomBytes } from 'node:crypto';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { ensureDatabase, migrate } from '@chat/platform';
import { useStack, runId } from './helpers/stack';
import { knownUser, signToken, type TestUser } from './helpers/client';

/**
 * Issue 13, finding 5: an OIDC preferred_username is not unique, and the
 * newest account to present a name used to take it over. The first account
 * to claim a name keeps it; others are shown under a derived name.
 */
const ctx = useStack();

const SPEC_USERNAME = /^[A-Za-z0-9_.-]{3,32}$/;

/**
 * The rule's derived name, written out here rather than imported so that the
 * tests pin it: the claim cut to 23 characters, '-', and 8 hex digits of
 * SHA-256 of the account id (of id + '\n' + attempt when earlier attempts are
 * taken). 23 + 1 + 8 = 32, SPEC's maximum.
 */
const derivedUsername = (claim: string, userId: string, attempt = 0) =>
  `${claim.slice(0, 23)}-${createHash('sha256').update(attempt === 0 ? userId : `${userId}\n${attempt}`).digest('hex').slice(0, 8)}`;
const tag = () => randomBytes(4).toString('hex');

/** An account whose token carries `username`; not yet known to chat. */
async function claimant(id: string, username: string, claims: Record<string, unknown> = {}): Promise<TestUser> {
  return { id, username, token: await signToken({ sub: id, username, ...claims }) };
}

async function request(u: TestUser) {
  const res = await ctx.api.get('/conversations', u.token);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
}

async function openWith(caller: TestUser, username: string) {
  const res = await ctx.api.get(`/conversations/with/${username}`, caller.token);
  expect([200, 201], JSON.stringify(res.body)).toContain(res.status);
  return res.body.data as { id: string; participant: { id: string; username: string } };
}

async function listed(caller: TestUser) {
  const res = await ctx.api.get('/conversations?limit=100', caller.token);
  expect(res.status).toBe(200);
  return (res.body.data as Array<{ id: string; participant: { id: string; username: string } }>).map((c) => c.participant);
}

async function blockedList(caller: TestUser) {
  const res = await ctx.api.get('/blocks?limit=100', caller.token);
  expect(res.status).toBe(200);
  return (res.body.data as Array<{ user: { id: string; username: string } }>).map((b) => b.user);
}

/** The name `userId` is shown under in `observer`'s list. */
async function shownAs(observer: TestUser, userId: string) {
  const found = (await listed(observer)).find((p) => p.id === userId);
  expect(found, `${userId} in the list`).toBeDefined();
  return found!.username;
}

function expectUniqueNames(users: Array<{ username: string }>) {
  const names = users.map((u) => u.username.toLowerCase());
  expect(new Set(names).size, names.join(', ')).toBe(names.length);
}

describe('a username belongs to the first account that claims it', () => {
  it.each([
    ['a', 'b'],
    ['b', 'a'],
  ])('sub %s then sub %s: the name resolves to the first for conversations and blocks; the second is shown and reached under its derived name', async (firstSuffix, secondSuffix) => {
    const t = tag();
    const name = `nm_${t}`;
    const first = await claimant(`user-${t}-${firstSuffix}`, name);
    const second = await claimant(`user-${t}-${secondSuffix}`, name);
    await request(first);
    await request(second);
    const observer = await knownUser(ctx.api, 'obs');

    // Conversations: the name is the first's, for an outsider and for the second alike.
    expect((await openWith(observer, name)).participant).toEqual(expect.objectContaining({ id: first.id, username: name }));
    const between = await openWith(second, name);
    expect(between.participant.id).toBe(first.id);

    // Blocks by name reach the first.
    const blocked = await ctx.api.post('/blocks', observer.token, { username: name.toUpperCase() });
    expect(blocked.status).toBe(201);
    expect(blocked.body.data.user.id).toBe(first.id);
    expect((await ctx.api.get(`/blocks/status/${name}`, observer.token)).body.data.blockedByMe).toBe(true);
    expect((await ctx.api.get(`/blocks/status/${observer.username}`, first.token)).body.data.blockedByThem).toBe(true);
    expect((await ctx.api.get(`/blocks/status/${observer.username}`, second.token)).body.data.blockedByThem).toBe(false);
    expect((await ctx.api.del(`/blocks/${name}`, observer.token)).status).toBe(204);
    expect((await ctx.api.get(`/blocks/status/${name}`, observer.token)).body.data.blockedByMe).toBe(false);

    // The second is in the first's list under a derived name that fits SPEC and is stable.
    const derived = await shownAs(first, second.id);
    expect(derived).toBe(derivedUsername(name, second.id));
    expect(derived).toMatch(SPEC_USERNAME);
    expect(derived.toLowerCase()).not.toBe(name.toLowerCase());
    await request(await claimant(second.id, name, { name: 'Profile Changed' }));
    expect(await shownAs(first, second.id)).toBe(derived);

    // ...and can be chatted with under it.
    const reopened = await ctx.api.get(`/conversations/with/${derived}`, first.token);
    expect(reopened.status).toBe(200);
    expect(reopened.body.data.id).toBe(between.id);
    expect(reopened.body.data.participant).toEqual(expect.objectContaining({ id: second.id, username: derived }));
    const sent = await ctx.api.post(`/conversations/${between.id}/messages`, first.token, { content: `hi ${derived}` });
    expect(sent.status).toBe(201);
    expect((await openWith(observer, derived)).participant.id).toBe(second.id);

    // No list shows the two under one name.
    expectUniqueNames(await listed(observer));
    expect((await ctx.api.post('/blocks', observer.token, { username: name })).status).toBe(201);
    expect((await ctx.api.post('/blocks', observer.token, { username: derived })).status).toBe(201);
    const blocks = await blockedList(observer);
    expect(blocks.map((u) => u.id).sort()).toEqual([first.id, second.id].sort());
    expectUniqueNames(blocks);
  });

  it('concurrent first requests of many accounts with one name: exactly one holds it, every other has its own name', async () => {
    for (let round = 0; round < 3; round++) {
      const t = tag();
      const name = `race_${t}`;
      const observer = await knownUser(ctx.api, 'obs');
      const racers = await Promise.all(Array.from({ length: 6 }, (_, i) => claimant(`user-${t}-${i}`, name)));
      await Promise.all(racers.map(request));
      await Promise.all(racers.map((r) => openWith(r, observer.username)));

      const shown = (await listed(observer)).filter((p) => racers.some((r) => r.id === p.id));
      expect(shown).toHaveLength(racers.length);
      expectUniqueNames(shown);
      const holders = shown.filter((p) => p.username === name);
      expect(holders, JSON.stringify(shown)).toHaveLength(1);
      expect((await openWith(observer, name)).participant.id).toBe(holders[0]!.id);
      for (const p of shown) {
        expect(p.username).toMatch(SPEC_USERNAME);
        if (p !== holders[0]) expect(p.username).toBe(derivedUsername(name, p.id));
      }

      await Promise.all(shown.map((p) => ctx.api.post('/blocks', observer.token, { username: p.username })));
      const blocks = await blockedList(observer);
      expect(blocks).toHaveLength(racers.length);
      expectUniqueNames(blocks);
    }
  });

  it('a holder whose token carries another name releases it: the earliest waiting claimant gets it, then the next', async () => {
    const t = tag();
    const name = `rel_${t}`;
    const a = await claimant(`user-${t}-a`, name);
    const b = await claimant(`user-${t}-b`, name);
    const c = await claimant(`user-${t}-c`, name);
    await request(a);
    await request(b);
    await request(c);
    const observer = await knownUser(ctx.api, 'obs');
    for (const u of [a, b, c]) await openWith(u, observer.username);
    const bDerived = derivedUsername(name, b.id);
    expect(await shownAs(observer, b.id)).toBe(bDerived);

    // a moves on: the name goes to b, the first still claiming it; c keeps waiting.
    const aRenamed = await claimant(a.id, `${name}_new`);
    await request(aRenamed);
    expect(await shownAs(observer, a.id)).toBe(`${name}_new`);
    expect(await shownAs(observer, b.id)).toBe(name);
    expect(await shownAs(observer, c.id)).toBe(derivedUsername(name, c.id));
    expect((await openWith(observer, name)).participant.id).toBe(b.id);
    expect((await ctx.api.get(`/conversations/with/${bDerived}`, observer.token)).status).toBe(404);
    // b's own next request keeps it.
    await request(b);
    expect((await openWith(observer, name)).participant.id).toBe(b.id);

    // a coming back to the name does not take it back.
    await request(a);
    expect(await shownAs(observer, a.id)).toBe(derivedUsername(name, a.id));
    expect((await openWith(observer, name)).participant.id).toBe(b.id);

    // b moves on: c has waited longer than a.
    await request(await claimant(b.id, `${name}_b`));
    expect((await openWith(observer, name)).participant.id).toBe(c.id);
    expect(await shownAs(observer, a.id)).toBe(derivedUsername(name, a.id));
    expectUniqueNames(await listed(observer));

    // With nobody waiting, a released name goes to the next account to present it.
    await request(await claimant(a.id, `${name}_a`));
    await request(await claimant(c.id, `${name}_c`));
    expect((await ctx.api.get(`/conversations/with/${name}`, observer.token)).status).toBe(404);
    const d = await claimant(`user-${t}-d`, name);
    await request(d);
    expect((await openWith(observer, name)).participant.id).toBe(d.id);
  });

  it('names match case-insensitively: Alice and alice are one name, held by whoever claimed it first', async () => {
    const t = tag();
    const first = await claimant(`user-${t}-1`, `Case_${t}`);
    const second = await claimant(`user-${t}-2`, `case_${t.toUpperCase()}`);
    await request(first);
    await request(second);
    const observer = await knownUser(ctx.api, 'obs');
    expect((await openWith(observer, `CASE_${t}`)).participant.id).toBe(first.id);
    await openWith(second, observer.username);
    expect(await shownAs(observer, second.id)).toBe(derivedUsername(second.username, second.id));

    // The holder may change the case of its own name and keeps it.
    await request(await claimant(first.id, `CASE_${t}`));
    expect(await shownAs(observer, first.id)).toBe(`CASE_${t}`);
    expect((await openWith(observer, `case_${t}`)).participant.id).toBe(first.id);
    expect(await shownAs(observer, second.id)).toBe(derivedUsername(second.username, second.id));
    expectUniqueNames(await listed(observer));
  });
});

describe('migration 004 on a directory written under the old rule', () => {
  const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const migrations = new URL('../services/conversations/migrations/', import.meta.url);

  it('keeps each name with its earliest account and renames the others by the same derivation', async () => {
    const url = new URL(ADMIN_URL);
    url.pathname = `/chat_${runId()}`;
    const old = await mkdtemp(join(tmpdir(), 'migrations-'));
    const client = new pg.Client({ connectionString: url.toString() });
    try {
      await ensureDatabase(url.toString());
      for (const f of ['001_init.sql', '002_outbox.sql', '003_outbox_trace.sql']) await cp(new URL(f, migrations), join(old, f));
      await migrate(url.toString(), 'conversations', new URL(`file://${old}/`));
      await client.connect();
      // u3's first derivation is already someone's name: it must step past it.
      const taken = derivedUsername('dup_x', 'u3');
      const rows: Array<[string, string, string | null, string]> = [
        ['u0', taken, taken.toLowerCase(), '2020-01-01'],
        ['u1', 'dup_x', null, '2020-01-02'],
        ['u2', 'DUP_x', 'dup_x', '2020-01-03'], // took the name over, under the old rule
        ['u3', 'dup_x', null, '2020-01-04'],
        ['u4', 'solo_y', 'solo_y', '2020-01-05'],
      ];
      for (const [id, username, key, at] of rows) {
        await client.query('INSERT INTO conversations.users (id, username, username_key, created_at) VALUES ($1, $2, $3, $4)', [id, username, key, at]);
      }

      expect(await migrate(url.toString(), 'conversations', migrations)).toEqual(['004_username_claims']);

      const { rows: after } = await client.query<{ id: string; username: string; claimed_username: string }>(
        'SELECT id, username, claimed_username FROM conversations.users ORDER BY id',
      );
      expect(after).toEqual([
        { id: 'u0', username: taken, claimed_username: taken },
        { id: 'u1', username: 'dup_x', claimed_username: 'dup_x' },
        { id: 'u2', username: derivedUsername('DUP_x', 'u2'), claimed_username: 'DUP_x' },
        { id: 'u3', username: derivedUsername('dup_x', 'u3', 1), claimed_username: 'dup_x' },
        { id: 'u4', username: 'solo_y', claimed_username: 'solo_y' },
      ]);
      await expect(client.query("INSERT INTO conversations.users (id, username, claimed_username) VALUES ('u5', 'Dup_X', 'Dup_X')")).rejects.toMatchObject({ code: '23505' });
    } finally {
      await client.end().catch(() => undefined);
      await rm(old, { recursive: true, force: true });
      const admin = new pg.Client({ connectionString: ADMIN_URL });
      await admin.connect();
      await admin.query(`DROP DATABASE IF EXISTS "${url.pathname.slice(1)}" WITH (FORCE)`);
      await admin.end();
    }
  });
});
