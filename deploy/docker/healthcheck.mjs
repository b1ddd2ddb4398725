// The image's HEALTHCHECK: GET http://127.0.0.1:<port>/healthz, exit 0 on a
// 200 and 1 on anything else (refused, timed out after 2 s, another status).
// Plain Node, no dependencies, so a check costs one short process.
//
// Which port: the gateway answers /healthz on PORT (default 8080); every other
// service on METRICS_PORT, else its default (packages/platform/src/config.ts
// `defaultMetricsPort`). Which service: SERVICE, else the one PID 1 runs (the
// entrypoint execs `node --import tsx services/<name>/src/main.ts`, so this
// also covers `docker run chat:local messages`), else the gateway.
//
// `--print-url` prints the URL it would check and exits 0 without calling it.
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

const TIMEOUT_MS = 2000;
const GATEWAY_PORT = 8080;
const METRICS_PORTS = { conversations: 9101, messages: 9102, blocks: 9103, presence: 9104, notifications: 9105 };

function fail(message) {
  process.stderr.write(`healthcheck: ${message}\n`);
  process.exit(1);
}

function serviceOfPid1() {
  try {
    const argv = readFileSync('/proc/1/cmdline', 'utf8').split('\0');
    for (const arg of argv) {
      const m = /(?:^|\/)services\/([a-z]+)\/src\/main\.ts$/.exec(arg);
      if (m) return m[1];
    }
  } catch {
    // not Linux, or /proc is hidden: fall through
  }
  return undefined;
}

function portFrom(name, value, fallback) {
  if (value === undefined || value.trim() === '') return fallback;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`${name}=${value} is not a port`);
  if (port === 0) fail(`${name}=0 picks a free port at random, which a health check cannot find; set a fixed port`);
  return port;
}

const env = process.env;
const service = env.SERVICE?.trim() || serviceOfPid1() || 'gateway';
let url;
if (service === 'gateway') {
  // A gateway given a certificate serves only HTTPS (on the same PORT).
  const scheme = env.TLS_CERT_FILE?.trim() ? 'https' : 'http';
  url = `${scheme}://127.0.0.1:${portFrom('PORT', env.PORT, GATEWAY_PORT)}/healthz`;
} else if (Object.hasOwn(METRICS_PORTS, service)) {
  url = `http://127.0.0.1:${portFrom('METRICS_PORT', env.METRICS_PORT, METRICS_PORTS[service])}/healthz`;
} else {
  fail(`unknown SERVICE "${service}" (expected gateway, ${Object.keys(METRICS_PORTS).join(', ')})`);
}

if (process.argv.includes('--print-url')) {
  process.stdout.write(`${url}\n`);
  process.exit(0);
}

const timer = setTimeout(() => fail(`${url}: no answer within ${TIMEOUT_MS} ms`), TIMEOUT_MS);
const request = url.startsWith('https:') ? httpsRequest : httpRequest;
// The certificate names the public host, not 127.0.0.1: only liveness is checked here.
const req = request(url, { method: 'GET', timeout: TIMEOUT_MS, rejectUnauthorized: false }, (res) => {
  res.resume();
  clearTimeout(timer);
  if (res.statusCode === 200) {
    process.stdout.write(`healthcheck: ${service} ${url} 200\n`);
    process.exit(0);
  }
  fail(`${url} answered ${res.statusCode}`);
});
req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
req.on('error', (err) => fail(`${url}: ${err.message}`));
req.end();
