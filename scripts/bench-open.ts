import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SignJWT } from 'jose';
import WebSocket from 'ws';

/**
 * The open-loop phases of `npm run bench` (`--mode ws-open`, `--mode
 * list-open`). Open loop: every request leaves on its own timer, whether or
 * not earlier ones were answered, so a slow server meets the offered load
 * instead of quietly lowering it, as a closed loop (the `rest` mode) does.
 *
 * `ws-open` follows the method of ../shared/perf/spec-load.mjs (fresh users,
 * one conversation per pair, per-user timers with a random phase, measured
 * over messages sent inside the window) so that its figures can be read next
 * to the ones that tool gives. It is a separate TypeScript copy because this
 * repository must build and run on its own.
 *
 * Exported so that a test can run them against an in-process stack.
 */

export interface Target {
  /** The gateway's origin, e.g. http://localhost:8080. */
  baseUrl: string;
  /** The gateway's JWT_SECRET: the bench signs its own users' tokens. */
  secret: string;
  issuer?: string | undefined;
  audience?: string | undefined;
  /** Progress and warnings (the CLI sends them to stderr so stdout stays the tables). */
  log?: (line: string) => void;
}

export interface User {
  id: string;
  username: string;
  token: string;
  ws?: WebSocket;
}

export interface LatencySummary {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

const SETTINGS_ADVICE =
  'start the system with RATE_LIMIT_SEND_PER_MIN=1000000 RATE_LIMIT_WS_FRAMES_PER_MIN=1000000 ' +
  'RATE_LIMIT_CREATE_CONVERSATION_PER_MIN=1000000 (docs/performance.md)';

const now = () => performance.now();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const bump = (o: Record<string, number>, k: string) => {
  o[k] = (o[k] ?? 0) + 1;
};

/** Nearest-rank on the sorted samples, as the rest of the bench and spec-load compute it. */
export function summarize(samples: number[]): LatencySummary {
  const s = Float64Array.from(samples).sort();
  const at = (p: number) => (s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))]! : NaN);
  return { n: s.length, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: at(1) };
}

/**
 * The whole machine's busy CPU in ms (user nice system irq softirq steal, in
 * 10 ms ticks): the servers, every service and this client together, since on
 * one host they compete for the same cores. NaN where there is no /proc.
 */
export function machineBusyMs(): number {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    return ((f[0] ?? NaN) + (f[1] ?? NaN) + (f[2] ?? NaN) + (f[5] ?? NaN) + (f[6] ?? NaN) + (f[7] ?? NaN)) * 10;
  } catch {
    return NaN;
  }
}

/** Fresh users for one run: a random sub and a name unique to the run, so no earlier run's state is measured. */
export async function mintUsers(target: Target, count: number, tag: string): Promise<User[]> {
  const key = new TextEncoder().encode(target.secret);
  return Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const id = randomUUID();
      const username = `bo${tag}_${i}`;
      const jwt = new SignJWT({ username }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setSubject(id).setIssuedAt().setExpirationTime('2h');
      if (target.issuer) jwt.setIssuer(target.issuer);
      if (target.audience) jwt.setAudience(target.audience);
      return { id, username, token: await jwt.sign(key) };
    }),
  );
}

interface HttpAnswer {
  status: number;
  /** The error code of the body, or the network error when there was no answer (status 0). */
  code?: string;
  body?: { data?: unknown; error?: { code?: string } } | null;
}

async function request(target: Target, method: string, path: string, token: string, body?: unknown): Promise<HttpAnswer> {
  let res: Response;
  try {
    res = await fetch(`${target.baseUrl}/api/chat${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    return { status: 0, code: e.cause?.code ?? e.name };
  }
  const text = await res.text().catch(() => '');
  let parsed: HttpAnswer['body'] = null;
  try {
    parsed = text ? (JSON.parse(text) as HttpAnswer['body']) : null;
  } catch {
    // Not JSON: the status alone says enough.
  }
  const code = parsed?.error?.code;
  return { status: res.status, body: parsed, ...(code ? { code } : {}) };
}

async function pool<T>(items: T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let k = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (k < items.length) await fn(items[k++]!);
    }),
  );
}

/** Fails at once, with one clear line, on a dead URL or a secret the gateway does not share. */
async function probe(target: Target, user: User): Promise<void> {
  const r = await request(target, 'GET', '/conversations?limit=1', user.token);
  if (r.status === 0) throw new Error(`${target.baseUrl} does not answer (${r.code}); is the system running? npm start`);
  if (r.status === 401) throw new Error(`${target.baseUrl} refuses the bench's token (401): its JWT_SECRET differs from this one's`);
}

/**
 * Users who have never called are unknown to the chat, and opening a
 * conversation with an unknown username is 404; one call makes them known.
 */
async function makeKnown(target: Target, users: User[], concurrency: number, what: string) {
  const failures: Record<string, number> = {};
  await pool(users, concurrency, async (u) => {
    const r = await request(target, 'GET', '/conversations?limit=1', u.token);
    if (r.status !== 200) bump(failures, r.code ?? String(r.status));
  });
  if (Object.keys(failures).length) target.log?.(`${what}: WARNING GET /conversations failed at setup: ${JSON.stringify(failures)}`);
}

class RateLimitWarning {
  count = 0;
  constructor(
    private readonly log: (line: string) => void,
    private readonly what: string,
  ) {}
  seen(detail: string) {
    if (this.count++ === 0)
      this.log(`\n!!! WARNING: the system answers RATE_LIMITED (${detail}) to ${this.what}: ${SETTINGS_ADVICE}; ` +
        'until then these figures measure the limiter, not capacity !!!\n');
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// ws-open
// ---------------------------------------------------------------------------------------------------------------------

export interface WsOpenOptions {
  /** Messages per second offered, over all users. */
  rate: number;
  /** Pairs of users; each pair is one conversation and two sockets. */
  pairs?: number;
  warmupSeconds?: number;
  windowSeconds?: number;
  /** How long after the last send an ack or a delivery still counts. */
  drainSeconds?: number;
  setupConcurrency?: number;
}

export interface WsOpenResult {
  rate: number;
  pairs: number;
  sockets: number;
  windowSeconds: number;
  sent: number;
  acked: number;
  delivered: number;
  sentPerSecond: number;
  deliveredPerSecond: number;
  /** Messages sent in the window that got an error frame. */
  failed: number;
  /** Error frames in the window, by code. */
  failures: Record<string, number>;
  /** Error frames over the whole run (warm-up and drain too), by code. */
  errors: Record<string, number>;
  /** Sent in the window, no error, and no ack before the drain ended. */
  unacked: number;
  /** Sent in the window, no error, and no message.new on the recipient's socket before the drain ended. */
  undelivered: number;
  rateLimited: number;
  ack: LatencySummary;
  delivery: LatencySummary;
  /** Whole machine's busy CPU per message sent in the window, ms. */
  machineCpuMsPerMessage: number;
  clientCpuMsPerMessage: number;
  skippedClosed: number;
  duplicateAcks: number;
  duplicateDeliveries: number;
  closes: Record<string, number>;
  connectErrors: Record<string, number>;
  setupMs: { usersKnown: number; conversations: number; connect: number };
}

interface Sent {
  t: number;
  sender: User;
  /** Sent inside the measured window. */
  win: boolean;
  ackAt?: number;
  dlvAt?: number;
  failed?: boolean;
}

interface ServerFrame {
  type?: string;
  replyTo?: string;
  payload?: { code?: string; retryAfterMs?: number; message?: { id?: string; clientMessageId?: string | null } };
}

/** About 100 bytes: the size of a typical chat line, and the same body spec-load sends. */
const TEXT = 'hello this is a chat message body of roughly one hundred bytes, used for the end-to-end benchmark!';

/**
 * One open-loop run: 2×pairs fresh users, each pair's conversation opened
 * over REST, both sockets connected, then every user sends `message.send` at
 * rate/(2×pairs) per second from its own timer, started at a random phase so
 * that the sends do not leave in bursts. Latencies and counts cover only the
 * messages sent inside the window; the warm-up lets caches, pools and the
 * JIT settle first, the drain lets the window's last messages arrive.
 */
export async function wsOpenLoop(target: Target, opts: WsOpenOptions): Promise<WsOpenResult> {
  const log = target.log ?? (() => undefined);
  const PAIRS = Math.max(1, Math.floor(opts.pairs ?? 200));
  const RATE = opts.rate;
  const WARMUP = opts.warmupSeconds ?? 5;
  const WINDOW = opts.windowSeconds ?? 10;
  const DRAIN = opts.drainSeconds ?? 3;
  const CONC = Math.max(1, opts.setupConcurrency ?? 16);
  if (!(RATE > 0) || !(WINDOW > 0)) throw new Error('ws-open: the rate and the window must be > 0');
  const wsBase = target.baseUrl.replace(/^http/, 'ws');
  const N = 2 * PAIRS;
  const tag = randomBytes(4).toString('hex');
  // A bound on count on top of the bound on time, so a stalled timer queue cannot flood the server afterwards.
  const MAX_MSGS = Math.ceil(RATE * (WARMUP + WINDOW) * 1.05) + N;

  const perUserPerMinute = Math.ceil((RATE / N) * Math.min(60, WARMUP + WINDOW + 1));
  if (perUserPerMinute > 30)
    log(`ws-open ${RATE}/s: each user sends ~${perUserPerMinute} messages within one 60 s window (SPEC's defaults: 30 sends, 120 frames); ` +
      'the system needs its limits raised or it answers RATE_LIMITED');
  const limited = new RateLimitWarning(log, `ws-open at ${RATE}/s`);

  const users = await mintUsers(target, N, tag);
  const t0 = now();
  await probe(target, users[0]!);
  await makeKnown(target, users, CONC, 'ws-open');
  const tKnown = now();

  const pairs = Array.from({ length: PAIRS }, (_, p) => ({ a: users[2 * p]!, b: users[2 * p + 1]!, conv: undefined as string | undefined }));
  const convErrors: Record<string, number> = {};
  // A opens it, so each user creates at most one conversation.
  await pool(pairs, CONC, async (p) => {
    const r = await request(target, 'GET', `/conversations/with/${encodeURIComponent(p.b.username)}`, p.a.token);
    const id = (r.body?.data as { id?: unknown } | undefined)?.id;
    if ((r.status === 200 || r.status === 201) && typeof id === 'string') p.conv = id;
    else {
      bump(convErrors, r.code ?? String(r.status));
      if (r.code === 'RATE_LIMITED') limited.seen('GET /conversations/with/:username');
    }
  });
  const live = pairs.filter((p): p is { a: User; b: User; conv: string } => p.conv !== undefined);
  if (!live.length) throw new Error(`ws-open: no conversation could be opened (${JSON.stringify(convErrors)})`);
  if (live.length < PAIRS) log(`ws-open: WARNING only ${live.length}/${PAIRS} conversations opened: ${JSON.stringify(convErrors)}`);
  const tConv = now();

  const byId = new Map<string, Sent>();
  // Fallbacks for a server that answers message.new before the ack that names the message's id.
  const byMsgId = new Map<string, Sent>();
  const orphanNew = new Map<string, Array<{ t: number; user: User }>>();
  let measuring = false;
  let stopping = false;
  let mStart = Infinity;
  let mEnd = Infinity;
  let sent = 0;
  let sentTotal = 0;
  let acked = 0;
  let delivered = 0;
  let failed = 0;
  let skippedClosed = 0;
  let dupAck = 0;
  let dupDelivery = 0;
  let rateLimited = 0;
  const ackLat: number[] = [];
  const dlvLat: number[] = [];
  const errors: Record<string, number> = {};
  const failures: Record<string, number> = {};
  const closes: Record<string, number> = {};
  const connectErrors: Record<string, number> = {};

  const onDelivery = (e: Sent, u: User, t: number) => {
    if (u === e.sender) return; // SPEC: the sender's own socket gets a copy too; only the recipient's counts
    if (e.dlvAt !== undefined) {
      dupDelivery++;
      return;
    }
    e.dlvAt = t;
    if (e.win && measuring) {
      delivered++;
      dlvLat.push(t - e.t);
    }
  };
  const onFrame = (u: User, data: WebSocket.RawData) => {
    const t = now();
    let f: ServerFrame;
    try {
      f = JSON.parse(String(data)) as ServerFrame;
    } catch {
      return;
    }
    if (f.type === 'ack') {
      const e = f.replyTo === undefined ? undefined : byId.get(f.replyTo);
      if (!e) return;
      if (e.ackAt !== undefined) {
        dupAck++;
        return;
      }
      e.ackAt = t;
      if (e.win && measuring) {
        acked++;
        ackLat.push(t - e.t);
      }
      const mid = f.payload?.message?.id;
      if (typeof mid === 'string') {
        byMsgId.set(mid, e);
        const early = orphanNew.get(mid);
        if (early) {
          orphanNew.delete(mid);
          for (const o of early) onDelivery(e, o.user, o.t);
        }
      }
    } else if (f.type === 'message.new') {
      const m = f.payload?.message;
      if (!m) return;
      const e = (m.clientMessageId ? byId.get(m.clientMessageId) : undefined) ?? (m.id ? byMsgId.get(m.id) : undefined);
      if (e) onDelivery(e, u, t);
      else if (typeof m.id === 'string') orphanNew.set(m.id, [...(orphanNew.get(m.id) ?? []), { t, user: u }]);
    } else if (f.type === 'error') {
      const code = f.payload?.code ?? 'UNKNOWN';
      bump(errors, code);
      const e = f.replyTo === undefined ? undefined : byId.get(f.replyTo);
      if (e && !e.failed) {
        e.failed = true;
        if (e.win && measuring) {
          failed++;
          bump(failures, code);
        }
      }
      if (code === 'RATE_LIMITED') {
        rateLimited++;
        limited.seen(`message.send, retryAfterMs=${f.payload?.retryAfterMs}`);
      }
    }
  };
  const connect = (u: User) =>
    new Promise<void>((resolve) => {
      const ws = new WebSocket(`${wsBase}/api/chat/ws?token=${encodeURIComponent(u.token)}`, { perMessageDeflate: false, handshakeTimeout: 10_000 });
      let done = false;
      const finish = (ok: boolean, why = '') => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (ok) u.ws = ws;
        else {
          bump(connectErrors, why);
          ws.terminate();
        }
        resolve();
      };
      const timer = setTimeout(() => finish(false, 'no hello within 10 s'), 10_000);
      ws.on('unexpected-response', (_req, res) => finish(false, `HTTP ${res.statusCode}`));
      ws.on('error', (e: Error & { code?: string }) => finish(false, e.code ?? e.message));
      ws.once('message', (d) => {
        let first: ServerFrame | undefined;
        try {
          first = JSON.parse(String(d)) as ServerFrame;
        } catch {
          // Reported below as "not JSON".
        }
        if (first?.type !== 'hello') return finish(false, `first frame ${first?.type ?? 'not JSON'}`);
        finish(true);
        ws.on('message', (d2) => onFrame(u, d2));
      });
      ws.on('close', (code) => {
        if (done && !stopping) bump(closes, String(code));
        finish(false, `closed ${code}`);
      });
    });
  const toConnect = live.flatMap((p) => [p.a, p.b]);
  await pool(toConnect, CONC, connect);
  const tConnected = now();
  const senders = live.filter((p) => p.a.ws && p.b.ws);
  if (!senders.length) throw new Error(`ws-open: no pair has both sockets open (${JSON.stringify(connectErrors)})`);
  if (Object.keys(connectErrors).length) log(`ws-open: WARNING socket failures: ${JSON.stringify(connectErrors)}`);

  const sockets = senders.length * 2;
  const perUserInterval = (sockets / RATE) * 1000;
  let seq = 0;
  const timers: NodeJS.Timeout[] = [];
  const phases: NodeJS.Timeout[] = [];
  const sendOne = (u: User, conv: string) => {
    if (sentTotal >= MAX_MSGS) return;
    const ws = u.ws!;
    if (ws.readyState !== WebSocket.OPEN) {
      if (measuring) skippedClosed++;
      return;
    }
    const id = `${tag}-${seq++}`;
    const t = now();
    const e: Sent = { t, sender: u, win: measuring && t < mEnd };
    byId.set(id, e);
    ws.send(`{"type":"message.send","id":"${id}","payload":{"conversationId":${JSON.stringify(conv)},"content":"${TEXT}","clientMessageId":"${id}"}}`);
    sentTotal++;
    if (e.win) sent++;
  };
  for (const p of senders)
    for (const u of [p.a, p.b])
      phases.push(setTimeout(() => timers.push(setInterval(() => sendOne(u, p.conv), perUserInterval)), Math.random() * perUserInterval));

  try {
    await sleep(WARMUP * 1000);
    const busyStart = machineBusyMs();
    const cpuStart = process.cpuUsage();
    mStart = now();
    mEnd = mStart + WINDOW * 1000;
    measuring = true;
    await sleep(WINDOW * 1000);
    const elapsed = (now() - mStart) / 1000;
    mEnd = Math.min(mEnd, now());
    const cpu = process.cpuUsage(cpuStart);
    const busy = machineBusyMs() - busyStart;
    for (const t of phases) clearTimeout(t);
    for (const t of timers) clearInterval(t);
    await sleep(DRAIN * 1000);
    measuring = false;
    stopping = true;

    let unacked = 0;
    let undelivered = 0;
    for (const e of byId.values())
      if (e.win && !e.failed) {
        if (e.ackAt === undefined) unacked++;
        if (e.dlvAt === undefined) undelivered++;
      }
    return {
      rate: RATE,
      pairs: senders.length,
      sockets,
      windowSeconds: elapsed,
      sent,
      acked,
      delivered,
      sentPerSecond: sent / elapsed,
      deliveredPerSecond: delivered / elapsed,
      failed,
      failures,
      errors,
      unacked,
      undelivered,
      rateLimited,
      ack: summarize(ackLat),
      delivery: summarize(dlvLat),
      machineCpuMsPerMessage: sent ? busy / sent : NaN,
      clientCpuMsPerMessage: sent ? (cpu.user + cpu.system) / 1000 / sent : NaN,
      skippedClosed,
      duplicateAcks: dupAck,
      duplicateDeliveries: dupDelivery,
      closes,
      connectErrors,
      setupMs: { usersKnown: tKnown - t0, conversations: tConv - tKnown, connect: tConnected - tConv },
    };
  } finally {
    stopping = true;
    for (const t of phases) clearTimeout(t);
    for (const t of timers) clearInterval(t);
    for (const u of toConnect) if (u.ws?.readyState === WebSocket.OPEN) u.ws.close(1000);
    await sleep(300);
    for (const u of toConnect) u.ws?.terminate();
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// list-open
// ---------------------------------------------------------------------------------------------------------------------

export interface ListOpenOptions {
  /** Requests per second offered, over all users; one row of the table each. */
  rates: number[];
  users?: number;
  /** Conversations per user (at most users − 1). */
  conversationsPerUser?: number;
  /** REST messages sent into each conversation at setup, so that the list has last messages and unread counts to show. */
  messagesPerConversation?: number;
  warmupSeconds?: number;
  windowSeconds?: number;
  drainSeconds?: number;
  setupConcurrency?: number;
}

export interface ListOpenResult {
  rate: number;
  users: number;
  conversationsPerUser: number;
  windowSeconds: number;
  /** Requests issued in the window. */
  issued: number;
  /** Of those, answered 200. */
  ok: number;
  issuedPerSecond: number;
  okPerSecond: number;
  /** Requests issued in the window that failed, by status and code (0 = no answer, e.g. a timeout). */
  errors: Record<string, number>;
  errorCount: number;
  /** Issued in the window and still unanswered when the drain ended. */
  unfinished: number;
  rateLimited: number;
  latency: LatencySummary;
  machineCpuMsPerRequest: number;
}

/**
 * The pairs of a circulant graph on n users: user i with i+1 … i+⌊c/2⌋, plus
 * the opposite user when c is odd and n even, so every user is in exactly c
 * conversations and creates at most ⌈c/2⌉ of them (the creation limit is per
 * user). c is capped at n − 1; with n and c both odd every user gets c − 1,
 * since n users cannot each have an odd number of partners.
 */
export function circulantPairs(n: number, c: number): Array<[number, number]> {
  const k = Math.min(c, n - 1);
  const pairs: Array<[number, number]> = [];
  for (let d = 1; d <= Math.floor(k / 2); d++) for (let i = 0; i < n; i++) pairs.push([i, (i + d) % n]);
  if (k % 2 === 1 && n % 2 === 0) for (let i = 0; i < n / 2; i++) pairs.push([i, i + n / 2]);
  return pairs;
}

/**
 * Sets up users with their conversations once, then, per rate, offers
 * `GET /conversations` at that rate for warm-up + window: each user asks on
 * its own timer at rate/users per second from a random phase, never waiting
 * for its previous answer. Latency is issue → body read, for the requests
 * issued inside the window.
 */
export async function listOpenLoop(target: Target, opts: ListOpenOptions): Promise<ListOpenResult[]> {
  const log = target.log ?? (() => undefined);
  const USERS = Math.max(2, Math.floor(opts.users ?? 100));
  const CONVS = Math.max(1, Math.floor(opts.conversationsPerUser ?? 20));
  const MESSAGES = Math.max(0, Math.floor(opts.messagesPerConversation ?? 1));
  const WARMUP = opts.warmupSeconds ?? 5;
  const WINDOW = opts.windowSeconds ?? 10;
  const DRAIN = opts.drainSeconds ?? 3;
  const CONC = Math.max(1, opts.setupConcurrency ?? 16);
  if (!opts.rates.length || opts.rates.some((r) => !(r > 0)) || !(WINDOW > 0)) throw new Error('list-open: the rates and the window must be > 0');
  const tag = randomBytes(4).toString('hex');
  const limited = new RateLimitWarning(log, 'list-open');

  const users = await mintUsers(target, USERS, tag);
  await probe(target, users[0]!);
  await makeKnown(target, users, CONC, 'list-open');
  const pairs = circulantPairs(USERS, CONVS);
  const setupErrors: Record<string, number> = {};
  const setupStarted = now();
  await pool(pairs, CONC, async ([a, b]) => {
    const from = users[a]!;
    const r = await request(target, 'GET', `/conversations/with/${encodeURIComponent(users[b]!.username)}`, from.token);
    const id = (r.body?.data as { id?: unknown } | undefined)?.id;
    if (!((r.status === 200 || r.status === 201) && typeof id === 'string')) {
      bump(setupErrors, `open ${r.code ?? r.status}`);
      if (r.code === 'RATE_LIMITED') limited.seen('GET /conversations/with/:username at setup');
      return;
    }
    for (let m = 0; m < MESSAGES; m++) {
      const s = await request(target, 'POST', `/conversations/${id}/messages`, from.token, { content: `list bench ${m}` });
      if (s.status !== 201) {
        bump(setupErrors, `send ${s.code ?? s.status}`);
        if (s.code === 'RATE_LIMITED') limited.seen('POST /conversations/:id/messages at setup');
      }
    }
  });
  if (Object.keys(setupErrors).length) log(`list-open: WARNING setup failures: ${JSON.stringify(setupErrors)}`);
  const perUser = (2 * pairs.length) / USERS;
  log(`list-open: ${USERS} users, ${pairs.length} conversations (${perUser} per user), ${pairs.length * MESSAGES} messages, set up in ${((now() - setupStarted) / 1000).toFixed(1)} s`);
  // Setup's sends leave work behind (events, notifications, cache invalidations); let it finish before measuring.
  await sleep(1000);

  const results: ListOpenResult[] = [];
  for (const rate of opts.rates) {
    results.push(await listAtRate(target, users, perUser, rate, WARMUP, WINDOW, DRAIN, limited));
    if (opts.rates.length > 1) await sleep(1000);
  }
  return results;
}

async function listAtRate(
  target: Target,
  users: User[],
  conversationsPerUser: number,
  rate: number,
  warmup: number,
  window: number,
  drain: number,
  limited: RateLimitWarning,
): Promise<ListOpenResult> {
  const interval = (users.length / rate) * 1000;
  const maxRequests = Math.ceil(rate * (warmup + window) * 1.05) + users.length;
  let measuring = false;
  let mEnd = Infinity;
  let issuedTotal = 0;
  let issued = 0;
  let ok = 0;
  let errorCount = 0;
  let rateLimited = 0;
  const pending = new Set<Promise<void>>();
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  const fire = (u: User) => {
    if (issuedTotal >= maxRequests) return;
    issuedTotal++;
    const t = now();
    const win = measuring && t < mEnd;
    if (win) issued++;
    const p = request(target, 'GET', '/conversations?limit=20', u.token).then((r) => {
      pending.delete(p);
      if (r.status === 429 || r.code === 'RATE_LIMITED') {
        rateLimited++;
        limited.seen('GET /conversations');
      }
      if (!win || !measuring) return;
      if (r.status === 200) {
        ok++;
        latencies.push(now() - t);
      } else {
        errorCount++;
        bump(errors, `${r.status}${r.code ? ` ${r.code}` : ''}`);
      }
    });
    pending.add(p);
  };
  const timers: NodeJS.Timeout[] = [];
  const phases = users.map((u) => setTimeout(() => timers.push(setInterval(() => fire(u), interval)), Math.random() * interval));
  try {
    await sleep(warmup * 1000);
    const busyStart = machineBusyMs();
    const mStart = now();
    mEnd = mStart + window * 1000;
    measuring = true;
    await sleep(window * 1000);
    const elapsed = (now() - mStart) / 1000;
    mEnd = Math.min(mEnd, now());
    const busy = machineBusyMs() - busyStart;
    for (const t of phases) clearTimeout(t);
    for (const t of timers) clearInterval(t);
    await Promise.race([Promise.all(pending), sleep(drain * 1000)]);
    measuring = false;
    return {
      rate,
      users: users.length,
      conversationsPerUser,
      windowSeconds: elapsed,
      issued,
      ok,
      issuedPerSecond: issued / elapsed,
      okPerSecond: ok / elapsed,
      errors,
      errorCount,
      unfinished: issued - ok - errorCount,
      rateLimited,
      latency: summarize(latencies),
      machineCpuMsPerRequest: issued ? busy / issued : NaN,
    };
  } finally {
    for (const t of phases) clearTimeout(t);
    for (const t of timers) clearInterval(t);
    // Late answers would otherwise land in the next rate's window; each request gives up after 10 s, so this ends.
    await Promise.all([...pending]);
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// tables
// ---------------------------------------------------------------------------------------------------------------------

/** A Markdown table with padded columns: readable in a terminal, and pastes into docs/performance.md as it is. */
export function markdownTable(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

const ms = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');
const codes = (o: Record<string, number>) =>
  Object.keys(o).length
    ? Object.entries(o)
        .map(([k, v]) => `${k}×${v}`)
        .join(' ')
    : '-';

export function wsOpenTable(results: WsOpenResult[]): string {
  const head = ['rate', 'sent/s', 'dlv/s', 'sent', 'delivered', 'ack p50', 'p95', 'p99', 'max', 'dlv p50', 'p95', 'p99', 'max',
    'failed', 'unacked', 'undlv', 'cpu ms/msg', 'failures'];
  const rows = results.map((r) => [String(r.rate), r.sentPerSecond.toFixed(0), r.deliveredPerSecond.toFixed(0), String(r.sent), String(r.delivered),
    ms(r.ack.p50), ms(r.ack.p95), ms(r.ack.p99), ms(r.ack.max), ms(r.delivery.p50), ms(r.delivery.p95), ms(r.delivery.p99), ms(r.delivery.max),
    String(r.failed), String(r.unacked), String(r.undelivered), Number.isFinite(r.machineCpuMsPerMessage) ? r.machineCpuMsPerMessage.toFixed(2) : '-', codes(r.failures)]);
  return markdownTable(head, rows);
}

export function listOpenTable(results: ListOpenResult[]): string {
  const head = ['rate', 'issued/s', 'ok/s', 'issued', 'ok', 'p50', 'p95', 'p99', 'max', 'errors', 'unfinished', 'cpu ms/req', 'by status'];
  const rows = results.map((r) => [String(r.rate), r.issuedPerSecond.toFixed(0), r.okPerSecond.toFixed(0), String(r.issued), String(r.ok),
    ms(r.latency.p50), ms(r.latency.p95), ms(r.latency.p99), ms(r.latency.max), String(r.errorCount), String(r.unfinished),
    Number.isFinite(r.machineCpuMsPerRequest) ? r.machineCpuMsPerRequest.toFixed(2) : '-', codes(r.errors)]);
  return markdownTable(head, rows);
}

/**
 * Lines to print under a table for rows that are not what they claim: said on
 * stdout too, so a saved table carries them. Timers that fire late (a
 * CPU-starved bench) offer less than the asked rate, and an open loop is only
 * open while it keeps to its rate.
 */
export function tableNotes(results: Array<{ rate: number; rateLimited: number; offeredPerSecond: number }>): string[] {
  const notes: string[] = [];
  for (const r of results) {
    if (r.rateLimited > 0)
      notes.push(`!!! WARNING at ${r.rate}/s: ${r.rateLimited} RATE_LIMITED answers; ${SETTINGS_ADVICE}; this row is not a capacity figure !!!`);
    // The 1/s of slack: at a low rate a few seconds' window holds few sends, and one less is not a starved bench.
    if (r.offeredPerSecond < 0.95 * r.rate - 1)
      notes.push(`note at ${r.rate}/s: the bench offered only ${r.offeredPerSecond.toFixed(0)}/s (its timers ran late: the machine is short of CPU); ` +
        'the row measures that lower load');
  }
  return notes;
}
