import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { decodeJwt } from 'jose';
import { describe, expect, it } from 'vitest';
import { circulantPairs } from '../scripts/bench-open';
import { userIdFor } from '../scripts/seed-data';
import { TEST_SECRET, startStack, useStack, type Stack } from './helpers/stack';

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

/** The data rows of the Markdown table that follows `title` in the bench's output, as header → cell. */
function tableAfter(stdout: string, title: string): Array<Record<string, string>> {
  const lines = stdout.slice(stdout.indexOf(title)).split('\n').filter((l) => l.startsWith('|'));
  const cells = (l: string) => l.split('|').slice(1, -1).map((c) => c.trim());
  // Latency columns repeat "p95" etc. for ack and delivery; numbering keeps both.
  const head = cells(lines[0] ?? '').map((h, i, all) => (all.indexOf(h) === i ? h : `${h}#2`));
  return lines.slice(2).map((l) => Object.fromEntries(cells(l).map((c, i) => [head[i]!, c])));
}

describe('npm run bench, open-loop modes', () => {
  it('list-open gives every user the same number of distinct conversations', () => {
    for (let n = 2; n <= 13; n++)
      for (let c = 1; c <= 14; c++) {
        const pairs = circulantPairs(n, c);
        const want = Math.min(c, n - 1) - (n % 2 === 1 && Math.min(c, n - 1) % 2 === 1 ? 1 : 0);
        const keys = pairs.map(([a, b]) => `${Math.min(a, b)}-${Math.max(a, b)}`);
        expect(new Set(keys).size, `n=${n} c=${c}`).toBe(pairs.length);
        expect(pairs.every(([a, b]) => a !== b)).toBe(true);
        const degree = Array.from({ length: n }, (_, i) => pairs.filter(([a, b]) => a === i || b === i).length);
        expect(new Set(degree), `n=${n} c=${c}`).toEqual(new Set([want]));
        const created = Array.from({ length: n }, (_, i) => pairs.filter(([a]) => a === i).length);
        expect(Math.max(...created)).toBeLessThanOrEqual(Math.ceil(c / 2));
      }
  });

  it('--mode ws-open prints one row per rate: messages delivered, none failed, unacked or undelivered', async () => {
    const { stdout, stderr } = await tsx(
      'scripts/bench.ts',
      ['--mode', 'ws-open', '--url', ctx.stack.baseUrl, '--ws-rates', '20,40', '--pairs', '5', '--warmup', '1', '--window', '2', '--drain', '2'],
      { JWT_SECRET: TEST_SECRET },
    );
    const rows = tableAfter(stdout, 'WebSocket open loop');
    expect(rows.map((r) => r.rate)).toEqual(['20', '40']);
    for (const r of rows) {
      expect(Number(r.delivered), stdout + stderr).toBeGreaterThan(0);
      expect(Number(r.sent)).toBeGreaterThan(0);
      expect(Number(r['dlv p50'])).toBeGreaterThan(0);
      expect([r.failed, r.unacked, r.undlv, r.failures], stdout + stderr).toEqual(['0', '0', '0', '-']);
    }
    expect(stdout + stderr).not.toMatch(/RATE_LIMITED/);
  }, 60_000);

  it('--mode list-open prints latency, achieved rate and zero errors for GET /conversations', async () => {
    const { stdout, stderr } = await tsx(
      'scripts/bench.ts',
      ['--mode', 'list-open', '--url', ctx.stack.baseUrl, '--list-rate', '20', '--list-users', '10', '--list-conversations', '4',
        '--warmup', '1', '--window', '2', '--drain', '2'],
      { JWT_SECRET: TEST_SECRET },
    );
    expect(stderr).toMatch(/10 users, 20 conversations \(4 per user\), 20 messages/);
    const [row, ...more] = tableAfter(stdout, 'GET /conversations open loop');
    expect(more).toHaveLength(0);
    expect(row?.rate).toBe('20');
    expect(Number(row?.ok), stdout + stderr).toBeGreaterThan(0);
    expect(Number(row?.p50)).toBeGreaterThan(0);
    expect([row?.errors, row?.unfinished, row?.['by status']], stdout + stderr).toEqual(['0', '0', '-']);
  }, 60_000);

  it('warns loudly when the system answers RATE_LIMITED', async () => {
    const limited = await startStack({ RATE_LIMIT_SEND_PER_MIN: 3 });
    try {
      const { stdout, stderr } = await tsx(
        'scripts/bench.ts',
        ['--mode', 'ws-open', '--url', limited.baseUrl, '--ws-rates', '20', '--pairs', '2', '--warmup', '0', '--window', '1', '--drain', '1'],
        { JWT_SECRET: TEST_SECRET },
      );
      expect(stderr).toMatch(/WARNING: the system answers RATE_LIMITED .*RATE_LIMIT_SEND_PER_MIN=1000000/);
      expect(stdout).toMatch(/WARNING at 20\/s: \d+ RATE_LIMITED answers/);
      const [row] = tableAfter(stdout, 'WebSocket open loop');
      expect(row?.failures).toMatch(/^RATE_LIMITED×\d+$/);
    } finally {
      await limited.stop();
    }
  }, 60_000);
});

describe('npm run bench -- --mode search', () => {
  it('seeds a database of its own, prints p50/p95/p99 per kind of query with no errors, and reuses the seed next time', async () => {
    const database = `chat_bench_search_${ctx.stack.config.NATS_PREFIX}`;
    const args = ['--mode', 'search', '--search-db', database, '--search-messages', '3000', '--search-users', '40', '--search-conversations', '60',
      '--search-user-messages', '200', '--search-user-conversations', '3', '--search-queries', '4'];
    const env = { DATABASE_URL: ctx.stack.config.DATABASE_URL };
    try {
      const first = await tsx('scripts/bench.ts', [...args, '--search-explain'], env);
      expect(first.stderr).toMatch(/3000 messages, 200 of them bench-searcher's/);
      const rows = tableAfter(first.stdout, 'GET /search/messages');
      expect(rows.map((r) => r.kind)).toEqual(['common word', 'rare word', 'two words', 'prefix, 2-3 letters', 'accents and case', 'no match', 'common word, page 2', 'all kinds']);
      for (const r of rows.slice(0, -1)) {
        expect([r.queries, r.errors], first.stdout + first.stderr).toEqual(['4', '0']);
        expect(Number(r.p50)).toBeGreaterThan(0);
        expect(Number(r.p95)).toBeGreaterThanOrEqual(Number(r.p50));
      }
      expect(Number(rows.find((r) => r.kind === 'common word')?.['hits/page'])).toBeGreaterThan(0);
      // The plans are the service's own statement, answered from the search index.
      expect(first.stdout).toMatch(/Bitmap Index Scan on messages_search/);
      const second = await tsx('scripts/bench.ts', args, env);
      expect(second.stderr).toMatch(/reusing the seed/);
      expect(tableAfter(second.stdout, 'GET /search/messages').every((r) => r.errors === '0' || r.kind === 'all kinds')).toBe(true);
    } finally {
      const pg = await import('pg');
      const admin = new pg.default.Client({ connectionString: ctx.stack.config.DATABASE_URL });
      await admin.connect();
      await admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`).finally(() => admin.end());
    }
  }, 180_000);
});
