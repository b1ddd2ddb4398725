import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '@chat/platform';
import { allReady, freePort, runEnv, runStart, servicePids, SERVICES } from './helpers/processes';
import { dropRunResources, runId } from './helpers/stack';

describe('npm start', () => {
  const id = runId();
  const env = runEnv(id);
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
