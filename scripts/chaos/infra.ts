import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as tcp, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';

/**
 * The backing servers a chaos run breaks: its own NATS cluster, and (for the
 * full run) its own PostgreSQL and Redis, on free local ports and in
 * temporary directories, so restarting them disturbs nothing else on the
 * machine.
 */

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/** Whether something accepts TCP connections on the local port. */
export const answers = (port: number) =>
  new Promise<boolean>((resolve) => {
    const c = tcp(port, '127.0.0.1', () => (c.end(), resolve(true)));
    c.on('error', () => resolve(false));
  });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits for `check` to resolve truthy, or throws `what` after `timeoutMs`. */
export async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 30_000, everyMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await Promise.resolve(check()).catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** A child that goes with the harness, even when the harness itself dies of an error. */
export function guard(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
}

const exited = (child: ChildProcess) =>
  child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => child.once('exit', () => r()));

// ---------------------------------------------------------------------------
// NATS: three servers in one cluster, JetStream on each.

const NATS_SERVER = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server';

export class NatsNode {
  private child: ChildProcess | undefined;
  constructor(
    readonly name: string,
    readonly port: number,
    private readonly conf: string,
    private readonly logFile: string,
  ) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(): Promise<void> {
    const child = spawn(NATS_SERVER, ['-c', this.conf, '-l', this.logFile], { stdio: 'ignore' });
    guard(child);
    this.child = child;
    await until(`NATS node ${this.name} to accept clients`, async () => {
      const nc = await connect({ servers: this.url, reconnect: false, timeout: 1000 });
      await nc.close();
      return true;
    });
  }

  /** Sends a signal and returns at once (SIGSTOP, SIGCONT). */
  signal(sig: NodeJS.Signals): void {
    this.child?.kill(sig);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child) return Promise.resolve();
    child.kill(signal);
    return exited(child);
  }
}

export interface NatsCluster {
  nodes: NatsNode[];
  /** Every node, comma-separated: what NATS_URL gets. */
  url: string;
  /** The node whose server name JetStream reports as the stream's leader. */
  leaderOf(stream: string): Promise<NatsNode>;
  /** Until the stream has a leader and every replica is current. */
  waitHealthy(stream: string, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startNatsCluster(dir: string, size = 3): Promise<NatsCluster> {
  const ports = await Promise.all(Array.from({ length: size }, async () => ({ client: await freePort(), route: await freePort() })));
  const routes = ports.map((p) => `nats-route://127.0.0.1:${p.route}`);
  const nodes = ports.map((p, i) => {
    const name = `n${i + 1}`;
    const conf = join(dir, `${name}.conf`);
    writeFileSync(
      conf,
      [
        `server_name: ${name}`,
        `listen: "127.0.0.1:${p.client}"`,
        `jetstream { store_dir: "${join(dir, name)}" }`,
        'cluster {',
        '  name: chaos',
        `  listen: "127.0.0.1:${p.route}"`,
        `  routes: [${routes.map((r) => `"${r}"`).join(', ')}]`,
        '}',
        '',
      ].join('\n'),
    );
    return new NatsNode(name, p.client, conf, join(dir, `${name}.log`));
  });
  await Promise.all(nodes.map((n) => n.start()));
  const url = nodes.map((n) => n.url).join(',');
  const withJsm = async <T>(fn: (jsm: Awaited<ReturnType<typeof jetstreamManager>>) => Promise<T>): Promise<T> => {
    const nc = await connect({ servers: nodes.filter((n) => n.running).map((n) => n.url), timeout: 2000 });
    try {
      return await fn(await jetstreamManager(nc, { timeout: 2000 }));
    } finally {
      await nc.close();
    }
  };
  // JetStream answers only once the cluster has elected its meta leader.
  await until('the NATS cluster to elect a JetStream meta leader', () => withJsm(async (jsm) => Boolean(await jsm.getAccountInfo())), 60_000, 250);
  return {
    nodes,
    url,
    async leaderOf(stream) {
      const leader = await withJsm(async (jsm) => (await jsm.streams.info(stream)).cluster?.leader);
      const node = nodes.find((n) => n.name === leader);
      if (!node) throw new Error(`stream ${stream} has no leader among ${nodes.map((n) => n.name).join(', ')} (${leader})`);
      return node;
    },
    async waitHealthy(stream, timeoutMs = 60_000) {
      await until(
        `stream ${stream} to have a leader and ${size - 1} current replicas`,
        () =>
          withJsm(async (jsm) => {
            const c = (await jsm.streams.info(stream)).cluster;
            return Boolean(c?.leader) && (c?.replicas ?? []).length === size - 1 && (c?.replicas ?? []).every((r) => r.current && !r.offline);
          }),
        timeoutMs,
        250,
      );
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.kill('SIGTERM')));
    },
  };
}

// ---------------------------------------------------------------------------
// PostgreSQL: a cluster of the harness's own (initdb), restarted for real.

const PG_BIN = process.env.PG_BIN ?? `/usr/lib/postgresql/${process.env.PG_MAJOR ?? '15'}/bin`;

export class OwnPostgres {
  private constructor(
    private readonly dir: string,
    readonly port: number,
  ) {}

  /** PostgreSQL refuses to run as root: as root, its programs run as the `postgres` user. */
  private static run(cmd: string, args: string[]): void {
    const asRoot = process.getuid?.() === 0;
    try {
      if (asRoot) execFileSync('runuser', ['-u', 'postgres', '--', join(PG_BIN, cmd), ...args], { stdio: 'pipe' });
      else execFileSync(join(PG_BIN, cmd), args, { stdio: 'pipe' });
    } catch (err) {
      const e = err as { stderr?: Buffer; message: string };
      throw new Error(`${cmd} failed: ${String(e.stderr ?? '').trim() || e.message}`);
    }
  }

  static async start(parent: string): Promise<OwnPostgres> {
    const dir = join(parent, 'postgres');
    mkdirSync(dir);
    if (process.getuid?.() === 0) {
      // The postgres user must reach its directory through the run's (mkdtemp makes it 0700).
      chmodSync(parent, 0o755);
      const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
      const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
      chownSync(dir, uid, gid);
    }
    const pg = new OwnPostgres(dir, await freePort());
    OwnPostgres.run('initdb', ['-D', join(dir, 'data'), '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
    pg.ctl('start');
    return pg;
  }

  url(database: string): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  private ctl(action: 'start' | 'restart', mode = 'fast'): void {
    // fsync stays on: a restart must prove committed data survives as in production.
    const opts = `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c max_connections=300`;
    OwnPostgres.run('pg_ctl', ['-D', join(this.dir, 'data'), '-l', join(this.dir, 'log'), '-o', opts, '-m', mode, '-w', action]);
  }

  /** A fast shutdown (open sessions are ended) and a start: what an operator's restart or a failover does to clients. */
  restart(): void {
    this.ctl('restart');
  }

  async stop(): Promise<void> {
    try {
      OwnPostgres.run('pg_ctl', ['-D', join(this.dir, 'data'), '-m', 'immediate', '-w', 'stop']);
    } catch {
      // Already down.
    }
  }
}

// ---------------------------------------------------------------------------
// Redis: one without persistence, so a restart comes back empty.

export class OwnRedis {
  private child: ChildProcess | undefined;
  private constructor(readonly port: number) {}

  static async start(): Promise<OwnRedis> {
    const r = new OwnRedis(await freePort());
    await r.launch();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  private async launch(): Promise<void> {
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    guard(child);
    this.child = child;
    await until('Redis to accept clients', () => answers(this.port));
  }

  /** Killed and started again: with no persistence, every key is gone. */
  async restartEmpty(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  async stop(): Promise<void> {
    if (!this.child) return;
    this.child.kill('SIGKILL');
    await exited(this.child);
  }
}

export function runDir(label: string): string {
  return mkdtempSync(join(tmpdir(), `chat-chaos-${label}-`));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
