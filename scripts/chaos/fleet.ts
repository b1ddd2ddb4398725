import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, guard, until } from './infra';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export const SERVICES = ['conversations', 'messages', 'blocks', 'presence', 'notifications'] as const;
export type ServiceName = (typeof SERVICES)[number] | 'gateway';

/**
 * One process of the system, as a deployment runs it (`node --import tsx
 * services/<name>/src/main.ts`), its output appended to a log file. It can
 * be killed, frozen, stopped and started again, as an orchestrator would.
 */
export class Proc {
  private child: ChildProcess | undefined;
  private output = '';
  private readonly log: WriteStream;
  /** For a gateway: whether the harness's load balancer sends clients to it. */
  inRotation = false;
  starts = 0;
  /** Set while the harness itself is stopping or killing the process: any other exit is a crash. */
  private expectExit = false;
  /** Called when the process exits on its own (a crash the harness did not cause). */
  onCrash: ((why: string) => void) | undefined;

  constructor(
    readonly name: string,
    readonly service: ServiceName,
    private readonly env: Record<string, string>,
    logDir: string,
    readonly port?: number,
  ) {
    this.log = createWriteStream(join(logDir, `${name}.log`), { flags: 'a' });
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the process and resolves once it logs that it is ready. */
  async start(timeoutMs = 90_000): Promise<void> {
    this.output = '';
    this.starts++;
    this.expectExit = false;
    // --supervised with stdin a pipe from here, as under npm start: if the
    // harness dies however it dies, the pipe closes and the process stops.
    const child = spawn(process.execPath, ['--import', 'tsx', `services/${this.service}/src/main.ts`, '--supervised'], {
      cwd: ROOT,
      env: { ...process.env, ...this.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    guard(child);
    this.child = child;
    child.once('exit', (code, sig) => {
      if (!this.expectExit && child === this.child) this.onCrash?.(`${this.name} exited on its own (${sig ?? `code ${code}`}): ${this.output.split('\n').filter(Boolean).slice(-3).join(' | ').slice(0, 400)}`);
    });
    const take = (d: Buffer) => {
      this.log.write(d);
      // Only the start-up lines are searched; the rest goes to the file alone.
      if (this.output.length < 200_000) this.output += String(d);
    };
    child.stdout!.on('data', take);
    child.stderr!.on('data', take);
    const marker = `${this.service} ready`;
    await until(`${this.name} to be ready`, () => {
      if (!this.running && child === this.child) throw new Error(`${this.name} exited while starting:\n${this.output.slice(-2000)}`);
      return this.output.includes(marker);
    }, timeoutMs);
    if (this.service === 'gateway') this.inRotation = true;
  }

  signal(sig: NodeJS.Signals): void {
    if (sig === 'SIGKILL' || sig === 'SIGTERM') this.expectExit = true;
    this.child?.kill(sig);
  }

  /** Resolves when the process has exited (at once if it is not running). */
  exited(): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return Promise.resolve();
    return new Promise((r) => child.once('exit', () => r()));
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`: a pod's termination. */
  async terminate(graceMs = 30_000): Promise<{ forced: boolean; code: number | null }> {
    const child = this.child;
    if (!child || !this.running) return { forced: false, code: child?.exitCode ?? null };
    this.expectExit = true;
    child.kill('SIGTERM');
    let forced = false;
    const timer = setTimeout(() => {
      forced = true;
      child.kill('SIGKILL');
    }, graceMs);
    await this.exited();
    clearTimeout(timer);
    return { forced, code: child.exitCode };
  }

  async kill(): Promise<void> {
    this.inRotation = false;
    this.signal('SIGKILL');
    await this.exited();
  }

  close(): void {
    this.log.end();
  }
}

export interface FleetOptions {
  /** Replicas of each of the five services. */
  replicas: number | Partial<Record<(typeof SERVICES)[number], number>>;
  gateways: number;
  /** Settings every process gets (database, NATS, Redis, prefixes, limits). */
  env: Record<string, string>;
  logDir: string;
}

/** Every process of one deployment: `replicas` of each service and `gateways` gateways. */
export class Fleet {
  private constructor(readonly procs: Proc[]) {}

  static async create(opts: FleetOptions): Promise<Fleet> {
    const procs: Proc[] = [];
    for (const service of SERVICES) {
      const n = typeof opts.replicas === 'number' ? opts.replicas : (opts.replicas[service] ?? 1);
      for (let i = 1; i <= n; i++) procs.push(new Proc(`${service}-${i}`, service, { ...opts.env, METRICS_PORT: '0' }, opts.logDir));
    }
    for (let i = 1; i <= opts.gateways; i++) {
      const port = await freePort();
      procs.push(new Proc(`gateway-${i}`, 'gateway', { ...opts.env, PORT: String(port), METRICS_PORT: '0' }, opts.logDir, port));
    }
    return new Fleet(procs);
  }

  get gateways(): Proc[] {
    return this.procs.filter((p) => p.service === 'gateway');
  }

  get services(): Proc[] {
    return this.procs.filter((p) => p.service !== 'gateway');
  }

  byName(name: string): Proc {
    const p = this.procs.find((x) => x.name === name);
    if (!p) throw new Error(`no process ${name}`);
    return p;
  }

  /**
   * The services first (one replica of each alone, so each migrates its
   * schema once, then the rest side by side), then the gateways.
   */
  async start(): Promise<void> {
    const firsts = SERVICES.map((s) => this.services.find((p) => p.service === s)).filter((p): p is Proc => p !== undefined);
    await Promise.all(firsts.map((p) => p.start()));
    await Promise.all(this.services.filter((p) => !firsts.includes(p)).map((p) => p.start()));
    await Promise.all(this.gateways.map((p) => p.start()));
  }

  async stop(): Promise<void> {
    for (const g of this.gateways) g.inRotation = false;
    await Promise.all(this.gateways.map((p) => p.terminate(20_000)));
    await Promise.all(this.services.map((p) => p.terminate(20_000)));
    for (const p of this.procs) p.close();
  }
}
