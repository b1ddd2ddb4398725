import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { useStack } from './helpers/stack';
import { conversationPair, eventually, knownUser, type TestUser } from './helpers/client';
import { connect } from './helpers/ws';

/**
 * SPEC 9: the metrics every process exposes, and what their labels may carry.
 * One pass of real traffic (REST, WebSocket with a resume, blocks, presence,
 * preferences, and requests that fail with ids in their paths) gives every
 * histogram and counter samples; then the gateway's /metrics and every
 * service's metrics port are scraped and parsed here, from the text format.
 */

const ctx = useStack();

// ---------------------------------------------------------------------------
// Prometheus text exposition format, parsed by hand.

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Family {
  name: string;
  type: string | undefined;
  help: string | undefined;
  samples: Sample[];
}

type Exposition = Map<string, Family>;

const SUFFIXES: Record<string, string[]> = {
  histogram: ['_bucket', '_sum', '_count'],
  summary: ['_sum', '_count'],
  counter: ['_total'],
};

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < text.length) {
    while (text[i] === ',' || text[i] === ' ') i++;
    if (i >= text.length) break;
    const eq = text.indexOf('=', i);
    if (eq < 0) throw new Error(`malformed labels in: ${line}`);
    const name = text.slice(i, eq).trim();
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name)) throw new Error(`bad label name ${JSON.stringify(name)} in: ${line}`);
    i = eq + 1;
    if (text[i] !== '"') throw new Error(`label value not quoted in: ${line}`);
    i++;
    let value = '';
    for (;;) {
      if (i >= text.length) throw new Error(`unterminated label value in: ${line}`);
      const ch = text[i]!;
      if (ch === '\\') {
        const next = text[i + 1];
        value += next === 'n' ? '\n' : next === '"' ? '"' : next === '\\' ? '\\' : `\\${next ?? ''}`;
        i += 2;
      } else if (ch === '"') {
        i++;
        break;
      } else {
        value += ch;
        i++;
      }
    }
    if (name in labels) throw new Error(`label ${name} repeated in: ${line}`);
    labels[name] = value;
  }
  return labels;
}

/** Splits `name{labels} value [timestamp]`, honouring quotes (a label value may hold `}` or spaces). */
function parseSampleLine(line: string): Sample {
  const brace = line.indexOf('{');
  const space = line.indexOf(' ');
  let name: string;
  let labels: Record<string, string> = {};
  let rest: string;
  if (brace >= 0 && (space < 0 || brace < space)) {
    name = line.slice(0, brace);
    let i = brace + 1;
    let inQuotes = false;
    for (; i < line.length; i++) {
      const ch = line[i];
      if (inQuotes && ch === '\\') i++;
      else if (ch === '"') inQuotes = !inQuotes;
      else if (!inQuotes && ch === '}') break;
    }
    if (i >= line.length) throw new Error(`unterminated label set in: ${line}`);
    labels = parseLabels(line.slice(brace + 1, i), line);
    rest = line.slice(i + 1).trim();
  } else {
    name = line.slice(0, space);
    rest = line.slice(space + 1).trim();
  }
  if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(name)) throw new Error(`bad metric name in: ${line}`);
  const raw = rest.split(/\s+/)[0] ?? '';
  const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
  if (raw === '' || (Number.isNaN(value) && raw !== 'NaN')) throw new Error(`bad sample value in: ${line}`);
  return { name, labels, value };
}

function parseExposition(text: string): Exposition {
  const families: Exposition = new Map();
  const family = (name: string): Family => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { name, type: undefined, help: undefined, samples: [] }));
    return f;
  };
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const meta = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s+(.*))?$/.exec(line);
    if (meta) {
      const f = family(meta[2]!);
      if (meta[1] === 'TYPE') f.type = meta[3]?.trim();
      else f.help = meta[3] ?? '';
      continue;
    }
    if (line.startsWith('#')) continue;
    const sample = parseSampleLine(line);
    // The family is the declared name the sample belongs to: x_bucket/x_sum/x_count to histogram x, …
    let owner = families.get(sample.name);
    if (!owner || owner.type === undefined) {
      for (const [, f] of families) {
        if (f.type && (SUFFIXES[f.type] ?? []).some((s) => `${f.name}${s}` === sample.name)) owner = f;
      }
    }
    (owner ?? family(sample.name)).samples.push(sample);
  }
  return families;
}

async function scrape(url: string): Promise<{ text: string; families: Exposition }> {
  const res = await fetch(url);
  expect(res.status, `GET ${url}`).toBe(200);
  expect(res.headers.get('content-type') ?? '', `content type of ${url}`).toMatch(/^text\/plain/);
  const text = await res.text();
  return { text, families: parseExposition(text) };
}

const withoutBuckets = (labels: Record<string, string>) =>
  JSON.stringify(Object.entries(labels).filter(([k]) => k !== 'le' && k !== 'quantile').sort(([a], [b]) => a.localeCompare(b)));

// ---------------------------------------------------------------------------
// What the labels may be.

/** Label names the application may use (SPEC 9 and the project's own closed sets). */
const APP_LABELS = ['method', 'route', 'status', 'subject', 'endpoint', 'outcome', 'statement', 'cache', 'result', 'class', 'consumer', 'decision'];
/** Labels of the histogram/summary machinery and of prom-client's default process metrics. */
const STRUCTURAL_LABELS = ['le', 'quantile'];
const DEFAULT_METRIC_LABELS = ['version', 'major', 'minor', 'patch', 'type', 'space', 'kind', 'code'];
/**
 * Each registry's default label (`registry.setDefaultLabels({ service })`): one
 * constant value per process, checked below to be the service's own name.
 */
const REGISTRY_DEFAULT_LABELS = ['service'];
const ALLOWED_LABELS = new Set([...APP_LABELS, ...STRUCTURAL_LABELS, ...DEFAULT_METRIC_LABELS, ...REGISTRY_DEFAULT_LABELS]);

const UUID_ANYWHERE = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;
const MAX_SERIES_PER_METRIC = 200;
const SERVICES = ['conversations', 'messages', 'blocks', 'presence', 'notifications'] as const;
type Service = (typeof SERVICES)[number];
const ENDPOINTS = ['gateway', ...SERVICES] as const;
type Endpoint = (typeof ENDPOINTS)[number];

// ---------------------------------------------------------------------------
// The traffic, and what it left in the run.

/** Every id, username and derived token the run created or put in a URL: none may show up in a label. */
const runIds = new Set<string>();
const remember = (...values: Array<string | undefined>) => {
  for (const v of values) if (v) runIds.add(v);
};
const rememberUser = (u: TestUser) => {
  remember(u.id, u.username, u.username.toLowerCase(), Buffer.from(u.id, 'utf8').toString('base64url'));
};
let newMessages = 0;
const scraped = {} as Record<Endpoint, { url: string; text: string; families: Exposition }>;

async function driveTraffic() {
  const { api, stack } = ctx;
  const { alice, bob, conv } = await conversationPair(api);
  const carol = await knownUser(api, 'carol');
  for (const u of [alice, bob, carol]) rememberUser(u);
  remember(conv);
  const withCarol = await api.get(`/conversations/with/${carol.username}`, alice.token);
  expect(withCarol.status).toBe(201);
  const conv2 = withCarol.body.data.id as string;
  remember(conv2);
  // The same pair again: 200, not created.
  expect((await api.get(`/conversations/with/${carol.username}`, alice.token)).status).toBe(200);

  const send = async (from: TestUser, to: string, content: string, clientMessageId?: string, expected = 201) => {
    const res = await api.post(`/conversations/${to}/messages`, from.token, { content, ...(clientMessageId ? { clientMessageId } : {}) });
    expect(res.status, JSON.stringify(res.body)).toBe(expected);
    remember(res.body.data.id, clientMessageId);
    if (expected === 201) newMessages++;
    return res.body.data.id as string;
  };

  // A live socket receives a message sent over REST (delivery latency), and sends one itself.
  const { client: live, hello } = await connect(stack.gateway.port, { token: alice.token });
  expect(hello.payload.resync).toBe(false);
  const m1 = await send(bob, conv, 'hello alice', `cmid-${randomUUID()}`);
  const frame = await live.next((f) => f.type === 'message.new' && f.payload.message.id === m1);
  const seenSeq = frame.seq!;
  const ack = await live.request('message.send', { conversationId: conv, content: 'hi bob, over the socket' });
  expect(ack.type, JSON.stringify(ack)).toBe('ack');
  remember(ack.payload.message.id);
  newMessages++;
  expect((await live.request('typing.start', { conversationId: conv })).type).toBe('ack');
  expect((await live.request('ping')).type).toBe('pong');
  await live.close();

  // Idempotent repeat: 200, and not a new message.
  const cmid = `cmid-${randomUUID()}`;
  const m2 = await send(bob, conv, 'once only', cmid);
  await send(bob, conv, 'once only', cmid, 200);
  // While alice is offline: a notification is considered for her.
  const m3 = await send(carol, conv2, 'hello from carol');

  // Resume with since: the events after the last seq it saw are replayed.
  const { client: resumed, hello: resumedHello } = await connect(stack.gateway.port, { token: alice.token, since: seenSeq });
  expect(resumedHello.payload.replayed).toBeGreaterThan(0);
  await resumed.close();

  // Reads.
  expect((await api.get(`/conversations/${conv}/messages?limit=10`, alice.token)).status).toBe(200);
  expect((await api.get(`/messages/${m2}`, alice.token)).status).toBe(200);
  expect((await api.post(`/conversations/${conv}/read`, alice.token, { messageId: m2 })).status).toBe(200);
  expect((await api.post(`/conversations/${conv2}/read`, alice.token, {})).status).toBe(200);
  expect((await api.get(`/conversations/${conv}`, alice.token)).status).toBe(200);
  expect((await api.get('/conversations/unread-count', bob.token)).status).toBe(200);
  expect((await api.get('/events?since=0&limit=5', alice.token)).status).toBe(200);
  // The list twice (a cache miss, then a hit), once the projection has the messages.
  await eventually(async () => {
    const list = await api.get('/conversations', alice.token);
    expect(list.status).toBe(200);
    expect(list.body.data.map((c: { lastMessage: { id: string } | null }) => c.lastMessage?.id).sort()).toEqual([m2, m3].sort());
  });
  expect((await api.get('/conversations?limit=1', alice.token)).status).toBe(200);
  expect((await api.get('/conversations', bob.token)).status).toBe(200);

  // Blocks.
  expect((await api.post('/blocks', alice.token, { username: carol.username })).status).toBe(201);
  expect((await api.get('/blocks', alice.token)).status).toBe(200);
  expect((await api.get(`/blocks/status/${carol.username}`, alice.token)).status).toBe(200);
  expect((await api.post(`/conversations/${conv2}/messages`, carol.token, { content: 'blocked' })).status).toBe(403);
  expect((await api.del(`/blocks/${carol.username}`, alice.token)).status).toBe(204);

  // Presence and preferences.
  expect((await api.get(`/presence?userIds=${encodeURIComponent(`${bob.id},${carol.id}`)}`, alice.token)).status).toBe(200);
  expect((await api.get('/notifications/preferences', bob.token)).status).toBe(200);
  expect((await api.put('/notifications/preferences', bob.token, { enabled: true, mutedConversationIds: [conv] })).status).toBe(200);

  // Failures with ids and names in the path: their route label must still be a template.
  const ghostConv = randomUUID();
  const ghostMsg = randomUUID();
  const ghostName = `ghost_${randomUUID().slice(0, 8)}`;
  remember(ghostConv, ghostMsg, ghostName);
  expect((await api.get(`/conversations/${ghostConv}`, alice.token)).status).toBe(404);
  expect((await api.get(`/conversations/${ghostConv}/messages`, alice.token)).status).toBe(404);
  expect((await api.get(`/messages/${ghostMsg}`, alice.token)).status).toBe(404);
  expect((await api.get(`/conversations/with/${ghostName}`, alice.token)).status).toBe(404);
  expect((await api.get(`/blocks/status/${ghostName}`, alice.token)).status).toBe(404);
  expect((await api.del(`/blocks/${bob.username}`, alice.token)).status).toBe(404);
  expect((await api.get(`/conversations/${conv}`, carol.token)).status).toBe(404);
  expect((await api.get(`/conversations/${conv}`)).status).toBe(401);
  expect((await api.get(`/no-such-route/${ghostConv}`, alice.token)).status).toBe(404);
  expect((await fetch(`${stack.baseUrl}/api/no-such-page/${ghostMsg}`)).status).toBe(404);
  // A web path: the web chat's index.html, or its 404 when it is not built; either way no label may carry the id.
  expect([200, 404]).toContain((await fetch(`${stack.baseUrl}/no-such-page/${ghostMsg}`)).status);
  expect((await fetch(`${stack.baseUrl}/readyz`)).status).toBe(200);

  // Let the event consumers (projection, notifications) catch up before scraping.
  await eventually(async () => {
    const text = await (await fetch(`http://127.0.0.1:${stack.services.notifications.metricsPort}/metrics`)).text();
    expect(text).toMatch(/^chat_notifications_decisions_total\{[^}]*\} [1-9]/m);
  }, 5000);
}

beforeAll(async () => {
  await driveTraffic();
  const { stack } = ctx;
  const urls: Record<Endpoint, string> = {
    gateway: `${stack.baseUrl}/metrics`,
    ...(Object.fromEntries(SERVICES.map((s) => [s, `http://127.0.0.1:${stack.services[s].metricsPort}/metrics`])) as Record<Service, string>),
  };
  for (const e of ENDPOINTS) scraped[e] = { url: urls[e], ...(await scrape(urls[e])) };
}, 60_000);

// ---------------------------------------------------------------------------

function family(endpoint: Endpoint, name: string): Family {
  const f = scraped[endpoint].families.get(name);
  if (!f || f.type === undefined) throw new Error(`${endpoint} (${scraped[endpoint].url}) does not expose ${name}`);
  return f;
}

/** Asserts a metric exists with the given type and, for each sample, exactly these label names (beside le and the registry's service label). */
function expectMetric(endpoint: Endpoint, name: string, type: string, labelNames: string[], opts: { samples?: boolean } = {}): Family {
  const f = family(endpoint, name);
  expect(f.type, `${endpoint}: type of ${name}`).toBe(type);
  expect(f.help ?? '', `${endpoint}: HELP of ${name}`).not.toBe('');
  if (opts.samples !== false) expect(f.samples.length, `${endpoint}: ${name} has no samples after the traffic`).toBeGreaterThan(0);
  for (const s of f.samples) {
    const names = Object.keys(s.labels).filter((l) => l !== 'le' && l !== 'service').sort();
    expect(names, `${endpoint}: label names of ${s.name}${JSON.stringify(s.labels)}`).toEqual([...labelNames].sort());
  }
  return f;
}

const count = (f: Family, labels: Record<string, string> = {}) =>
  f.samples
    .filter((s) => s.name === `${f.name}_count` && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((n, s) => n + s.value, 0);
const values = (f: Family, label: string) => new Set(f.samples.map((s) => s.labels[label]).filter((v): v is string => v !== undefined));
const total = (f: Family, labels: Record<string, string> = {}) =>
  f.samples.filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((n, s) => n + s.value, 0);

describe('SPEC 9 metrics exist where SPEC says', () => {
  it('gateway: messages, connections, HTTP latency, delivery latency, resumes, drops, NATS request latency', () => {
    const messages = expectMetric('gateway', 'chat_messages_total', 'counter', []);
    // New messages only: the idempotent repeat (200) is not counted.
    expect(total(messages), 'chat_messages_total after the traffic').toBe(newMessages);

    const conns = expectMetric('gateway', 'chat_ws_connections', 'gauge', []);
    expect(total(conns), 'chat_ws_connections once every socket closed').toBe(0);

    const http = expectMetric('gateway', 'http_request_duration_seconds', 'histogram', ['method', 'route', 'status']);
    expect(values(http, 'method')).toEqual(new Set(['GET', 'POST', 'PUT', 'DELETE']));
    expect([...values(http, 'status')].sort()).toEqual(expect.arrayContaining(['200', '201', '204', '401', '403', '404']));
    for (const status of values(http, 'status')) expect(status, 'status label is a 3-digit code').toMatch(/^[1-5]\d\d$/);

    const delivery = expectMetric('gateway', 'chat_delivery_latency_seconds', 'histogram', []);
    expect(count(delivery), 'chat_delivery_latency_seconds observations (a live message.new was written)').toBeGreaterThan(0);

    const resumes = expectMetric('gateway', 'chat_ws_resumes_total', 'counter', ['outcome']);
    for (const outcome of values(resumes, 'outcome')) expect(['replayed', 'resync', 'fresh'], `chat_ws_resumes_total outcome`).toContain(outcome);
    expect(total(resumes, { outcome: 'fresh' }), 'fresh connections').toBeGreaterThanOrEqual(1);
    expect(total(resumes, { outcome: 'replayed' }), 'resumes with since').toBeGreaterThanOrEqual(1);

    // Nothing was dropped in this run (no slow reader): the counter is declared; any sample must be labelled by class.
    expectMetric('gateway', 'chat_ws_dropped_events_total', 'counter', ['class'], { samples: false });

    const nats = expectMetric('gateway', 'chat_nats_request_duration_seconds', 'histogram', ['subject']);
    expect(count(nats)).toBeGreaterThan(0);
    expect([...values(nats, 'subject')]).toEqual(
      expect.arrayContaining(['messages.send', 'messages.list', 'conversations.list', 'blocks.create', 'presence.query-for', 'notifications.put-preferences']),
    );
  });

  it.each(SERVICES)('%s: chat_nats_handler_duration_seconds with samples', (service) => {
    const f = expectMetric(service, 'chat_nats_handler_duration_seconds', 'histogram', ['endpoint', 'outcome']);
    expect(count(f), `${service}: handled requests`).toBeGreaterThan(0);
  });

  it.each(['conversations', 'messages', 'blocks', 'notifications'] as const)('%s: chat_db_query_duration_seconds with samples', (service) => {
    const f = expectMetric(service, 'chat_db_query_duration_seconds', 'histogram', ['statement']);
    expect(count(f), `${service}: timed SQL statements`).toBeGreaterThan(0);
  });

  it.each(['conversations', 'messages'] as const)('%s: chat_cache_requests_total{cache,result}', (service) => {
    const f = expectMetric(service, 'chat_cache_requests_total', 'counter', ['cache', 'result']);
    for (const r of values(f, 'result')) expect(['hit', 'miss', 'error'], `${service}: cache result`).toContain(r);
    expect(total(f), `${service}: cache lookups`).toBeGreaterThan(0);
  });

  it.each(ENDPOINTS)('%s: the default process metrics', (endpoint) => {
    const names = [...scraped[endpoint].families.keys()];
    expect(names, `${endpoint}: process_cpu_user_seconds_total`).toContain('process_cpu_user_seconds_total');
    expect(names, `${endpoint}: process_resident_memory_bytes`).toContain('process_resident_memory_bytes');
    expect(
      names.filter((n) => n.startsWith('nodejs_eventloop_lag')),
      `${endpoint}: nodejs_eventloop_lag_* metrics`,
    ).toEqual(expect.arrayContaining(['nodejs_eventloop_lag_seconds']));
    expect(names, `${endpoint}: nodejs_heap_size_used_bytes`).toContain('nodejs_heap_size_used_bytes');
  });

  it('a metric is only where it belongs: no chat_db_query samples in presence (it has no database), no HTTP histogram in services', () => {
    expect(scraped.presence.families.get('chat_db_query_duration_seconds')?.samples.length ?? 0).toBe(0);
    // Nor an empty family where it cannot apply: the gateway has no database and no NATS handlers, presence no database.
    expect(scraped.presence.text).not.toContain('# TYPE chat_db_query_duration_seconds');
    expect(scraped.gateway.text).not.toContain('# TYPE chat_db_query_duration_seconds');
    expect(scraped.gateway.text).not.toContain('# TYPE chat_nats_handler_duration_seconds');
    for (const s of SERVICES) expect(scraped[s].families.has('http_request_duration_seconds'), `${s} exposes http_request_duration_seconds`).toBe(false);
  });
});

// ---------------------------------------------------------------------------
// The checks, as functions of the scraped expositions (endpoint → families), so
// that the self-test at the end can show each one catches what it looks for.

type Scrape = Record<string, Exposition>;
const samplesOf = (expos: Scrape) =>
  Object.entries(expos).flatMap(([endpoint, families]) => [...families.values()].flatMap((f) => f.samples.map((sample) => ({ endpoint, family: f.name, sample }))));
const labelled = (expos: Scrape) =>
  samplesOf(expos).flatMap(({ endpoint, family: fam, sample }) => Object.entries(sample.labels).map(([label, value]) => ({ endpoint, family: fam, sample, label, value })));

function idOffenders(expos: Scrape, ids: Iterable<string>): string[] {
  const list = [...ids];
  return labelled(expos).flatMap(({ endpoint, sample, label, value }) =>
    list.filter((id) => value.includes(id)).map((id) => `${endpoint}: ${sample.name} label ${label}="${value}" contains run id ${id}`),
  );
}

function uuidOffenders(expos: Scrape): string[] {
  return labelled(expos)
    .filter(({ value }) => UUID_ANYWHERE.test(value))
    .map(({ endpoint, sample, label, value }) => `${endpoint}: ${sample.name} label ${label}="${value}" holds a UUID`);
}

function prefixOffenders(expos: Scrape, prefix: string): string[] {
  return labelled(expos)
    .filter(({ value }) => value.includes(prefix))
    .map(({ endpoint, sample, label, value }) => `${endpoint}: ${sample.name} label ${label}="${value}" holds the run's prefix ${prefix}`);
}

const ROUTE_SEGMENT = /^(:[A-Za-z]+|\*|[a-z][a-z0-9-]*|)$/;
function routeOffenders(expos: Scrape): string[] {
  return labelled(expos)
    .filter(({ label }) => label === 'route')
    .filter(({ value }) => !(value === 'unmatched' || (value.startsWith('/') && value.split('/').slice(1).every((seg) => ROUTE_SEGMENT.test(seg)))))
    .map(({ endpoint, sample, value }) => `${endpoint}: ${sample.name} route="${value}" is not a template (literal segments, :params, *)`);
}

function subjectOffenders(expos: Scrape, ids: Iterable<string>): string[] {
  const list = [...ids];
  const out: string[] = [];
  for (const { endpoint, sample, label, value } of labelled(expos)) {
    if (label !== 'subject') continue;
    if (!/^(conversations|messages|blocks|presence|notifications)\.[a-z][a-z-]*$/.test(value)) out.push(`${endpoint}: ${sample.name} subject="${value}" is not <service>.<verb>`);
    if (/(^|\.)deliver(\.|$)/.test(value)) out.push(`${endpoint}: ${sample.name} subject="${value}" is a delivery subject`);
    for (const id of list) if (value.includes(id)) out.push(`${endpoint}: ${sample.name} subject="${value}" contains ${id}`);
  }
  return out;
}

function labelNameOffenders(expos: Scrape): string[] {
  const out: string[] = [];
  for (const { endpoint, family: fam, label, value } of labelled(expos)) {
    if (!ALLOWED_LABELS.has(label)) out.push(`${endpoint}: metric ${fam} has label "${label}" (value "${value}") outside the allowlist`);
    if (label === 'service' && value !== endpoint) out.push(`${endpoint}: metric ${fam} has service="${value}"`);
  }
  return [...new Set(out)];
}

const MAX_VALUES_PER_LABEL = 60;
function cardinalityOffenders(expos: Scrape): string[] {
  const out: string[] = [];
  for (const [endpoint, families] of Object.entries(expos)) {
    for (const f of families.values()) {
      const combos = new Set(f.samples.map((s) => withoutBuckets(s.labels)));
      if (combos.size >= MAX_SERIES_PER_METRIC) out.push(`${endpoint}: metric ${f.name} has ${combos.size} label combinations (limit ${MAX_SERIES_PER_METRIC})`);
      const perLabel = new Map<string, Set<string>>();
      for (const s of f.samples)
        for (const [k, v] of Object.entries(s.labels)) {
          if (k === 'le' || k === 'quantile') continue;
          if (!perLabel.has(k)) perLabel.set(k, new Set());
          perLabel.get(k)!.add(v);
        }
      for (const [label, vals] of perLabel)
        if (vals.size >= MAX_VALUES_PER_LABEL) out.push(`${endpoint}: metric ${f.name} label ${label} has ${vals.size} values: ${[...vals].slice(0, 5).join(', ')}, …`);
    }
  }
  return out;
}

/** chat_* and http_* histograms in seconds (prom-client's own nodejs_gc_duration_seconds is not a request latency). */
function bucketOffenders(expos: Scrape): { checked: number; offenders: string[] } {
  const offenders: string[] = [];
  let checked = 0;
  for (const [endpoint, families] of Object.entries(expos)) {
    for (const f of families.values()) {
      if (f.type !== 'histogram' || !f.name.endsWith('_seconds') || !/^(chat_|http_)/.test(f.name)) continue;
      const les = [...new Set(f.samples.filter((s) => s.name === `${f.name}_bucket`).map((s) => s.labels.le!))]
        .filter((le) => le !== '+Inf')
        .map(Number)
        .sort((a, b) => a - b);
      if (les.length === 0) continue; // no observation yet: no buckets in the text to judge
      checked++;
      const small = les.filter((le) => le <= 0.1);
      if (small.length < 4) offenders.push(`${endpoint}: ${f.name} has ${small.length} buckets <= 0.1 s (${les.join(', ')})`);
      if (les[0]! > 0.005) offenders.push(`${endpoint}: ${f.name} smallest bucket is ${les[0]} s (> 0.005)`);
    }
  }
  return { checked, offenders };
}

const expositions = (): Scrape => Object.fromEntries(ENDPOINTS.map((e) => [e, scraped[e].families]));

describe('labels carry no ids and stay bounded', () => {
  it('the run created ids worth looking for', () => {
    // Users (id, username, base64url id), two conversations, messages, client message ids, ghost ids.
    expect(runIds.size).toBeGreaterThan(15);
    expect(samplesOf(expositions()).length).toBeGreaterThan(100);
  });

  it('no label value on any endpoint equals or contains an id, username or message id of the run', () => {
    const offenders = idOffenders(expositions(), runIds);
    expect(offenders, offenders.join('\n')).toEqual([]);
  });

  it('no label value looks like a UUID', () => {
    const offenders = uuidOffenders(expositions());
    expect(offenders, offenders.join('\n')).toEqual([]);
  });

  it("no label value carries the run's NATS prefix (labels must not change from one deployment to the next)", () => {
    const offenders = prefixOffenders(expositions(), ctx.stack.config.NATS_PREFIX);
    expect(offenders, offenders.join('\n')).toEqual([]);
  });

  it('route labels are route templates, never concrete paths', () => {
    const routes = values(family('gateway', 'http_request_duration_seconds'), 'route');
    // The templates the traffic went through.
    expect([...routes]).toEqual(
      expect.arrayContaining([
        '/api/chat/conversations',
        '/api/chat/conversations/:conversationId',
        '/api/chat/conversations/:conversationId/messages',
        '/api/chat/conversations/:conversationId/read',
        '/api/chat/conversations/with/:username',
        '/api/chat/messages/:messageId',
        '/api/chat/blocks',
        '/api/chat/blocks/:username',
        '/api/chat/blocks/status/:username',
        '/api/chat/presence',
        '/api/chat/notifications/preferences',
      ]),
    );
    const offenders = routeOffenders(expositions());
    expect(offenders, offenders.join('\n')).toEqual([]);
  });

  it('subject labels are <service>.<verb> of request subjects, never a delivery subject with a user id', () => {
    const offenders = subjectOffenders(expositions(), runIds);
    expect(offenders, offenders.join('\n')).toEqual([]);
  });

  it('every label name is from the allowlist, and the registry label is the process name', () => {
    const offenders = labelNameOffenders(expositions());
    expect(offenders, offenders.join('\n')).toEqual([]);
  });

  it(`every metric has fewer than ${MAX_SERIES_PER_METRIC} label combinations, and each label fewer than ${MAX_VALUES_PER_LABEL} values`, () => {
    const offenders = cardinalityOffenders(expositions());
    expect(offenders, offenders.join('\n')).toEqual([]);
  });
});

describe('latency histograms have buckets for milliseconds', () => {
  it('every chat_*/http_* histogram in seconds: at least 4 buckets at or below 100 ms, the smallest at most 5 ms', () => {
    const { checked, offenders } = bucketOffenders(expositions());
    // At least the SPEC ones: http, delivery, NATS request in the gateway, handler in five services, db in four.
    expect(checked).toBeGreaterThanOrEqual(3 + 5 + 4);
    expect(offenders, offenders.join('\n')).toEqual([]);
  });
});

describe('the checks themselves catch what they look for', () => {
  it('on a crafted exposition with every fault', () => {
    const id = 'user-0123abcd';
    const uuid = '0191d3a2-7b1c-7f00-8a00-0123456789ab';
    const b64 = Buffer.from(id, 'utf8').toString('base64url');
    const bad: Scrape = {
      gateway: parseExposition(
        [
          '# TYPE http_request_duration_seconds histogram',
          `http_request_duration_seconds_bucket{le="0.05",method="GET",route="/api/chat/conversations/${uuid}",status="200",service="gateway"} 1`,
          `http_request_duration_seconds_bucket{le="0.5",method="GET",route="/api/chat/conversations/${uuid}",status="200",service="gateway"} 1`,
          `http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/api/chat/conversations/${uuid}",status="200",service="gateway"} 1`,
          '# TYPE chat_nats_request_duration_seconds histogram',
          `chat_nats_request_duration_seconds_bucket{le="0.1",subject="deliver.${b64}",service="gateway"} 1`,
          '# TYPE chat_x_total counter',
          `chat_x_total{userId="${id}",service="messages"} 1`,
          ...Array.from({ length: MAX_SERIES_PER_METRIC }, (_, i) => `chat_x_total{outcome="o${i}",service="gateway"} 1`),
          '# TYPE chat_y_total counter',
          `chat_y_total{consumer="tfoo-projection",service="gateway"} 1`,
        ].join('\n'),
      ),
    };
    const ids = idOffenders(bad, [id, uuid]).join('\n');
    expect(ids).toContain(`chat_x_total label userId="${id}" contains run id ${id}`);
    expect(ids).toContain(`http_request_duration_seconds_bucket label route="/api/chat/conversations/${uuid}" contains run id ${uuid}`);
    expect(uuidOffenders(bad).join('\n')).toContain('http_request_duration_seconds_bucket label route=');
    expect(prefixOffenders(bad, 'tfoo').join('\n')).toContain('chat_y_total label consumer="tfoo-projection"');
    expect(routeOffenders(bad).join('\n')).toContain(`route="/api/chat/conversations/${uuid}" is not a template`);
    expect(subjectOffenders(bad, [b64]).join('\n')).toMatch(/is not <service>\.<verb>[\s\S]*is a delivery subject[\s\S]*contains/);
    expect(labelNameOffenders(bad).join('\n')).toMatch(/metric chat_x_total has label "userId"[\s\S]*service="messages"/);
    expect(cardinalityOffenders(bad).join('\n')).toMatch(/metric chat_x_total has 201 label combinations[\s\S]*label outcome has 200 values/);
    expect(bucketOffenders(bad).offenders.join('\n')).toMatch(/http_request_duration_seconds has 1 buckets <= 0.1 s[\s\S]*smallest bucket is 0.05 s[\s\S]*chat_nats_request_duration_seconds/);
  });
});

describe('the exposition parser', () => {
  it('reads escaped label values, +Inf and families', () => {
    const f = parseExposition(
      [
        '# HELP x_seconds a histogram',
        '# TYPE x_seconds histogram',
        'x_seconds_bucket{le="0.005",route="/a/\\"b\\"}",service="g"} 3',
        'x_seconds_bucket{le="+Inf",route="/a/\\"b\\"}",service="g"} 4',
        'x_seconds_sum{route="/a/\\"b\\"}",service="g"} 0.25',
        'x_seconds_count{route="/a/\\"b\\"}",service="g"} 4',
        '# TYPE up gauge',
        'up 1 1700000000000',
      ].join('\n'),
    );
    const x = f.get('x_seconds')!;
    expect(x.type).toBe('histogram');
    expect(x.samples).toHaveLength(4);
    expect(x.samples[0]!.labels).toEqual({ le: '0.005', route: '/a/"b"}', service: 'g' });
    expect(count(x)).toBe(4);
    expect(f.get('up')!.samples[0]!.value).toBe(1);
  });
});
