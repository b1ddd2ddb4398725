import { createHmac, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Webhook } from 'standardwebhooks';
import { newId } from '@chat/platform';
import { postWebhook } from '../services/notifications/src/webhook-delivery';
import { UUID_V7, conversationPair, eventually } from './helpers/client';
import { sendMessage } from './helpers/notifications';
import { useStack } from './helpers/stack';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver';

/**
 * SPEC 7 (issue 13, finding 6): with NOTIFICATION_WEBHOOK_SECRET set, every
 * webhook POST is signed per Standard Webhooks, so a receiver can tell the
 * chat's calls from anyone else's; the receiver here checks each with the
 * specification's reference library, as a real one would.
 */

const newSecret = () => `whsec_${randomBytes(32).toString('base64')}`;
const SECRET = newSecret();

let signed: WebhookReceiver;
let plain: WebhookReceiver;
// Registered before useStack's, so the receiver's port is known when the stack reads its overrides.
beforeAll(async () => {
  signed = await startWebhookReceiver({ secret: SECRET });
  plain = await startWebhookReceiver();
});
afterAll(async () => {
  await signed?.close();
  await plain?.close();
});

const ctx = useStack(() => ({ NOTIFICATION_WEBHOOK_URL: signed.url, NOTIFICATION_WEBHOOK_SECRET: SECRET, NOTIFICATION_RETRY_BASE_MS: 50, NOTIFICATION_RETRY_MAX_MS: 200 }));

describe('webhooks signed with NOTIFICATION_WEBHOOK_SECRET', () => {
  it('a notification POST verifies with the standardwebhooks library; webhook-id is the notificationId; Idempotency-Key stays', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    await sendMessage(ctx.api, alice, conv, 'signed, sealed, delivered');
    const [hook] = await eventually(async () => {
      const got = signed.hooksFor(bob.id);
      expect(got.length).toBeGreaterThanOrEqual(1);
      return got;
    }, 15_000);
    expect(hook!.signature, 'the receiver verified the call').toBe('verified');
    expect(hook!.status).toBe(200);
    const id = hook!.body.notificationId as string;
    expect(id).toMatch(UUID_V7);
    expect(hook!.headers['webhook-id']).toBe(id);
    expect(hook!.headers['idempotency-key']).toBe(id);
    const ts = Number(hook!.headers['webhook-timestamp']);
    expect(String(ts)).toBe(hook!.headers['webhook-timestamp']); // whole Unix seconds
    expect(Math.abs(ts - Date.now() / 1000)).toBeLessThan(30);
    expect(hook!.headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]+={0,2}$/);

    // The signature is what the specification says: HMAC-SHA256 of `id.timestamp.body` with the decoded secret.
    const key = Buffer.from(SECRET.slice('whsec_'.length), 'base64');
    const expected = createHmac('sha256', key).update(`${id}.${ts}.${hook!.raw}`).digest('base64');
    expect(hook!.headers['webhook-signature']).toBe(`v1,${expected}`);

    const headers = hook!.headers as Record<string, string>;
    expect(new Webhook(SECRET).verify(hook!.raw, headers)).toEqual(hook!.body);
    // A changed body, another secret, another id or a replayed old timestamp: refused.
    const tampered = hook!.raw.replace('signed, sealed', 'forged, sealed');
    expect(tampered).not.toBe(hook!.raw);
    expect(() => new Webhook(SECRET).verify(tampered, headers)).toThrow(/signature/i);
    expect(() => new Webhook(newSecret()).verify(hook!.raw, headers)).toThrow(/signature/i);
    expect(() => new Webhook(SECRET).verify(hook!.raw, { ...headers, 'webhook-id': newId() })).toThrow(/signature/i);
    expect(() => new Webhook(SECRET).verify(hook!.raw, { ...headers, 'webhook-timestamp': String(ts - 3600) })).toThrow();
  });
});

describe('without NOTIFICATION_WEBHOOK_SECRET', () => {
  it('a POST carries no signature headers (and still its Idempotency-Key)', async () => {
    const receiverId = `r-${randomBytes(5).toString('hex')}`;
    const payload = {
      type: 'chat.message',
      notificationId: newId(),
      receiverId,
      senderId: 's',
      senderUsername: 'sender',
      conversationId: newId(),
      messageId: newId(),
      preview: 'hi',
      createdAt: new Date().toISOString(),
    } as const;
    const result = await postWebhook(plain.url, payload, 2000);
    expect(result).toMatchObject({ ok: true, status: 200 });
    const [hook] = plain.hooksFor(receiverId);
    expect(hook!.headers['idempotency-key']).toBe(payload.notificationId);
    for (const h of ['webhook-id', 'webhook-timestamp', 'webhook-signature']) expect(hook!.headers, h).not.toHaveProperty(h);
  });
});
