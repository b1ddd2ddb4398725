import { Counter, Gauge, Histogram } from 'prom-client';
import { createMetrics, LATENCY_BUCKETS } from '@chat/platform';

export function createGatewayMetrics() {
  const base = createMetrics('gateway', { handlers: false, database: false });
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
    wsConnections: new Gauge({ name: 'chat_ws_connections', help: 'Open WebSocket connections on this gateway', registers }),
    wsResumes: new Counter({
      name: 'chat_ws_resumes_total',
      help: 'WebSocket connections by how they started: replayed (since), resync (since past retention), fresh',
      labelNames: ['outcome'] as const,
      registers,
    }),
    wsDropped: new Counter({
      name: 'chat_ws_dropped_events_total',
      help: 'Events not written to a slow socket, by class (only ephemeral events are ever dropped)',
      labelNames: ['class'] as const,
      registers,
    }),
    deliveryLatency: new Histogram({
      name: 'chat_delivery_latency_seconds',
      help: 'From the commit of a message to its message.new frame being written to a recipient socket',
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    sendsShed: new Counter({
      name: 'chat_sends_shed_total',
      help: 'Sends refused at once with SERVICE_UNAVAILABLE because SEND_MAX_IN_FLIGHT sends were already waiting',
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
