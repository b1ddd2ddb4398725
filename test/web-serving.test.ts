import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '@chat/platform';
import { ownOrigin } from '../services/gateway/src/ws/upgrade';
import { newUser } from './helpers/client';
import { extraGateway, useStack } from './helpers/stack';
import { tryUpgrade } from './helpers/ws';

const WEB_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; connect-src 'self'; font-src 'self'; " +
  "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const API_CSP = "default-src 'none'; frame-ancestors 'none'";
const IMMUTABLE = 'public, max-age=31536000, immutable';

const INDEX = '<!doctype html><html><head><script type="module" src="/assets/app-abc.js"></script></head><body><div id="app"></div></body></html>\n';
const SCRIPT = 'console.log("web chat");\n';
const SECRET = 'outside the web directory\n';

// <tmp>/dist is the build; <tmp>/secret.txt sits next to it, where no request may reach.
const tmp = mkdtempSync(join(tmpdir(), 'chat-web-'));
const webDir = join(tmp, 'dist');
mkdirSync(join(webDir, 'assets'), { recursive: true });
writeFileSync(join(webDir, 'index.html'), INDEX);
writeFileSync(join(webDir, 'assets', 'app-abc.js'), SCRIPT);
writeFileSync(join(webDir, 'robots.txt'), 'User-agent: *\n');
writeFileSync(join(tmp, 'secret.txt'), SECRET);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A request with the path exactly as written: fetch would normalise `..` away before it left. */
function rawGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((done, fail) => {
    const req = http.request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => done({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', fail);
    req.end();
  });
}

function expectWebHeaders(res: Response) {
  expect(res.headers.get('content-security-policy'), res.url).toBe(WEB_CSP);
  expect(res.headers.get('x-frame-options'), res.url).toBe('DENY');
  expect(res.headers.get('x-content-type-options'), res.url).toBe('nosniff');
  expect(res.headers.get('referrer-policy'), res.url).toBe('no-referrer');
  expect(res.headers.get('strict-transport-security'), res.url).toBeNull();
}

describe('WEB_DIR setting', () => {
  it("defaults to the repository's packages/web/dist, absolute, whatever the working directory", () => {
    const repo = fileURLToPath(new URL('..', import.meta.url));
    expect(loadConfig({ CONFIG_FILE: '/nonexistent' }).WEB_DIR).toBe(join(repo, 'packages', 'web', 'dist'));
  });

  it('a relative WEB_DIR is taken from the working directory', () => {
    expect(loadConfig({ CONFIG_FILE: '/nonexistent', WEB_DIR: 'some/build' }).WEB_DIR).toBe(resolve('some/build'));
  });
});

describe('the gateway serves the web chat', () => {
  const ctx = useStack({ WEB_DIR: webDir });
  const url = (path: string) => `${ctx.stack.baseUrl}${path}`;

  it('GET / is index.html, revalidated on every load, under the web CSP', async () => {
    const res = await fetch(url('/'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.headers.get('cache-control')).toBe('no-cache');
    expectWebHeaders(res);
    expect(await res.text()).toBe(INDEX);
  });

  it('HEAD / answers like GET, without a body', async () => {
    const res = await fetch(url('/'), { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.headers.get('content-length')).toBe(String(Buffer.byteLength(INDEX)));
    expectWebHeaders(res);
    expect(await res.text()).toBe('');
  });

  it("a deep link is the app's own route: index.html", async () => {
    for (const path of ['/c/123', '/c/123/', '/settings', '/index.html']) {
      const res = await fetch(url(path));
      expect(res.status, path).toBe(200);
      expect(res.headers.get('cache-control'), path).toBe('no-cache');
      expectWebHeaders(res);
      expect(await res.text(), path).toBe(INDEX);
    }
  });

  it('a hashed asset is served as JavaScript and cached for good', async () => {
    const res = await fetch(url('/assets/app-abc.js'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/javascript/);
    expect(res.headers.get('cache-control')).toBe(IMMUTABLE);
    expectWebHeaders(res);
    expect(await res.text()).toBe(SCRIPT);
  });

  it('another file of the build is served as itself, not cached for good', async () => {
    const res = await fetch(url('/robots.txt'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(res.headers.get('cache-control')).toBe('no-cache');
    expect(await res.text()).toBe('User-agent: *\n');
  });

  it('a missing asset is a plain 404, never index.html', async () => {
    for (const path of ['/assets/app-old.js', '/assets/', '/assets']) {
      const res = await fetch(url(path));
      expect(res.status, path).toBe(404);
      expect(res.headers.get('content-type'), path).not.toMatch(/html/);
      expect(res.headers.get('cache-control'), path).not.toBe(IMMUTABLE);
      expectWebHeaders(res);
      expect(await res.text(), path).not.toContain('<html');
    }
  });

  it('nothing outside WEB_DIR can be reached', async () => {
    for (const path of ['/../secret.txt', '/assets/../../secret.txt', '/%2e%2e/secret.txt', '/..%2fsecret.txt', '/assets/..%2f..%2fsecret.txt', '//secret.txt']) {
      const res = await rawGet(ctx.stack.gateway.port, path);
      expect(res.body, path).not.toContain(SECRET.trim());
      expect([200, 404], path).toContain(res.status);
    }
  });

  it('the API, its 404s, the probes, metrics and the reference answer exactly as before', async () => {
    const user = await newUser('web');
    for (const path of ['/api/chat/nope', '/api/chat/c/123', '/api/nope', '/api']) {
      const res = await fetch(url(path), { headers: { authorization: `Bearer ${user.token}` } });
      expect(res.status, path).toBe(404);
      expect(res.headers.get('content-type'), path).toBe('application/json; charset=utf-8');
      expect(res.headers.get('content-security-policy'), path).toBe(API_CSP);
      const body = (await res.json()) as { error: { code: string; requestId: string } };
      expect(body.error.code, path).toBe('NOT_FOUND');
      expect(body.error.requestId, path).toBe(res.headers.get('x-request-id'));
    }
    // Without a token an unknown API route is still the API's 401, not a page.
    const anonymous = await fetch(url('/api/chat/nope'));
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { error: { code: string } }).error.code).toBe('UNAUTHORIZED');

    const conversations = await fetch(url('/api/chat/conversations'), { headers: { authorization: `Bearer ${user.token}` } });
    expect(conversations.status).toBe(200);
    expect(conversations.headers.get('content-security-policy')).toBe(API_CSP);
    expect(conversations.headers.get('cache-control')).toBe('no-store');

    const health = await fetch(url('/healthz'));
    expect(await health.json()).toEqual({ status: 'ok' });
    expect(health.headers.get('content-security-policy')).toBe(API_CSP);
    expect((await fetch(url('/readyz'))).status).toBe(200);
    const metrics = await fetch(url('/metrics'));
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
    const exposition = await metrics.text();
    expect(exposition).toContain('http_request_duration_seconds');
    // Web pages are one route template, never their concrete paths.
    expect(exposition).not.toMatch(/route="\/(c|assets|settings)/);
    expect(exposition).toMatch(/route="\/\*"/);

    const docs = await fetch(url('/api/chat/docs'));
    expect(docs.status).toBe(200);
    expect(docs.headers.get('content-security-policy')).toContain("style-src 'self' 'unsafe-inline'");
    expect((await fetch(url('/api/chat/openapi.json'))).status).toBe(200);
  });

  it('methods other than GET and HEAD on a web path get the JSON 404, as they did', async () => {
    const res = await fetch(url('/'), { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('NOT_FOUND');
  });

  describe('when WEB_DIR holds no build', () => {
    const gateways: Array<Awaited<ReturnType<typeof extraGateway>>> = [];
    const start = async (dir: string) => {
      const gateway = await extraGateway(ctx.stack, { WEB_DIR: dir });
      gateways.push(gateway);
      return gateway;
    };
    const emptyDir = join(tmp, 'empty');
    const missingDir = join(tmp, 'missing');

    afterAll(async () => {
      for (const g of gateways) await g.stop();
    });

    it('/ and deep links answer 404 with a page saying it is not built; the API is unchanged', async () => {
      mkdirSync(emptyDir);
      for (const dir of [missingDir, emptyDir]) {
        const gateway = await start(dir);
        for (const path of ['/', '/c/123']) {
          const res = await fetch(`${gateway.baseUrl}${path}`);
          expect(res.status, `${dir} ${path}`).toBe(404);
          expect(res.headers.get('content-type'), path).toMatch(/^text\/html/);
          expectWebHeaders(res);
          const text = await res.text();
          expect(text).toMatch(/not built/i);
          expect(text).toContain('npm run build');
        }
        expect((await fetch(`${gateway.baseUrl}/assets/app-abc.js`)).status).toBe(404);
        const user = await newUser('nobuild');
        const nope = await fetch(`${gateway.baseUrl}/api/chat/nope`, { headers: { authorization: `Bearer ${user.token}` } });
        expect(nope.status).toBe(404);
        expect(((await nope.json()) as { error: { code: string } }).error.code).toBe('NOT_FOUND');
      }
    });

    it('a build that appears after start is served without a restart', async () => {
      const later = join(tmp, 'later');
      const gateway = await start(later);
      expect((await fetch(`${gateway.baseUrl}/`)).status).toBe(404);
      mkdirSync(later);
      writeFileSync(join(later, 'index.html'), INDEX);
      const res = await fetch(`${gateway.baseUrl}/`);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe(INDEX);
    });
  });
});

describe('WebSocket upgrades from the gateway\'s own page', () => {
  // CORS_ORIGINS lists neither 127.0.0.1 nor localhost on this port: only same-origin can let these in.
  const ctx = useStack({ WEB_DIR: webDir, CORS_ORIGINS: 'https://app.example.com' });
  const upgrade = async (origin: string, host: string) => {
    const user = await newUser('own');
    return tryUpgrade(ctx.stack.gateway.port, { token: user.token, origin, headers: { host } });
  };

  it('an Origin equal to the scheme and Host of the request is accepted, under any host name', async () => {
    const port = ctx.stack.gateway.port;
    expect((await upgrade(`http://127.0.0.1:${port}`, `127.0.0.1:${port}`)).status).toBe(101);
    expect((await upgrade(`http://localhost:${port}`, `localhost:${port}`)).status).toBe(101);
    expect((await upgrade('http://chat.internal.example', 'chat.internal.example:80')).status).toBe(101);
  });

  it('any other Origin is still 403 ORIGIN_NOT_ALLOWED, whatever the Host', async () => {
    const port = ctx.stack.gateway.port;
    for (const [origin, host] of [
      ['http://evil.example', `127.0.0.1:${port}`],
      [`http://127.0.0.1:${port}.evil.example`, `127.0.0.1:${port}`],
      [`https://127.0.0.1:${port}`, `127.0.0.1:${port}`], // not the scheme it serves
      [`http://127.0.0.1:${port + 1}`, `127.0.0.1:${port}`],
      [`http://127.0.0.1:${port}`, `evil.example:${port}`],
      [`http://127.0.0.1:${port}`, `127.0.0.1:${port}/x`],
      ['null', `127.0.0.1:${port}`],
    ]) {
      const res = await upgrade(origin!, host!);
      expect(res.status, `${origin} / ${host}`).toBe(403);
      expect(res.body.error.code, `${origin} / ${host}`).toBe('ORIGIN_NOT_ALLOWED');
    }
  });

  it('ownOrigin writes the origin as a browser does, and nothing for a Host that is not host[:port]', () => {
    expect(ownOrigin('127.0.0.1:8080', false)).toBe('http://127.0.0.1:8080');
    expect(ownOrigin('Chat.Example.COM', true)).toBe('https://chat.example.com');
    expect(ownOrigin('chat.example.com:443', true)).toBe('https://chat.example.com');
    expect(ownOrigin('[::1]:8080', false)).toBe('http://[::1]:8080');
    for (const bad of [undefined, '', 'a@b.example', 'a.example/x', 'a.example:99999', 'a.example:8080:1', 'a b']) expect(ownOrigin(bad, false), String(bad)).toBeUndefined();
  });

  describe('under TLS', () => {
    let dir: string;
    let ca: Buffer;
    let gateway: Awaited<ReturnType<typeof extraGateway>>;

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'chat-web-tls-'));
      const cert = join(dir, 'cert.pem');
      const key = join(dir, 'key.pem');
      execFileSync('openssl', [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
        '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', key, '-out', cert,
      ], { stdio: 'ignore' });
      ca = readFileSync(cert);
      gateway = await extraGateway(ctx.stack, { TLS_CERT_FILE: cert, TLS_KEY_FILE: key });
    });
    afterAll(async () => {
      await gateway?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    const wssUpgrade = async (origin: string) => {
      const user = await newUser('tls');
      const ws = new WebSocket(`wss://127.0.0.1:${gateway.port}/api/chat/ws?token=${user.token}`, { ca, origin });
      return new Promise<number>((done, fail) => {
        ws.once('open', () => {
          ws.close();
          done(101);
        });
        ws.once('unexpected-response', (_req, res: IncomingMessage) => {
          res.resume();
          done(res.statusCode ?? 0);
        });
        ws.once('error', fail);
      });
    };

    it('the own origin is https://, and http:// of the same host is refused', async () => {
      expect(await wssUpgrade(`https://127.0.0.1:${gateway.port}`)).toBe(101);
      expect(await wssUpgrade(`http://127.0.0.1:${gateway.port}`)).toBe(403);
    });

    it('the web page carries Strict-Transport-Security under TLS', async () => {
      const res = await new Promise<IncomingMessage>((done, fail) => {
        const req = https.request({ host: '127.0.0.1', port: gateway.port, path: '/', ca }, done);
        req.on('error', fail);
        req.end();
      });
      res.resume();
      expect(res.statusCode).toBe(200);
      expect(res.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
      expect(res.headers['content-security-policy']).toBe(WEB_CSP);
    });
  });
});
