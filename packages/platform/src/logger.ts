import { pino, type Logger } from 'pino';
import { activeTraceIds } from './tracing';

export type { Logger };

/**
 * Paths that must never reach a log line: credentials and message content.
 * pino replaces them before serialisation.
 */
export const REDACT_PATHS = [
  'token',
  'ticket',
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'content',
  'body.content',
  'message.content',
  'payload.content',
  '*.token',
  '*.content',
];

export function createLogger(service: string, level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
      // Inside a traced span every line carries its trace and span ids, so a
      // log line leads to its trace in Jaeger and back.
      mixin: activeTraceIds,
    },
    destination,
  );
}
