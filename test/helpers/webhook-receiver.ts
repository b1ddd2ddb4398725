import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

export interface Hook {
  body: any;
  /** The body exactly as it arrived: what a signature covers. */
  raw: string;
  headers: IncomingHttpHeaders;
  /** With a secret: 'verified', or why `Webhook(secret).verify` refused the call (answered 401). */
  signature?: string;
  status: number;
  /** When the answer was sent (after any delay). */
  answeredAt: number;
}

/** How to answer a receiver's nth POST (n from 1): a status, or a status after a delay. */
export type Answer = (n: number) => number | { status: number; delayMs: number };

/**
 * A webhook endpoint on 127.0.0.1 for the notifications service to POST to.
 * It records every request; each receiverId's answers can be scripted, so
 * tests sharing one receiver never see each other's. Given a secret, it
 * verifies every call as a Standard Webhooks receiver would, and answers
 * 401 to one that fails.
 */
export async function startWebhookReceiver(opts: { secret?: string } = {}) {
  const verifier = opts.secret ? new Webhook(opts.secret) : undefined;
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
      let signature: string | undefined;
      if (verifier) {
        try {
          verifier.verify(raw, req.headers as Record<string, string>);
          signature = 'verified';
        } catch (err) {
          signature = (err as Error).message;
        }
      }
      const planned = signature !== undefined && signature !== 'verified' ? 401 : (answers.get(body.receiverId)?.(n) ?? 200);
      const { status, delayMs } = typeof planned === 'number' ? { status: planned, delayMs: 0 } : planned;
      setTimeout(() => {
        hooks.push({ body, raw, headers: req.headers, status, answeredAt: Date.now(), ...(signature === undefined ? {} : { signature }) });
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
