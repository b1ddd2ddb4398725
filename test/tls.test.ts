import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conversationPair } from './helpers/client';
import { extraGateway, useStack } from './helpers/stack';

/** A self-signed certificate for 127.0.0.1 and localhost, made with the machine's openssl. */
function selfSigned(dir: string) {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '-keyout', key, '-out', cert,
  ], { stdio: 'ignore' });
  return { cert, key };
}

function httpsGet(port: number, path: string, ca: Buffer, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; headers: Record<string, unknown>; body: any }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, ca, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('HTTPS and WSS when TLS_CERT_FILE and TLS_KEY_FILE are set', () => {
  const ctx = useStack();
  let dir: string;
  let files: { cert: string; key: string };
  let gateway: Awaited<ReturnType<typeof extraGateway>>;
  let ca: Buffer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'chat-tls-'));
    files = selfSigned(dir);
    ca = (await import('node:fs')).readFileSync(files.cert);
    gateway = await extraGateway(ctx.stack, { TLS_CERT_FILE: files.cert, TLS_KEY_FILE: files.key });
  });
  afterAll(async () => {
    await gateway?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the API over HTTPS with Strict-Transport-Security', async () => {
    const { alice } = await conversationPair(ctx.api);
    const res = await httpsGet(gateway.port, '/api/chat/conversations', ca, { authorization: `Bearer ${alice.token}` });
    expect(res.status).toBe(200);
    expect(res.body.data).toHaveLength(1);
    expect(res.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    const health = await httpsGet(gateway.port, '/healthz', ca);
    expect(health.status).toBe(200);
    expect(health.headers['strict-transport-security']).toBeDefined();
  });

  it('serves WSS: hello, and a message sent over REST arrives on the secure socket', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const ws = new WebSocket(`wss://127.0.0.1:${gateway.port}/api/chat/ws?token=${alice.token}`, { ca });
    const frames: any[] = [];
    ws.on('message', (d) => frames.push(JSON.parse(d.toString())));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    try {
      await expect.poll(() => frames.find((f) => f.type === 'hello')?.payload.userId).toBe(alice.id);
      await ctx.api.post(`/conversations/${conv}/messages`, bob.token, { content: 'over tls' });
      await expect.poll(() => frames.find((f) => f.type === 'message.new')?.payload.message.content).toBe('over tls');
    } finally {
      ws.close();
    }
  });

  it('refuses plain HTTP on the TLS port, and a client that does not trust the certificate', async () => {
    await expect(fetch(`http://127.0.0.1:${gateway.port}/healthz`)).rejects.toThrow();
    await expect(httpsGet(gateway.port, '/healthz', Buffer.from(''))).rejects.toThrow();
  });

  it('refuses to start with only one of the two files, naming the variable', async () => {
    const { loadConfig } = await import('@chat/platform');
    expect(() => loadConfig({ CONFIG_FILE: '/nonexistent', TLS_CERT_FILE: files.cert })).toThrow(/TLS_CERT_FILE/);
  });
});
