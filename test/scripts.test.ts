import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { decodeJwt } from 'jose';
import { describe, expect, it } from 'vitest';
import { userIdFor } from '../scripts/seed-data';
import { TEST_SECRET, useStack, type Stack } from './helpers/stack';

const run = promisify(execFile);
const ROOT = new URL('..', import.meta.url).pathname;
const tsx = (script: string, args: string[], env: Record<string, string>) =>
  run(process.execPath, ['--import', 'tsx', script, ...args], { cwd: ROOT, env: { ...process.env, CONFIG_FILE: '/nonexistent', ...env } });

const ctx = useStack();

describe('npm run token', () => {
  it('prints a 24 h token whose sub is the seeded id of a seeded user', async () => {
    const { stdout } = await tsx('scripts/token.ts', ['alice'], { JWT_SECRET: TEST_SECRET });
    const claims = decodeJwt(stdout.trim());
    expect(claims.sub).toBe(userIdFor('alice'));
    expect(claims.username).toBe('alice');
    expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBe(24 * 3600);
  });

  it('takes --id, and derives a stable id for any other username', async () => {
    const withId = decodeJwt((await tsx('scripts/token.ts', ['zed_1', '--id', 'custom-42'], { JWT_SECRET: TEST_SECRET })).stdout.trim());
    expect(withId.sub).toBe('custom-42');
    const a = decodeJwt((await tsx('scripts/token.ts', ['zed_1'], { JWT_SECRET: TEST_SECRET })).stdout.trim());
    const b = decodeJwt((await tsx('scripts/token.ts', ['zed_1'], { JWT_SECRET: TEST_SECRET })).stdout.trim());
    expect(a.sub).toBe(b.sub);
  });

  it('refuses a username outside the claim rules', async () => {
    await expect(tsx('scripts/token.ts', ['a'], { JWT_SECRET: TEST_SECRET })).rejects.toMatchObject({ code: 2 });
  });
});

describe('npm run seed', () => {
  it('makes 10 users, 45 conversations and 1000 messages, and a second run adds nothing', async () => {
    const { stack } = ctx;
    const env = { NATS_PREFIX: stack.config.NATS_PREFIX, NATS_URL: stack.config.NATS_URL };
    const first = await tsx('scripts/seed.ts', [], env);
    expect(first.stdout).toMatch(/10 users, 45 conversations, 1000 messages \(1000 new\)/);
    const second = await tsx('scripts/seed.ts', [], env);
    expect(second.stdout).toMatch(/\(0 new\)/);

    const token = (await tsx('scripts/token.ts', ['alice'], { JWT_SECRET: TEST_SECRET })).stdout.trim();
    const list = await ctx.api.get('/conversations?limit=100', token);
    expect(list.status).toBe(200);
    expect(list.body.data).toHaveLength(9);
    const usernames = list.body.data.map((c: { participant: { username: string } }) => c.participant.username).sort();
    expect(usernames).toEqual(['bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy']);

    const { rows } = await countMessages(stack);
    expect(rows[0]?.count).toBe('1000');
  }, 60_000);
});

async function countMessages(s: Stack) {
  const pg = await import('pg');
  const client = new pg.default.Client({ connectionString: s.config.DATABASE_URL });
  await client.connect();
  try {
    return await client.query<{ count: string }>('SELECT count(*) FROM messages.messages');
  } finally {
    await client.end();
  }
}
