import WebSocket from 'ws';
import type { IncomingMessage } from 'node:http';

/** A server → client frame as it arrives on the socket. */
export interface Frame {
  type: string;
  seq?: number;
  replyTo?: string;
  payload?: any;
}

export interface WsOptions {
  token?: string;
  ticket?: string;
  since?: string | number;
  origin?: string;
  headers?: Record<string, string>;
}

export function wsUrl(port: number, opts: Pick<WsOptions, 'token' | 'ticket' | 'since'> = {}): string {
  const q = new URLSearchParams();
  if (opts.token !== undefined) q.set('token', opts.token);
  if (opts.ticket !== undefined) q.set('ticket', opts.ticket);
  if (opts.since !== undefined) q.set('since', String(opts.since));
  const qs = q.toString();
  return `ws://127.0.0.1:${port}/api/chat/ws${qs ? `?${qs}` : ''}`;
}

const isDurable = (f: Frame) => typeof f.seq === 'number';
let frameIds = 0;

/**
 * One test socket: keeps every frame it receives, in order. `next` hands out
 * each frame once (the oldest unclaimed one that matches), waiting for it if
 * it has not come yet.
 */
export class WsClient {
  readonly frames: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly claimed = new Set<Frame>();
  private waiters: Array<{ match: (f: Frame) => boolean; resolve: (f: Frame) => void; reject: (e: Error) => void }> = [];
  private closeCode: number | undefined;

  constructor(readonly ws: WebSocket) {
    ws.on('error', () => undefined); // a refused or reset socket shows up as its close code
    ws.on('message', (data, isBinary) => {
      const frame = JSON.parse(isBinary ? '"binary"' : data.toString()) as Frame;
      this.frames.push(frame);
      const waiter = this.waiters.find((w) => w.match(frame));
      if (waiter) {
        this.claimed.add(frame);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        waiter.resolve(frame);
      }
    });
    this.closed = new Promise((resolve) =>
      ws.once('close', (code, reason) => {
        this.closeCode = code;
        for (const w of this.waiters.splice(0)) w.reject(new Error(`socket closed with ${code} (${reason.toString()}) before a matching frame`));
        resolve({ code, reason: reason.toString() });
      }),
    );
  }

  /** The oldest unclaimed frame that matches, now or within `timeoutMs`. */
  next(match: (f: Frame) => boolean = () => true, timeoutMs = 5000): Promise<Frame> {
    const ready = this.frames.find((f) => !this.claimed.has(f) && match(f));
    if (ready) {
      this.claimed.add(ready);
      return Promise.resolve(ready);
    }
    if (this.closeCode !== undefined) return Promise.reject(new Error(`socket closed with ${this.closeCode} before a matching frame`));
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (f: Frame) => {
          clearTimeout(timer);
          resolve(f);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no matching frame within ${timeoutMs} ms; got: ${JSON.stringify(this.frames.map((f) => f.type))}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** The next unclaimed frame of a type (and, optionally, for a request id). */
  nextOf(type: string, timeoutMs = 5000, replyTo?: string): Promise<Frame> {
    return this.next((f) => f.type === type && (replyTo === undefined || f.replyTo === replyTo), timeoutMs);
  }

  /** Resolves once no matching frame arrived for `ms`; throws if one did. */
  async none(match: (f: Frame) => boolean, ms: number): Promise<void> {
    const seen = this.frames.filter(match).length;
    await new Promise((r) => setTimeout(r, ms));
    const now = this.frames.filter(match);
    if (now.length > seen) throw new Error(`unexpected frame: ${JSON.stringify(now.at(-1))}`);
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Sends a frame with a fresh id and waits for the frame that answers it (ack, pong or error). */
  async request(type: string, payload?: unknown, timeoutMs = 5000): Promise<Frame> {
    const id = `req-${++frameIds}`;
    const reply = this.next((f) => f.replyTo === id, timeoutMs);
    this.send({ type, id, ...(payload === undefined ? {} : { payload }) });
    return reply;
  }

  /** The durable frames received so far, in arrival order. */
  durable(): Frame[] {
    return this.frames.filter(isDurable);
  }

  /** Waits until at least `n` durable frames have arrived. */
  async waitDurable(n: number, timeoutMs = 10_000): Promise<Frame[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.durable().length < n) {
      if (Date.now() > deadline || this.ws.readyState === WebSocket.CLOSED)
        throw new Error(`expected ${n} durable frames, got ${this.durable().length}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return this.durable();
  }

  close(code = 1000): Promise<{ code: number; reason: string }> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(code);
    return this.closed;
  }
}

/** Opens a socket (resolves at the 101; frames, hello first, are collected from then on). */
export function openWs(port: number, opts: WsOptions = {}, timeoutMs = 10_000): Promise<WsClient> {
  const ws = new WebSocket(wsUrl(port, opts), { ...(opts.origin ? { origin: opts.origin } : {}), headers: opts.headers ?? {} });
  const client = new WsClient(ws);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error('WebSocket open timed out'));
    }, timeoutMs);
    ws.once('open', () => {
      clearTimeout(timer);
      resolve(client);
    });
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      clearTimeout(timer);
      res.resume();
      reject(new Error(`upgrade refused with ${res.statusCode}`));
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Opens a socket and waits for its hello. */
export async function connect(port: number, opts: WsOptions = {}): Promise<{ client: WsClient; hello: Frame }> {
  const client = await openWs(port, opts);
  const hello = await client.nextOf('hello', 10_000);
  return { client, hello };
}

/**
 * Attempts an upgrade. A refusal resolves with its HTTP status and JSON body;
 * an accepted upgrade resolves with 101 (and the socket is closed again).
 */
export function tryUpgrade(port: number, opts: WsOptions = {}): Promise<{ status: number; body: any }> {
  const ws = new WebSocket(wsUrl(port, opts), { ...(opts.origin ? { origin: opts.origin } : {}), headers: opts.headers ?? {} });
  return new Promise((resolve, reject) => {
    ws.once('open', () => {
      ws.close();
      resolve({ status: 101, body: null });
    });
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        let body: any = text;
        try {
          body = JSON.parse(text);
        } catch {
          /* keep the text */
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    ws.once('error', reject);
  });
}

/**
 * What a client that keeps its last seq ends up with: the message ids it saw
 * live on `client`, plus those a resume with `since` = that seq brings. Closes
 * both sockets; sorted, duplicates kept (so a test can see one).
 */
export async function messageIdsAfterResume(client: WsClient, port: number, token: string): Promise<string[]> {
  const live = client.frames.filter((f) => f.type === 'message.new');
  const lastSeq = Math.max(0, ...client.frames.map((f) => f.seq ?? 0));
  await client.close();
  const { client: resumed } = await connect(port, { token, since: lastSeq });
  const ids = [...live, ...resumed.frames.filter((f) => f.type === 'message.new')].map((f) => f.payload.message.id as string).sort();
  await resumed.close();
  return ids;
}
