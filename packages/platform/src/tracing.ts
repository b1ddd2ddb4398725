import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Link, type Span } from '@opentelemetry/api';
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/transport-node';

export { ROOT_CONTEXT, SpanKind };
export type { Context, Link, Span };

/**
 * W3C trace context across NATS, by hand: no maintained instrumentation
 * for the NATS v3 client exists, so every request, reply, JetStream publish
 * and consume carries `traceparent` (and `tracestate`) in its headers here.
 * With no SDK started (OTEL_EXPORTER_OTLP_ENDPOINT unset) the API is a no-op
 * and all of this costs a few function calls.
 */
const tracer = () => trace.getTracer('chat');

/**
 * Writes the active (or given) context into NATS headers. Without headers to
 * add to, they are created only when there is a context to carry: untraced,
 * a message goes without a header block (PUB, not HPUB), which every hop of
 * a hot path would otherwise encode and parse for nothing.
 */
export function injectTrace(h: MsgHdrs, ctx?: Context): MsgHdrs;
export function injectTrace(h?: undefined, ctx?: Context): MsgHdrs | undefined;
export function injectTrace(h?: MsgHdrs, ctx: Context = context.active()): MsgHdrs | undefined {
  let out = h;
  propagation.inject(ctx, {}, { set: (_carrier, key, value) => (out ??= natsHeaders()).set(key, value) });
  return out;
}

/** The remote parent carried by a message's headers (the root context when none). */
export function extractTrace(h: MsgHdrs | undefined): Context {
  if (!h) return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, h, {
    get: (carrier, key) => carrier.get(key) || undefined,
    keys: (carrier) => carrier.keys(),
  });
}

/** The active context as a plain object, to store beside work done later (an outbox row); null when not tracing. */
export function traceCarrier(ctx: Context = context.active()): Record<string, string> | null {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return Object.keys(carrier).length ? carrier : null;
}

/**
 * A link to the trace a message's headers carry, for a span that handles many
 * messages but can have only one parent; undefined when they carry none.
 */
export function linkFromHeaders(h: MsgHdrs | undefined): Link | undefined {
  const ctx = trace.getSpanContext(extractTrace(h));
  return ctx ? { context: ctx } : undefined;
}

export function contextFromCarrier(carrier: Record<string, string> | null | undefined): Context {
  return carrier ? propagation.extract(ROOT_CONTEXT, carrier) : ROOT_CONTEXT;
}

/**
 * Runs `fn` in a new active span (child of `parent`, or of the active
 * context): ended when `fn` settles, marked as an error when it throws.
 */
export function inSpan<T>(
  name: string,
  opts: { kind?: SpanKind; parent?: Context; attributes?: Attributes; links?: Link[] },
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  return tracer().startActiveSpan(name, { kind: opts.kind ?? SpanKind.INTERNAL, attributes: opts.attributes, links: opts.links }, opts.parent ?? context.active(), async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  });
}

/** Marks the span as failed without an exception (a reply carrying an error code). */
export function markSpanError(span: Span, message: string): void {
  span.setStatus({ code: SpanStatusCode.ERROR, message });
}

/** The ids of the active span, for log lines; empty outside a recorded span. */
export function activeTraceIds(): { traceId: string; spanId: string } | Record<string, never> {
  const span = trace.getActiveSpan();
  if (!span) return {};
  const { traceId, spanId, traceFlags } = span.spanContext();
  return traceFlags & 1 ? { traceId, spanId } : {};
}

/** Starts a span that is not made active: for work that finishes later, elsewhere (a frame queued for a socket). */
export function startSpan(name: string, opts: { kind?: SpanKind; parent?: Context; attributes?: Attributes }): Span {
  return tracer().startSpan(name, { kind: opts.kind ?? SpanKind.INTERNAL, attributes: opts.attributes }, opts.parent ?? context.active());
}

/** Renames the active span (an HTTP server span named by its route once routing is done) and adds attributes. */
export function describeActiveSpan(name: string, attributes: Attributes = {}): void {
  const span = trace.getActiveSpan();
  if (!span) return;
  span.updateName(name);
  span.setAttributes(attributes);
}
