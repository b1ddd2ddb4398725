import type { Context } from 'hono';
import type { Subjects } from '@chat/contracts';
import type { BusClient } from '@chat/platform';
import type { z } from 'zod';
import type { GatewayEnv } from './http';

const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'PUT']);

/**
 * What a route needs of the bus: one request to the owning service, with the
 * verified caller as `actor` and the request id in the headers.
 */
export class Bus {
  constructor(
    private readonly client: BusClient,
    readonly s: Subjects,
  ) {}

  call<S extends z.ZodType>(c: Context<GatewayEnv>, subject: string, body: Record<string, unknown>, schema: S): Promise<z.output<S>> {
    // HTTP's idempotent methods may be asked again: when NATS drops the connection under them, or no answer has come within a second.
    const idempotent = IDEMPOTENT_METHODS.has(c.req.method);
    return this.client.request(subject, { ...body, actor: c.get('principal').id }, schema, { requestId: c.get('requestId'), idempotent, hedge: idempotent });
  }
}
