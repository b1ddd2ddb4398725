import { existsSync, readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { defaultMetricsPort } from '@chat/platform';
import { useStack } from './helpers/stack';
import { conversationPair } from './helpers/client';

/**
 * The monitoring configuration in deploy/ (Prometheus scrape jobs and alert
 * rules, the Grafana dashboard and its provisioning) against the metrics the
 * processes export. The first suites read files only; the last starts the
 * system in this process and scrapes it, to prove the list below is real.
 */

type Process = 'gateway' | 'conversations' | 'messages' | 'blocks' | 'presence' | 'notifications';
type MetricType = 'counter' | 'gauge' | 'histogram';

const SERVICES = ['conversations', 'messages', 'blocks', 'presence', 'notifications'] as const;
const PROCESSES: readonly Process[] = ['gateway', ...SERVICES];
const WITH_DATABASE = ['conversations', 'messages', 'blocks', 'notifications'] as const;
const WITH_CACHE = ['conversations', 'messages'] as const;
const WITH_OUTBOX = ['conversations', 'messages', 'blocks'] as const;
const WITH_CONSUMER = ['conversations', 'notifications'] as const;

/** Every metric a dashboard or rule may use: its type and the processes that export it. */
const EXPORTED: Record<string, { type: MetricType; processes: readonly Process[] }> = {
  http_request_duration_seconds: { type: 'histogram', processes: ['gateway'] },
  chat_nats_request_duration_seconds: { type: 'histogram', processes: ['gateway'] },
  chat_ws_connections: { type: 'gauge', processes: ['gateway'] },
  chat_ws_resumes_total: { type: 'counter', processes: ['gateway'] },
  chat_ws_dropped_events_total: { type: 'counter', processes: ['gateway'] },
  chat_delivery_latency_seconds: { type: 'histogram', processes: ['gateway'] },
  chat_messages_total: { type: 'counter', processes: ['gateway'] },
  chat_nats_handler_duration_seconds: { type: 'histogram', processes: SERVICES },
  chat_db_query_duration_seconds: { type: 'histogram', processes: WITH_DATABASE },
  chat_cache_requests_total: { type: 'counter', processes: WITH_CACHE },
  chat_outbox_lag_seconds: { type: 'gauge', processes: WITH_OUTBOX },
  chat_outbox_published_total: { type: 'counter', processes: WITH_OUTBOX },
  chat_jetstream_consumer_pending: { type: 'gauge', processes: WITH_CONSUMER },
  chat_events_dead_lettered_total: { type: 'counter', processes: WITH_CONSUMER },
  chat_notifications_decisions_total: { type: 'counter', processes: ['notifications'] },
  chat_notification_deliveries_total: { type: 'counter', processes: ['notifications'] },
  chat_notification_webhook_duration_seconds: { type: 'histogram', processes: ['notifications'] },
  // Prometheus's own, one series per scrape target; no process exports it.
  up: { type: 'gauge', processes: [] },
};

const HISTOGRAM_SUFFIXES = ['_bucket', '_sum', '_count'] as const;

// ---------------------------------------------------------------------------
// PromQL: the metric names an expression selects.

/** Identifiers that are never metric names when they stand on their own (functions are recognised by their `(`). */
const PROMQL_KEYWORDS = new Set([
  'and', 'or', 'unless', 'atan2', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right',
  'sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile', 'limitk', 'limit_ratio',
  'inf', 'nan', 'start', 'end',
]);

/**
 * The metric names in a PromQL expression (Grafana variables allowed). Drops,
 * in order: string literals, label matchers `{…}`, ranges and subqueries
 * `[…]`, label lists after by/without/on/ignoring/group_left/group_right,
 * and `$variables`; then keeps each identifier that is not a keyword and not
 * followed by `(` (a function or aggregation call). Numbers and durations
 * (`0.95`, `5m`, `1e3`) are consumed whole, so their letters never count.
 */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ')
    .replace(/\{[^{}]*\}/g, ' ')
    .replace(/\[[^[\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)/gi, ' ')
    .replace(/\$\{[^}]*\}|\$\w+/g, ' ');
  const names = new Set<string>();
  for (const m of stripped.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)|(\d[A-Za-z0-9_.]*)/g)) {
    const id = m[1];
    if (id === undefined) continue; // a number or duration
    if (PROMQL_KEYWORDS.has(id.toLowerCase())) continue;
    if (/^\s*\(/.test(stripped.slice(m.index + id.length))) continue; // a call
    names.add(id);
  }
  return [...names];
}

/** Why a referenced name is not an exported series, or undefined when it is one. */
function problemWith(name: string): string | undefined {
  const exported = EXPORTED[name];
  if (exported) return exported.type === 'histogram' ? `${name} is a histogram: select its _bucket, _sum or _count series` : undefined;
  for (const suffix of HISTOGRAM_SUFFIXES) {
    if (name.endsWith(suffix) && EXPORTED[name.slice(0, -suffix.length)]?.type === 'histogram') return undefined;
  }
  return `${name} is not an exported metric`;
}

/** Parentheses, brackets and braces outside string literals close in order. */
function balanced(expr: string): boolean {
  const stack: string[] = [];
  const pairs: Record<string, string> = { ')': '(', ']': '[', '}': '{' };
  for (const ch of expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')) {
    if (ch === '(' || ch === '[' || ch === '{') stack.push(ch);
    else if (ch in pairs && stack.pop() !== pairs[ch]) return false;
  }
  return stack.length === 0;
}

// ---------------------------------------------------------------------------
// The files.

const file = (path: string) => new URL(`../deploy/${path}`, import.meta.url);
const readYaml = (path: string): any => parse(readFileSync(file(path), 'utf8'));

interface Rule {
  alert?: string;
  record?: string;
  expr?: unknown;
  for?: unknown;
  labels?: Record<string, unknown>;
  annotations?: Record<string, unknown>;
}

const prometheus = readYaml('prometheus/prometheus.yml');
const rules: Rule[] = (readYaml('prometheus/alerts.yml').groups as Array<{ name: string; rules: Rule[] }>).flatMap((g) => g.rules);
const alerts = rules.filter((r) => r.alert !== undefined);
const dashboardText = readFileSync(file('grafana/dashboards/chat.json'), 'utf8');
const dashboard = JSON.parse(dashboardText);

interface Panel {
  id?: unknown;
  type?: string;
  title?: string;
  datasource?: unknown;
  targets?: Array<{ refId?: string; expr?: unknown; datasource?: unknown }>;
  panels?: Panel[];
}
/** Every panel, with those inside (collapsed) rows. */
const panels: Panel[] = (dashboard.panels as Panel[]).flatMap((p) => [p, ...(p.panels ?? [])]);

/** Every PromQL expression in the dashboard and the rules, named for messages. */
const expressions: Array<{ where: string; expr: string }> = [
  ...rules.map((r) => ({ where: `alerts.yml ${r.alert ?? r.record}`, expr: String(r.expr ?? '') })),
  ...panels.flatMap((p) =>
    (p.targets ?? []).map((t) => ({ where: `chat.json panel ${String(p.id)} "${p.title}" ${t.refId}`, expr: String(t.expr ?? '') })),
  ),
];

// ---------------------------------------------------------------------------

describe('metricNames (the PromQL tokenizer)', () => {
  it('keeps metric names and drops functions, keywords, labels, strings, ranges and variables', () => {
    expect(
      metricNames(
        'histogram_quantile(0.95, sum by (route, le) (rate(http_request_duration_seconds_bucket{status=~"5..", route!="up"}[$__rate_interval]))) > 0.1',
      ),
    ).toEqual(['http_request_duration_seconds_bucket']);
    expect(metricNames('sum(rate(a_total[5m])) by (job) / on (job) group_left (instance) sum without (le) (b) offset 1h')).toEqual(['a_total', 'b']);
    expect(metricNames('x unless x offset 15m or vector(0) and bool_metric > bool 1e3')).toEqual(['x', 'bool_metric']);
    expect(metricNames('max_over_time(rate(c_total[5m])[1h:1m]) @ start() and ${var} == 1')).toEqual(['c_total']);
  });

  it('tells exported series from names that are not', () => {
    expect(problemWith('chat_delivery_latency_seconds_bucket')).toBeUndefined();
    expect(problemWith('chat_messages_total')).toBeUndefined();
    expect(problemWith('up')).toBeUndefined();
    expect(problemWith('chat_delivery_latency_seconds')).toMatch(/histogram/);
    expect(problemWith('chat_messages_total_count')).toMatch(/not an exported/);
    expect(problemWith('chat_message_total')).toMatch(/not an exported/);
  });
});

describe('dashboard and rules use only exported metrics', () => {
  it('finds expressions to check', () => {
    expect(rules.length).toBeGreaterThan(0);
    expect(expressions.filter((e) => e.where.startsWith('chat.json')).length).toBeGreaterThan(0);
  });

  it('every expression is balanced and selects at least one metric', () => {
    const bad = expressions.filter((e) => !balanced(e.expr) || metricNames(e.expr).length === 0).map((e) => `${e.where}: ${e.expr}`);
    expect(bad).toEqual([]);
  });

  it('every metric name in every expression is exported (histograms through _bucket/_sum/_count)', () => {
    const problems = expressions.flatMap((e) =>
      metricNames(e.expr)
        .map(problemWith)
        .filter((p): p is string => p !== undefined)
        .map((p) => `${e.where}: ${p}`),
    );
    expect(problems).toEqual([]);
  });
});

describe('alert rules', () => {
  it('every alert has expr, for, severity, summary, description and a one-sentence runbook', () => {
    expect(alerts.length).toBeGreaterThan(0);
    for (const a of alerts) {
      const name = a.alert!;
      expect(typeof a.expr === 'string' && a.expr.trim() !== '', `${name}: expr`).toBe(true);
      expect(String(a.for ?? ''), `${name}: for`).toMatch(/^(\d+(ms|s|m|h|d|w|y))+$/);
      expect(['critical', 'warning', 'info'], `${name}: labels.severity`).toContain(a.labels?.severity);
      for (const key of ['summary', 'description', 'runbook']) {
        const text = a.annotations?.[key];
        expect(typeof text === 'string' && text.trim() !== '', `${name}: annotations.${key}`).toBe(true);
      }
      expect(String(a.annotations?.runbook), `${name}: runbook is a short sentence`).toMatch(/^.{20,300}\.$/s);
    }
  });

  it('alert names are unique', () => {
    const names = alerts.map((a) => a.alert);
    expect(names).toEqual([...new Set(names)]);
  });

  it('covers errors, latency, outbox, consumers, dead letters, NATS, targets down and the webhook', () => {
    const used = new Set(alerts.flatMap((a) => metricNames(String(a.expr))));
    for (const name of [
      'http_request_duration_seconds_count',
      'http_request_duration_seconds_bucket',
      'chat_delivery_latency_seconds_bucket',
      'chat_outbox_lag_seconds',
      'chat_jetstream_consumer_pending',
      'chat_events_dead_lettered_total',
      'chat_nats_request_duration_seconds_bucket',
      'up',
      'chat_notification_deliveries_total',
    ]) {
      expect(used, name).toContain(name);
    }
  });
});

describe('Prometheus scrape config', () => {
  /** The gateway serves /metrics on PORT (default 8080); each service on its METRICS_PORT. */
  const expectedPort = (job: Process) => (job === 'gateway' ? 8080 : defaultMetricsPort[job]);

  it('scrapes every 15 s and loads alerts.yml from beside it', () => {
    expect(prometheus.global?.scrape_interval).toBe('15s');
    expect(prometheus.rule_files).toEqual(['alerts.yml']);
    expect(existsSync(file('prometheus/alerts.yml'))).toBe(true);
  });

  it('has one job per process, each at its compose hostname and the right port', () => {
    const jobs = prometheus.scrape_configs as Array<{ job_name: string; metrics_path?: string; static_configs: Array<{ targets: string[] }> }>;
    expect(jobs.map((j) => j.job_name).sort()).toEqual([...PROCESSES].sort());
    for (const j of jobs) {
      const job = j.job_name as Process;
      expect(j.metrics_path ?? '/metrics', job).toBe('/metrics');
      expect(j.static_configs.flatMap((s) => s.targets), job).toEqual([`${job}:${expectedPort(job)}`]);
    }
  });
});

describe('Grafana dashboard and provisioning', () => {
  const prometheusDatasource = { type: 'prometheus', uid: 'prometheus' };

  it('is the chat-overview dashboard, with no import-time ${DS_…} inputs', () => {
    expect(dashboard.uid).toBe('chat-overview');
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboardText).not.toMatch(/\$\{DS_/);
    expect(dashboard.__inputs).toBeUndefined();
  });

  it('every panel has a unique id and at least one target with an expr, on the prometheus datasource', () => {
    const ids = panels.map((p) => p.id);
    expect(ids.every((id) => Number.isInteger(id))).toBe(true);
    expect(ids).toEqual([...new Set(ids)]);
    for (const p of panels.filter((p) => p.type !== 'row')) {
      const label = `panel ${String(p.id)} "${p.title}"`;
      expect(p.datasource, label).toEqual(prometheusDatasource);
      const targets = p.targets ?? [];
      expect(targets.some((t) => typeof t.expr === 'string' && t.expr.trim() !== ''), `${label}: a target with an expr`).toBe(true);
      const refIds = targets.map((t) => t.refId);
      expect(refIds, `${label}: refIds`).toEqual([...new Set(refIds)]);
      for (const t of targets) expect(t.datasource ?? prometheusDatasource, `${label} ${t.refId}`).toEqual(prometheusDatasource);
    }
  });

  it('provisions the datasource under that uid and the dashboards folder Grafana reads', () => {
    const ds = readYaml('grafana/provisioning/datasources/prometheus.yml');
    expect(ds.datasources).toEqual([expect.objectContaining({ uid: 'prometheus', type: 'prometheus', url: 'http://prometheus:9090' })]);
    const providers = readYaml('grafana/provisioning/dashboards/chat.yml').providers;
    expect(providers).toEqual([expect.objectContaining({ type: 'file', options: expect.objectContaining({ path: '/var/lib/grafana/dashboards' }) })]);
  });
});

describe('the exported list is real: every process exposes its metrics', () => {
  const ctx = useStack();

  beforeAll(async () => {
    // One REST send, so the request, NATS and SQL histograms have samples.
    const { alice, conv } = await conversationPair(ctx.api);
    const sent = await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'metrics' });
    expect(sent.status, JSON.stringify(sent.body)).toBe(201);
  });

  const scrape = async (process: Process) => {
    const { stack } = ctx;
    const url = process === 'gateway' ? `${stack.baseUrl}/metrics` : `http://127.0.0.1:${stack.services[process].metricsPort}/metrics`;
    const res = await fetch(url);
    expect(res.status, url).toBe(200);
    return res.text();
  };

  it.each(PROCESSES)('%s', async (process) => {
    const text = await scrape(process);
    const expected = Object.entries(EXPORTED).filter(([, m]) => m.processes.includes(process));
    expect(expected.length).toBeGreaterThan(0);
    const missing = expected.filter(([name, m]) => !new RegExp(`^# TYPE ${name} ${m.type}$`, 'm').test(text)).map(([name, m]) => `${name} (${m.type})`);
    expect(missing, `${process} does not expose`).toEqual([]);
    if (process === 'gateway') {
      // The send above was counted and timed.
      expect(text).toMatch(/^chat_messages_total(\{[^}]*\})? [1-9]/m);
      expect(text).toMatch(/^http_request_duration_seconds_count\{[^}]*\} [1-9]/m);
    }
  });

});
