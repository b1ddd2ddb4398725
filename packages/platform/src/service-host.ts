import { Svcm, type Service, type ServiceMsg } from '@nats-io/services';
import { ChatError, Headers, isChatError, issuesToDetails, type Reply } from '@chat/contracts';
import type { z } from 'zod';
import type { NatsConnection } from './nats';
import type { Logger } from './logger';
import type { Metrics } from './metrics';
import { extractTrace, inSpan, markSpanError, SpanKind } from './tracing';
import { isTransientError } from './jetstream';

export interface HandlerContext {
  requestId: string | undefined;
  log: Logger;
}

export interface EndpointDef<S extends z.ZodType = z.ZodType> {
  /** The full subject, from contracts' `subjects(prefix)`. */
  subject: string;
  schema: S;
  handle: (req: z.output<S>, ctx: HandlerContext) => Promise<unknown>;
}

/** Builds an endpoint with the request type inferred from its schema. */
export const endpoint = <S extends z.ZodType>(subject: string, schema: S, handle: EndpointDef<S>['handle']): EndpointDef =>
  ({ subject, schema, handle }) as unknown as EndpointDef;

/** The endpoints of a service on the bus. */
export interface HostedService {
  service: Service;
  /**
   * Stops taking requests (the subscriptions are drained, so the queue group
   * sends new ones to the other replicas), then waits for every handler
   * still running to reply: only then may the connection be drained and
   * closed. Without the wait, a request taken just before a SIGTERM lost its
   * reply and its caller waited out the timeout (found by the chaos run's
   * rolling restart).
   */
  stop(): Promise<void>;
}

/**
 * Registers endpoints with the NATS services API in its default queue group,
 * so replicas share the load and `$SRV.PING|STATS|INFO.<name>` discovery works.
 * The services framework does not await async handlers, so this awaits each
 * one and always replies: a ChatError as itself, anything else as INTERNAL
 * (logged with its cause, never sent).
 */
export async function startMicroService(
  nc: NatsConnection,
  info: { name: string; version: string; description: string },
  endpoints: EndpointDef[],
  log: Logger,
  metrics?: Metrics,
): Promise<HostedService> {
  const svc = await new Svcm(nc).add({ ...info });
  const inFlight = new Set<Promise<unknown>>();
  for (const ep of endpoints) {
    const verb = ep.subject.split('.').slice(2).join('.');
    // <prefix>.<service>.<verb>: spans are named without the deployment's prefix.
    const service = ep.subject.split('.')[1]!;
    svc.addEndpoint(verb, {
      subject: ep.subject,
      handler: (err, msg) => {
        if (err) {
          log.error({ err, subject: ep.subject }, 'endpoint subscription failed');
          return;
        }
        const handled = inSpan(
          `${service}.${verb}`,
          { kind: SpanKind.SERVER, parent: extractTrace(msg.headers), attributes: { 'chat.service': service, 'messaging.system': 'nats', 'messaging.destination.name': ep.subject } },
          async (span) => {
            const outcome = await dispatch(ep, verb, msg, log, metrics);
            if (outcome !== 'ok') span.setAttribute('chat.error_code', outcome);
            if (outcome === 'INTERNAL' || outcome === 'SERVICE_UNAVAILABLE') markSpanError(span, outcome);
          },
        );
        inFlight.add(handled);
        const settled = () => inFlight.delete(handled);
        handled.then(settled, settled);
      },
    });
  }
  return {
    service: svc,
    async stop() {
      await svc.stop();
      await Promise.allSettled([...inFlight]);
    },
  };
}

async function dispatch(ep: EndpointDef, verb: string, msg: ServiceMsg, log: Logger, metrics?: Metrics): Promise<string> {
  const requestId = msg.headers?.get(Headers.requestId) || undefined;
  const ctxLog = requestId ? log.child({ requestId }) : log;
  const end = metrics?.natsHandler.startTimer({ endpoint: verb });
  let reply: Reply<unknown>;
  try {
    let body: unknown;
    try {
      body = msg.json();
    } catch {
      throw new ChatError('VALIDATION_FAILED', 'request body is not JSON');
    }
    const parsed = ep.schema.safeParse(body);
    if (!parsed.success) throw new ChatError('VALIDATION_FAILED', 'request failed validation', issuesToDetails(parsed.error.issues));
    reply = { ok: true, data: await ep.handle(parsed.data, { requestId, log: ctxLog }) };
  } catch (err) {
    if (isChatError(err)) {
      // What `internal` holds stays here, in this service's log under the request's id; the reply carries code and message.
      if (err.internal !== undefined) ctxLog.warn({ code: err.code, internal: err.internal, subject: ep.subject }, err.message);
      reply = { ok: false, error: err.toBody() };
    } else if (isTransientError(err)) {
      ctxLog.warn({ err: (err as Error).message, subject: ep.subject }, 'backing server unavailable');
      reply = { ok: false, error: { code: 'SERVICE_UNAVAILABLE', message: `${ep.subject.split('.')[1]}: its data store is unavailable` } };
    } else {
      ctxLog.error({ err, subject: ep.subject }, 'handler failed');
      reply = { ok: false, error: { code: 'INTERNAL', message: 'internal error' } };
    }
  }
  const outcome = reply.ok ? 'ok' : reply.error.code;
  end?.({ outcome });
  if (!msg.reply) return outcome;
  try {
    msg.respond(JSON.stringify(reply));
  } catch (err) {
    ctxLog.warn({ err, subject: ep.subject }, 'could not send reply');
  }
  return outcome;
}
