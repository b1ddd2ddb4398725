import pLimit from 'p-limit';
import type { Subscription } from '@nats-io/transport-node';
import type { WebSocket } from 'ws';
import { DeliveryEnvelopeSchema, type Subjects } from '@chat/contracts';
import { extractTrace, type BusClient, type Context, type Logger, type NatsConnection } from '@chat/platform';
import { z } from 'zod';
import type { Principal } from '../auth';
import type { GatewayMetrics } from '../gateway-metrics';
import { ClientConnection, type ConnectionLimits } from './connection';

const Ignored = z.unknown();
const Refreshed = z.object({ refreshed: z.number().int() });

/**
 * Presence connects and disconnects in flight at once. Thousands of sockets
 * opening or closing together (a restart, a network blip) would otherwise be
 * thousands of requests at once, most timing out in presence's queue.
 */
const PRESENCE_CONCURRENCY = 64;
/** Heartbeat requests in flight at once. */
const HEARTBEAT_CONCURRENCY = 4;
/**
 * Connections per heartbeat request, whatever max_payload allows: presence
 * runs a Redis script per 500 of them, so a request this size answers well
 * within its timeout.
 */
const HEARTBEAT_MAX_CONNECTIONS = 5000;
const HEARTBEAT_TIMEOUT_MS = 5000;
/** Used when the server has not said its max_payload yet (NATS's default). */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/**
 * Cuts the heartbeat's list into requests that fit NATS. Half of the
 * server's max_payload leaves room for the headers (trace context, request
 * id) and the envelope, and follows the server if it changes on a reconnect.
 */
function heartbeatChunks(conns: readonly ClientConnection[], maxPayload: number): ClientConnection[][] {
  const budget = Math.floor(maxPayload / 2);
  const chunks: ClientConnection[][] = [];
  let chunk: ClientConnection[] = [];
  let bytes = 0;
  for (const c of conns) {
    // Its entry and the comma before it, as JSON.stringify will write them.
    const size = Buffer.byteLength(JSON.stringify({ userId: c.principal.id, connectionId: c.id })) + 1;
    if (chunk.length > 0 && (bytes + size > budget || chunk.length >= HEARTBEAT_MAX_CONNECTIONS)) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(c);
    bytes += size;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}

/**
 * The connections this gateway holds. While it holds at least one socket of a
 * user it subscribes to that user's delivery subject, so an event published
 * anywhere reaches every socket of the user on every gateway. It also keeps
 * the presence service told which connections are alive.
 */
export class RealtimeHub {
  private readonly users = new Map<string, { sockets: Set<ClientConnection>; sub: Subscription }>();
  /** Sockets whose presence connect is queued or in flight: left out of heartbeats, and their disconnect waits for it. */
  private readonly announcing = new Map<ClientConnection, Promise<void>>();
  private readonly presenceLimit = pLimit(PRESENCE_CONCURRENCY);
  /** Disconnects of closed sockets still queued or in flight: stop() waits for them before NATS is drained. */
  private readonly goodbyes = new Set<Promise<void>>();
  private heartbeat: NodeJS.Timeout | undefined;
  private heartbeating = false;
  private stopping = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly bus: BusClient,
    private readonly s: Subjects,
    private readonly limits: ConnectionLimits & { presenceHeartbeatMs: number; caps?: { refresh(): Promise<void> } },
    private readonly metrics: GatewayMetrics,
    private readonly log: Logger,
  ) {
    this.heartbeat = setInterval(() => {
      this.refreshPresence();
      // The connection caps' entries expire like presence's, on the same clock: a dead gateway's stop counting.
      void limits.caps?.refresh();
    }, limits.presenceHeartbeatMs);
    this.heartbeat.unref();
    void this.catchUpOnReconnect();
  }

  /** Core NATS delivery is at most once: after a reconnect every socket reads what it may have missed. */
  private async catchUpOnReconnect(): Promise<void> {
    for await (const status of this.nc.status()) {
      if (status.type !== 'reconnect') continue;
      // Bounded like the presence calls: 10,000 sockets must not ask the messages service all at once.
      for (const u of this.users.values()) for (const c of u.sockets) void this.presenceLimit(() => c.catchUp());
      this.refreshPresence();
    }
  }

  open(ws: WebSocket, principal: Principal, since: number | undefined): void {
    const conn = new ClientConnection(ws, principal, this.bus, this.s, this.limits, this.metrics, this.log);
    this.attach(conn);
    ws.on('message', (data, isBinary) => void conn.handleFrame(data as Buffer, isBinary));
    ws.on('close', () => this.detach(conn));
    ws.on('error', (err) => this.log.debug({ err: err.message, userId: principal.id }, 'socket error'));
    conn.start(since);
  }

  get size(): number {
    let n = 0;
    for (const u of this.users.values()) n += u.sockets.size;
    return n;
  }

  /** Closes every socket with 1001 (going away) and tells presence they are gone. */
  async stop(): Promise<void> {
    // The close handshakes end after NATS is drained: their goodbyes are said here instead.
    this.stopping = true;
    clearInterval(this.heartbeat);
    const all = [...this.users.values()].flatMap((u) => [...u.sockets]);
    for (const c of all) c.close(1001, 'server shutting down');
    await Promise.all([...all.map((c) => this.disconnect(c)), ...this.goodbyes]);
  }

  private attach(conn: ClientConnection): void {
    const userId = conn.principal.id;
    let entry = this.users.get(userId);
    if (!entry) {
      const sub = this.nc.subscribe(this.s.deliver(userId), {
        callback: (err, msg) => {
          if (!err) this.fanOut(userId, msg.data, extractTrace(msg.headers));
        },
      });
      entry = { sockets: new Set(), sub };
      this.users.set(userId, entry);
    }
    entry.sockets.add(conn);
    this.metrics.wsConnections.inc();
    this.announce(conn);
  }

  private isAttached(conn: ClientConnection): boolean {
    return this.users.get(conn.principal.id)?.sockets.has(conn) === true;
  }

  /** Tells presence of a socket (again), unless that is already under way or the hub is stopping. */
  private announce(conn: ClientConnection): void {
    if (this.announcing.has(conn) || this.stopping) return;
    // A socket that closed while it waited for a slot is not announced at all.
    const done = this.presenceLimit(() => (this.isAttached(conn) && !this.stopping ? this.presence('connect', conn) : Promise.resolve())).finally(() =>
      this.announcing.delete(conn),
    );
    this.announcing.set(conn, done);
  }

  /** After its connect, so presence never sees a socket's goodbye before its hello. */
  private async disconnect(conn: ClientConnection): Promise<void> {
    await this.announcing.get(conn);
    await this.presenceLimit(() => this.presence('disconnect', conn));
  }

  private detach(conn: ClientConnection): void {
    conn.closed();
    const entry = this.users.get(conn.principal.id);
    if (!entry?.sockets.delete(conn)) return;
    this.metrics.wsConnections.dec();
    if (entry.sockets.size === 0) {
      entry.sub.unsubscribe();
      this.users.delete(conn.principal.id);
    }
    if (this.stopping) return;
    const goodbye = this.disconnect(conn).finally(() => this.goodbyes.delete(goodbye));
    this.goodbyes.add(goodbye);
  }

  private fanOut(userId: string, data: Uint8Array, trace: Context): void {
    let event;
    try {
      event = DeliveryEnvelopeSchema.parse(JSON.parse(new TextDecoder().decode(data)));
    } catch {
      this.log.warn({ userId }, 'malformed delivery ignored');
      return;
    }
    for (const conn of this.users.get(userId)?.sockets ?? []) conn.deliver(event, trace);
  }

  private async presence(verb: 'connect' | 'disconnect', conn: ClientConnection): Promise<void> {
    try {
      await this.bus.request(this.s.presence[verb], { userId: conn.principal.id, connectionId: conn.id }, Ignored, { timeoutMs: 2000 });
    } catch (err) {
      // Heartbeats (or their absence) set presence right again.
      this.log.warn({ err: (err as Error).message, userId: conn.principal.id }, `presence ${verb} failed`);
    }
  }

  /**
   * Refreshes every socket's presence, in requests sized to fit NATS. If
   * presence lost some (Redis flushed, or this gateway stalled past the TTL),
   * the sockets of each short request are announced again; connect is
   * idempotent for the ones it still has. A cycle still running when the next
   * is due makes that one skip: refreshes never pile up behind a slow presence.
   */
  private refreshPresence(): void {
    if (this.heartbeating || this.stopping) return;
    const sockets: ClientConnection[] = [];
    for (const u of this.users.values()) for (const c of u.sockets) if (!this.announcing.has(c)) sockets.push(c);
    if (sockets.length === 0) return;
    this.heartbeating = true;
    void this.sendHeartbeat(sockets).finally(() => (this.heartbeating = false));
  }

  private async sendHeartbeat(sockets: readonly ClientConnection[]): Promise<void> {
    const chunks = heartbeatChunks(sockets, this.nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD);
    const limit = pLimit(HEARTBEAT_CONCURRENCY);
    let missing = 0;
    let failed = 0;
    let error: string | undefined;
    await Promise.all(
      chunks.map((chunk) =>
        limit(async () => {
          try {
            const connections = chunk.map((c) => ({ userId: c.principal.id, connectionId: c.id }));
            const { refreshed } = await this.bus.request(this.s.presence.heartbeat, { connections }, Refreshed, { timeoutMs: HEARTBEAT_TIMEOUT_MS, idempotent: true });
            if (refreshed >= chunk.length) return;
            missing += chunk.length - refreshed;
            for (const c of chunk) if (this.isAttached(c)) this.announce(c);
          } catch (err) {
            failed++;
            error = (err as Error).message;
          }
        }),
      ),
    );
    if (missing > 0) this.log.warn({ missing }, 'presence lost connections: announcing them again');
    // The next cycle retries; a chunk that keeps failing lets its sockets expire, as a dead gateway's would.
    if (failed > 0) this.log.warn({ err: error, failed, requests: chunks.length, connections: sockets.length }, 'presence heartbeat failed');
  }
}
