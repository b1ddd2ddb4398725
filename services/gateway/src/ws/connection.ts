import type { WebSocket } from 'ws';
import {
  ChatError,
  ClientFrameSchema,
  EventsReply,
  findUnstorableText,
  issuesToDetails,
  MessageChangeReply,
  ReadResultSchema,
  TYPING_TIMEOUT_MS,
  TypingPayload,
  type ClientFrame,
  type Delivery,
  type DurableEvent,
  type Subjects,
} from '@chat/contracts';
import { inSpan, ROOT_CONTEXT, SpanKind, startSpan, type BusClient, type Context, type Logger } from '@chat/platform';
import { z } from 'zod';
import type { Principal } from '../auth';
import { toPublicError } from '../http';
import type { GatewayMetrics } from '../gateway-metrics';
import { rateLimited, type RateLimits } from '../security/rate-limits';
import type { SendPath } from '../send-path';

export interface ConnectionLimits {
  /** Sends go through the gateway's one admission point, shared with REST. */
  sends: SendPath;
  heartbeatMs: number;
  softBufferBytes: number;
  hardBufferBytes: number;
  rates: RateLimits;
}

/** A connection still sending after this many times its frame limit in one window is cut off (SPEC 6). */
const FRAME_FLOOD_FACTOR = 10;

const REPLAY_PAGE = 500;

/**
 * One client socket. Durable events go out strictly in seq order, once each:
 * `lastSeq` is the newest seq written; an older one is a duplicate, a newer
 * one with a gap makes the connection read the missing events from the log
 * first. All writes pass through one promise chain, so replay, live events
 * and gap fills never interleave.
 */
export class ClientConnection {
  readonly id = crypto.randomUUID();
  private lastSeq = 0;
  private chain: Promise<void> = Promise.resolve();
  private missedPings = 0;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly typing = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly ws: WebSocket,
    readonly principal: Principal,
    private readonly bus: BusClient,
    private readonly s: Subjects,
    private readonly limits: ConnectionLimits,
    private readonly metrics: GatewayMetrics,
    private readonly log: Logger,
  ) {}

  /** Replays after `since` (if given), then says hello; live events queue behind it. */
  start(since: number | undefined): void {
    this.enqueue(async () => {
      let replayed = 0;
      let resync = false;
      if (since === undefined) {
        this.lastSeq = (await this.events(Number.MAX_SAFE_INTEGER, 0)).latestSeq;
      } else {
        try {
          replayed = await this.replayFrom(since);
        } catch (err) {
          if (!(err instanceof ChatError && err.code === 'RESYNC_REQUIRED')) throw err;
          resync = true;
          this.lastSeq = (await this.events(Number.MAX_SAFE_INTEGER, 0)).latestSeq;
        }
      }
      this.metrics.wsResumes.inc({ outcome: since === undefined ? 'fresh' : resync ? 'resync' : 'replayed' });
      this.write({
        type: 'hello',
        payload: { userId: this.principal.id, seq: this.lastSeq, replayed, resync, heartbeatMs: this.limits.heartbeatMs, typingTimeoutMs: TYPING_TIMEOUT_MS },
      }, true);
    });
    this.every(this.limits.heartbeatMs, () => {
      if (this.missedPings >= 2) return this.ws.terminate();
      this.missedPings++;
      this.ws.ping();
    });
    this.ws.on('pong', () => (this.missedPings = 0));
    this.closeAtExpiry();
  }

  /**
   * Queues an event for this socket. Its span (a child of the publisher's,
   * so of the request that caused it) ends when the frame is written.
   */
  deliver(event: Delivery, parent?: Context): void {
    const span = startSpan(`ws deliver ${event.type}`, {
      kind: SpanKind.CONSUMER,
      parent,
      attributes: { 'chat.service': 'gateway', 'chat.event_type': event.type, ...('seq' in event ? { 'chat.seq': event.seq } : {}) },
    });
    const done = () => span.end();
    if ('seq' in event) {
      this.enqueue(() => this.applyDurable(event).finally(done));
    } else if (event.type === 'typing') {
      this.enqueue(async () => (this.applyTyping(TypingPayload.parse(event.payload)), done()));
    } else {
      this.enqueue(async () => (this.write(event, false), done()));
    }
  }

  /** Reads whatever the log holds past lastSeq: after NATS was away, deliveries may have been missed. Resolves when done. */
  catchUp(): Promise<void> {
    return this.enqueue(async () => {
      // Services resubscribe after NATS returns at their own pace: try for a while, then leave it to the next gap fill.
      for (let attempt = 1; attempt <= 6; attempt++) {
        try {
          await this.replayFrom(this.lastSeq);
          return;
        } catch (err) {
          if (attempt === 6) this.log.warn({ err: (err as Error).message, userId: this.principal.id }, 'catch-up after reconnect failed');
          else await new Promise((r) => setTimeout(r, 250 * attempt));
        }
      }
    });
  }

  async handleFrame(data: Buffer, isBinary: boolean): Promise<void> {
    let raw: unknown;
    try {
      if (isBinary) throw new Error('binary');
      raw = JSON.parse(data.toString('utf8'));
    } catch {
      if (!(await this.admitFrame(undefined))) return;
      return this.error(undefined, new ChatError('INVALID_FRAME', 'frames are JSON text'));
    }
    const id = typeof raw === 'object' && raw !== null && typeof (raw as { id?: unknown }).id === 'string' ? (raw as { id: string }).id.slice(0, 64) : undefined;
    if (!(await this.admitFrame(id))) return;
    const unstorable = findUnstorableText(raw);
    if (unstorable) return this.error(id, new ChatError('VALIDATION_FAILED', 'frame failed validation', [unstorable]));
    const frame = ClientFrameSchema.safeParse(raw);
    if (!frame.success) return this.error(id, new ChatError('VALIDATION_FAILED', 'frame failed validation', issuesToDetails(frame.error.issues)));
    try {
      // Each client frame is the root of its own trace, as an HTTP request is.
      const payload = await inSpan(`ws ${frame.data.type}`, { kind: SpanKind.SERVER, parent: ROOT_CONTEXT, attributes: { 'chat.service': 'gateway' } }, () =>
        this.dispatch(frame.data),
      );
      this.write(frame.data.type === 'ping' ? { type: 'pong', ...(id ? { replyTo: id } : {}) } : { type: 'ack', ...(id ? { replyTo: id } : {}), payload }, true);
    } catch (err) {
      this.error(id, err);
    }
  }

  /** Every frame counts against the connection's limit, valid or not; a flood far past it closes the socket. */
  private async admitFrame(replyTo: string | undefined): Promise<boolean> {
    const frames = this.limits.rates.wsFrames;
    const r = await frames.consume(this.id);
    if (r.allowed) return true;
    if (r.consumed > FRAME_FLOOD_FACTOR * frames.points) {
      if (this.ws.readyState === this.ws.OPEN) {
        this.log.warn({ userId: this.principal.id, frames: r.consumed }, 'websocket frame flood: closing');
        this.ws.close(1008, 'rate limit exceeded');
      }
      return false;
    }
    this.error(replyTo, rateLimited('websocket frames', r.resetMs));
    return false;
  }

  closed(): void {
    for (const t of this.timers) clearTimeout(t), clearInterval(t);
    for (const t of this.typing.values()) clearTimeout(t);
    this.timers.clear();
    this.typing.clear();
  }

  close(code: number, reason: string): void {
    this.ws.close(code, reason);
  }

  private async dispatch(frame: ClientFrame): Promise<unknown> {
    const actor = { actor: this.principal.id };
    switch (frame.type) {
      case 'message.send': {
        await this.limits.rates.send.take(this.principal.id);
        const r = await this.limits.sends.send({ ...actor, ...frame.payload });
        return { message: r.message };
      }
      case 'message.read':
        return this.bus.request(this.s.messages.read, { ...actor, ...frame.payload }, ReadResultSchema);
      case 'message.edit': {
        await this.limits.rates.send.take(this.principal.id);
        const r = await this.bus.request(this.s.messages.edit, { ...actor, ...frame.payload }, MessageChangeReply);
        return { message: r.message };
      }
      case 'message.delete': {
        const r = await this.bus.request(this.s.messages.delete, { ...actor, ...frame.payload }, MessageChangeReply);
        return { message: r.message };
      }
      case 'reaction.add':
      case 'reaction.remove': {
        await this.limits.rates.reactions.take(this.principal.id);
        const r = await this.bus.request(this.s.messages.react, { ...actor, ...frame.payload, on: frame.type === 'reaction.add' }, MessageChangeReply, { idempotent: true });
        return { message: r.message };
      }
      case 'typing.start':
      case 'typing.stop':
        await this.bus.request(this.s.messages.typing, { ...actor, conversationId: frame.payload.conversationId, isTyping: frame.type === 'typing.start' }, z.object({}));
        return {};
      case 'ping':
        return undefined;
    }
  }

  private async applyDurable(event: DurableEvent): Promise<void> {
    if (event.seq <= this.lastSeq) return;
    if (event.seq > this.lastSeq + 1) {
      await this.replayFrom(this.lastSeq);
      if (event.seq <= this.lastSeq) return;
    }
    this.writeDurable(event, true);
  }

  /**
   * Writes every event after `since` from the log; returns how many. Stops
   * as soon as the socket is no longer open: a client that connects with
   * `since=0` and leaves at once must not make the server read days of its
   * events for nobody.
   */
  private async replayFrom(since: number): Promise<number> {
    let count = 0;
    let cursor = since;
    for (;;) {
      if (this.ws.readyState !== this.ws.OPEN) return count;
      const page = await this.events(cursor, REPLAY_PAGE);
      for (const e of page.events) {
        if (e.seq <= this.lastSeq) continue;
        this.writeDurable(e, false);
        count++;
      }
      cursor = page.events[page.events.length - 1]?.seq ?? cursor;
      if (!page.hasMore) {
        // A since beyond the latest seq counts from the latest, so the next event is not mistaken for a duplicate.
        this.lastSeq = Math.max(this.lastSeq, Math.min(since, page.latestSeq));
        return count;
      }
    }
  }

  private writeDurable(event: DurableEvent, live: boolean): void {
    this.write(event, true);
    this.lastSeq = event.seq;
    if (live && event.type === 'message.new') {
      const created = Date.parse(String((event.payload.message as { createdAt?: string } | undefined)?.createdAt));
      if (!Number.isNaN(created)) this.metrics.deliveryLatency.observe(Math.max(0, Date.now() - created) / 1000);
    }
  }

  private applyTyping(t: z.infer<typeof TypingPayload>): void {
    const key = `${t.conversationId}\u0000${t.userId}`;
    clearTimeout(this.typing.get(key));
    this.typing.delete(key);
    if (t.isTyping) {
      // The server ends every indicator by itself, whatever happens to the typist's connection.
      const timer = setTimeout(() => {
        this.typing.delete(key);
        this.write({ type: 'typing', payload: { ...t, isTyping: false } }, false);
      }, TYPING_TIMEOUT_MS);
      this.typing.set(key, timer);
    }
    this.write({ type: 'typing', payload: t }, false);
  }

  private events(since: number, limit: number) {
    return this.bus.request(this.s.messages.events, { actor: this.principal.id, since, limit }, EventsReply, { idempotent: true, hedge: true });
  }

  /** As over REST: a server-side failure's details stay in the log; the client's frame id finds the line. */
  private error(replyTo: string | undefined, err: unknown): void {
    const payload = toPublicError(err, this.log, { userId: this.principal.id, connectionId: this.id, replyTo }, 'frame handler failed');
    this.write({ type: 'error', ...(replyTo ? { replyTo } : {}), payload }, true);
  }

  /**
   * Backpressure: past the soft threshold ephemeral frames are dropped and
   * counted; past the hard cap the socket is closed with 1013 (the client
   * resumes with since). Durable frames are never dropped.
   */
  private write(frame: object, durable: boolean): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    const buffered = this.ws.bufferedAmount;
    if (buffered > this.limits.hardBufferBytes) {
      this.metrics.wsDropped.inc({ class: durable ? 'durable_closed' : 'ephemeral' });
      this.ws.close(1013, 'client too slow: resume with since');
      return;
    }
    if (!durable && buffered > this.limits.softBufferBytes) {
      this.metrics.wsDropped.inc({ class: 'ephemeral' });
      return;
    }
    this.ws.send(JSON.stringify(frame));
  }

  /** setTimeout holds at most ~24.8 days, so a longer-lived token re-arms until it is due. */
  private closeAtExpiry(): void {
    const left = this.principal.expiresAt - Date.now();
    if (left > 2 ** 31 - 1) this.after(2 ** 31 - 1, () => this.closeAtExpiry());
    else this.after(Math.max(0, left), () => this.ws.close(1008, 'token expired'));
  }

  private enqueue(task: () => Promise<void>): Promise<void> {
    return (this.chain = this.chain.then(task).catch((err: unknown) => {
      this.log.warn({ err: (err as Error).message, userId: this.principal.id }, 'delivery to socket failed: closing so the client resumes');
      this.ws.close(1011, 'delivery failed: resume with since');
    }));
  }

  private every(ms: number, fn: () => void): void {
    this.timers.add(setInterval(fn, ms));
  }

  private after(ms: number, fn: () => void): void {
    this.timers.add(setTimeout(fn, ms));
  }
}
