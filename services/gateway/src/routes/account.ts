import { Hono } from 'hono';
import { idRecord, NotificationPreferencesSchema, PreferencesBody, PresenceQuery, PresenceSchema } from '@chat/contracts';
import type { Bus } from '../bus';
import { jsonBody, parseOrThrow, type GatewayEnv } from '../http';

/** Presence and notification preferences: the caller's view of others and of their own settings. */
export function accountRoutes(bus: Bus) {
  const app = new Hono<GatewayEnv>();

  app.get('/presence', async (c) => {
    const q = parseOrThrow(PresenceQuery, c.req.query());
    return c.json({ data: await bus.call(c, bus.s.presence.queryFor, { userIds: q.userIds }, idRecord(PresenceSchema)) });
  });

  app.get('/notifications/preferences', async (c) =>
    c.json({ data: await bus.call(c, bus.s.notifications.getPreferences, {}, NotificationPreferencesSchema) }),
  );

  app.put('/notifications/preferences', async (c) => {
    const preferences = parseOrThrow(PreferencesBody, await jsonBody(c));
    return c.json({ data: await bus.call(c, bus.s.notifications.putPreferences, { preferences }, NotificationPreferencesSchema) });
  });

  return app;
}
