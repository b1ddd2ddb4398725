import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Hook {
  body: any;
  headers: IncomingHttpHeaders;
  status: number;
  /** When the answer was sent (after any delay). */
  answeredAt: number;
}

/** How to answer a receiver's nth POST (n from 1): a status, or a status after a delay. */
export type Answer = (n: number) => number | { status: number; delayMs: number };

/**
 * A webhook endpoint on 127.0.0.1 for the notifications service to POST to.
 * It records every request; each receiverId's answers can be scripted, so
 * tests sharing one receiver never see each other's.
 */
export async function startWebhookReceiver() {
  const hooks: Hook[] = [];
  const answers = new Map<string, Answer>();
  const arrived: Array<{ receiverId: string }> = [];
  const server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (raw += chunk));
    req.on('end', () => {
      const body = JSON.parse(raw);
      arrived.push({ receiverId: body.receiverId });
      const n = arrived.filter((a) => a.receiverId === body.receiverId).length;
      const planned = answers.get(body.receiverId)?.(n) ?? 200;
      const { status, delayMs } = typeof planned === 'number' ? { status: planned, delayMs: 0 } : planned;
      setTimeout(() => {
        hooks.push({ body, headers: req.headers, status, answeredAt: Date.now() });
        res.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? 'ok' : 'no');
      }, delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    hooks,
    answers,
    /** Requests received so far for a receiver, answered or not. */
    arrivedFor: (receiverId: string) => arrived.filter((a) => a.receiverId === receiverId).length,
    /** Answered requests for a receiver. */
    hooksFor: (receiverId: string) => hooks.filter((h) => h.body.receiverId === receiverId),
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
export type WebhookReceiver = Awaited<ReturnType<typeof startWebhookReceiver>>;
