import { loadConfig, type Config } from './config';
import { createLogger, terminalDestination, type Logger } from './logger';
import { checkBackingServers, describeFailure, redactUrl, type BackingServerFailure } from './preflight';
import { exitOnSignals, type Stoppable } from './lifecycle';

/**
 * The body of every `src/main.ts`: read config, check the backing servers
 * the service needs, start it, stop it on SIGTERM. A bad setting or a
 * missing server ends the process with one plain line on stderr.
 */
export async function runMain(
  service: string,
  needs: Array<BackingServerFailure['server']>,
  start: (config: Config, log: Logger) => Promise<Stoppable>,
): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    process.stderr.write(`${service}: ${(err as Error).message}\n`);
    process.exit(1);
  }
  const log = createLogger(service, config.LOG_LEVEL, await terminalDestination());
  // Before any pool or server exists: the instrumentations patch as modules load.
  // Loaded only when asked for, so a process without tracing never loads the SDK.
  const telemetry = config.OTEL_EXPORTER_OTLP_ENDPOINT
    ? (await import('./telemetry')).startTelemetry(service, { endpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT })
    : undefined;
  if (telemetry) log.info({ endpoint: redactUrl(config.OTEL_EXPORTER_OTLP_ENDPOINT!) }, 'tracing: exporting spans over OTLP');
  const failures = await checkBackingServers(config, needs);
  if (failures.length > 0) {
    for (const f of failures) process.stderr.write(`${service}: ${describeFailure(f)}\n`);
    process.exit(1);
  }
  try {
    const started = await start(config, log);
    const app: Stoppable = {
      stop: async () => {
        await started.stop();
        await telemetry?.shutdown().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'tracing: could not flush spans'));
      },
    };
    exitOnSignals(app, log);
    if (process.argv.includes('--supervised')) stopWhenSupervisorGoes(app, log);
  } catch (err) {
    log.fatal({ err }, 'failed to start');
    process.stderr.write(`${service}: failed to start: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

/**
 * Under `npm start` the supervisor holds this process's stdin open. If the
 * supervisor dies without a chance to signal us (kill -9), stdin ends and we
 * stop too, so no orphan outlives it.
 */
function stopWhenSupervisorGoes(app: Stoppable, log: Logger): void {
  process.stdin.resume();
  process.stdin.once('end', () => {
    log.warn('supervisor went away: stopping');
    void app.stop().finally(() => process.exit(0));
  });
}
