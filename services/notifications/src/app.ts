import { GetPreferencesRequest, PutPreferencesRequest } from '@chat/contracts';
import { endpoint, startService, type Config, type Database, type Logger } from '@chat/platform';
import { MessageNotifier, startNotificationConsumer } from './message-notifier';
import { createNotificationMetrics } from './notification-metrics';
import { PreferencesRepository } from './preferences.repository';
import { WebhookDelivery } from './webhook-delivery';

export { NotificationsRepository, type NotificationPayload } from './notifications.repository';
export { createNotificationMetrics } from './notification-metrics';
export { WebhookDelivery, retryDelayMs, type WebhookOptions } from './webhook-delivery';

/**
 * Composition root of the notifications service: preferences, the consumer
 * that turns message.created into stored notifications, and (when
 * NOTIFICATION_WEBHOOK_URL is set) the worker that POSTs them.
 */
export function startNotificationsService(config: Config, log: Logger) {
  return startService<Database>(config, log, {
    name: 'notifications',
    description: 'notification preferences and delivery',
    database: { schema: 'notifications', migrations: new URL('../migrations', import.meta.url) },
    setup: async ({ db, nc, bus, subjects, metrics, teardown }) => {
      const prefs = new PreferencesRepository(db);
      const counters = createNotificationMetrics(metrics.registry);

      let delivery: WebhookDelivery | undefined;
      if (config.NOTIFICATION_WEBHOOK_URL) {
        delivery = new WebhookDelivery(
          db,
          {
            url: config.NOTIFICATION_WEBHOOK_URL,
            timeoutMs: config.NOTIFICATION_WEBHOOK_TIMEOUT_MS,
            retryBaseMs: config.NOTIFICATION_RETRY_BASE_MS,
            retryMaxMs: config.NOTIFICATION_RETRY_MAX_MS,
            giveUpAfterMs: config.NOTIFICATION_GIVE_UP_AFTER_MS,
            secret: config.NOTIFICATION_WEBHOOK_SECRET,
          },
          counters,
          log,
        );
        delivery.start();
        const worker = delivery;
        teardown.add('webhook delivery', () => worker.stop());
      }

      const notifier = new MessageNotifier(db, bus, subjects, counters, log, {
        staleAfterMs: config.NOTIFICATION_GIVE_UP_AFTER_MS,
        onStored: () => delivery?.kick(),
      });
      // Stopped before the worker (teardown runs in reverse), so no event is half-handled when it goes.
      const consumer = await startNotificationConsumer(nc, config.NATS_PREFIX, notifier, log, metrics.registry, config.JETSTREAM_REPLICAS);
      teardown.add('notifications consumer', () => consumer.stop());

      return [
        endpoint(subjects.notifications.getPreferences, GetPreferencesRequest, (req) => prefs.get(req.actor)),
        endpoint(subjects.notifications.putPreferences, PutPreferencesRequest, (req) => prefs.put(req.actor, req.preferences)),
      ];
    },
  });
}
