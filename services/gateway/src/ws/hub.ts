import type { Subscription } from '@nats-io/transport-node';
import type { WebSocket } from 'ws';
import { DeliverySchema, type Subjects } from '@chat/contracts';
import { extractTrace, type BusClient, type Context, type Logger, type NatsConnection } from '@chat/platform';
import { z } from 'zod';
import type { Principal } from '../auth';
import type { GatewayMetrics } from '../gateway-metrics';
import { ClientConnection, type ConnectionLimits } from './connection';

const Ignored = z.unknown();
const Refreshed = z.object({ refreshed: z.number().int() });

/**
 * The connections this gateway holds. While it holds at least one socket of a
 * user it subscribes to that user's delivery subject, so an event published
 * anywhere reaches every socket of the user on every gateway. It also keeps
 * the presence service told which connections are alive.
 */
export class RealtimeHub {
  private readonly users = new Map<string, { sockets: Set<ClientConnection>; sub: Subscription }>();
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly bus: BusClient,
    private readonly s: Subjects,
    private readonly limits: ConnectionLimits & { presenceHeartbeatMs: number },
    private readonly metrics: GatewayMetrics,
    private readonly log: Logger,
  ) {
    this.heartbeat = setInterval(() => this.refreshPresence(), limits.presenceHeartbeatMs);
    this.heartbeat.unref();
    void this.catchUpOnReconnect();
  }

  /** Core NATS delivery is at most once: after a reconnect every socket reads what it may have missed. */
  private async catchUpOnReconnect(): Promise<void> {
    for await (const status of this.nc.status()) {
      if (status.type !== 'reconnect') continue;
      for (const u of this.users.values()) for (const c of u.sockets) c.catchUp();
      void this.refreshPresence();
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
    clearInterval(this.heartbeat);
    const all = [...this.users.values()].flatMap((u) => [...u.sockets]);
    for (const c of all) c.close(1001, 'server shutting down');
    await Promise.all(all.map((c) => this.presence('disconnect', c)));
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
    void this.presence('connect', conn);
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
    void this.presence('disconnect', conn);
  }

  private fanOut(userId: string, data: Uint8Array, trace: Context): void {
    let event;
    try {
      event = DeliverySchema.parse(JSON.parse(new TextDecoder().decode(data)));
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
   * Refreshes every socket's presence. If presence lost some (Redis flushed,
   * or this gateway stalled past the TTL), each socket is announced again;
   * connect is idempotent for the ones it still has.
   */
  private refreshPresence(): void {
    const sockets = [...this.users.values()].flatMap((u) => [...u.sockets]);
    if (sockets.length === 0) return;
    const connections = sockets.map((c) => ({ userId: c.principal.id, connectionId: c.id }));
    this.bus
      .request(this.s.presence.heartbeat, { connections }, Refreshed, { timeoutMs: 5000 })
      .then(async ({ refreshed }) => {
        if (refreshed >= connections.length) return;
        this.log.warn({ missing: connections.length - refreshed }, 'presence lost connections: announcing them again');
        for (const c of sockets) await this.presence('connect', c);
      })
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'presence heartbeat failed'));
  }
}
