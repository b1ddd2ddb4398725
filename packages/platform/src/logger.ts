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

/**
 * Where a process started by hand logs: readable lines (pino-pretty) when a
 * person watches a terminal, JSON lines otherwise (under the supervisor,
 * which pretty-prints itself, in containers, into files).
 */
export async function terminalDestination(stream: NodeJS.WriteStream = process.stdout): Promise<pino.DestinationStream | undefined> {
  if (!stream.isTTY || process.argv.includes('--supervised')) return undefined;
  const { default: pretty } = await import('pino-pretty');
  return pretty({ colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname', destination: stream });
}
