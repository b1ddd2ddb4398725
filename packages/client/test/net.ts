import WebSocket from 'ws';
import type { WebSocketFactory, WebSocketLike } from '../src/types';

type Frame = { type: string; seq?: number; replyTo?: string; id?: string; payload?: any };

/**
 * A network between a test's client and the real gateway that the test can
 * break: refuse new connections (`down`), cut the open ones, or lose chosen
 * frames in either direction. The server on the other side is the real one.
 */
export class TestNetwork {
  down = false;
  /** Frames from the server that never arrive (return true to lose one). */
  loseIncoming: (frame: Frame) => boolean = () => false;
  /** Frames from the client that never leave. */
  loseOutgoing: (frame: Frame) => boolean = () => false;
  readonly sockets: CuttableSocket[] = [];
  readonly urls: string[] = [];

  get opened(): number {
    return this.sockets.length;
  }

  /** Ends every open connection as a dropped network does: no close frame, the client sees 1006. */
  cutAll(): void {
    for (const s of this.sockets) s.cut();
  }

  factory(): WebSocketFactory {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const net = this;
    return class implements WebSocketLike {
      onopen: ((ev: unknown) => void) | null = null;
      onmessage: ((ev: { data: unknown }) => void) | null = null;
      onclose: ((ev: { code: number; reason: string }) => void) | null = null;
      onerror: ((ev: unknown) => void) | null = null;
      private readonly ws: WebSocket;

      constructor(url: string) {
        net.urls.push(url);
        // Port 1 refuses at once: what a client meets while the gateway is unreachable.
        this.ws = new WebSocket(net.down ? 'ws://127.0.0.1:1/' : url);
        net.sockets.push({ cut: () => this.ws.terminate() });
        this.ws.on('open', () => this.onopen?.({}));
        this.ws.on('message', (data) => {
          const text = data.toString();
          if (!net.loseIncoming(JSON.parse(text) as Frame)) this.onmessage?.({ data: text });
        });
        this.ws.on('close', (code, reason) => this.onclose?.({ code, reason: reason.toString() }));
        this.ws.on('error', (err) => this.onerror?.(err));
      }
      get readyState(): number {
        return this.ws.readyState;
      }
      send(data: string): void {
        if (!net.loseOutgoing(JSON.parse(data) as Frame)) this.ws.send(data);
      }
      close(code?: number, reason?: string): void {
        this.ws.close(code, reason);
      }
    };
  }
}

interface CuttableSocket {
  cut(): void;
}

/** A Storage in memory, as localStorage behaves across a reload. */
export class MemoryStorage {
  readonly map = new Map<string, string>();
  getItem(k: string): string | null {
    return this.map.get(k) ?? null;
  }
  setItem(k: string, v: string): void {
    this.map.set(k, v);
  }
  removeItem(k: string): void {
    this.map.delete(k);
  }
}
