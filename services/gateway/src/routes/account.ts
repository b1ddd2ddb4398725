import { createRoute } from '@hono/zod-openapi';
import { idRecord, NotificationPreferencesSchema, PreferencesBody, PresenceQuery, PresenceSchema } from '@chat/contracts';
import { z } from 'zod';
import type { Bus } from '../bus';
import { firstValues, jsonBody, routeApp } from '../http';
import { BODY_ERRORS, errors, jsonContent, ok } from '../openapi';

const presence = createRoute({
  method: 'get',
  path: '/presence',
  tags: ['Account'],
  summary: 'Presence of up to 100 users',
  description: 'A user who blocked the caller, or whom the caller blocked, shows offline with lastSeenAt null.',
  request: { query: firstValues(PresenceQuery) },
  responses: { 200: ok('presence by user id', z.record(z.string(), PresenceSchema)), ...errors('VALIDATION_FAILED') },
});

const getPreferences = createRoute({
  method: 'get',
  path: '/notifications/preferences',
  tags: ['Account'],
  summary: "The caller's notification preferences",
  responses: { 200: ok('the preferences (enabled, none muted, by default)', NotificationPreferencesSchema), ...errors() },
});

const putPreferences = createRoute({
  method: 'put',
  path: '/notifications/preferences',
  tags: ['Account'],
  summary: "Replace the caller's notification preferences",
  middleware: [jsonBody(PreferencesBody)] as const,
  request: { body: jsonContent(PreferencesBody) },
  responses: { 200: ok('the stored preferences', NotificationPreferencesSchema), ...errors(...BODY_ERRORS) },
});

/** Presence and notification preferences: the caller's view of others and of their own settings. */
export function accountRoutes(bus: Bus) {
  const app = routeApp();

  app.openapi(presence, async (c) => {
    const { userIds } = c.req.valid('query');
    return c.json({ data: await bus.call(c, bus.s.presence.queryFor, { userIds }, idRecord(PresenceSchema)) }, 200);
  });

  app.openapi(getPreferences, async (c) =>
    c.json({ data: await bus.call(c, bus.s.notifications.getPreferences, {}, NotificationPreferencesSchema) }, 200),
  );

  app.openapi(putPreferences, async (c) =>
    c.json({ data: await bus.call(c, bus.s.notifications.putPreferences, { preferences: c.req.valid('json') }, NotificationPreferencesSchema) }, 200),
  );

  return app;
}
