import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '@chat/platform';
import { dropRunResources, runId } from './helpers/stack';

const ROOT = new URL('..', import.meta.url).pathname;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

function runStart(env: Record<string, string>) {
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

const SERVICES = ['conversations', 'messages', 'blocks', 'presence', 'notifications', 'gateway'];

/** Waits until every service has printed its ready line (they start side by side, in any order). */
async function allReady(output: () => string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const ready = () => SERVICES.every((name) => new RegExp(`${name}\\s+\\| .*${name} ready`).test(output()));
  while (!ready() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
}

/** Service processes of this run: their command line runs a main.ts and their environment holds the run's id. */
function servicePids(runMarker: string): string[] {
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

describe('npm start', () => {
  const id = runId();
  const env = {
    DATABASE_URL: `postgres://postgres@127.0.0.1:5432/chat_${id}`,
    NATS_PREFIX: id,
    REDIS_PREFIX: `${id}:`,
    METRICS_PORT: '0',
    LOG_LEVEL: 'info',
  };
  afterAll(async () => {
    // Whatever a failed assertion left running is ended, so no later run meets it.
    for (const pid of servicePids(id)) process.kill(Number(pid), 'SIGKILL');
    await dropRunResources(loadConfig({ ...env, CONFIG_FILE: '/nonexistent' }));
  });

  it('creates the database, starts every service with its name on each line, and SIGTERM leaves no process behind', async () => {
    const port = await freePort();
    const run = runStart({ ...env, PORT: String(port) });
    await allReady(run.output);
    for (const name of SERVICES) expect(run.output()).toMatch(new RegExp(`${name}\\s+\\| .*${name} ready`));

    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(ready.status).toBe(200);
    expect(servicePids(id)).toHaveLength(6);

    run.child.kill('SIGTERM');
    expect(await run.exited).toBe(0);
    await new Promise((r) => setTimeout(r, 300));
    expect(servicePids(id)).toEqual([]);
  }, 60_000);

  it('leaves no orphan when the supervisor itself is killed with SIGKILL', async () => {
    const port = await freePort();
    const run = runStart({ ...env, PORT: String(port) });
    await allReady(run.output);
    expect(servicePids(id)).toHaveLength(6);
    run.child.kill('SIGKILL');
    await run.exited;
    const until = Date.now() + 10_000;
    while (servicePids(id).length > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    expect(servicePids(id)).toEqual([]);
  }, 60_000);

  it('exits non-zero with one clear line naming a backing server that does not answer, its URL and how to start it', async () => {
    const run = runStart({ ...env, NATS_URL: 'nats://127.0.0.1:1', PORT: '0' });
    expect(await run.exited).toBe(1);
    const lines = run.errors().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/NATS does not answer at nats:\/\/127\.0\.0\.1:1 .*Start it with: /);
  }, 30_000);

  it('refuses a bad setting with a line naming the variable', async () => {
    const run = runStart({ ...env, PORT: 'eighty' });
    expect(await run.exited).toBe(1);
    expect(run.errors()).toMatch(/PORT/);
  }, 30_000);
});
