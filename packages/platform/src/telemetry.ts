import { createRequire } from 'node:module';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { BatchSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';

export interface Telemetry {
  /** Flushes the spans still buffered and stops the SDK. */
  shutdown(): Promise<void>;
}

const UNTRACED_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * Starts OpenTelemetry for one process: the http, pg, ioredis and undici
 * (fetch) instrumentations, W3C trace context, and an exporter. Call it
 * before the process opens its pools or servers (runMain does), since the
 * instrumentations patch modules as they are loaded.
 *
 * `endpoint` is OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://jaeger:4318): spans go
 * to `<endpoint>/v1/traces` over OTLP/HTTP in batches. Tests pass their own
 * span processors instead.
 */
export function startTelemetry(serviceName: string, opts: { endpoint?: string; spanProcessors?: SpanProcessor[] }): Telemetry {
  const spanProcessors = opts.spanProcessors ?? [
    new BatchSpanProcessor(new OTLPTraceExporter({ url: `${opts.endpoint!.replace(/\/+$/, '')}/v1/traces` })),
  ];
  const sdk = new NodeSDK({
    serviceName,
    spanProcessors,
    // Metrics stay with prom-client (SPEC 9); logs with pino.
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [
      new HttpInstrumentation({
        ignoreIncomingRequestHook: (req) => UNTRACED_PATHS.has((req.url ?? '').split('?')[0]!),
      }),
      new PgInstrumentation({ requireParentSpan: true }),
      new IORedisInstrumentation({ requireParentSpan: true }),
      new UndiciInstrumentation(),
    ],
  });
  sdk.start();
  // The http instrumentation patches the core module when it is required; the
  // servers here come from ESM imports, which do not pass through require.
  // Requiring it once applies the patch (to the shared Server prototype).
  const require = createRequire(import.meta.url);
  require('node:http');
  require('node:https');
  return { shutdown: () => sdk.shutdown() };
}
