import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import WebSocket from 'ws';
import type { Proc } from './fleet';

/**
 * The clients of a chaos run: pairs of users, each with one WebSocket to one
 * of the gateways, sending `message.send` open-loop at a steady total rate,
 * retrying what was not acknowledged with the same `clientMessageId`, and
 * resuming with `since` after every close, as SPEC's clients do. Beside
 * them, REST readers. Each socket checks its own `seq`s: every durable frame
 * must be the one after the last (a repeat or a gap is counted, never
 * hidden), and each message's deliveries to its recipient are counted.
 */

/** What one fault's window saw, as clients saw it. */
export class Phase {
  readonly sends: Send[] = [];
  readonly clientErrors = new Map<string, number>();
  readonly ackLatencies: number[] = [];
  gaps = 0;
  repeats = 0;
  rest = { ok: 0, status5xx: 0, status4xx: 0, network: 0 };
  faultAt = 0;
  restoredAt = 0;
  firstErrorAt = 0;
  lastErrorAt = 0;
  /** Acks that named another message than an earlier ack of the same send. */
  ackMismatches = 0;
  /** Processes that exited without the harness asking. */
  readonly crashes: string[] = [];

  constructor(readonly name: string) {}

  error(kind: string): void {
    this.clientErrors.set(kind, (this.clientErrors.get(kind) ?? 0) + 1);
    const now = Date.now();
    if (!this.firstErrorAt) this.firstErrorAt = now;
    this.lastErrorAt = now;
  }
}

export interface Send {
  cmid: string;
  phase: Phase;
  sender: VirtualUser;
  recipient: VirtualUser;
  content: string;
  createdAt: number;
  attempts: number;
  messageId?: string;
  ackedAt?: number;
  failed?: string;
  frameId?: string;
  timer?: NodeJS.Timeout;
}

const ACK_TIMEOUT_MS = 5000;
const RETRYABLE = new Set(['SERVICE_UNAVAILABLE', 'RATE_LIMITED', 'INTERNAL', 'TIMEOUT']);
const jitter = (lo: number, hi: number) => lo + Math.random() * (hi - lo);

let frames = 0;

export class VirtualUser {
  peer!: VirtualUser;
  conversationId!: string;
  /** The last durable seq applied: what a resume sends as `since`. */
  lastSeq = 0;
  /** Deliveries of each message from the peer: message id → times seen. */
  readonly received = new Map<string, number>();
  readonly pending = new Map<string, Send>();
  private readonly inFlight = new Map<string, string>();
  private ws: WebSocket | undefined;
  private open = false;
  private expect = 1;
  private reconnects = 0;
  private closing = false;
  gateway: Proc | undefined;

  constructor(
    readonly id: string,
    readonly username: string,
    readonly token: string,
    private readonly traffic: Traffic,
    /** Never connects: what it is sent is checked by its notification, not a delivery. */
    readonly offline = false,
  ) {}

  /** Whether its socket is open (an offline user counts as settled). */
  get connected(): boolean {
    return this.offline || this.open;
  }

  connect(): void {
    if (this.closing || this.offline) return;
    const gw = this.traffic.pickGateway();
    if (!gw) {
      setTimeout(() => this.connect(), 250);
      return;
    }
    this.gateway = gw;
    const since = this.lastSeq;
    this.expect = since + 1;
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/api/chat/ws?token=${this.token}&since=${since}`);
    this.ws = ws;
    ws.on('error', (err) => {
      if (!this.closing) this.traffic.phase.error(`ws: ${err.message.replace(/\d{3,}/g, (d) => (d.length === 3 ? d : 'N'))}`);
    });
    ws.on('message', (data) => this.onFrame(ws, JSON.parse(String(data))));
    ws.on('close', (code) => {
      if (this.ws !== ws) return;
      this.open = false;
      this.inFlight.clear();
      // Their acks went with the socket: each goes again after the next hello, not after its ack timeout.
      for (const send of this.pending.values()) {
        clearTimeout(send.timer);
        send.timer = undefined;
      }
      if (this.closing) return;
      if (code !== 4000 && code !== 4001) this.traffic.phase.error(`socket closed ${code}`);
      const wait = code === 4001 ? 0 : Math.min(3000, jitter(100, 400) * 2 ** Math.min(this.reconnects++, 4));
      setTimeout(() => this.connect(), wait);
    });
  }

  /** Closes the socket and opens another with `since`: a client's resume. */
  resume(): void {
    this.ws?.close(4001, 'resume');
  }

  private onFrame(ws: WebSocket, f: { type: string; seq?: number; replyTo?: string; payload?: any }): void {
    if (this.ws !== ws) return;
    if (typeof f.seq === 'number') {
      if (f.seq < this.expect) {
        this.traffic.phase.repeats++;
        this.traffic.phase.error('seq repeat');
        return;
      }
      if (f.seq > this.expect) {
        // A hole: counted, and healed as a client would, by resuming from the last seq applied.
        this.traffic.phase.gaps++;
        this.traffic.phase.error('seq gap');
        ws.close(4000, 'gap');
        return;
      }
      this.expect = f.seq + 1;
      this.lastSeq = f.seq;
      if (f.type === 'message.new') {
        const m = f.payload.message as { id: string; senderId: string };
        if (m.senderId !== this.id) this.received.set(m.id, (this.received.get(m.id) ?? 0) + 1);
      }
      return;
    }
    if (f.type === 'hello') {
      if (f.payload.resync) this.traffic.phase.error('resync');
      this.lastSeq = f.payload.seq;
      this.expect = this.lastSeq + 1;
      this.open = true;
      this.reconnects = 0;
      for (const s of this.pending.values()) if (!s.timer) this.transmit(s);
      return;
    }
    if (f.type === 'ack' && f.replyTo) {
      const send = this.pending.get(this.inFlight.get(f.replyTo) ?? '');
      this.inFlight.delete(f.replyTo);
      if (send) this.acked(send, f.payload.message.id);
      return;
    }
    if (f.type === 'error' && f.replyTo) {
      const send = this.pending.get(this.inFlight.get(f.replyTo) ?? '');
      this.inFlight.delete(f.replyTo);
      const code = String(f.payload?.code);
      (send?.phase ?? this.traffic.phase).error(`send: ${code}`);
      if (!send) return;
      clearTimeout(send.timer);
      send.timer = undefined;
      if (RETRYABLE.has(code)) this.retryLater(send, Math.max(Number(f.payload.retryAfterMs ?? 0), jitter(200, 1000)));
      else {
        send.failed = code;
        this.pending.delete(send.cmid);
      }
    }
  }

  send(phase: Phase): void {
    const cmid = `${this.id}-${randomBytes(6).toString('hex')}`;
    const send: Send = { cmid, phase, sender: this, recipient: this.peer, content: `chaos ${cmid}`, createdAt: Date.now(), attempts: 0 };
    phase.sends.push(send);
    this.pending.set(cmid, send);
    if (this.open) this.transmit(send);
  }

  private transmit(send: Send): void {
    if (!this.open || !this.ws) return;
    const id = `f${++frames}`;
    send.frameId = id;
    send.attempts++;
    this.inFlight.set(id, send.cmid);
    this.ws.send(JSON.stringify({ type: 'message.send', id, payload: { conversationId: this.conversationId, content: send.content, clientMessageId: send.cmid } }));
    send.timer = setTimeout(() => {
      this.inFlight.delete(id);
      send.timer = undefined;
      send.phase.error('ack timeout');
      this.transmit(send);
    }, ACK_TIMEOUT_MS);
  }

  private retryLater(send: Send, ms: number): void {
    send.timer = setTimeout(() => {
      send.timer = undefined;
      this.transmit(send);
    }, ms);
  }

  private acked(send: Send, messageId: string): void {
    clearTimeout(send.timer);
    send.timer = undefined;
    if (send.messageId && send.messageId !== messageId) send.phase.ackMismatches++;
    if (!send.ackedAt) {
      send.ackedAt = Date.now();
      send.phase.ackLatencies.push(send.ackedAt - send.createdAt);
    }
    send.messageId = messageId;
    this.pending.delete(send.cmid);
  }

  close(): void {
    this.closing = true;
    for (const s of this.pending.values()) clearTimeout(s.timer);
    this.ws?.terminate();
  }
}

export interface TrafficOptions {
  pairs: number;
  /**
   * Conversations whose receiver never connects: their messages make
   * notifications (the receiver is offline), so "at most one notification
   * per message and receiver" is checked on real notifications.
   */
  offlinePairs?: number;
  /** Sends per second, all users together. */
  rate: number;
  /** REST reads per second, all users together. */
  restRate: number;
  jwtSecret: string;
  label: string;
}

/**
 * A load balancer's choice among the gateways in rotation (round robin), the
 * users, the open-loop send schedule and the REST readers.
 */
export class Traffic {
  readonly users: VirtualUser[] = [];
  /** The users who send: every online user. */
  private senders: VirtualUser[] = [];
  phase = new Phase('setup');
  sending = false;
  private next = 0;
  private rr = 0;
  private ticker: NodeJS.Timeout | undefined;
  private reader: NodeJS.Timeout | undefined;

  constructor(
    private readonly gateways: () => Proc[],
    private readonly opts: TrafficOptions,
  ) {}

  pickGateway(): Proc | undefined {
    const live = this.gateways().filter((g) => g.inRotation);
    if (live.length === 0) return undefined;
    return live[this.rr++ % live.length];
  }

  /** The base URL of a gateway in rotation. */
  baseUrl(): string | undefined {
    const g = this.pickGateway();
    return g ? `http://127.0.0.1:${g.port}/api/chat` : undefined;
  }

  /** Creates the users and their conversations over REST, then opens every socket. */
  async setup(): Promise<void> {
    const key = new TextEncoder().encode(this.opts.jwtSecret);
    const make = async (i: number, offline: boolean) => {
      const suffix = randomBytes(4).toString('hex');
      const id = `chaos-${this.opts.label}-${i}-${suffix}`;
      const username = `c${i}_${suffix}`;
      const token = await new SignJWT({ username }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setSubject(id).setIssuedAt().setExpirationTime('6h').sign(key);
      return new VirtualUser(id, username, token, this, offline);
    };
    const offline = this.opts.offlinePairs ?? 0;
    for (let i = 0; i < (this.opts.pairs + offline) * 2; i++) this.users.push(await make(i, i >= this.opts.pairs * 2 && i % 2 === 1));
    this.senders = this.users.filter((u) => !u.offline);
    for (const u of this.users) await this.rest('GET', '/conversations', u, { strict: true });
    for (let i = 0; i < this.users.length; i += 2) {
      const [a, b] = [this.users[i]!, this.users[i + 1]!];
      const res = await this.rest('GET', `/conversations/with/${b.username}`, a, { strict: true });
      a.peer = b;
      b.peer = a;
      a.conversationId = b.conversationId = res.data.id;
    }
    for (const u of this.users) u.connect();
    const deadline = Date.now() + 60_000;
    while (this.users.some((u) => !u.connected)) {
      if (Date.now() > deadline) throw new Error(`${this.users.filter((u) => !u.connected).length} sockets did not open`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Starts the send schedule and the readers; both follow `sending` and `phase`. */
  start(): void {
    const tickMs = 10;
    let owed = 0;
    let last = performance.now();
    this.ticker = setInterval(() => {
      const now = performance.now();
      owed += ((now - last) / 1000) * this.opts.rate;
      last = now;
      if (!this.sending) {
        owed = 0;
        return;
      }
      for (; owed >= 1; owed--) this.senders[this.next++ % this.senders.length]!.send(this.phase);
    }, tickMs);
    const readEvery = 1000 / Math.max(0.1, this.opts.restRate);
    this.reader = setInterval(() => {
      if (!this.sending) return;
      const u = this.users[Math.floor(Math.random() * this.users.length)]!;
      const paths = ['/conversations?limit=20', '/conversations/unread-count', `/conversations/${u.conversationId}/messages?limit=20`];
      void this.rest('GET', paths[Math.floor(Math.random() * paths.length)]!, u).catch(() => undefined);
    }, readEvery);
  }

  /**
   * One REST call through the load balancer: a refused or reset connection
   * (a gateway gone) is tried once more on another gateway, as a proxy
   * would; an answer is never retried. `strict` throws on anything but 2xx.
   */
  async rest(method: string, path: string, user: VirtualUser, opts: { strict?: boolean; uncounted?: boolean } = {}): Promise<any> {
    // The harness's own checks are not client traffic: they count in a phase nobody reads.
    const phase = opts.uncounted ? new Phase('check') : this.phase;
    for (let attempt = 0; ; attempt++) {
      const base = this.baseUrl();
      if (!base) throw new Error('no gateway in rotation');
      let res: Response;
      try {
        res = await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${user.token}` }, signal: AbortSignal.timeout(10_000) });
      } catch (err) {
        phase.rest.network++;
        phase.error(`rest: ${(err as Error).name === 'TimeoutError' ? 'timeout' : 'connection failed'}`);
        if (attempt < 1 && !opts.strict) continue;
        if (opts.strict && attempt < 20) {
          await new Promise((r) => setTimeout(r, 250));
          continue;
        }
        throw err;
      }
      const body = await res.json().catch(() => null);
      if (res.status >= 500) {
        phase.rest.status5xx++;
        phase.error(`rest: ${res.status} ${body?.error?.code ?? ''}`.trim());
      } else if (res.status >= 400) {
        phase.rest.status4xx++;
        phase.error(`rest: ${res.status} ${body?.error?.code ?? ''}`.trim());
      } else phase.rest.ok++;
      if (opts.strict && res.status >= 300) {
        if (res.status >= 500 && attempt < 20) {
          await new Promise((r) => setTimeout(r, 250));
          continue;
        }
        throw new Error(`${method} ${path} answered ${res.status}: ${JSON.stringify(body)}`);
      }
      return body;
    }
  }

  stop(): void {
    this.sending = false;
    clearInterval(this.ticker);
    clearInterval(this.reader);
    for (const u of this.users) u.close();
  }
}
