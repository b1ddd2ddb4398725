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

  it('with the users directory down, a new caller still reaches routes that do not need it', async () => {
    const { stack, api: a } = ctx;
    await stack.services.conversations.stop();
    const carol = await newUser('carol');
    const unread = await a.get('/conversations/unread-count', carol.token);
    expect(unread.status).toBe(200);
    expect(unread.body.data).toEqual({ total: 0, conversations: 0 });
    const list = await a.get('/conversations', carol.token);
    expect(list.status).toBe(503);
    expect(list.body.error.message).toMatch(/conversations/);
  });
});
