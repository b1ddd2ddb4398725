import { Counter, Histogram, type Registry } from 'prom-client';

/** What the consumer decided for one message.created event. */
export const Decision = {
  stored: 'stored',
  duplicate: 'duplicate',
  disabled: 'disabled',
  muted: 'muted',
  blocked: 'blocked',
  online: 'online',
  stale: 'stale',
  noReceiver: 'no_receiver',
} as const;
export type Decision = (typeof Decision)[keyof typeof Decision];

/** How one webhook attempt ended for its notification. */
export const DeliveryOutcome = { delivered: 'delivered', retry: 'retry', gaveUp: 'gave_up' } as const;
export type DeliveryOutcome = (typeof DeliveryOutcome)[keyof typeof DeliveryOutcome];

/** The service's own metrics, in its registry; labels are closed sets, never ids. */
export function createNotificationMetrics(registry: Registry) {
  const registers = [registry];
  const metrics = {
    decisions: new Counter({
      name: 'chat_notifications_decisions_total',
      help: 'message.created events handled, by decision (stored, duplicate, or why no notification was made)',
      labelNames: ['decision'] as const,
      registers,
    }),
    deliveries: new Counter({
      name: 'chat_notification_deliveries_total',
      help: 'Webhook attempts by what followed: delivered (2xx), retry (scheduled), gave_up',
      labelNames: ['outcome'] as const,
      registers,
    }),
    webhookDuration: new Histogram({
      name: 'chat_notification_webhook_duration_seconds',
      help: 'Time of one webhook POST, by result class (2xx, 4xx, 5xx, other, error)',
      labelNames: ['result'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
  };
  // Every outcome present at 0 from the start, so `increase()` sees the first give-up.
  for (const outcome of ['delivered', 'retry', 'gave_up']) metrics.deliveries.inc({ outcome }, 0);
  return metrics;
}
export type NotificationMetrics = ReturnType<typeof createNotificationMetrics>;
