import { EventEmitter } from 'eventemitter3';
import { decodeJwt } from 'jose';
import { ChatApiError, isApiError, isFinalSendError } from './errors';
import {
  ACK_TIMEOUT_MS,
  classifySeq,
  CLOSE_POLICY,
  fullJitterDelay,
  HEARTBEAT_GRACE_MS,
  MAX_SEND_ATTEMPTS,
  RECONNECT_INITIAL_DELAY_MS,
  RECONNECT_MAX_DELAY_MS,
  TYPING_THROTTLE_MS,
} from './policy';
import { ChatRest, type RestOptions } from './rest';
import { SendQueue } from './send-queue';
import type {
  ClientEventMap,
  ConnectionState,
  DurableEvent,
  ErrorCode,
  Hello,
  KeyValueStorage,
  Message,
  PendingSend,
  WebSocketFactory,
  WebSocketLike,
} from './types';

export interface ChatClientOptions extends RestOptions {
  /** The WebSocket constructor: the browser's by default; pass `ws`'s in Node. */
  WebSocket?: WebSocketFactory;
  /** Where pending sends survive a reload: `localStorage` when there is one; `null` keeps them in memory. */
  storage?: KeyValueStorage | null;
  /** Prefix of the storage keys. */
  storageNamespace?: string;
  ackTimeoutMs?: number;
  maxSendAttempts?: number;
  reconnect?: { initialDelayMs?: number; maxDelayMs?: number };
  heartbeatGraceMs?: number;
  /** The last seq this app applied in an earlier life: the first connect resumes after it. */
  since?: number;
}

type Handlers = { [K in keyof ClientEventMap]: (payload: ClientEventMap[K]) => void };

interface InFlight {
  clientMessageId: string;
  timer: ReturnType<typeof setTimeout>;
}

/** What became of a change frame: its ack, its error, or nothing (the socket went, or no answer in time). */
type CallOutcome = { kind: 'ack'; message: Message } | { kind: 'error'; error: ChatApiError } | { kind: 'lost' };

/** The frames of SPEC 10 that change a stored message; each is answered with an ack carrying `{ message }`. */
type ChangeFrame =
  | { type: 'message.edit'; payload: { conversationId: string; messageId: string; content: string } }
  | { type: 'message.delete'; payload: { conversationId: string; messageId: string } }
  | { type: 'reaction.add' | 'reaction.remove'; payload: { conversationId: string; messageId: string; emoji: string } };

const SOCKET_OPEN = 1;
const DURABLE_TYPES: ReadonlySet<string> = new Set<DurableEvent['type']>([
  'message.new',
  'message.read',
  'unread.updated',
  'message.updated',
  'message.deleted',
  'reaction.updated',
]);
const EPHEMERAL_TYPES: ReadonlySet<string> = new Set(['typing', 'user.online', 'user.offline']);

/**
 * One user's connection to the chat: REST (`client.rest`), a WebSocket that
 * reconnects and resumes by itself, and a send queue.
 *
 * Promises it keeps for the app:
 * - every durable event is emitted once, in `seq` order, across reconnects
 *   (a reconnect asks for `since` = the last seq applied; a hole is filled
 *   from `GET /events`; what the server can no longer replay is a `resync`);
 * - every send is stored once: it keeps its clientMessageId through ack
 *   timeouts, reconnects and page reloads, and is `sent` on the server's
 *   word (an ack, or its own `message.new`), `failed` only on a refusal that
 *   a retry cannot change.
 */
export class ChatClient {
  readonly rest: ChatRest;
  private readonly emitter = new EventEmitter<Handlers>();
  private readonly queue: SendQueue;
  private readonly WebSocketImpl: WebSocketFactory;
  private readonly opts: Required<Pick<ChatClientOptions, 'ackTimeoutMs' | 'maxSendAttempts' | 'heartbeatGraceMs'>> & {
    initialDelayMs: number;
    maxDelayMs: number;
  };

  private _state: ConnectionState = 'idle';
  private _lastSeq: number | undefined;
  private _userId: string | undefined;
  private hello: Hello | undefined;
  private ws: WebSocketLike | null = null;
  /** Bumped by every (dis)connect: an older attempt's late answer is ignored. */
  private generation = 0;
  private attempt = 0;
  private wantConnected = false;
  private refreshToken = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private livenessTimer: ReturnType<typeof setTimeout> | undefined;
  private releaseTimer: ReturnType<typeof setTimeout> | undefined;
  private retainers = 0;
  private readonly inFlight = new Map<string, InFlight>();
  private readonly retryTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly pings = new Map<string, () => void>();
  /** Change frames (edit, delete, reactions) waiting for their answer, by frame id. */
  private readonly calls = new Map<string, { settle: (outcome: CallOutcome) => void; timer: ReturnType<typeof setTimeout> }>();
  /** Per message, the last change queued: the next one waits for it. */
  private readonly changeChains = new Map<string, Promise<unknown>>();
  private readonly typingSentAt = new Map<string, number>();
  private frameIds = 0;
  /** Durable events that arrived past a hole, held until the hole is filled. */
  private held: DurableEvent[] = [];
  private catchingUp: Promise<void> | undefined;
  private readonly windowListeners: Array<[string, () => void]> = [];

  constructor(options: ChatClientOptions) {
    this.rest = new ChatRest(options);
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketFactory }).WebSocket;
    if (!WS) throw new Error('ChatClient: no WebSocket implementation; pass options.WebSocket (e.g. the `ws` package in Node)');
    this.WebSocketImpl = WS;
    this.queue = new SendQueue(options.storage === undefined ? defaultStorage() : options.storage, options.storageNamespace ?? 'chat');
    this.opts = {
      ackTimeoutMs: options.ackTimeoutMs ?? ACK_TIMEOUT_MS,
      maxSendAttempts: options.maxSendAttempts ?? MAX_SEND_ATTEMPTS,
      heartbeatGraceMs: options.heartbeatGraceMs ?? HEARTBEAT_GRACE_MS,
      initialDelayMs: options.reconnect?.initialDelayMs ?? RECONNECT_INITIAL_DELAY_MS,
      maxDelayMs: options.reconnect?.maxDelayMs ?? RECONNECT_MAX_DELAY_MS,
    };
    this._lastSeq = options.since;
  }

  get state(): ConnectionState {
    return this._state;
  }
  /** The last durable seq applied; `undefined` before the first hello. */
  get lastSeq(): number | undefined {
    return this._lastSeq;
  }
  get userId(): string | undefined {
    return this._userId;
  }
  /** The latest hello: heartbeat and typing timings, the user id. */
  get session(): Hello | undefined {
    return this.hello;
  }

  on<K extends keyof ClientEventMap>(type: K, handler: (payload: ClientEventMap[K]) => void): () => void {
    this.emitter.on(type, handler as never);
    return () => void this.emitter.off(type, handler as never);
  }

  /** Opens the connection (and keeps it open, reconnecting) until `disconnect()` or `close()`. */
  connect(): void {
    if (this.isTerminal()) throw new Error(`ChatClient: cannot connect once ${this._state}`);
    if (this.wantConnected) return;
    this.wantConnected = true;
    this.listenToBrowser();
    void this.open();
  }

  /** Closes the socket but keeps the client usable: `connect()` resumes where it stopped. */
  disconnect(): void {
    if (this.isTerminal()) return;
    this.wantConnected = false;
    this.generation++;
    this.dropSocket(1000, 'client disconnect');
    clearTimeout(this.reconnectTimer);
    this.unlistenToBrowser();
    this.setState('idle');
  }

  /**
   * For UI frameworks: holds the connection open while anyone retains it.
   * The last release disconnects on the next tick, so a component that
   * unmounts and mounts again at once (React StrictMode) never drops the
   * connection nor opens a second one.
   */
  retain(): () => void {
    this.retainers++;
    clearTimeout(this.releaseTimer);
    if (!this.wantConnected && !this.isTerminal()) this.connect();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.retainers > 0) return;
      this.releaseTimer = setTimeout(() => {
        if (this.retainers === 0) this.disconnect();
      }, 0);
    };
  }

  /** Ends the client for good: the socket, every timer and every listener are released. */
  close(): void {
    if (this._state === 'closed') return;
    this.disconnect();
    this.settle('closed');
  }

  // ---- sends -------------------------------------------------------------

  /**
   * Queues a message and sends it as soon as the connection is open. The
   * returned entry's `clientMessageId` is what the `sent` event and the
   * stored message carry, for reconciling an optimistic rendering.
   */
  send(conversationId: string, content: string, opts: { clientMessageId?: string } = {}): PendingSend {
    const entry: PendingSend = {
      clientMessageId: opts.clientMessageId ?? newClientMessageId(),
      conversationId,
      content,
      state: 'pending',
      createdAt: new Date().toISOString(),
      attempts: 0,
    };
    const existing = this.queue.get(entry.clientMessageId);
    if (existing) return existing;
    this.queue.add(entry);
    this.emitPending();
    this.pump(conversationId);
    return entry;
  }

  /** Sends a `failed` message again, with the same clientMessageId (so it can never be stored twice). */
  retry(clientMessageId: string): void {
    const entry = this.queue.get(clientMessageId);
    if (!entry || entry.state !== 'failed') return;
    const { error: _dropped, ...rest } = entry;
    this.queue.add({ ...rest, state: 'pending', attempts: 0 });
    this.emitPending();
    this.pump(entry.conversationId);
  }

  /** Forgets a queued send (the user gave up on it). One already on its way may still be stored. */
  discard(clientMessageId: string): void {
    this.stopWaiting(clientMessageId);
    const gone = this.queue.remove(clientMessageId);
    if (!gone) return;
    this.emitPending();
    this.pump(gone.conversationId);
  }

  /** Pending and failed sends, oldest first; one conversation's when given. */
  pending(conversationId?: string): PendingSend[] {
    return this.queue.list(conversationId);
  }

  // ---- other frames ------------------------------------------------------

  /** The typing indicator: starts are throttled, a stop is sent only after a start. */
  setTyping(conversationId: string, isTyping: boolean): void {
    if (this._state !== 'open') return;
    const last = this.typingSentAt.get(conversationId);
    if (isTyping) {
      if (last !== undefined && Date.now() - last < TYPING_THROTTLE_MS) return;
      this.typingSentAt.set(conversationId, Date.now());
      this.sendFrame({ type: 'typing.start', payload: { conversationId } });
    } else if (last !== undefined) {
      this.typingSentAt.delete(conversationId);
      this.sendFrame({ type: 'typing.stop', payload: { conversationId } });
    }
  }

  /** An application round trip over the socket; rejects when not open or after the ack timeout. */
  ping(): Promise<void> {
    return new Promise((resolve, reject) => {
      const id = this.nextFrameId('p');
      if (!this.sendFrame({ type: 'ping', id })) return reject(new Error('not connected'));
      const timer = setTimeout(() => {
        this.pings.delete(id);
        reject(new Error('no pong'));
      }, this.opts.ackTimeoutMs);
      this.pings.set(id, () => (clearTimeout(timer), resolve()));
    });
  }

  // ---- changes of stored messages (SPEC 10) ------------------------------

  /**
   * Edits a message of this user; resolves with the message as it is now.
   * Over the socket when it is open, else (or when the socket goes before
   * the answer) over REST: see `change`.
   */
  editMessage(conversationId: string, messageId: string, content: string): Promise<Message> {
    return this.change({ type: 'message.edit', payload: { conversationId, messageId, content } }, () =>
      this.rest.editMessage(conversationId, messageId, content),
    );
  }

  /** Deletes a message of this user for both users; resolves with the tombstone. */
  deleteMessage(conversationId: string, messageId: string): Promise<Message> {
    return this.change({ type: 'message.delete', payload: { conversationId, messageId } }, () => this.rest.deleteMessage(conversationId, messageId));
  }

  /** Reacts to a message with one emoji; resolves with the message. */
  addReaction(conversationId: string, messageId: string, emoji: string): Promise<Message> {
    return this.change({ type: 'reaction.add', payload: { conversationId, messageId, emoji } }, () => this.rest.addReaction(conversationId, messageId, emoji));
  }

  /** Takes this user's reaction back; resolves with the message. */
  removeReaction(conversationId: string, messageId: string, emoji: string): Promise<Message> {
    return this.change({ type: 'reaction.remove', payload: { conversationId, messageId, emoji } }, () =>
      this.rest.removeReaction(conversationId, messageId, emoji),
    );
  }

  /**
   * One change of a stored message, after the changes of the same message
   * queued before it. The gateway handles a socket's frames concurrently, so
   * a 👍 added and taken back at once could otherwise be stored the other
   * way round. Changes are not queued for later like sends: the user is
   * waiting for the answer (an edit may be refused as too late), so a change
   * made while the socket is away goes over REST at once. Every change is
   * idempotent on the server (the same content, a deleted message, a reaction
   * already there or already gone all answer 200 and change nothing), so a
   * frame whose answer was lost is asked again over REST without harm.
   */
  private change(frame: ChangeFrame, viaRest: () => Promise<Message>): Promise<Message> {
    const messageId = frame.payload.messageId;
    const previous = this.changeChains.get(messageId) ?? Promise.resolve();
    const run = previous.then(
      () => this.changeOnce(frame, viaRest),
      () => this.changeOnce(frame, viaRest), // the previous change's failure is its caller's, not this one's
    );
    this.changeChains.set(messageId, run);
    const forget = () => {
      if (this.changeChains.get(messageId) === run) this.changeChains.delete(messageId);
    };
    run.then(forget, forget);
    return run;
  }

  private async changeOnce(frame: ChangeFrame, viaRest: () => Promise<Message>): Promise<Message> {
    if (this._state === 'closed') throw new Error('ChatClient: closed');
    if (this._state === 'open') {
      const outcome = await this.call(frame);
      if (outcome.kind === 'ack') return outcome.message;
      if (outcome.kind === 'error') throw outcome.error;
      if (this.isTerminal()) throw new Error(`ChatClient: ${this._state}`);
    }
    return viaRest();
  }

  /** Sends one frame and waits for its ack or error; `lost` when the socket goes first or nothing comes within the ack timeout. */
  private call(frame: ChangeFrame): Promise<CallOutcome> {
    return new Promise((resolve) => {
      const id = this.nextFrameId('x');
      if (!this.sendFrame({ ...frame, id })) return resolve({ kind: 'lost' });
      const timer = setTimeout(() => {
        this.calls.delete(id);
        resolve({ kind: 'lost' });
      }, this.opts.ackTimeoutMs);
      this.calls.set(id, {
        timer,
        settle: (outcome) => {
          clearTimeout(timer);
          this.calls.delete(id);
          resolve(outcome);
        },
      });
    });
  }

  // ---- connection --------------------------------------------------------

  private async open(): Promise<void> {
    const generation = ++this.generation;
    clearTimeout(this.reconnectTimer);
    if (isBrowserOffline()) return this.setState('offline');
    this.setState(this.hello ? 'reconnecting' : 'connecting');
    let ticket: string;
    try {
      // The token's subject names the user before any hello: the pending
      // queue a reload left for them is back in view (and sent) at once.
      const token = await this.rest.getTokenFor({ forceRefresh: this.refreshToken });
      this.refreshToken = false;
      const sub = safeSubject(token);
      if (sub && generation === this.generation) this.bindUser(sub);
      ticket = (await this.rest.createWsTicket()).ticket;
    } catch (err) {
      if (generation !== this.generation) return;
      if (isApiError(err, 'UNAUTHORIZED')) return this.settle('unauthorized');
      this.emitter.emit('error', err as Error);
      return this.scheduleReconnect();
    }
    if (generation !== this.generation) return;
    const ws = new this.WebSocketImpl(this.socketUrl(ticket));
    this.ws = ws;
    ws.onmessage = (ev) => {
      if (ws === this.ws) this.onFrame(typeof ev.data === 'string' ? ev.data : String(ev.data));
    };
    ws.onclose = (ev) => {
      if (ws === this.ws) this.onSocketClosed(ev.code, ev.reason);
    };
    ws.onerror = () => undefined; // a failed or broken socket also closes: handled there
    this.armLiveness(this.hello?.heartbeatMs ?? 25_000);
  }

  private socketUrl(ticket: string): string {
    const base = this.rest.baseUrl || (globalThis as { location?: { origin: string } }).location?.origin || '';
    const url = new URL(`${base.replace(/^http/, 'ws')}/api/chat/ws`);
    url.searchParams.set('ticket', ticket);
    if (this._lastSeq !== undefined) url.searchParams.set('since', String(this._lastSeq));
    return url.toString();
  }

  private onSocketClosed(code: number, reason: string): void {
    this.ws = null;
    this.forgetSocketState();
    if (!this.wantConnected) return;
    if (code === CLOSE_POLICY && /token expired/i.test(reason)) {
      // Not a failure: get a fresh token and come straight back.
      this.refreshToken = true;
      this.attempt = 0;
      this.setState('reconnecting');
      void this.open();
      return;
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (!this.wantConnected) return;
    clearTimeout(this.reconnectTimer);
    if (isBrowserOffline()) return this.setState('offline');
    this.setState('reconnecting');
    const delay = fullJitterDelay(this.attempt++, this.opts.initialDelayMs, this.opts.maxDelayMs);
    this.reconnectTimer = setTimeout(() => void this.open(), delay);
  }

  /**
   * Browsers do not show WebSocket pings to scripts, so liveness is read
   * from traffic: silence for the server's ping interval brings a JSON ping,
   * and silence for the grace after it means the connection is dead.
   */
  private armLiveness(intervalMs: number): void {
    clearTimeout(this.livenessTimer);
    this.livenessTimer = setTimeout(() => {
      if (!this.ws) return;
      if (this._state === 'open') this.sendFrame({ type: 'ping', id: this.nextFrameId('h') });
      this.livenessTimer = setTimeout(() => {
        if (!this.ws) return;
        this.dropSocket(4000, 'no heartbeat');
        this.scheduleReconnect();
      }, this.opts.heartbeatGraceMs);
    }, intervalMs);
  }

  private dropSocket(code: number, reason: string): void {
    const ws = this.ws;
    this.ws = null;
    this.forgetSocketState();
    if (ws) {
      ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(code, reason);
      } catch {
        /* already closing */
      }
    }
  }

  /** What belonged to the socket that went: ack timers (resent on the next hello), pings, typing. */
  private forgetSocketState(): void {
    clearTimeout(this.livenessTimer);
    for (const f of this.inFlight.values()) clearTimeout(f.timer);
    this.inFlight.clear();
    this.pings.clear();
    // A change frame the socket took with it: asked again over REST at once (changes are idempotent).
    for (const c of [...this.calls.values()]) c.settle({ kind: 'lost' });
    this.typingSentAt.clear();
  }

  private listenToBrowser(): void {
    const target = globalThis as unknown as { addEventListener?: (t: string, f: () => void) => void };
    if (typeof target.addEventListener !== 'function' || this.windowListeners.length > 0) return;
    const online = () => {
      if (!this.wantConnected || this._state === 'open') return;
      this.attempt = 0; // the network is back: now, not after the backoff
      void this.open();
    };
    const offline = () => {
      if (!this.wantConnected) return;
      this.generation++;
      this.dropSocket(1001, 'offline');
      clearTimeout(this.reconnectTimer);
      this.setState('offline');
    };
    this.windowListeners.push(['online', online], ['offline', offline]);
    for (const [t, f] of this.windowListeners) target.addEventListener(t, f);
  }

  private unlistenToBrowser(): void {
    const target = globalThis as unknown as { removeEventListener?: (t: string, f: () => void) => void };
    for (const [t, f] of this.windowListeners.splice(0)) target.removeEventListener?.(t, f);
  }

  // ---- frames ------------------------------------------------------------

  private onFrame(text: string): void {
    let frame: { type?: string; seq?: number; replyTo?: string; payload?: any };
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    this.armLiveness(this.hello?.heartbeatMs ?? 25_000);
    const { type } = frame;
    if (type === 'hello') return this.onHello(frame.payload as Hello);
    if (typeof frame.seq === 'number' && type && DURABLE_TYPES.has(type)) return this.onDurable(frame as DurableEvent);
    if (type === 'ack' && frame.replyTo) return this.onAck(frame.replyTo, frame.payload);
    if (type === 'error' && frame.replyTo) return this.onErrorFrame(frame.replyTo, frame.payload);
    if (type === 'pong' && frame.replyTo) return this.pings.get(frame.replyTo)?.();
    if (type && EPHEMERAL_TYPES.has(type)) this.emitter.emit(type as 'typing', frame.payload);
  }

  private onHello(hello: Hello): void {
    const first = this.hello === undefined;
    this.hello = hello;
    this.bindUser(hello.userId);
    this.attempt = 0;
    if (hello.resync) {
      // Too old to replay: the app reloads over REST, and goes on from now.
      this.held = [];
      this._lastSeq = hello.seq;
      this.emitter.emit('resync', { reason: 'retention' });
    } else if (this._lastSeq === undefined) {
      this._lastSeq = hello.seq;
    } else if (hello.seq > this._lastSeq) {
      void this.catchUp(); // the replay fell short of the latest seq (should not happen): fill the hole
    }
    this.setState('open');
    this.emitter.emit('hello', hello);
    if (!first) this.armLiveness(hello.heartbeatMs);
    for (const conversationId of new Set(this.queue.list().map((e) => e.conversationId))) this.pump(conversationId);
  }

  private onDurable(event: DurableEvent): void {
    if (this._lastSeq === undefined) {
      // Live events before the first hello cannot happen (hello comes first without `since`); keep them for order.
      this.held.push(event);
      return;
    }
    const verdict = this.catchingUp ? 'gap' : classifySeq(this._lastSeq, event.seq);
    if (verdict === 'duplicate') return;
    if (verdict === 'gap') {
      this.held.push(event);
      void this.catchUp();
      return;
    }
    this.apply(event);
  }

  private apply(event: DurableEvent): void {
    this._lastSeq = event.seq;
    if (event.type === 'message.new') this.reconcile(event.payload.message);
    this.emitter.emit(event.type, event.payload as never);
    this.emitter.emit('event', event);
  }

  /** Reads the missing events over REST, then applies what was held, in order. */
  private catchUp(): Promise<void> {
    this.catchingUp ??= (async () => {
      try {
        for (;;) {
          const since = this._lastSeq ?? 0;
          const page = await this.rest.getEvents(since, 100);
          for (const e of page.data) if (classifySeq(this._lastSeq ?? 0, e.seq) === 'apply') this.apply(e);
          if (!page.meta.hasMore || page.data.length === 0) break;
        }
      } catch (err) {
        if (isApiError(err, 'RESYNC_REQUIRED')) {
          const latest = Math.max(this._lastSeq ?? 0, ...this.held.map((e) => e.seq));
          this.held = [];
          this._lastSeq = latest;
          this.emitter.emit('resync', { reason: 'gap' });
        } else {
          // No answer: reconnecting resumes from the last seq applied, which fills the hole.
          this.emitter.emit('error', err as Error);
          this.held = [];
          this.dropSocket(4001, 'catch-up failed');
          this.scheduleReconnect();
        }
      } finally {
        this.catchingUp = undefined;
      }
      const held = this.held.sort((a, b) => a.seq - b.seq);
      this.held = [];
      for (const e of held) if (classifySeq(this._lastSeq ?? 0, e.seq) === 'apply') this.apply(e);
      if (held.some((e) => (this._lastSeq ?? 0) < e.seq)) void this.catchUp();
    })();
    return this.catchingUp;
  }

  // ---- the send queue ----------------------------------------------------

  /**
   * Sends a conversation's oldest pending message unless one of its sends
   * is already on its way. One at a time per conversation: the gateway
   * handles a socket's frames concurrently, so two sends in flight at once
   * could be stored in either order, and the other user would read them so.
   * A send costs one round trip; a human never notices the wait.
   */
  private pump(conversationId: string): void {
    if (this._state !== 'open') return;
    const queued = this.queue.list(conversationId);
    if (queued.some((e) => this.isWaiting(e.clientMessageId))) return;
    const head = queued.find((e) => e.state === 'pending');
    if (head) this.transmit(head.clientMessageId);
  }

  private isWaiting(clientMessageId: string): boolean {
    return this.retryTimers.has(clientMessageId) || [...this.inFlight.values()].some((f) => f.clientMessageId === clientMessageId);
  }

  private transmit(clientMessageId: string): void {
    const entry = this.queue.get(clientMessageId);
    if (!entry || entry.state !== 'pending' || this._state !== 'open' || this.isWaiting(clientMessageId)) return;
    const id = this.nextFrameId('s');
    const sent = this.sendFrame({
      type: 'message.send',
      id,
      payload: { conversationId: entry.conversationId, content: entry.content, clientMessageId },
    });
    if (!sent) return; // the socket is going: the next hello sends it
    this.queue.update(clientMessageId, { attempts: entry.attempts + 1 });
    const timer = setTimeout(() => {
      this.inFlight.delete(id);
      const now = this.queue.get(clientMessageId);
      if (!now || now.state !== 'pending') return;
      if (now.attempts >= this.opts.maxSendAttempts) return this.fail(clientMessageId, 'ACK_TIMEOUT', 'no answer from the server');
      this.transmit(clientMessageId); // the same clientMessageId: stored once whatever happened to the first
    }, this.opts.ackTimeoutMs);
    this.inFlight.set(id, { clientMessageId, timer });
  }

  private onAck(replyTo: string, payload: { message?: Message } | undefined): void {
    const call = this.calls.get(replyTo);
    if (call) return call.settle(payload?.message ? { kind: 'ack', message: payload.message } : { kind: 'lost' });
    const flight = this.inFlight.get(replyTo);
    if (!flight) return;
    clearTimeout(flight.timer);
    this.inFlight.delete(replyTo);
    if (payload?.message) this.confirm(flight.clientMessageId, payload.message);
    else {
      const entry = this.queue.get(flight.clientMessageId);
      if (entry) this.pump(entry.conversationId); // an ack without the message: ask again (the id makes it safe)
    }
  }

  private onErrorFrame(replyTo: string, payload: { code: ErrorCode; message: string; details?: unknown; retryAfterMs?: number }): void {
    const call = this.calls.get(replyTo);
    if (call) return call.settle({ kind: 'error', error: new ChatApiError(payload.code, payload.message, 0, payload.details, payload.retryAfterMs) });
    const flight = this.inFlight.get(replyTo);
    if (!flight) return;
    clearTimeout(flight.timer);
    this.inFlight.delete(replyTo);
    const { clientMessageId } = flight;
    if (isFinalSendError(payload.code)) return this.fail(clientMessageId, payload.code, payload.message);
    const entry = this.queue.get(clientMessageId);
    if (!entry) return;
    if (payload.code !== 'RATE_LIMITED' && entry.attempts >= this.opts.maxSendAttempts) return this.fail(clientMessageId, payload.code, payload.message);
    // Limited or unavailable: the same send again later (a 503 to a send means it was not stored).
    const delay = payload.retryAfterMs ?? fullJitterDelay(entry.attempts, 1000, this.opts.maxDelayMs);
    this.retryTimers.set(
      clientMessageId,
      setTimeout(() => {
        this.retryTimers.delete(clientMessageId);
        this.transmit(clientMessageId);
      }, delay),
    );
  }

  /** A stored message from this user with a queued clientMessageId: that send is done, ack or not. */
  private reconcile(message: Message): void {
    if (message.senderId === this._userId && message.clientMessageId && this.queue.get(message.clientMessageId))
      this.confirm(message.clientMessageId, message);
  }

  private confirm(clientMessageId: string, message: Message): void {
    this.stopWaiting(clientMessageId);
    const done = this.queue.confirm(clientMessageId, message);
    if (!done) return;
    this.emitter.emit('sent', done);
    this.emitPending();
    this.pump(done.conversationId);
  }

  private fail(clientMessageId: string, code: ErrorCode | 'ACK_TIMEOUT', message: string): void {
    this.stopWaiting(clientMessageId);
    const failed = this.queue.update(clientMessageId, { state: 'failed', error: { code, message } });
    if (!failed) return;
    this.emitPending();
    this.pump(failed.conversationId); // the next one may still go through (a failure is this message's own)
  }

  private stopWaiting(clientMessageId: string): void {
    for (const [id, f] of this.inFlight)
      if (f.clientMessageId === clientMessageId) {
        clearTimeout(f.timer);
        this.inFlight.delete(id);
      }
    clearTimeout(this.retryTimers.get(clientMessageId));
    this.retryTimers.delete(clientMessageId);
  }

  private emitPending(): void {
    this.emitter.emit('pending', this.queue.list());
  }

  // ---- helpers -----------------------------------------------------------

  private bindUser(userId: string): void {
    if (this._userId !== undefined && this._userId !== userId) {
      // Another user on the same client: nothing of the first may carry over.
      this._lastSeq = undefined;
      this.held = [];
    }
    this._userId = userId;
    this.queue.bindUser(userId);
    this.emitPending();
  }

  private sendFrame(frame: { type: string; id?: string; payload?: unknown }): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== SOCKET_OPEN) return false;
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  private nextFrameId(kind: string): string {
    return `${kind}${++this.frameIds}`;
  }

  private setState(state: ConnectionState): void {
    if (state === this._state) return;
    const previous = this._state;
    this._state = state;
    this.emitter.emit('state', { state, previous });
  }

  private isTerminal(): boolean {
    return this._state === 'closed' || this._state === 'unauthorized';
  }

  /** A terminal state: nothing reconnects, every timer is cleared, listeners are let go. */
  private settle(state: 'closed' | 'unauthorized'): void {
    this.wantConnected = false;
    this.generation++;
    this.dropSocket(1000, state);
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.releaseTimer);
    for (const t of this.retryTimers.values()) clearTimeout(t);
    this.retryTimers.clear();
    this.unlistenToBrowser();
    this.setState(state);
    if (state === 'closed') this.emitter.removeAllListeners();
  }
}

/** A clientMessageId: 1–64 of [A-Za-z0-9_-] (SPEC 4); random enough never to meet another. */
export function newClientMessageId(): string {
  return `c-${globalThis.crypto.randomUUID()}`;
}

function safeSubject(token: string): string | undefined {
  try {
    const sub = decodeJwt(token).sub;
    return typeof sub === 'string' && sub.length > 0 ? sub : undefined;
  } catch {
    return undefined; // an opaque token: the hello names the user instead
  }
}

function defaultStorage(): KeyValueStorage | null {
  try {
    const storage = (globalThis as { localStorage?: KeyValueStorage }).localStorage;
    return storage ?? null;
  } catch {
    return null; // some browsers throw on access when storage is disabled
  }
}

function isBrowserOffline(): boolean {
  const nav = (globalThis as { navigator?: { onLine?: boolean } }).navigator;
  return nav?.onLine === false;
}

export { ChatApiError };
