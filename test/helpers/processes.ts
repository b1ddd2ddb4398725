import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const ROOT = new URL('../..', import.meta.url).pathname;

/** A port nothing listens on now: the chaos harness's, one definition for both. */
export { freePort } from '../../scripts/chaos/infra';

/** Every process `npm start` runs, in the order of SPEC's list. */
export const SERVICES = ['conversations', 'messages', 'blocks', 'presence', 'notifications', 'gateway'];

/** The environment of one isolated run of the real processes: its own database, NATS prefix and Redis prefix. */
export function runEnv(id: string): Record<string, string> {
  return {
    DATABASE_URL: `postgres://postgres@127.0.0.1:5432/chat_${id}`,
    NATS_PREFIX: id,
    REDIS_PREFIX: `${id}:`,
    METRICS_PORT: '0',
    LOG_LEVEL: 'info',
  };
}

/** `npm start`'s supervisor as a child process, its output collected. */
export function runStart(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts'], {
    cwd: ROOT,
    env: { ...process.env, ...env, CONFIG_FILE: '/nonexistent' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += String(d)));
  child.stderr.on('data', (d) => (err += String(d)));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, output: () => out, errors: () => err };
}

/** Waits until every service has printed its ready line (they start side by side, in any order). */
export async function allReady(output: () => string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const ready = () => SERVICES.every((name) => new RegExp(`${name}\\s+\\| .*${name} ready`).test(output()));
  while (!ready() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
}

/** Service processes of this run: their command line runs a main.ts and their environment holds the run's id. */
export function servicePids(runMarker: string): string[] {
  return readdirSync('/proc').filter((pid) => {
    if (!/^\d+$/.test(pid)) return false;
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      return cmd.includes('main.ts') && readFileSync(`/proc/${pid}/environ`, 'utf8').includes(runMarker);
    } catch {
      return false;
    }
  });
}
