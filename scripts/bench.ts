import { parseArgs } from 'node:util';
import { SignJWT } from 'jose';
import { loadConfig } from '@chat/platform';
import { wsConnections, wsLatency } from './bench-ws';
import { listOpenLoop, listOpenTable, tableNotes, wsOpenLoop, wsOpenTable, type Target, type WsOpenResult } from './bench-open';
import { searchBench } from './bench-search';

/**
 * npm run bench -- [--mode rest|ws-open|list-open|search[,…]] [--url http://localhost:8080] [options below]
 *
 * Drives the running system and prints latency percentiles. Needs `npm start`
 * running with the same JWT_SECRET (the bench signs its own users' tokens),
 * and with the rate limits raised: a load test is many sends and
 * conversations per user, and SPEC's defaults (30 sends, 10 creations, 120
 * frames a minute) would make it a test of the limiter:
 *   RATE_LIMIT_SEND_PER_MIN=1000000 RATE_LIMIT_WS_FRAMES_PER_MIN=1000000 \
 *   RATE_LIMIT_CREATE_CONVERSATION_PER_MIN=1000000 npm start
 * Every mode detects RATE_LIMITED answers and says so loudly.
 *
 * --mode rest (the default): closed loop. --concurrency workers each send their
 *   next request when the last one is answered, for --seconds (15), over
 *   --users (20) users, with --mix read-heavy|write-heavy; p50/p95/p99 per route.
 *   Then --connections (2000) sockets held by one gateway, and WebSocket
 *   send→receive latency between two users at --ws-rate (20) msg/s for
 *   --ws-seconds (10).
 *
 * --mode ws-open: open loop over WebSockets (the method of
 *   ../shared/perf/spec-load.mjs). Per rate in --ws-rates (msg/s in total,
 *   default 500; e.g. 100,500,1000): --pairs (200) pairs of fresh users
 *   (2 sockets each), each pair's conversation opened with GET
 *   /conversations/with/:username, then every user sends message.send from its
 *   own timer at rate/(2×pairs) per second, random phase, never waiting on an
 *   ack. --warmup (5 s) unmeasured, --window (10 s) measured, --drain (3 s) for
 *   late acks and deliveries. One row per rate: ack and delivery (send →
 *   message.new on the recipient's socket) p50/p95/p99/max in ms, sent/s,
 *   delivered/s, failures by error code, unacked, undelivered, and the whole
 *   machine's busy CPU (/proc/stat) per message sent in the window.
 *     npm run bench -- --mode ws-open --ws-rates 100,500,1000
 *
 * --mode list-open: open loop over GET /conversations. --list-users (100)
 *   users with --list-conversations (20) conversations each and
 *   --list-messages (1) message in each, set up once; then per rate in
 *   --list-rate (requests/s in total, default 200; several: 100,200,400) each
 *   user asks on its own timer, whatever the answers; same --warmup, --window
 *   and --drain. One row per rate: p50/p95/p99/max, achieved rate, errors.
 *     npm run bench -- --mode list-open --list-rate 200
 *
 * --mode search: GET /search/messages over a large history. Unlike the
 *   others it needs no running system (and ignores --url): it seeds a database
 *   of its own (--search-db, default chat_bench_search, beside DATABASE_URL's;
 *   kept for the next run) with --search-messages (1000000) messages, of which
 *   --search-user-messages (5000) in --search-user-conversations (10) are one
 *   user's, starts the services and a gateway in-process on it, and prints
 *   p50/p95/p99 per kind of query (--search-queries, 60 of each;
 *   --search-concurrency, 1). --search-reseed seeds again; --search-explain
 *   prints the query plans. Details at the top of scripts/bench-search.ts.
 *     npm run bench -- --mode search --search-explain
 *
 * Open-loop tables go to stdout, progress and warnings to stderr.
 */
const { values } = parseArgs({
  options: {
    mode: { type: 'string', default: 'rest' },
    url: { type: 'string', default: 'http://localhost:8080' },
    seconds: { type: 'string', default: '15' },
    concurrency: { type: 'string', default: '16' },
    users: { type: 'string', default: '20' },
    'ws-seconds': { type: 'string', default: '10' },
    'ws-rate': { type: 'string', default: '20' },
    connections: { type: 'string', default: '2000' },
    mix: { type: 'string', default: 'read-heavy' },
    'ws-rates': { type: 'string', default: '500' },
    pairs: { type: 'string', default: '200' },
    warmup: { type: 'string', default: '5' },
    window: { type: 'string', default: '10' },
    drain: { type: 'string', default: '3' },
    'list-rate': { type: 'string', default: '200' },
    'list-users': { type: 'string', default: '100' },
    'list-conversations': { type: 'string', default: '20' },
    'list-messages': { type: 'string', default: '1' },
    'setup-concurrency': { type: 'string', default: '16' },
    'search-db': { type: 'string', default: 'chat_bench_search' },
    'search-messages': { type: 'string', default: '1000000' },
    'search-users': { type: 'string', default: '20000' },
    'search-conversations': { type: 'string', default: '100000' },
    'search-user-messages': { type: 'string', default: '5000' },
    'search-user-conversations': { type: 'string', default: '10' },
    'search-queries': { type: 'string', default: '60' },
    'search-concurrency': { type: 'string', default: '1' },
    'search-reseed': { type: 'boolean', default: false },
    'search-explain': { type: 'boolean', default: false },
  },
});
const MODES = ['rest', 'ws-open', 'list-open', 'search'] as const;
type Mode = (typeof MODES)[number];
const modes = values.mode.split(',').map((m) => m.trim());
for (const m of modes)
  if (!(MODES as readonly string[]).includes(m)) {
    console.error(`bench: unknown --mode ${m} (one or more of ${MODES.join(', ')}, comma-separated)`);
    process.exit(2);
  }
/** A number option, refused with a line naming it rather than turned into NaN. */
function num(name: keyof typeof values, min = 0): number {
  const v = Number(values[name]);
  if (!Number.isFinite(v) || v < min) {
    console.error(`bench: --${name} must be a number >= ${min}`);
    process.exit(2);
  }
  return v;
}
function nums(name: keyof typeof values): number[] {
  const xs = String(values[name]).split(',').map(Number);
  if (!xs.length || xs.some((x) => !Number.isFinite(x) || x <= 0)) {
    console.error(`bench: --${name} must be one or more numbers > 0, comma-separated`);
    process.exit(2);
  }
  return xs;
}
const BASE = `${values.url}/api/chat`;
const SECONDS = Math.min(300, Number(values.seconds));
const CONCURRENCY = Math.min(256, Number(values.concurrency));
const USERS = Math.max(2, Math.min(500, Number(values.users)));
/**
 * Cumulative thresholds of one request's roll. read-heavy (default): what a
 * chat client does most, polling lists and badges and paging, with 5% sends;
 * write-heavy: 20% sends, the stress case for caches and the event path.
 */
const MIXES = {
  'read-heavy': { send: 0.05, list: 0.5, page: 0.8, read: 0.85 },
  'write-heavy': { send: 0.2, list: 0.6, page: 0.9, read: 0.95 },
} as const;
const MIX = MIXES[values.mix as keyof typeof MIXES] ?? MIXES['read-heavy'];
const config = loadConfig();
const key = new TextEncoder().encode(config.JWT_SECRET);
const run = Date.now().toString(36);

const samples = new Map<string, number[]>();
let errors = 0;
const errorCodes = new Map<string, number>();

async function call(route: string, method: string, path: string, token: string, body?: unknown) {
  const started = performance.now();
  const res = await fetch(`${BASE}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  const ms = performance.now() - started;
  if (res.status >= 400) {
    errors++;
    errorCodes.set(`${res.status}`, (errorCodes.get(`${res.status}`) ?? 0) + 1);
  } else {
    (samples.get(route) ?? samples.set(route, []).get(route)!).push(ms);
  }
  return text ? (JSON.parse(text) as { data?: any }) : {};
}

/** Cache lookups by result, summed from the services' own /metrics (conversations :9101, messages :9102). */
async function cacheCounts(): Promise<{ hit: number; total: number }> {
  let hit = 0;
  let total = 0;
  for (const port of [9101, 9102]) {
    const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text()).catch(() => '');
    for (const m of text.matchAll(/^chat_cache_requests_total\{([^}]*)\} ([0-9.e+]+)/gm)) {
      const n = Number(m[2]);
      total += n;
      if (/result="hit"/.test(m[1]!)) hit += n;
    }
  }
  return { hit, total };
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

async function token(i: number) {
  const username = `bench_${run}_${i}`;
  const jwt = await new SignJWT({ username }).setProtectedHeader({ alg: 'HS256' }).setSubject(`bench-${run}-${i}`).setIssuedAt().setExpirationTime('1h').sign(key);
  return { username, token: jwt };
}

async function rest() {
  const users = await Promise.all(
    Array.from({ length: USERS }, async (_, i) => {
      const user = await token(i);
      await call('setup', 'GET', '/conversations?limit=1', user.token);
      return user;
    }),
  );
  const conns = await wsConnections(values.url!, token, Math.min(10_000, Number(values.connections)));
  console.log(`WebSocket connections held by one gateway: ${conns.held} (opened in ${conns.openSeconds.toFixed(1)} s), ` +
    `gateway RSS ${conns.rssBeforeMb.toFixed(0)} → ${conns.rssAfterMb.toFixed(0)} MB (~${conns.perConnectionKb.toFixed(1)} KB per connection), ` +
    `JS heap ${conns.heapBeforeMb.toFixed(0)} → ${conns.heapAfterMb.toFixed(0)} MB`);

  const convs: Array<{ id: string; a: number; b: number }> = [];
  for (let i = 0; i < USERS; i += 2) {
    const r = await call('setup', 'GET', `/conversations/with/${users[i + 1]!.username}`, users[i]!.token);
    convs.push({ id: r.data.id, a: i, b: i + 1 });
  }
  samples.delete('setup');
  const cacheBefore = await cacheCounts();
  const deadline = Date.now() + SECONDS * 1000;
  let sent = 0;
  let n = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < deadline) {
        const c = convs[n++ % convs.length]!;
        const who = users[n % 2 ? c.a : c.b]!;
        const roll = Math.random();
        if (roll < MIX.send) {
          await call('POST /conversations/:id/messages', 'POST', `/conversations/${c.id}/messages`, who.token, { content: `bench ${n}` });
          sent++;
        } else if (roll < MIX.list) await call('GET /conversations', 'GET', '/conversations?limit=20', who.token);
        else if (roll < MIX.page) await call('GET /conversations/:id/messages', 'GET', `/conversations/${c.id}/messages?limit=50`, who.token);
        else if (roll < MIX.read) await call('POST /conversations/:id/read', 'POST', `/conversations/${c.id}/read`, who.token, {});
        else await call('GET /conversations/unread-count', 'GET', '/conversations/unread-count', who.token);
      }
    }),
  );
  const rows = [...samples.entries()].map(([route, xs]) => {
    const s = [...xs].sort((x, y) => x - y);
    return { route, count: s.length, p50: percentile(s, 50).toFixed(1), p95: percentile(s, 95).toFixed(1), p99: percentile(s, 99).toFixed(1) };
  });
  console.log(`REST latency in ms (${values.mix} mix, ${SECONDS} s, concurrency ${CONCURRENCY}, ${USERS} users)`);
  console.table(rows);
  const total = rows.reduce((a, r) => a + r.count, 0);
  const cacheAfter = await cacheCounts();
  const lookups = cacheAfter.total - cacheBefore.total;
  console.log(`cache hit rate: ${lookups ? (((cacheAfter.hit - cacheBefore.hit) / lookups) * 100).toFixed(1) : 'n/a'}% of ${lookups} lookups`);
  console.log(`requests/s: ${(total / SECONDS).toFixed(0)}   messages/s: ${(sent / SECONDS).toFixed(0)}   errors: ${errors} ${JSON.stringify(Object.fromEntries(errorCodes))}`);
  if (errorCodes.has('429'))
    console.log('note: 429s are the rate limits at work; for a load test start the system with ' +
      'RATE_LIMIT_SEND_PER_MIN=1000000 RATE_LIMIT_WS_FRAMES_PER_MIN=1000000 (docs/performance.md)');

  const wsSeconds = Math.min(120, Number(values['ws-seconds']));
  const rate = Math.min(200, Number(values['ws-rate']));
  const lat = await wsLatency(values.url!, BASE, token, wsSeconds, rate);
  console.log(`\nWebSocket send→receive (${rate}/s for ${wsSeconds} s): sent ${lat.sent}, received ${lat.received}, ` +
    `p50 ${lat.p50.toFixed(1)} ms, p95 ${lat.p95.toFixed(1)} ms, p99 ${lat.p99.toFixed(1)} ms`);
}

const target: Target = {
  baseUrl: values.url.replace(/\/+$/, ''),
  secret: config.JWT_SECRET,
  issuer: config.JWT_ISSUER,
  audience: config.JWT_AUDIENCE,
  log: (line) => console.error(line),
};

async function wsOpen() {
  const rates = nums('ws-rates');
  const pairs = num('pairs', 1);
  const [warmup, window, drain] = [num('warmup'), num('window', 0.1), num('drain')];
  const results: WsOpenResult[] = [];
  for (const [i, rate] of rates.entries()) {
    console.error(`ws-open: ${rate} msg/s, ${pairs} pairs, warm-up ${warmup} s, window ${window} s, drain ${drain} s`);
    const r = await wsOpenLoop(target, { rate, pairs, warmupSeconds: warmup, windowSeconds: window, drainSeconds: drain, setupConcurrency: num('setup-concurrency', 1) });
    console.error(`ws-open: ${rate}/s done: setup ${(r.setupMs.usersKnown / 1000).toFixed(1)}+${(r.setupMs.conversations / 1000).toFixed(1)}+` +
      `${(r.setupMs.connect / 1000).toFixed(1)} s, client cpu ${r.clientCpuMsPerMessage.toFixed(3)} ms/msg, errors over the run ${JSON.stringify(r.errors)}` +
      `${Object.keys(r.closes).length ? `, socket closes ${JSON.stringify(r.closes)}` : ''}${r.skippedClosed ? `, ${r.skippedClosed} sends skipped on closed sockets` : ''}`);
    results.push(r);
    // The closed sockets' last sends may still be in flight in the services; the next rate must not pay for them.
    if (i < rates.length - 1) await new Promise((r) => setTimeout(r, 2000));
  }
  console.log(`\nWebSocket open loop (${pairs} pairs, ${pairs * 2} sockets, window ${window} s; latencies in ms; cpu: whole machine per message sent)`);
  console.log(wsOpenTable(results));
  for (const line of tableNotes(results.map((r) => ({ ...r, offeredPerSecond: r.sentPerSecond })))) console.log(line);
}

async function listOpen() {
  const [warmup, window, drain] = [num('warmup'), num('window', 0.1), num('drain')];
  const users = num('list-users', 2);
  const results = await listOpenLoop(target, {
    rates: nums('list-rate'),
    users,
    conversationsPerUser: num('list-conversations', 1),
    messagesPerConversation: num('list-messages'),
    warmupSeconds: warmup,
    windowSeconds: window,
    drainSeconds: drain,
    setupConcurrency: num('setup-concurrency', 1),
  });
  const first = results[0]!;
  console.log(`\nGET /conversations open loop (${first.users} users, ${first.conversationsPerUser} conversations each, window ${window} s; latencies in ms; cpu: whole machine per request issued)`);
  console.log(listOpenTable(results));
  for (const line of tableNotes(results.map((r) => ({ ...r, offeredPerSecond: r.issuedPerSecond })))) console.log(line);
}

async function search() {
  if (!/^[A-Za-z0-9_]{1,63}$/.test(values['search-db'])) {
    console.error('bench: --search-db must be 1-63 of [A-Za-z0-9_]');
    process.exit(2);
  }
  const users = num('search-users', 2);
  await searchBench({
    database: values['search-db'],
    messages: num('search-messages', 1),
    users,
    conversations: num('search-conversations', 1),
    userMessages: num('search-user-messages'),
    userConversations: Math.min(users, num('search-user-conversations', 1)),
    queriesPerKind: num('search-queries', 1),
    concurrency: num('search-concurrency', 1),
    reseed: values['search-reseed'],
    explain: values['search-explain'],
  });
}

const RUN: Record<Mode, () => Promise<void>> = { rest, 'ws-open': wsOpen, 'list-open': listOpen, search };

async function main() {
  for (const m of modes) await RUN[m as Mode]();
}

main().catch((err: unknown) => {
  // --mode search runs a system of its own; the others drive the one npm start runs.
  const hint = modes.every((m) => m === 'search') ? 'are PostgreSQL, NATS and Redis running?' : 'is the system running? npm start';
  console.error(`bench: ${(err as Error).message} (${hint})`);
  process.exit(1);
});
