import { describe, expect, it } from 'vitest';
import { newUser } from './helpers/client';
import { useStack } from './helpers/stack';

const ctx = useStack({ REQUEST_TIMEOUT_MS: 1000 });

describe('a service that is down', () => {
  it('gives 503 SERVICE_UNAVAILABLE naming it, within the request timeout, and /readyz names it', async () => {
    const { stack, api: a } = ctx;
    const alice = await newUser('alice');
    expect((await a.get('/blocks', alice.token)).status).toBe(200);

    await stack.services.blocks.stop();
    const started = Date.now();
    const res = await a.get('/blocks', alice.token);
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('SERVICE_UNAVAILABLE');
    expect(res.body.error.message).toMatch(/blocks/);
    expect(Date.now() - started).toBeLessThan(2500);

    const ready = await fetch(`${stack.baseUrl}/readyz`);
    expect(ready.status).toBe(503);
    const body = (await ready.json()) as { checks: Record<string, string> };
    expect(body.checks.blocks).not.toBe('ok');
    expect(body.checks.messages).toBe('ok');

    // The rest keeps working: routes that do not need blocks still answer.
    expect((await a.get('/conversations/unread-count', alice.token)).status).toBe(200);
    expect((await fetch(`${stack.baseUrl}/healthz`)).status).toBe(200);
  });
});
