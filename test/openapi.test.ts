import SwaggerParser from '@apidevtools/swagger-parser';
import Ajv2020 from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { errorStatus, type ErrorCode } from '@chat/contracts';
import { conversationPair } from './helpers/client';
import { useStack } from './helpers/stack';
import { tryUpgrade } from './helpers/ws';

type Doc = { openapi: string; paths: Record<string, Record<string, any>>; components: Record<string, any> };
const METHODS = ['get', 'post', 'put', 'delete', 'patch'];

describe('OpenAPI document and reference (no auth)', () => {
  const ctx = useStack();
  let doc: Doc;

  const fetchDoc = async () => {
    const res = await fetch(`${ctx.stack.baseUrl}/api/chat/openapi.json`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    doc = (await res.json()) as Doc;
    return doc;
  };

  it('is served without a token and is a valid OpenAPI 3.1 document', async () => {
    await fetchDoc();
    expect(doc.openapi).toBe('3.1.0');
    await SwaggerParser.validate(structuredClone(doc) as never);
  });

  // Each route is its own documentation (createRoute), so the two lists come from one; this still
  // catches a route added with a plain app.get (routed, not documented) or a documented one not served.
  it("lists exactly the gateway's routes", async () => {
    await fetchDoc();
    const routed = new Set(
      ctx.stack.gateway.app.routes
        .filter((r) => r.method !== 'ALL' && r.path.startsWith('/api/chat/') && !r.path.includes('*') && !r.path.startsWith('/api/chat/docs/'))
        .map((r) => `${r.method.toLowerCase()} ${r.path.slice('/api/chat'.length).replace(/:([A-Za-z]+)/g, '{$1}')}`),
    );
    const documented = new Set(Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).filter((m) => METHODS.includes(m)).map((m) => `${m} ${path}`)));
    // The WebSocket is served by the upgrade handler, not the router: documented, and really there.
    expect(documented.has('get /ws')).toBe(true);
    expect((await tryUpgrade(ctx.stack.gateway.port, {})).status).toBe(401);
    documented.delete('get /ws');
    expect([...documented].sort()).toEqual([...routed].sort());
    // And SPEC 4's table, route by route.
    for (const r of [
      'get /conversations', 'get /conversations/unread-count', 'get /conversations/with/{username}', 'get /conversations/{conversationId}',
      'get /conversations/{conversationId}/messages', 'post /conversations/{conversationId}/messages', 'post /conversations/{conversationId}/read',
      'get /events', 'get /messages/{messageId}', 'post /ws-ticket', 'post /blocks', 'delete /blocks/{username}', 'get /blocks',
      'get /blocks/status/{username}', 'get /presence', 'get /notifications/preferences', 'put /notifications/preferences',
      'get /openapi.json', 'get /docs',
    ])
      expect(routed.has(r), r).toBe(true);
  });

  it('every operation has its request, its success answers and its error codes, each code under its SPEC status', async () => {
    await fetchDoc();
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        if (!METHODS.includes(method)) continue;
        const where = `${method} ${path}`;
        expect(op.summary, where).toBeTruthy();
        const statuses = Object.keys(op.responses);
        expect(statuses.some((s) => /^(1|2)\d\d$/.test(s)), `${where} has a success answer`).toBe(true);
        for (const param of path.match(/\{(\w+)\}/g) ?? [])
          expect(op.parameters?.some((p: any) => p.in === 'path' && `{${p.name}}` === param), `${where} ${param}`).toBe(true);
        const publicRoute = path === '/openapi.json' || path === '/docs';
        if (!publicRoute && path !== '/ws') expect(statuses, `${where} can be unauthorized`).toContain('401');
        if (publicRoute) expect(op.security, where).toEqual([]);
        for (const status of statuses.filter((s) => /^[45]/.test(s))) {
          const codes = op.responses[status].content['application/json'].schema.properties.error.properties.code.enum as ErrorCode[];
          expect(codes.length, `${where} ${status}`).toBeGreaterThan(0);
          for (const code of codes) expect(errorStatus[code], `${where}: ${code} under ${status}`).toBe(Number(status));
        }
        if (['post', 'put'].includes(method) && !['/ws-ticket'].includes(path) && !path.endsWith('/reactions/{emoji}')) expect(op.requestBody, `${where} body`).toBeDefined();
      }
    }
    expect(Object.keys(doc.paths['/conversations/{conversationId}/messages']!.post.responses)).toEqual(
      expect.arrayContaining(['200', '201', '400', '401', '403', '404', '409', '413', '415', '429', '503']),
    );
    expect(doc.paths['/conversations/{conversationId}/messages']!.post.responses['201'].headers).toHaveProperty('RateLimit-Remaining');
  });

  it('the running system answers as the document says (responses validated against its schemas)', async () => {
    await fetchDoc();
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    ajv.addSchema({ ...doc, $id: 'openapi' });
    const check = (method: string, path: string, status: number, body: unknown) => {
      const pointer = `openapi#/paths/${path.replace(/~/g, '~0').replace(/\//g, '~1')}/${method}/responses/${status}/content/application~1json/schema`;
      const validate = ajv.getSchema(pointer);
      expect(validate, `${method} ${path} ${status} is documented`).toBeDefined();
      expect(validate!(body), `${method} ${path} ${status}: ${JSON.stringify(validate!.errors)}`).toBe(true);
    };
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const sent = await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'documented', clientMessageId: 'doc-1' });
    check('post', '/conversations/{conversationId}/messages', 201, sent.body);
    check('post', '/conversations/{conversationId}/messages', 200, (await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'documented', clientMessageId: 'doc-1' })).body);
    check('post', '/conversations/{conversationId}/messages', 409, (await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'other', clientMessageId: 'doc-1' })).body);
    check('post', '/conversations/{conversationId}/messages', 400, (await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: '' })).body);
    check('get', '/conversations', 200, (await ctx.api.get('/conversations', bob.token)).body);
    check('get', '/conversations/{conversationId}', 200, (await ctx.api.get(`/conversations/${conv}`, bob.token)).body);
    check('get', '/conversations/{conversationId}', 404, (await ctx.api.get('/conversations/nope', bob.token)).body);
    check('get', '/conversations/{conversationId}/messages', 200, (await ctx.api.get(`/conversations/${conv}/messages`, bob.token)).body);
    check('get', '/conversations/unread-count', 200, (await ctx.api.get('/conversations/unread-count', bob.token)).body);
    check('get', '/conversations/with/{username}', 200, (await ctx.api.get(`/conversations/with/${alice.username}`, bob.token)).body);
    check('post', '/conversations/{conversationId}/read', 200, (await ctx.api.post(`/conversations/${conv}/read`, bob.token, {})).body);
    check('get', '/events', 200, (await ctx.api.get('/events', bob.token)).body);
    check('get', '/messages/{messageId}', 200, (await ctx.api.get(`/messages/${sent.body.data.id}`, bob.token)).body);
    check('post', '/ws-ticket', 200, (await ctx.api.post('/ws-ticket', bob.token)).body);
    check('post', '/blocks', 201, (await ctx.api.post('/blocks', bob.token, { username: alice.username })).body);
    check('get', '/blocks', 200, (await ctx.api.get('/blocks', bob.token)).body);
    check('get', '/blocks/status/{username}', 200, (await ctx.api.get(`/blocks/status/${alice.username}`, bob.token)).body);
    check('post', '/conversations/{conversationId}/messages', 403, (await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'blocked' })).body);
    check('get', '/presence', 200, (await ctx.api.get(`/presence?userIds=${alice.id}`, bob.token)).body);
    check('get', '/notifications/preferences', 200, (await ctx.api.get('/notifications/preferences', bob.token)).body);
    check('put', '/notifications/preferences', 200, (await ctx.api.put('/notifications/preferences', bob.token, { enabled: false, mutedConversationIds: [] })).body);
    check('get', '/conversations', 401, (await ctx.api.get('/conversations')).body);
  });

  it('the reference page loads without a token, under a CSP it can work with; the API keeps its strict one', async () => {
    const page = await fetch(`${ctx.stack.baseUrl}/api/chat/docs`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const csp = page.headers.get('content-security-policy')!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-eval');
    expect(csp).toContain("frame-ancestors 'none'");
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    const html = await page.text();
    const assets = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(assets.length).toBe(3);
    for (const asset of assets) {
      const res = await fetch(`${ctx.stack.baseUrl}${asset}`);
      expect(res.status, asset).toBe(200);
      expect(res.headers.get('content-type'), asset).toMatch(/text\/(css|javascript)/);
      expect((await res.arrayBuffer()).byteLength, asset).toBeGreaterThan(40);
    }
    expect(await (await fetch(`${ctx.stack.baseUrl}/api/chat/docs/init.js`)).text()).toContain('/api/chat/openapi.json');
    expect((await fetch(`${ctx.stack.baseUrl}/api/chat/docs/assets/package.json`)).status).toBe(404);
    expect((await fetch(`${ctx.stack.baseUrl}/api/chat/docs/assets/..%2fpackage.json`)).status).toBe(404);
    const api = await fetch(`${ctx.stack.baseUrl}/api/chat/openapi.json`);
    expect(api.headers.get('content-security-policy')).toBe("default-src 'none'; frame-ancestors 'none'");
  });

  it.each(['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf'])(
    'an asset named %s, a member of every JavaScript object, is 404 NOT_FOUND, not a 500',
    async (name) => {
      const res = await fetch(`${ctx.stack.baseUrl}/api/chat/docs/assets/${name}`);
      expect(res.status).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('NOT_FOUND');
    },
  );
});
