import { createRoute } from '@hono/zod-openapi';
import { DurableEventSchema, EventsQuery, EventsReply } from '@chat/contracts';
import { z } from 'zod';
import type { Bus } from '../bus';
import { firstValues, routeApp } from '../http';
import { errors, ok } from '../openapi';

const EventsMeta = z.object({
  nextCursor: z.string().nullable().openapi({ description: 'the last seq of the page, to pass as the next `since`' }),
  hasMore: z.boolean(),
  latestSeq: z.number().int().openapi({ description: "the caller's latest durable seq" }),
});

const events = createRoute({
  method: 'get',
  path: '/events',
  tags: ['Events'],
  summary: "The caller's durable events after `since`, in order",
  description: 'The events a WebSocket carries (`message.new`, `message.read`, `unread.updated`), each with its per-user `seq`. See docs/websocket.md.',
  request: { query: firstValues(EventsQuery) },
  responses: { 200: ok('a page of events', z.array(DurableEventSchema), { meta: EventsMeta }), ...errors('VALIDATION_FAILED', 'RESYNC_REQUIRED') },
});

/** GET /events: the caller's durable event log over REST, the same events a socket receives. */
export function eventRoutes(bus: Bus) {
  const app = routeApp();
  app.openapi(events, async (c) => {
    const q = c.req.valid('query');
    const r = await bus.call(c, bus.s.messages.events, { since: q.since, limit: q.limit }, EventsReply);
    const last = r.events[r.events.length - 1];
    return c.json({ data: r.events, meta: { nextCursor: last ? String(last.seq) : null, hasMore: r.hasMore, latestSeq: r.latestSeq } }, 200);
  });
  return app;
}
