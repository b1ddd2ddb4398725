import { serveStatic } from '@hono/node-server/serve-static';
import type { Context, MiddlewareHandler, Next } from 'hono';
import { secureHeaders } from 'hono/secure-headers';
import { join } from 'node:path';
import type { GatewayEnv } from './http';

/** What the API and the probes own; everything else belongs to the web chat. */
const NOT_WEB = ['/healthz', '/readyz', '/metrics', '/api'];

export function isWebPath(path: string): boolean {
  return !NOT_WEB.some((p) => path === p || path.startsWith(`${p}/`));
}

const isAssetPath = (path: string) => path === '/assets' || path.startsWith('/assets/');

/** Vite names every file under assets/ by its content hash: a new build is a new URL, so caching forever is safe. */
const IMMUTABLE = 'public, max-age=31536000, immutable';

const NOT_BUILT = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Web chat not built</title>
</head>
<body>
<h1>The web chat is not built</h1>
<p>Run <code>npm run build</code>, then reload this page. The API is at <a href="/api/chat/docs">/api/chat/docs</a>.</p>
</body>
</html>
`;

/**
 * The headers of every answer on a web path, in place of the API's
 * `default-src 'none'`: the page may load its own scripts, styles and fonts,
 * call the API and open the WebSocket on this origin, and show images from
 * anywhere over HTTPS (avatars). No 'unsafe-inline' anywhere: Vite emits files
 * only, so an injected inline script or style has nothing to run under.
 */
export function webHeaders(hsts: string | false): MiddlewareHandler {
  return secureHeaders({
    contentSecurityPolicy: {
      defaultSrc: ["'self'"],
      scriptSrc: ["'self'"],
      styleSrc: ["'self'"],
      imgSrc: ["'self'", 'data:', 'https:'],
      connectSrc: ["'self'"],
      fontSrc: ["'self'"],
      objectSrc: ["'none'"],
      baseUri: ["'none'"],
      formAction: ["'self'"],
      frameAncestors: ["'none'"],
    },
    xFrameOptions: 'DENY',
    referrerPolicy: 'no-referrer',
    strictTransportSecurity: hsts,
  });
}

/**
 * GET and HEAD of every web path: the file from `webDir` if there is one, else
 * index.html, so the app's own routes (`/c/123`) survive a reload or a shared
 * link. A missing file under /assets/ is a 404 instead: answering a script
 * request with HTML would only hide a stale or broken build. Other paths pass
 * through untouched, so the API keeps its own answers, 404s included.
 *
 * The directory is looked at on each request, not at start: a gateway started
 * before `npm run build` serves the build once it is there.
 */
export function webHandler(webDir: string) {
  const file = serveStatic<GatewayEnv>({
    // Not `root`: serveStatic warns on the console at start when `root` is missing, and an unbuilt
    // web chat is a normal state here. The request path is refused with `..` or doubled slashes before this runs.
    rewriteRequestPath: (path) => join(webDir, path),
  });
  const index = serveStatic<GatewayEnv>({ path: join(webDir, 'index.html') });
  const noop: Next = async () => undefined;

  return async (c: Context<GatewayEnv>, next: Next) => {
    const path = c.req.path;
    if (!isWebPath(path)) return next();
    const asset = isAssetPath(path);
    const found = await file(c, noop);
    if (found) return withCache(found, asset ? IMMUTABLE : 'no-cache');
    if (asset) return c.text('not found', 404);
    const page = await index(c, noop);
    if (page) return withCache(page, 'no-cache');
    return c.html(NOT_BUILT, 404, { 'Cache-Control': 'no-cache' });
  };
}

/** index.html and other unhashed files are revalidated on every load, so a new build is picked up at once. */
function withCache(res: Response, cacheControl: string): Response {
  res.headers.set('Cache-Control', cacheControl);
  return res;
}
