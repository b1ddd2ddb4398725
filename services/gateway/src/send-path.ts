import { ChatError, MessageSchema, type Subjects } from '@chat/contracts';
import type { BusClient } from '@chat/platform';
import { z } from 'zod';
import type { GatewayMetrics } from './gateway-metrics';

const Sent = z.object({ message: MessageSchema, created: z.boolean() });
export type Sent = z.output<typeof Sent>;

/** How soon a shed send may be tried again. */
const SHED_RETRY_MS = 1000;

/**
 * Every send of this gateway, REST and WebSocket alike, passes here.
 *
 * - Past `maxInFlight` sends waiting on the messages service, a send is
 *   refused at once with SERVICE_UNAVAILABLE and a retry hint, instead of
 *   queueing behind work the system cannot finish in time: accepted sends
 *   keep their latency and the client learns in microseconds, not after the
 *   request timeout.
 * - Each send carries a deadline a little before this gateway stops waiting.
 *   The messages service writes nothing past it (checked again after its lock
 *   waits, inside the transaction), so a send answered 503 here was not
 *   stored, and a retry with the same clientMessageId is always safe.
 */
export class SendPath {
  private inFlight = 0;
  private readonly marginMs: number;

  constructor(
    private readonly bus: BusClient,
    private readonly s: Subjects,
    private readonly maxInFlight: number,
    private readonly timeoutMs: number,
    private readonly metrics: GatewayMetrics,
  ) {
    // Room for the reply's trip back and the commit itself.
    this.marginMs = Math.min(1000, Math.floor(timeoutMs / 5));
  }

  async send(body: { actor: string; conversationId: string; content: string; clientMessageId?: string | undefined }, requestId?: string): Promise<Sent> {
    if (this.inFlight >= this.maxInFlight) {
      this.metrics.sendsShed.inc();
      throw new ChatError('SERVICE_UNAVAILABLE', 'messages: this gateway is at capacity; retry shortly (with the same clientMessageId)', undefined, {
        retryAfterMs: SHED_RETRY_MS,
      });
    }
    this.inFlight++;
    try {
      const r = await this.bus.request(this.s.messages.send, { ...body, deadline: Date.now() + this.timeoutMs - this.marginMs }, Sent, {
        timeoutMs: this.timeoutMs,
        // With a clientMessageId the service stores a repeat once and answers the original: safe to ask again.
        idempotent: body.clientMessageId !== undefined,
        ...(requestId ? { requestId } : {}),
      });
      if (r.created) this.metrics.messagesTotal.inc();
      return r;
    } finally {
      this.inFlight--;
    }
  }
}
