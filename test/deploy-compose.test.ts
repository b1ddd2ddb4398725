import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { COMMITTED_JWT_SECRETS, ConfigSchema, defaultMetricsPort, natsConnectOptions } from '@chat/platform';
import { connect as natsConnect } from '@nats-io/transport-node';
import { freePort } from './helpers/processes';

/**
 * The container files — Dockerfile, docker-compose.yml, the image's
 * entrypoint and health check, the GitHub workflow — checked without Docker:
 * parsed, cross-checked against the code (services/, ConfigSchema, the
 * metrics ports, Prometheus' targets), and the two scripts run for real where
 * that starts nothing.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const at = (...parts: string[]) => join(ROOT, ...parts);
const read = (...parts: string[]) => readFileSync(at(...parts), 'utf8');

/** The processes, as the repository has them: every services/<name> with a src/main.ts. */
const CHAT = readdirSync(at('services'))
  .filter((name) => existsSync(at('services', name, 'src', 'main.ts')))
  .sort();
const SERVICES = CHAT.filter((name) => name !== 'gateway');
const BACKING = ['nats', 'postgres', 'redis'];
const NATS_CONF = 'deploy/nats/nats.conf';
const NATS_CONF_IN_CONTAINER = '/etc/nats/nats.conf';
const HEALTHCHECK = 'deploy/docker/healthcheck.mjs';
const ENTRYPOINT = 'deploy/docker/entrypoint.sh';

type Dict = Record<string, unknown>;
const isDict = (v: unknown): v is Dict => typeof v === 'object' && v !== null && !Array.isArray(v);
function dict(v: unknown, what: string): Dict {
  if (!isDict(v)) throw new Error(`${what}: expected a mapping, got ${JSON.stringify(v)}`);
  return v;
}
function list(v: unknown): unknown[] {
  if (v === undefined || v === null) return [];
  return Array.isArray(v) ? v : [v];
}
/** `command:` / `test:` as words, whichever form (string or list) the file uses. */
function words(v: unknown): string[] {
  if (typeof v === 'string') return v.split(/\s+/).filter(Boolean);
  return list(v).map(String);
}

// ---------------------------------------------------------------- compose

const compose = dict(parseYaml(read('docker-compose.yml'), { merge: true }), 'docker-compose.yml');
const services = dict(compose.services, 'services');
const svc = (name: string) => dict(services[name], `services.${name}`);
const natsConf = read(NATS_CONF);

/** Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}` and `$$`, here with no variable set: the defaults a fresh checkout runs with. */
function interpolate(value: string, env: Record<string, string> = {}): string {
  return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (m, name?: string, op?: string, def?: string, bare?: string) => {
    if (m === '$$') return '$';
    const key = name ?? bare!;
    const v = env[key];
    if (op === ':-') return v === undefined || v === '' ? (def ?? '') : v;
    if (op === '-') return v === undefined ? (def ?? '') : v;
    return v ?? '';
  });
}

/** A service's environment (map or KEY=VALUE list), interpolated with `env` as the shell's (none: a fresh checkout's defaults). */
function environment(name: string, env: Record<string, string> = {}): Record<string, string> {
  const raw = svc(name).environment;
  const out: Record<string, string> = {};
  if (Array.isArray(raw)) {
    for (const item of raw.map(String)) {
      const eq = item.indexOf('=');
      out[eq < 0 ? item : item.slice(0, eq)] = eq < 0 ? '' : interpolate(item.slice(eq + 1), env);
    }
  } else if (isDict(raw)) {
    for (const [k, v] of Object.entries(raw)) out[k] = v === null ? '' : interpolate(String(v), env);
  }
  return out;
}

/** Published ports as { published, target } (short "[ip:]host:container[/proto]" or long syntax). */
function ports(name: string): Array<{ published: number; target: number }> {
  return list(svc(name).ports).map((p) => {
    if (isDict(p)) return { published: Number(interpolate(String(p.published))), target: Number(p.target) };
    const parts = interpolate(String(p)).replace(/\/(tcp|udp)$/, '').split(':');
    const target = Number(parts.at(-1));
    return { published: parts.length > 1 ? Number(parts.at(-2)) : NaN, target };
  });
}

/** Bind mounts as absolute host path → container path. */
function binds(name: string): Array<{ source: string; target: string }> {
  const out: Array<{ source: string; target: string }> = [];
  for (const v of list(svc(name).volumes)) {
    if (isDict(v)) {
      if (v.type === 'bind') out.push({ source: resolve(ROOT, String(v.source)), target: String(v.target) });
      continue;
    }
    const [source = '', target = ''] = interpolate(String(v)).split(':');
    if (source.startsWith('.') || source.startsWith('/')) out.push({ source: resolve(ROOT, source), target });
  }
  return out;
}

function dependsOn(name: string): Record<string, string | undefined> {
  const raw = svc(name).depends_on;
  if (Array.isArray(raw)) return Object.fromEntries(raw.map((d) => [String(d), undefined]));
  return Object.fromEntries(Object.entries(raw === undefined ? {} : dict(raw, `${name}.depends_on`)).map(([k, v]) => [k, isDict(v) ? String(v.condition) : undefined]));
}

function seconds(duration: unknown): number {
  const units: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 0.001, us: 1e-6 };
  let total = 0;
  for (const [, n, unit] of String(duration).matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us)/g)) total += Number(n) * units[unit!]!;
  return total;
}

// ---------------------------------------------------------------- Dockerfile

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

/** Instructions in order; `\` continues a line, comments and blank lines are skipped. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = '';
  let start = 0;
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (pending === '' && (/^\s*#/.test(line) || line.trim() === '')) return;
    if (pending !== '' && /^\s*#/.test(line)) return; // a comment inside a continued instruction
    if (pending === '') start = i + 1;
    if (/\\\s*$/.test(line)) {
      pending += `${line.replace(/\\\s*$/, '')} `;
      return;
    }
    const full = `${pending}${line}`.trim();
    pending = '';
    const m = /^(\S+)\s*(.*)$/.exec(full)!;
    out.push({ keyword: m[1]!.toUpperCase(), args: m[2]!.replace(/\s+/g, ' ').trim(), line: start });
  });
  if (pending !== '') throw new Error('Dockerfile ends inside a continued line');
  return out;
}

const dockerfile = parseDockerfile(read('Dockerfile'));
/** Stages: each FROM and the instructions up to the next. */
const stages: Array<{ from: string; name: string | undefined; body: Instruction[] }> = [];
for (const ins of dockerfile) {
  if (ins.keyword === 'FROM') {
    const m = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args)!;
    stages.push({ from: m[1]!, name: m[2], body: [] });
  } else {
    stages.at(-1)?.body.push(ins);
  }
}
const finalStage = stages.at(-1)!;
const of = (body: Instruction[], keyword: string) => body.filter((i) => i.keyword === keyword);
/** A COPY/ADD's sources (flags and the destination left out); JSON form too. */
function copySources(args: string): { from: string | undefined; sources: string[] } {
  let tokens: string[];
  const flags = [...args.matchAll(/--(\w+)=(\S+)/g)];
  const rest = args.replace(/--\w+=\S+\s*/g, '').trim();
  if (rest.startsWith('[')) tokens = JSON.parse(rest) as string[];
  else tokens = rest.split(' ');
  return { from: flags.find((f) => f[1] === 'from')?.[2], sources: tokens.slice(0, -1) };
}
function exposedPorts(): Set<number> {
  const set = new Set<number>();
  for (const ins of of(finalStage.body, 'EXPOSE'))
    for (const token of ins.args.split(' ')) {
      const [lo, hi = lo] = token.replace(/\/(tcp|udp)$/, '').split('-').map(Number);
      for (let p = lo!; p <= hi!; p++) set.add(p);
    }
  return set;
}

// ---------------------------------------------------------------- scripts

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a command asynchronously (a test's own HTTP server must keep answering meanwhile) with only the env given plus PATH. */
function run(cmd: string, args: string[], env: Record<string, string>, timeoutMs = 10_000): Promise<Run> {
  const started = Date.now();
  return new Promise((done) => {
    execFile(cmd, args, { cwd: ROOT, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      done({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}
const healthcheck = (env: Record<string, string>, ...args: string[]) => run(process.execPath, [HEALTHCHECK, ...args], env);

function listen(handler: Parameters<typeof createServer>[1]): Promise<{ server: Server; port: number }> {
  const server = createServer(handler);
  return new Promise((done) => server.listen(0, '127.0.0.1', () => done({ server, port: (server.address() as AddressInfo).port })));
}
const close = (server: Server) => new Promise<void>((done) => server.close(() => done()));

/** The port each process's /healthz is on, from the code: PORT's default for the gateway, defaultMetricsPort otherwise. */
function defaultHealthPort(name: string): number {
  if (name === 'gateway') return ConfigSchema.shape.PORT.parse(undefined);
  return defaultMetricsPort[name as keyof typeof defaultMetricsPort];
}

// ================================================================= tests

describe('the processes', () => {
  it('are the six services under services/, each with src/main.ts', () => {
    expect(CHAT).toEqual(['blocks', 'conversations', 'gateway', 'messages', 'notifications', 'presence']);
    expect(Object.keys(defaultMetricsPort).sort()).toEqual(SERVICES);
  });
});

describe('docker-compose.yml', () => {
  it('is Compose spec (no version key) with every chat process and nats, postgres, redis, jaeger, prometheus, grafana', () => {
    expect(compose).not.toHaveProperty('version');
    for (const name of [...CHAT, ...BACKING, 'jaeger', 'prometheus', 'grafana']) expect(Object.keys(services), name).toContain(name);
  });

  it('runs every chat process from one image built from the Dockerfile, with SERVICE naming it', () => {
    const first = svc(CHAT[0]!);
    expect(first.image).toBe('chat:local');
    expect(first.build).toBeDefined();
    const context = isDict(first.build) ? String(first.build.context) : String(first.build);
    expect(existsSync(resolve(ROOT, context, 'Dockerfile'))).toBe(true);
    for (const name of CHAT) {
      expect(svc(name).image, name).toBe(first.image);
      expect(svc(name).build, name).toEqual(first.build);
      expect(environment(name).SERVICE, name).toBe(name);
      expect(svc(name).command, `${name} chooses its process by SERVICE alone`).toBeUndefined();
      expect(svc(name).entrypoint, name).toBeUndefined();
    }
  });

  it('gives every chat process a health check that runs the image\u2019s script', () => {
    for (const name of CHAT) {
      const hc = dict(svc(name).healthcheck, `${name}.healthcheck`);
      expect(hc.disable, name).not.toBe(true);
      expect(words(hc.test).join(' '), name).toContain(HEALTHCHECK);
      expect(seconds(hc.timeout), name).toBeGreaterThan(2); // the script gives up after 2 s by itself
    }
  });

  it('starts every chat process after nats, postgres and redis are healthy, and the gateway after the five services too', () => {
    for (const name of CHAT) {
      const deps = dependsOn(name);
      for (const b of BACKING) expect(deps[b], `${name} → ${b}`).toBe('service_healthy');
    }
    const gateway = dependsOn('gateway');
    for (const s of SERVICES) expect(gateway[s], `gateway → ${s}`).toBe('service_healthy');
    for (const s of SERVICES) expect(Object.keys(dependsOn(s)), `${s} waits for no chat process`).not.toContain('gateway');
    for (const b of BACKING) expect(svc(b).healthcheck, `${b} has a health check to wait for`).toBeDefined();
  });

  it('publishes the gateway on 127.0.0.1 only, unless GATEWAY_BIND_ADDRESS says otherwise', () => {
    const published = (env: Record<string, string>) => list(svc('gateway').ports).map((p) => interpolate(String(p), env));
    expect(published({})).toEqual(['127.0.0.1:8080:8080']);
    expect(published({ GATEWAY_BIND_ADDRESS: '0.0.0.0' })).toEqual(['0.0.0.0:8080:8080']);
  });

  it('publishes the gateway on 8080 and gives every chat process longer to stop than its drain', () => {
    expect(ports('gateway')).toContainEqual({ published: 8080, target: 8080 });
    // exitOnSignals forces the exit after graceMs; Compose's SIGKILL must come later.
    const graceMs = Number(/graceMs = ([\d_]+)/.exec(read('packages/platform/src/lifecycle.ts'))![1]!.replace(/_/g, ''));
    for (const name of CHAT) expect(seconds(svc(name).stop_grace_period), name).toBeGreaterThan(graceMs / 1000);
  });

  it('runs NATS with JetStream and a working health check, Redis with an append-only file, PostgreSQL 16 and Redis 7', () => {
    const nats = svc('nats');
    // JetStream and the monitoring port are set in the mounted config file (below, run for real).
    expect(words(nats.command)).toEqual(['-c', NATS_CONF_IN_CONTAINER]);
    expect(natsConf).toMatch(/^jetstream\s*\{[^}]*store_dir:\s*\/data/m);
    expect(natsConf).toMatch(/^http:\s*(0\.0\.0\.0:)?8222$/m);
    expect(String(nats.image)).toMatch(/^nats:2\.10(\.\d+)*-alpine/); // the scratch image has no wget
    expect(words(dict(nats.healthcheck, 'nats.healthcheck').test).join(' ')).toMatch(/wget .*:8222\/healthz/);
    expect(words(svc('redis').command).join(' ')).toContain('--appendonly yes');
    expect(String(svc('postgres').image)).toMatch(/^postgres:16(\.\d+)*(-|$)/);
    expect(String(svc('redis').image)).toMatch(/^redis:7(\.\d+)*(-|$)/);
    for (const b of BACKING) expect(list(svc(b).volumes).length, `${b} keeps its data in a volume`).toBeGreaterThan(0);
  });

  it('mounts deploy/nats/nats.conf into NATS, which demands the user and password every chat process carries (one shared user)', () => {
    expect(list(svc('nats').volumes)).toContain(`./${NATS_CONF}:${NATS_CONF_IN_CONTAINER}:ro`);
    expect(natsConf).toMatch(/^authorization\s*\{/m);
    expect(natsConf).not.toMatch(/no_auth_user/);
    const server = environment('nats');
    expect(server.NATS_USER).toBeTruthy();
    expect(server.NATS_PASSWORD).toBeTruthy();
    for (const name of CHAT) {
      const env = environment(name);
      expect([env.NATS_USER, env.NATS_PASSWORD], name).toEqual([server.NATS_USER, server.NATS_PASSWORD]);
      // An operator's own password reaches the server and every process alike.
      expect(environment(name, { NATS_PASSWORD: 'own-pw' }).NATS_PASSWORD).toBe(environment('nats', { NATS_PASSWORD: 'own-pw' }).NATS_PASSWORD);
    }
  });

  it('that NATS configuration, run by the real nats-server with compose\u2019s values, refuses a client without credentials or with a wrong password and accepts the chat processes\u2019 (JetStream on)', async () => {
    const env = environment('gateway');
    const store = mkdtempSync(join(tmpdir(), 'chat-compose-nats-'));
    const [port, http] = [await freePort(), await freePort()];
    // Only the listen addresses (flags override the file) and the store (a copy with its path swapped) move; the rest is the file compose mounts.
    const conf = join(store, 'nats.conf');
    writeFileSync(conf, natsConf.replace(/store_dir:\s*\/data/, `store_dir: ${JSON.stringify(join(store, 'js'))}`));
    const child = spawn('/usr/sbin/nats-server', ['-c', conf, '-a', '127.0.0.1', '-p', String(port), '-m', String(http)], {
      env: { ...process.env, ...environment('nats') },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    try {
      let log = '';
      await new Promise<void>((ok, fail) => {
        child.stderr.on('data', (d) => ((log += String(d)), log.includes('Server is ready') && ok()));
        child.once('exit', (code) => fail(new Error(`nats-server exited with ${code}: ${log}`)));
      });
      const servers = `127.0.0.1:${port}`;
      await expect(natsConnect({ servers, reconnect: false })).rejects.toThrow(/Authorization Violation/);
      await expect(natsConnect({ servers, reconnect: false, user: env.NATS_USER, pass: 'wrong' })).rejects.toThrow(/Authorization Violation/);
      const nc = await natsConnect({ ...natsConnectOptions({ ...env, NATS_URL: `nats://${servers}` }), reconnect: false });
      const info = await nc.request('$JS.API.INFO', undefined, { timeout: 3000 });
      expect(info.json<{ type?: string }>().type).toBe('io.nats.jetstream.api.v1.account_info_response');
      await nc.close();
    } finally {
      child.kill('SIGKILL');
      rmSync(store, { recursive: true, force: true });
    }
  });

  it('protects PostgreSQL with a password (no trust auth) that DATABASE_URL carries', () => {
    const pg = environment('postgres');
    expect(pg.POSTGRES_HOST_AUTH_METHOD).toBeUndefined();
    expect(String(dict(svc('postgres').environment, 'postgres.environment').POSTGRES_PASSWORD)).toMatch(/^\$\{POSTGRES_PASSWORD:-.+\}$/);
    expect(pg.POSTGRES_DB).toBe('chat');
    for (const name of CHAT) {
      const url = new URL(environment(name).DATABASE_URL!);
      expect(url.hostname, name).toBe('postgres');
      expect(decodeURIComponent(url.password), name).toBe(pg.POSTGRES_PASSWORD);
      expect(decodeURIComponent(url.username), name).toBe(pg.POSTGRES_USER ?? 'postgres');
      expect(url.pathname, name).toBe(`/${pg.POSTGRES_DB}`);
    }
  });

  it('sets on chat containers only settings ConfigSchema knows (or SERVICE, NODE_ENV, OTEL_*)', () => {
    const known = new Set([...Object.keys(ConfigSchema.shape), 'SERVICE', 'NODE_ENV']);
    for (const name of CHAT)
      for (const key of Object.keys(environment(name))) expect(known.has(key) || key.startsWith('OTEL_'), `${name}: ${key}`).toBe(true);
  });

  it('runs visibly as development by default (a committed JWT secret), and as production only with a JWT secret and NATS password of one\u2019s own; pointing at the compose hosts', () => {
    const own = randomBytes(48).toString('base64');
    for (const name of CHAT) {
      const env = environment(name);
      // The image sets NODE_ENV=production; compose overrides it unless the operator sets it.
      expect(env.NODE_ENV, `${name}: development unless NODE_ENV is set`).toBe('development');
      const parsed = ConfigSchema.safeParse(env);
      expect(parsed.success, `${name}: ${JSON.stringify(parsed.error?.issues)}`).toBe(true);
      expect(env.JWT_SECRET, `${name}: a JWT secret is set`).toBeTruthy();
      expect(COMMITTED_JWT_SECRETS, `${name}: the default secret is known to be committed (the gateway warns of it)`).toContain(env.JWT_SECRET);
      // NODE_ENV=production with compose's own secret: refused at start, naming JWT_SECRET.
      const refused = ConfigSchema.safeParse(environment(name, { NODE_ENV: 'production' }));
      expect(refused.success, `${name}: production with the committed secret`).toBe(false);
      expect(refused.error?.issues.map((i) => i.path.join('.'))).toContain('JWT_SECRET');
      // With compose's committed NATS password it is refused too; production takes a password of one's own as well.
      const ownSecretOnly = ConfigSchema.safeParse(environment(name, { NODE_ENV: 'production', JWT_SECRET: own }));
      expect(ownSecretOnly.error?.issues.map((i) => i.path.join('.'))).toEqual(['NATS_PASSWORD']);
      const natsPassword = randomBytes(32).toString('base64');
      const prod = environment(name, { NODE_ENV: 'production', JWT_SECRET: own, NATS_PASSWORD: natsPassword });
      expect([prod.NODE_ENV, prod.JWT_SECRET, prod.NATS_PASSWORD]).toEqual(['production', own, natsPassword]);
      const accepted = ConfigSchema.safeParse(prod);
      expect(accepted.success, `${name} in production: ${JSON.stringify(accepted.error?.issues)}`).toBe(true);
      expect(new URL(env.REDIS_URL!).hostname).toBe('redis');
      expect(new URL(env.NATS_URL!).hostname).toBe('nats');
      const otel = new URL(env.OTEL_EXPORTER_OTLP_ENDPOINT!);
      expect([otel.hostname, otel.port]).toEqual(['jaeger', '4318']);
    }
    expect(new Set(CHAT.map((n) => environment(n).JWT_SECRET)).size, 'one secret for all').toBe(1);
    expect(environment('jaeger').COLLECTOR_OTLP_ENABLED).toBe('true');
    expect(ports('jaeger').map((p) => p.target)).toContain(16686);
  });

  it('mounts deploy/prometheus into Prometheus and the Grafana provisioning and dashboards into Grafana', () => {
    expect(binds('prometheus')).toContainEqual({ source: at('deploy', 'prometheus'), target: '/etc/prometheus' });
    expect(existsSync(at('deploy', 'prometheus', 'prometheus.yml'))).toBe(true);
    expect(existsSync(at('deploy', 'prometheus', 'alerts.yml'))).toBe(true);
    const grafana = binds('grafana');
    expect(grafana).toContainEqual({ source: at('deploy', 'grafana', 'provisioning'), target: '/etc/grafana/provisioning' });
    expect(grafana).toContainEqual({ source: at('deploy', 'grafana', 'dashboards'), target: '/var/lib/grafana/dashboards' });
    for (const b of [...binds('prometheus'), ...grafana]) expect(statSync(b.source).isDirectory(), b.source).toBe(true);
    expect(ports('grafana').map((p) => p.target)).toContain(3000);
    // The provisioned datasource and the dashboards provider name compose hostnames and the mount point.
    expect(read('deploy/grafana/provisioning/datasources/prometheus.yml')).toContain('http://prometheus:9090');
    expect(read('deploy/grafana/provisioning/dashboards/chat.yml')).toContain('/var/lib/grafana/dashboards');
  });

  it('health-checks each process on the port its code listens on by default, which Prometheus scrapes and the image exposes', async () => {
    const scrape = dict(parseYaml(read('deploy/prometheus/prometheus.yml')), 'prometheus.yml');
    const targets = new Map<string, string[]>();
    for (const job of list(scrape.scrape_configs).map((j) => dict(j, 'scrape_config')))
      targets.set(String(job.job_name), list(job.static_configs).flatMap((c) => list(dict(c, 'static_config').targets).map(String)));
    const exposed = exposedPorts();
    for (const name of CHAT) {
      const env = environment(name);
      const result = await healthcheck(env, '--print-url');
      expect(result.code, `${name}: ${result.stderr}`).toBe(0);
      const url = new URL(result.stdout.trim());
      const port = defaultHealthPort(name);
      expect([url.hostname, Number(url.port), url.pathname], name).toEqual(['127.0.0.1', port, '/healthz']);
      expect(targets.get(name), name).toEqual([`${name}:${port}`]);
      expect(exposed.has(port), `EXPOSE ${port}`).toBe(true);
      if (name === 'gateway') expect(ports('gateway')).toContainEqual({ published: 8080, target: port });
    }
  });
});

describe('Dockerfile', () => {
  it('has a deps stage and a runtime stage on node:20-bookworm-slim', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(finalStage.from).toBe('node:20-bookworm-slim');
    // Every stage on the same Node: the base image, or an earlier stage built on it.
    for (const [i, s] of stages.entries())
      expect([`node:20-bookworm-slim`, ...stages.slice(0, i).map((p) => p.name)], `stage ${s.name}`).toContain(s.from);
  });

  it('installs production dependencies only, in an earlier stage, after copying every workspace package.json', () => {
    const deps = stages.find((s) => s.body.some((i) => i.keyword === 'RUN' && /\bnpm ci\b.*--omit=dev/.test(i.args)));
    expect(deps, 'a stage running npm ci --omit=dev').toBeDefined();
    expect(deps).not.toBe(finalStage);
    const ci = deps!.body.findIndex((i) => i.keyword === 'RUN' && /\bnpm ci\b/.test(i.args));
    const copied = deps!.body.slice(0, ci).filter((i) => i.keyword === 'COPY').flatMap((i) => copySources(i.args).sources);
    const workspaces = ['packages', 'services'].flatMap((dir) => readdirSync(at(dir)).map((n) => `${dir}/${n}`)).filter((w) => existsSync(at(w, 'package.json')));
    for (const file of ['package.json', 'package-lock.json', ...workspaces.map((w) => `${w}/package.json`)]) expect(copied, file).toContain(file);
    // With --omit=dev, tsx (which runs the TypeScript) must be a production dependency.
    const pkg = JSON.parse(read('package.json')) as { dependencies?: Record<string, string> };
    expect(pkg.dependencies).toHaveProperty('tsx');
    expect(finalStage.body.some((i) => i.keyword === 'COPY' && copySources(i.args).from === deps!.name)).toBe(true);
  });

  it('builds the web chat in its own stage and ships only its dist', () => {
    const web = stages.find((s) => s.body.some((i) => i.keyword === 'RUN' && /npm run build -w @chat\/web/.test(i.args)));
    expect(web, 'a stage building @chat/web').toBeDefined();
    expect(web).not.toBe(finalStage);
    const shipped = finalStage.body.filter((i) => i.keyword === 'COPY' && copySources(i.args).from === web!.name).flatMap((i) => copySources(i.args).sources);
    expect(shipped).toEqual(['/app/packages/web/dist']);
  });

  it('copies only what runs, all of which exists', () => {
    for (const ins of of(finalStage.body, 'COPY')) {
      const { from, sources } = copySources(ins.args);
      if (from) continue;
      for (const src of sources) {
        expect(src, `line ${ins.line}: no wholesale copy`).not.toMatch(/^\.\/?$/);
        expect(src, `line ${ins.line}`).not.toMatch(/^(test|docs|scripts|\.git|node_modules)(\/|$)/);
        expect(existsSync(at(src)), `line ${ins.line}: ${src}`).toBe(true);
      }
    }
  });

  it('runs as a non-root user with NODE_ENV=production', () => {
    const users = of(finalStage.body, 'USER');
    expect(users.length).toBeGreaterThan(0);
    const user = users.at(-1)!.args.split(':')[0];
    expect(['root', '0', '']).not.toContain(user);
    expect(of(finalStage.body, 'ENV').map((i) => i.args).join(' ')).toMatch(/\bNODE_ENV[= ]production\b/);
  });

  it('checks health with the script, exposes 8080 and 9101-9105, and starts through the entrypoint script', () => {
    const hc = of(finalStage.body, 'HEALTHCHECK');
    expect(hc).toHaveLength(1);
    expect(hc[0]!.args).toContain(HEALTHCHECK);
    expect([...exposedPorts()].sort()).toEqual([8080, 9101, 9102, 9103, 9104, 9105]);
    const start = [...of(finalStage.body, 'ENTRYPOINT'), ...of(finalStage.body, 'CMD')].map((i) => i.args).join(' ');
    expect(start).toContain(ENTRYPOINT);
    expect(existsSync(at(HEALTHCHECK))).toBe(true);
  });

  it('leaves dependencies, git, tests, docs and env files out of the build context', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    for (const pattern of ['node_modules', '.git', 'coverage', 'test', 'docs', '*.log', '.env']) expect(ignored.some((l) => l.includes(pattern)), pattern).toBe(true);
    expect(ignored, 'the entrypoint and health check stay in the context').toContain('!deploy/docker');
  });
});

describe('deploy/docker/entrypoint.sh', () => {
  const script = read(ENTRYPOINT);

  it('knows exactly the six services, and each one\u2019s main.ts exists', () => {
    const m = /^SERVICES="([^"]*)"/m.exec(script);
    expect(m, 'a SERVICES="…" line').not.toBeNull();
    const names = m![1]!.split(/\s+/).filter(Boolean);
    expect([...names].sort()).toEqual(CHAT);
    for (const name of names) expect(existsSync(at('services', name, 'src', 'main.ts')), name).toBe(true);
    expect(script).toMatch(/^exec node --import tsx "?services\/\$\{?SERVICE\}?\/src\/main\.ts"?/m);
  });

  it('refuses an unknown SERVICE with a clear message, starting nothing', async () => {
    const result = await run('sh', [ENTRYPOINT], { SERVICE: 'nope' });
    expect(result.code).not.toBe(0);
    expect(result.code).not.toBeNull();
    expect(result.stderr).toContain('"nope"');
    for (const name of CHAT) expect(result.stderr).toContain(name);
  });

  it('refuses an unknown service given as the argument', async () => {
    const result = await run('sh', [ENTRYPOINT, 'nope'], {});
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('unknown service "nope"');
  });
});

describe('deploy/docker/healthcheck.mjs', () => {
  let ok: { server: Server; port: number };
  let failing: { server: Server; port: number };
  let silent: { server: Server; port: number };
  let closedPort = 0;

  beforeAll(async () => {
    ok = await listen((req, res) => res.writeHead(req.url === '/healthz' ? 200 : 404).end(req.url === '/healthz' ? 'ok' : 'not found'));
    failing = await listen((_req, res) => res.writeHead(500).end());
    silent = await listen(() => {}); // accepts, never answers
    const gone = await listen(() => {});
    closedPort = gone.port;
    await close(gone.server);
  });
  afterAll(async () => {
    silent.server.closeAllConnections();
    await Promise.all([close(ok.server), close(failing.server), close(silent.server)]);
  });

  it('exits 0 when the gateway answers /healthz on PORT', async () => {
    const result = await healthcheck({ SERVICE: 'gateway', PORT: String(ok.port) });
    expect(result.code, result.stderr).toBe(0);
  });

  it('exits 0 when a service answers /healthz on METRICS_PORT', async () => {
    const result = await healthcheck({ SERVICE: 'notifications', METRICS_PORT: String(ok.port), PORT: String(closedPort) });
    expect(result.code, result.stderr).toBe(0);
  });

  it('exits non-zero when nothing listens', async () => {
    const result = await healthcheck({ SERVICE: 'gateway', PORT: String(closedPort) });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(`127.0.0.1:${closedPort}`);
  });

  it('exits non-zero on a status other than 200', async () => {
    const result = await healthcheck({ SERVICE: 'gateway', PORT: String(failing.port) });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('500');
  });

  it('gives up after 2 s on a process that does not answer', async () => {
    const result = await healthcheck({ SERVICE: 'messages', METRICS_PORT: String(silent.port) });
    expect(result.code).not.toBe(0);
    expect(result.ms).toBeGreaterThanOrEqual(1900);
    expect(result.ms).toBeLessThan(5000);
  });

  it('exits non-zero for an unknown SERVICE or a port it cannot know', async () => {
    expect((await healthcheck({ SERVICE: 'nope' })).code).not.toBe(0);
    expect((await healthcheck({ SERVICE: 'presence', METRICS_PORT: '0' })).code).not.toBe(0);
  });
});

describe('.github/workflows/ci.yml', () => {
  const wf = dict(parseYaml(read('.github/workflows/ci.yml')), 'ci.yml');
  // YAML 1.1 readers take a bare `on` for true; the yaml package (1.2) keeps the key.
  const on = wf.on ?? wf.true;
  const jobs = Object.values(dict(wf.jobs, 'jobs')).map((j) => dict(j, 'job'));
  const job = jobs.find((j) => isDict(j.services))!;
  const steps = list(job?.steps).map((s) => dict(s, 'step'));
  const runs = steps.map((s) => (typeof s.run === 'string' ? s.run : ''));

  it('runs on push and pull_request, on ubuntu-latest with Node 20 and the npm cache', () => {
    const triggers = isDict(on) ? Object.keys(on) : list(on).map(String);
    expect(triggers).toEqual(expect.arrayContaining(['push', 'pull_request']));
    expect(job, 'a job with service containers').toBeDefined();
    expect(job.runs_on ?? job['runs-on']).toBe('ubuntu-latest');
    const node = steps.find((s) => String(s.uses).startsWith('actions/setup-node@'));
    const withs = dict(node?.with, 'setup-node with');
    expect(String(withs['node-version'])).toMatch(/^20(\.|$)/);
    expect(withs.cache).toBe('npm');
  });

  it('has PostgreSQL 16 and Redis 7 service containers with health checks on the default ports', () => {
    const containers = dict(job.services, 'services');
    const pg = dict(containers.postgres, 'postgres');
    const redis = dict(containers.redis, 'redis');
    expect(String(pg.image)).toMatch(/^postgres:16/);
    expect(String(redis.image)).toMatch(/^redis:7/);
    expect(list(pg.ports).map(String)).toContain('5432:5432');
    expect(list(redis.ports).map(String)).toContain('6379:6379');
    expect(String(pg.options)).toContain('--health-cmd');
    expect(String(redis.options)).toContain('--health-cmd');
  });

  it('starts NATS with JetStream and waits for it, then runs npm ci and npm test in order, like .ci/run', () => {
    const nats = runs.findIndex((r) => /docker run\b.*\bnats:2\.10\b.*(^|\s)-js(\s|$)/m.test(r));
    expect(nats, 'a step that starts NATS with -js').toBeGreaterThanOrEqual(0);
    expect(runs[nats]).toMatch(/healthz|4222/); // and waits for it
    const npm = runs.flatMap((r) => r.split('\n')).map((l) => l.trim()).filter((l) => /^npm (ci|test)\b/.test(l));
    const local = read('.ci/run').split('\n').map((l) => l.trim()).filter((l) => /^npm /.test(l));
    expect(npm).toEqual(['npm ci', 'npm test']);
    expect(npm).toEqual(local);
    expect(nats).toBeLessThan(runs.findIndex((r) => r.trim() === 'npm test'));
  });
});
