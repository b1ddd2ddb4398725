import { Hono } from 'hono';
import { EventsQuery, EventsReply } from '@chat/contracts';
import type { Bus } from '../bus';
import { parseOrThrow, type GatewayEnv } from '../http';

/** GET /events: the caller's durable event log over REST, the same events a socket receives. */
export function eventRoutes(bus: Bus) {
  const app = new Hono<GatewayEnv>();
  app.get('/events', async (c) => {
    const q = parseOrThrow(EventsQuery, c.req.query());
    const r = await bus.call(c, bus.s.messages.events, { since: q.since, limit: q.limit }, EventsReply);
    const last = r.events[r.events.length - 1];
    return c.json({ data: r.events, meta: { nextCursor: last ? String(last.seq) : null, hasMore: r.hasMore, latestSeq: r.latestSeq } });
  });
  return app;
}
