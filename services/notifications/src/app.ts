import { GetPreferencesRequest, PutPreferencesRequest } from '@chat/contracts';
import { endpoint, startService, type Config, type Database, type Logger } from '@chat/platform';
import { PreferencesRepository } from './preferences.repository';

/** Composition root of the notifications service: preferences now; delivery of notifications follows. */
export function startNotificationsService(config: Config, log: Logger) {
  return startService<Database>(config, log, {
    name: 'notifications',
    description: 'notification preferences and delivery',
    database: { schema: 'notifications', migrations: new URL('../migrations', import.meta.url) },
    setup: async ({ db, subjects }) => {
      const prefs = new PreferencesRepository(db);
      return [
        endpoint(subjects.notifications.getPreferences, GetPreferencesRequest, (req) => prefs.get(req.actor)),
        endpoint(subjects.notifications.putPreferences, PutPreferencesRequest, (req) => prefs.put(req.actor, req.preferences)),
      ];
    },
  });
}
