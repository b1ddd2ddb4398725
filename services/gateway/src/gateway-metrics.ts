import { Counter, Histogram } from 'prom-client';
import { createMetrics, LATENCY_BUCKETS } from '@chat/platform';

export function createGatewayMetrics() {
  const base = createMetrics('gateway');
  const registers = [base.registry];
  return {
    ...base,
    httpDuration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'REST request latency by method, route template and status',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    natsRequest: new Histogram({
      name: 'chat_nats_request_duration_seconds',
      help: 'Latency of a request from the gateway to a service over NATS, by subject',
      labelNames: ['subject'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    messagesTotal: new Counter({
      name: 'chat_messages_total',
      help: 'Messages accepted (new messages only, not idempotent repeats)',
      registers,
    }),
  };
}
export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>;
