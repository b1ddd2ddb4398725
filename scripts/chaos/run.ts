import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { eventStreamName } from '@chat/contracts';
import { DEV_JWT_SECRET, ensureDatabase } from '@chat/platform';
import { Fleet, SERVICES, type Proc } from './fleet';
import { OwnPostgres, OwnRedis, removeDir, runDir, startNatsCluster, until, type NatsCluster } from './infra';
import { Phase, Traffic } from './traffic';
import { Verifier, type PhaseResult } from './verify';

/**
 * A chaos run: the whole system with replicas of every service and several
 * gateways on a 3-node NATS cluster (streams at 3 replicas), under steady
 * traffic, one fault at a time; after each, the checks of verify.ts.
 */

export interface ChaosOptions {
  /** Fault ids to run (see `faultIds`), in the order given; all by default. */
  faults?: string[];
  /** Sends per second, every client together. */
  rate?: number;
  /** REST reads per second. */
  restRate?: number;
  pairs?: number;
  /** Conversations whose receiver never connects (their messages are notified instead of delivered). */
  offlinePairs?: number;
  /** How long each fault's window of traffic lasts, at least (it lasts until the fault is over and a few seconds more). */
  phaseMs?: number;
  replicas?: number | Partial<Record<(typeof SERVICES)[number], number>>;
  gateways?: number;
  /** A PostgreSQL and a Redis of the run's own (needed for their restart faults); otherwise the machine's, isolated by database and prefix. */
  ownServers?: boolean;
  /** How long a frozen process stays frozen. */
  freezeMs?: number;
  log?: (line: string) => void;
}

export interface ChaosReport {
  results: PhaseResult[];
  /** Faults injected (the baseline window is not one). */
  faults: number;
  lost: number;
  doubled: number;
  /** Failed checks other than loss and doubling: gaps, repeats, wrong views, 5xx in the rolling restart. */
  problems: string[];
  whole: { lost: number; doubled: number; messages: number };
  seconds: number;
  dir: string;
}

interface Ctx {
  fleet: Fleet;
  nats: NatsCluster;
  stream: string;
  pg?: OwnPostgres;
  redis?: OwnRedis;
  traffic: Traffic;
  freezeMs: number;
  log: (line: string) => void;
}

interface Fault {
  id: string;
  name: string;
  run(ctx: Ctx): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A killed pod comes back after a short while: the time an orchestrator takes to notice and start another. */
const RESTART_AFTER_MS = 2000;

function killAndRestart(p: Proc): Fault {
  return {
    id: `kill:${p.name}`,
    name: `SIGKILL ${p.name}${p.service === 'gateway' ? ' (half the sockets)' : ''}`,
    async run() {
      await p.kill();
      await sleep(RESTART_AFTER_MS);
      await p.start();
    },
  };
}

/** Every fault a full run injects, in its order. */
function allFaults(fleet: Fleet, own: boolean): Fault[] {
  // A window with no fault first: what the same checks and figures look like undisturbed.
  const faults: Fault[] = [{ id: 'baseline', name: 'no fault (baseline)', run: async () => undefined }];
  faults.push(...fleet.services.map(killAndRestart));
  faults.push(killAndRestart(fleet.gateways[0]!));
  faults.push({
    id: 'nats-leader',
    name: 'SIGKILL the NATS node leading the event stream',
    async run(ctx) {
      const leader = await ctx.nats.leaderOf(ctx.stream);
      ctx.log(`    the event stream's leader is ${leader.name}`);
      await leader.kill('SIGKILL');
      await sleep(8000);
      await leader.start();
      await ctx.nats.waitHealthy(ctx.stream);
    },
  });
  if (own) {
    faults.push({
      id: 'postgres-restart',
      name: 'PostgreSQL restart',
      async run(ctx) {
        ctx.pg!.restart();
      },
    });
    faults.push({
      id: 'redis-restart',
      name: 'Redis restart, its data gone',
      async run(ctx) {
        await ctx.redis!.restartEmpty();
      },
    });
  }
  const frozen = fleet.services.find((p) => p.service === 'messages')!;
  faults.push({
    id: `freeze:${frozen.name}`,
    name: `SIGSTOP ${frozen.name} for 15 s, then SIGCONT`,
    async run(ctx) {
      frozen.signal('SIGSTOP');
      await sleep(ctx.freezeMs);
      frozen.signal('SIGCONT');
    },
  });
  faults.push({
    id: 'rolling-restart',
    name: 'rolling restart: SIGTERM of every process, one by one',
    async run(ctx) {
      for (const node of ctx.nats.nodes) {
        await node.kill('SIGTERM');
        await node.start();
        await ctx.nats.waitHealthy(ctx.stream);
      }
      for (const p of [...ctx.fleet.services, ...ctx.fleet.gateways]) {
        if (p.service === 'gateway') {
          // As Kubernetes does: the endpoint leaves the Service, then preStop, then SIGTERM.
          p.inRotation = false;
          await sleep(1000);
        }
        const { forced, code } = await p.terminate(30_000);
        if (forced || code !== 0) ctx.log(`    ${p.name} ${forced ? 'needed SIGKILL after 30 s' : `exited with ${code}`} on SIGTERM`);
        await p.start();
      }
    },
  });
  return faults;
}

/** The ids `faults` accepts for a fleet of the given shape. */
export function faultIds(opts: Pick<ChaosOptions, 'replicas' | 'gateways' | 'ownServers'> = {}): string[] {
  const names: string[] = ['baseline'];
  for (const s of SERVICES) {
    const n = typeof opts.replicas === 'object' ? (opts.replicas as Record<string, number>)[s] ?? 1 : (opts.replicas ?? 2);
    for (let i = 1; i <= n; i++) names.push(`kill:${s}-${i}`);
  }
  names.push('kill:gateway-1', 'nats-leader');
  if (opts.ownServers ?? true) names.push('postgres-restart', 'redis-restart');
  names.push('freeze:messages-1', 'rolling-restart');
  return names;
}

export async function runChaos(options: ChaosOptions = {}): Promise<ChaosReport> {
  const started = Date.now();
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const own = options.ownServers ?? true;
  const dir = runDir('run');
  const logDir = join(dir, 'logs');
  mkdirSync(logDir);
  const id = `chaos${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
  const cleanups: Array<() => Promise<void>> = [];
  try {
    log(`chaos: run ${id}, logs in ${logDir}`);
    mkdirSync(join(dir, 'nats'));
    const nats = await startNatsCluster(join(dir, 'nats'));
    cleanups.push(() => nats.stop());
    let pgServer: OwnPostgres | undefined;
    let redis: OwnRedis | undefined;
    let databaseUrl: string;
    let redisUrl: string;
    if (own) {
      pgServer = await OwnPostgres.start(dir);
      cleanups.push(() => pgServer!.stop());
      redis = await OwnRedis.start();
      cleanups.push(() => redis!.stop());
      databaseUrl = pgServer.url('chat');
      redisUrl = redis.url;
    } else {
      databaseUrl = `${process.env.CHAOS_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432'}/chat_${id}`;
      redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
      cleanups.push(async () => {
        const admin = new (await import('pg')).default.Client({ connectionString: databaseUrl.replace(/\/chat_[^/]+$/, '/postgres') });
        await admin.connect();
        await admin.query(`DROP DATABASE IF EXISTS "chat_${id}" WITH (FORCE)`).finally(() => admin.end());
        const { Redis } = await import('ioredis');
        const r = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
        await r.connect();
        let cursor = '0';
        do {
          const [next, keys] = await r.scan(cursor, 'MATCH', `${id}:*`, 'COUNT', 500);
          if (keys.length) await r.del(...keys);
          cursor = next;
        } while (cursor !== '0');
        r.disconnect();
      });
    }
    await ensureDatabase(databaseUrl);
    log(`chaos: NATS cluster ${nats.url}; PostgreSQL ${own ? 'and Redis of the run\'s own' : 'and Redis of the machine'}`);

    const unlimited = '1000000';
    const fleet = await Fleet.create({
      replicas: options.replicas ?? 2,
      gateways: options.gateways ?? 2,
      logDir,
      env: {
        CONFIG_FILE: '/nonexistent',
        NODE_ENV: 'development',
        JWT_SECRET: DEV_JWT_SECRET,
        DATABASE_URL: databaseUrl,
        NATS_URL: nats.url,
        NATS_PREFIX: id,
        REDIS_URL: redisUrl,
        REDIS_PREFIX: `${id}:`,
        JETSTREAM_REPLICAS: '3',
        LOG_LEVEL: 'info',
        DB_POOL_MAX: '5',
        RATE_LIMIT_SEND_PER_MIN: unlimited,
        RATE_LIMIT_CREATE_CONVERSATION_PER_MIN: unlimited,
        RATE_LIMIT_WS_FRAMES_PER_MIN: unlimited,
        RATE_LIMIT_WS_UPGRADES_PER_MIN: unlimited,
        RATE_LIMIT_WS_TICKETS_PER_MIN: unlimited,
        AUTH_FAILURES_PER_MIN: unlimited,
        WS_MAX_CONNECTIONS_PER_IP: unlimited,
      },
    });
    cleanups.push(() => fleet.stop());
    let current: Phase | undefined;
    const crashesOutsidePhases: string[] = [];
    for (const p of fleet.procs) p.onCrash = (why) => (current ? current.crashes.push(why) : crashesOutsidePhases.push(why));
    const t0 = Date.now();
    await fleet.start();
    log(`chaos: ${fleet.procs.length} processes ready in ${((Date.now() - t0) / 1000).toFixed(1)} s (${fleet.procs.map((p) => p.name).join(', ')})`);
    const stream = eventStreamName(id);
    await nats.waitHealthy(stream);

    const traffic = new Traffic(() => fleet.gateways, {
      pairs: options.pairs ?? 40,
      offlinePairs: options.offlinePairs ?? 4,
      rate: options.rate ?? 100,
      restRate: options.restRate ?? 10,
      jwtSecret: DEV_JWT_SECRET,
      label: id,
    });
    cleanups.push(async () => traffic.stop());
    await traffic.setup();
    traffic.start();
    const verifier = new Verifier(databaseUrl);
    cleanups.push(() => verifier.close());

    const ctx: Ctx = { fleet, nats, stream, pg: pgServer, redis, traffic, freezeMs: options.freezeMs ?? 15_000, log };
    const catalogue = allFaults(fleet, own);
    const chosen = options.faults
      ? options.faults.map((f) => {
          const fault = catalogue.find((c) => c.id === f);
          if (!fault) throw new Error(`unknown fault ${f}; known: ${catalogue.map((c) => c.id).join(', ')}`);
          return fault;
        })
      : catalogue;

    const results: PhaseResult[] = [];
    const phases: Phase[] = [];
    const phaseMs = options.phaseMs ?? 20_000;
    for (const fault of chosen) {
      await healthy(ctx);
      const phase = new Phase(fault.name);
      phases.push(phase);
      current = phase;
      traffic.phase = phase;
      traffic.sending = true;
      const windowStart = Date.now();
      await sleep(Math.min(4000, phaseMs / 4));
      log(`chaos: ${fault.name}`);
      phase.faultAt = Date.now();
      await fault.run(ctx);
      phase.restoredAt = Date.now();
      await sleep(Math.max(3000, phaseMs - (Date.now() - windowStart)));
      traffic.sending = false;
      const result = await verifier.check(phase, traffic);
      results.push(result);
      log(`  ${summaryLine(result)}`);
      for (const n of result.notes) log(`    ${n}`);
    }
    const allSends = phases.flatMap((p) => p.sends);
    const whole = { ...(await verifier.whole(allSends)), messages: allSends.filter((s) => s.ackedAt).length };
    const lost = results.reduce((a, r) => a + r.lost, 0);
    const doubled = results.reduce((a, r) => a + r.doubled, 0);
    const problems: string[] = [];
    for (const r of results) {
      if (r.gaps) problems.push(`${r.fault}: ${r.gaps} seq gap(s)`);
      if (r.repeats) problems.push(`${r.fault}: ${r.repeats} seq repeat(s)`);
      if (r.viewMismatches) problems.push(`${r.fault}: ${r.viewMismatches} user(s) with a wrong list or unread total`);
      if (r.unacked) problems.push(`${r.fault}: ${r.unacked} send(s) never acknowledged`);
      for (const c of r.crashes) problems.push(`${r.fault}: ${c}`);
      if (r.notificationsMissing) problems.push(`${r.fault}: ${r.notificationsMissing} message(s) to an offline receiver never notified`);
      if (r.failed) problems.push(`${r.fault}: ${r.failed} send(s) refused for good`);
      if (r.fault.startsWith('rolling restart') && r.rest.status5xx) problems.push(`${r.fault}: ${r.rest.status5xx} REST 5xx`);
    }
    for (const c of crashesOutsidePhases) problems.push(c);
    if (whole.lost || whole.doubled) problems.push(`whole run: ${whole.lost} lost, ${whole.doubled} doubled`);
    return { results, faults: chosen.filter((f) => f.id !== 'baseline').length, lost, doubled, problems, whole, seconds: (Date.now() - started) / 1000, dir };
  } finally {
    for (const c of cleanups.reverse()) await c().catch((err: unknown) => log(`chaos: cleanup: ${(err as Error).message}`));
    // The logs stay for reading; the servers' data goes.
    if (!process.env.CHAOS_KEEP) for (const d of ['nats', 'postgres']) removeDir(join(dir, d));
  }
}

/** Every process up, every gateway in rotation, the event stream with a leader and current replicas. */
async function healthy(ctx: Ctx): Promise<void> {
  for (const p of ctx.fleet.procs) if (!p.running) await p.start();
  for (const g of ctx.fleet.gateways) g.inRotation = true;
  for (const n of ctx.nats.nodes) if (!n.running) await n.start();
  await ctx.nats.waitHealthy(ctx.stream);
  await until('every client socket to be open', () => ctx.traffic.users.every((u) => u.connected), 60_000);
}

export function summaryLine(r: PhaseResult): string {
  const errors = Object.entries(r.clientErrors)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ×${v}`)
    .join(', ');
  return (
    `sent ${r.sent}, acked ${r.acked}, delivered ${r.delivered}, notified ${r.notified}, lost ${r.lost}, doubled ${r.doubled}` +
    `${r.unacked ? `, unacked ${r.unacked}` : ''}${r.gaps || r.repeats ? `, seq gaps ${r.gaps} repeats ${r.repeats}` : ''}` +
    `${r.viewMismatches ? `, wrong views ${r.viewMismatches}` : ''}${r.crashes.length ? `, crashed ${r.crashes.length}` : ''}; REST ok ${r.rest.ok} 5xx ${r.rest.status5xx} conn ${r.rest.network}` +
    `; ack p50 ${r.ackP50} ms p99 ${r.ackP99} ms; recovered ${r.recoveredS.toFixed(1)} s${errors ? `; clients saw: ${errors}` : ''}`
  );
}

/** The summary table, one row per fault, in Markdown (docs/operations.md holds the last run's). */
export function table(report: ChaosReport): string {
  const head = '| fault | sent | acked | delivered | notified | lost | doubled | ack p99 | errors clients saw | REST 5xx | recovered in |';
  const rule = '|---|---|---|---|---|---|---|---|---|---|---|';
  const rows = report.results.map((r) => {
    const errors = Object.entries(r.clientErrors)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ×${v}`)
      .join('; ');
    return `| ${r.fault} | ${r.sent} | ${r.acked} | ${r.delivered} | ${r.notified} | ${r.lost} | ${r.doubled} | ${r.ackP99} ms | ${errors || 'none'} | ${r.rest.status5xx} | ${r.recoveredS.toFixed(1)} s |`;
  });
  return [head, rule, ...rows].join('\n');
}
