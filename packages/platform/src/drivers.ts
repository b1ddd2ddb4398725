import { createRequire } from 'node:module';
import type PG from 'pg';
import type { Redis } from 'ioredis';

const require = createRequire(import.meta.url);

/**
 * pg and ioredis are loaded with `require`, on first use, never by a static
 * import: OpenTelemetry's pg and ioredis instrumentations patch a module as
 * it is required (require-in-the-middle), so a process that starts tracing
 * first and opens its pools after gets SQL and Redis spans. An ESM import
 * would bypass the hook.
 */
export const pgDriver = (): typeof PG => require('pg') as typeof PG;
export const redisDriver = (): { Redis: typeof Redis } => require('ioredis') as { Redis: typeof Redis };
