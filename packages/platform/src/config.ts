import { readFileSync, existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { PrefixSchema } from '@chat/contracts';
import { invalidIpEntry } from './ip';
import { COMMITTED_JWT_SECRETS, COMMITTED_NATS_PASSWORDS, webhookSecretProblem } from './secrets';
import { NATS_AUTH_SETTINGS, natsSettingsIssues } from './nats-auth';

export const DEV_JWT_SECRET = 'dev-only-secret-change-me-0123456789';
export { COMMITTED_JWT_SECRETS, COMMITTED_NATS_PASSWORDS, webhookSecretProblem } from './secrets';

/** Where `npm run build` leaves the web chat in this repository: found from this file, so any working directory works. */
export const DEFAULT_WEB_DIR = fileURLToPath(new URL('../../web/dist', import.meta.url));

const bool = z
  .union([z.boolean(), z.enum(['true', 'false', '1', '0', 'yes', 'no'])])
  .transform((v) => v === true || v === 'true' || v === '1' || v === 'yes');
const port = z.coerce.number().int().min(0).max(65535);
const csv = z
  .union([z.string(), z.array(z.string())])
  .transform((v) => (Array.isArray(v) ? v : v.split(',')).map((s) => s.trim()).filter(Boolean));
const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));
const url = (protocols: string[]) =>
  z.string().refine((v) => {
    try {
      return protocols.includes(new URL(v).protocol);
    } catch {
      return false;
    }
  }, `must be a ${protocols.join(' or ')} URL`);

/** Every setting of every process. Env overrides config/config.yaml, which overrides these defaults. */
export const ConfigSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
    PORT: port.default(8080),
    DATABASE_URL: url(['postgres:', 'postgresql:']).default('postgres://postgres@127.0.0.1:5432/chat'),
    REDIS_URL: url(['redis:', 'rediss:']).default('redis://127.0.0.1:6379'),
    NATS_URL: z.string().min(1).default('nats://127.0.0.1:4222'),
    NATS_PREFIX: PrefixSchema.default('chat'),
    /** NATS credentials and TLS (nats-auth.ts); unset: an open bus, as in development. */
    ...NATS_AUTH_SETTINGS,
    REDIS_PREFIX: z.string().min(1).max(64).default('chat:'),
    JWT_SECRET: z.string().default(DEV_JWT_SECRET),
    JWT_JWKS_URL: optionalString.pipe(url(['http:', 'https:']).optional()),
    JWT_ISSUER: optionalString,
    JWT_AUDIENCE: optionalString,
    /** After fetching the JWKS, an unknown `kid` waits this long before the next refetch (bounds key-probing load on the IdP). */
    JWT_JWKS_COOLDOWN_MS: z.coerce.number().int().min(0).max(3_600_000).default(30_000),
    /** While the IdP fails, its last key set keeps verifying for this long past its 10-minute freshness; then 503. 0: never past it. */
    JWT_JWKS_MAX_STALE_S: z.coerce.number().int().min(0).max(7 * 86_400).default(21_600),
    CORS_ORIGINS: csv.default(['http://localhost:3000', 'http://localhost:8080']),
    NOTIFICATION_WEBHOOK_URL: optionalString.pipe(url(['http:', 'https:']).optional()),
    /** Standard Webhooks signing secret (`whsec_` + base64); unset: webhook POSTs are unsigned. */
    NOTIFICATION_WEBHOOK_SECRET: optionalString,
    IP_DENYLIST: csv.default([]),
    TRUST_PROXY: bool.default(false),
    TLS_CERT_FILE: optionalString,
    TLS_KEY_FILE: optionalString,
    /** The web chat's build (index.html, assets/) that the gateway serves at `/`; a relative path is taken from the working directory at start. */
    WEB_DIR: z
      .string()
      .trim()
      .min(1)
      .transform((v) => resolve(v))
      .default(DEFAULT_WEB_DIR),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** OTLP/HTTP collector (Jaeger: http://jaeger:4318); spans go to `<endpoint>/v1/traces`. Unset: tracing off, the SDK never loaded. */
    OTEL_EXPORTER_OTLP_ENDPOINT: optionalString.pipe(url(['http:', 'https:']).optional()),
    RATE_LIMIT_SEND_PER_MIN: z.coerce.number().int().positive().default(30),
    RATE_LIMIT_CREATE_CONVERSATION_PER_MIN: z.coerce.number().int().positive().default(10),
    /** Reactions added or removed per user per minute, REST and WebSocket together (SPEC 10). */
    RATE_LIMIT_REACTIONS_PER_MIN: z.coerce.number().int().positive().default(60),
    /** How long after sending a message its sender may edit it; 0: no limit (SPEC 10). */
    MESSAGE_EDIT_WINDOW_S: z.coerce.number().int().min(0).default(900),
    RATE_LIMIT_WS_FRAMES_PER_MIN: z.coerce.number().int().positive().default(120),
    /** More failed authentications than this from one IP within a minute bans the IP... */
    AUTH_FAILURES_PER_MIN: z.coerce.number().int().positive().default(20),
    /** ...for this long. */
    AUTH_BAN_MS: z.coerce.number().int().min(1000).default(15 * 60_000),
    /** Open WebSockets one user may hold across all gateway instances; past it the upgrade is refused with 429. */
    WS_MAX_CONNECTIONS_PER_USER: z.coerce.number().int().positive().default(20),
    /** Open WebSockets from one client IP across all instances: high, since a NAT'd office or carrier-grade NAT shares one address. */
    WS_MAX_CONNECTIONS_PER_IP: z.coerce.number().int().positive().default(2000),
    /** WebSocket upgrade attempts per client IP per minute (counted before authentication). */
    RATE_LIMIT_WS_UPGRADES_PER_MIN: z.coerce.number().int().positive().default(1200),
    /** POST /ws-ticket calls per client IP per minute. */
    RATE_LIMIT_WS_TICKETS_PER_MIN: z.coerce.number().int().positive().default(1200),
    /** Lifetime of a single-use WebSocket ticket from POST /ws-ticket. */
    WS_TICKET_TTL_MS: z.coerce.number().int().min(1000).max(300_000).default(30_000),
    /** Prometheus port of a non-gateway service; 0 picks a free port. Defaults per service (9101-9105). */
    METRICS_PORT: port.optional(),
    /** Replicas of the JetStream streams (events, dead letters): 3 on a 3-node NATS cluster; at most the cluster's size. */
    JETSTREAM_REPLICAS: z.coerce.number().int().min(1).max(5).default(1),
    /** How long the gateway (and a service calling another) waits for a reply before 503. */
    REQUEST_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(5000),
    DB_POOL_MAX: z.coerce.number().int().min(1).max(200).default(10),
    /** Sends one gateway lets wait on the messages service at once; past it a send is refused at once (503 with a retry hint). */
    SEND_MAX_IN_FLIGHT: z.coerce.number().int().min(1).max(100_000).default(256),
    /** A connection not refreshed by its gateway's heartbeat for this long counts as gone (a gateway died). */
    PRESENCE_TTL_MS: z.coerce.number().int().min(1000).max(600_000).default(45_000),
    /** How often the presence service looks for connections whose TTL ran out. */
    PRESENCE_SWEEP_MS: z.coerce.number().int().min(100).max(60_000).default(5_000),
    /** The WebSocket ping interval; a connection that misses two pings is dropped. */
    WS_HEARTBEAT_MS: z.coerce.number().int().min(100).max(300_000).default(25_000),
    /** Past this many unsent bytes on a socket, ephemeral events to it are dropped (and counted). */
    WS_SOFT_BUFFER_BYTES: z.coerce.number().int().min(1024).default(256 * 1024),
    /** Past this many unsent bytes a socket is closed with 1013; the client resumes with since. */
    WS_HARD_BUFFER_BYTES: z.coerce.number().int().min(1024).default(1024 * 1024),
    /** Durable per-user events are kept this long; older `since` values get resync. */
    EVENTS_RETENTION_DAYS: z.coerce.number().int().min(1).max(365).default(7),
    /** First webhook retry delay; each retry doubles it (with jitter) up to NOTIFICATION_RETRY_MAX_MS. */
    NOTIFICATION_RETRY_BASE_MS: z.coerce.number().int().min(10).default(1000),
    NOTIFICATION_RETRY_MAX_MS: z.coerce.number().int().min(10).default(60_000),
    /** A notification still undelivered this long after it was made is given up (SPEC: at least 10 minutes). */
    NOTIFICATION_GIVE_UP_AFTER_MS: z.coerce.number().int().min(1000).default(30 * 60_000),
    /** How long one webhook POST may take before it counts as failed. */
    NOTIFICATION_WEBHOOK_TIMEOUT_MS: z.coerce.number().int().min(100).default(5000),
  })
  .superRefine((c, ctx) => {
    if (!c.JWT_JWKS_URL) {
      if (Buffer.byteLength(c.JWT_SECRET, 'utf8') < 32)
        ctx.addIssue({ code: 'custom', path: ['JWT_SECRET'], message: 'must be at least 32 bytes' });
      // Anyone who has read the repository can sign with these, for any user.
      if (c.NODE_ENV === 'production' && COMMITTED_JWT_SECRETS.includes(c.JWT_SECRET))
        ctx.addIssue({
          code: 'custom',
          path: ['JWT_SECRET'],
          message: 'this value is committed to the repository (a development or example secret) and is refused when NODE_ENV=production; set your own, e.g. $(openssl rand -base64 48)',
        });
    }
    if (c.NODE_ENV === 'production' && c.NATS_PASSWORD && COMMITTED_NATS_PASSWORDS.includes(c.NATS_PASSWORD))
      ctx.addIssue({
        code: 'custom',
        path: ['NATS_PASSWORD'],
        message: 'this value is committed to the repository (a development default) and is refused when NODE_ENV=production; set your own, e.g. pw-$(openssl rand -hex 24) (nats-server reads a password that looks like a number or a size as one)',
      });
    // In production a token key set or a notification must not travel where anyone on the path can read or change it.
    if (c.NODE_ENV === 'production') {
      for (const key of ['JWT_JWKS_URL', 'NOTIFICATION_WEBHOOK_URL'] as const)
        if (c[key] && new URL(c[key]).protocol !== 'https:') ctx.addIssue({ code: 'custom', path: [key], message: 'must be an https: URL when NODE_ENV=production' });
    }
    if (c.NOTIFICATION_WEBHOOK_SECRET) {
      const problem = webhookSecretProblem(c.NOTIFICATION_WEBHOOK_SECRET);
      if (problem) ctx.addIssue({ code: 'custom', path: ['NOTIFICATION_WEBHOOK_SECRET'], message: problem });
    }
    for (const entry of c.IP_DENYLIST) {
      const problem = invalidIpEntry(entry);
      if (problem) ctx.addIssue({ code: 'custom', path: ['IP_DENYLIST'], message: problem });
    }
    for (const origin of c.CORS_ORIGINS) {
      if (origin.includes('*') || !isOrigin(origin))
        ctx.addIssue({ code: 'custom', path: ['CORS_ORIGINS'], message: `"${origin}" is not an exact origin (scheme://host[:port], no path, no wildcard)` });
    }
    for (const issue of natsSettingsIssues(c)) ctx.addIssue({ code: 'custom', path: [issue.path], message: issue.message });
    if (Boolean(c.TLS_CERT_FILE) !== Boolean(c.TLS_KEY_FILE))
      ctx.addIssue({ code: 'custom', path: ['TLS_CERT_FILE'], message: 'TLS_CERT_FILE and TLS_KEY_FILE must be set together' });
  });
export type Config = z.infer<typeof ConfigSchema>;

/** An origin as a browser sends it: the URL's own origin, nothing more (no path, no trailing slash). */
function isOrigin(value: string): boolean {
  try {
    return new URL(value).origin === value;
  } catch {
    return false;
  }
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const DEFAULT_CONFIG_FILE = fileURLToPath(new URL('../../../config/config.yaml', import.meta.url));

function readYaml(file: string): Record<string, unknown> {
  if (!existsSync(file)) return {};
  const parsed: unknown = parseYaml(readFileSync(file, 'utf8'));
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError(`${file}: expected a mapping of settings`);
  return parsed as Record<string, unknown>;
}

/**
 * The only reader of process.env. Unknown keys are ignored; a bad value
 * throws a ConfigError naming the variable.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<Record<keyof Config, unknown>> = {}): Config {
  const file = env.CONFIG_FILE ?? DEFAULT_CONFIG_FILE;
  const fromFile = readYaml(file);
  const merged: Record<string, unknown> = { ...fromFile };
  for (const key of Object.keys(ConfigSchema.shape)) {
    const v = env[key];
    if (v !== undefined && v !== '') merged[key] = v;
  }
  Object.assign(merged, overrides);
  const result = ConfigSchema.safeParse(merged);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `${i.path.join('.') || 'config'}: ${i.message}`);
    throw new ConfigError(`invalid configuration: ${lines.join('; ')}`);
  }
  return result.data;
}

export const defaultMetricsPort = {
  conversations: 9101,
  messages: 9102,
  blocks: 9103,
  presence: 9104,
  notifications: 9105,
} as const;
