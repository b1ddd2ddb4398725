import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRoute } from '@hono/zod-openapi';
import { secureHeaders } from 'hono/secure-headers';
import { z } from 'zod';
import { routeApp } from './http';
import { PUBLIC } from './openapi';

export const REFERENCE_PATH = '/api/chat/docs';

/** The Swagger UI files, served from the installed package: no CDN, so it works offline and under a strict CSP. */
// A Map, not an object: a name from the URL such as `__proto__` or `constructor` must not find Object.prototype's members.
const ASSETS = new Map<string, string>([
  ['swagger-ui.css', 'text/css; charset=utf-8'],
  ['swagger-ui-bundle.js', 'text/javascript; charset=utf-8'],
]);
const assetDir = (createRequire(import.meta.url)('swagger-ui-dist') as { getAbsoluteFSPath(): string }).getAbsoluteFSPath();
const assetCache = new Map<string, Buffer>();

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Chat API reference</title>
<link rel="stylesheet" href="${REFERENCE_PATH}/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="${REFERENCE_PATH}/assets/swagger-ui-bundle.js"></script>
<script src="${REFERENCE_PATH}/init.js"></script>
</body>
</html>
`;
// A file, not an inline script: the page's CSP allows scripts from this origin only.
const INIT = `window.ui = SwaggerUIBundle({ url: '/api/chat/openapi.json', dom_id: '#swagger-ui', deepLinking: true });\n`;

const document = createRoute({
  method: 'get',
  path: '/openapi.json',
  tags: ['Reference'],
  summary: 'This document',
  ...PUBLIC,
  responses: { 200: { description: 'OpenAPI 3.1', content: { 'application/json': { schema: z.object({}).passthrough() } } } },
});

const page = createRoute({
  method: 'get',
  path: '/docs',
  tags: ['Reference'],
  summary: 'A browsable reference of this document',
  ...PUBLIC,
  responses: { 200: { description: 'an HTML page', content: { 'text/html': { schema: z.string() } } } },
});

/**
 * GET /api/chat/openapi.json and the browsable reference at /api/chat/docs,
 * both without authentication (SPEC 3), mounted at /api/chat. The reference
 * page gets a CSP it can work under (own scripts and styles, Swagger UI's
 * inline styles); the API keeps `default-src 'none'`.
 */
export function referenceRoutes(hsts: string | false, openApiDocument: () => Record<string, unknown>) {
  const app = routeApp();
  app.openapi(document, (c) => c.json(openApiDocument(), 200));
  const docs = REFERENCE_PATH.slice('/api/chat'.length);
  app.use(
    `${docs}/*`,
    secureHeaders({
      contentSecurityPolicy: {
        defaultSrc: ["'none'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        frameAncestors: ["'none'"],
      },
      xFrameOptions: 'DENY',
      referrerPolicy: 'no-referrer',
      strictTransportSecurity: hsts,
    }),
  );
  app.openapi(page, (c) => c.html(PAGE, 200));
  // Files of the page, not operations of the API: routed, not documented.
  app.get(`${docs}/init.js`, (c) => c.body(INIT, 200, { 'Content-Type': 'text/javascript; charset=utf-8' }));
  app.get(`${docs}/assets/:file`, (c) => {
    const file = c.req.param('file');
    const type = ASSETS.get(file);
    if (!type) return c.notFound();
    let body = assetCache.get(file);
    if (!body) assetCache.set(file, (body = readFileSync(join(assetDir, file))));
    return c.body(new Uint8Array(body), 200, { 'Content-Type': type, 'Cache-Control': 'public, max-age=86400' });
  });
  return app;
}
