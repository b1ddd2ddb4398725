import { microServiceName, ServiceName } from '@chat/contracts';
import type { NatsConnection } from '@chat/platform';

const TIMEOUT_MS = 1000;

export interface Readiness {
  ready: boolean;
  checks: Record<string, 'ok' | string>;
}

/** NATS, and one PING through the services API to every service, within 1 s. */
export async function checkReadiness(nc: NatsConnection, prefix: string): Promise<Readiness> {
  const checks: Record<string, string> = {};
  if (nc.isClosed() || nc.isDraining()) {
    checks.nats = 'closed';
  } else {
    try {
      await Promise.race([
        nc.flush(),
        new Promise((_, reject) => setTimeout(() => reject(new Error('no answer')), TIMEOUT_MS).unref()),
      ]);
      checks.nats = 'ok';
    } catch (err) {
      checks.nats = (err as Error).message;
    }
  }
  await Promise.all(
    Object.values(ServiceName).map(async (name) => {
      try {
        await nc.request(`$SRV.PING.${microServiceName(prefix, name)}`, undefined, { timeout: TIMEOUT_MS });
        checks[name] = 'ok';
      } catch {
        checks[name] = 'no answer';
      }
    }),
  );
  return { ready: Object.values(checks).every((v) => v === 'ok'), checks };
}
