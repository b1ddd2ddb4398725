import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it, type ExpectStatic } from 'vitest';
import { parseAllDocuments, parseDocument, Scalar, visit, YAMLMap } from 'yaml';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, StorageType, type StreamInfo } from '@nats-io/jetstream';
import { ConfigSchema, natsConnectOptions } from '@chat/platform';
import { freePort } from './helpers/processes';

/**
 * NATS as a 3-server cluster with the JetStream streams at 3 replicas, both
 * ways the repository deploys it:
 *
 * - compose: docker-compose.nats-cluster.yml merged onto docker-compose.yml
 *   (by the Compose merge rules and its !reset / !override tags, written out
 *   below: there is no docker here), running deploy/nats/cluster.conf;
 * - Kubernetes: deploy/k8s/nats as the prod overlay includes it, rendered by
 *   the real `kubectl kustomize` and validated with kubernetes-models.
 *
 * Then each of the two configurations, exactly as the repository has it, is
 * run by three real nats-servers on free local ports (the only textual
 * changes: listen addresses, the store directory, and the route hosts in
 * the environment, for there is neither DNS nor docker here). They must form
 * a cluster on which a stream with 3 replicas gets a leader and 2 current
 * replicas, and survives SIGKILL of its leader's server: a new leader, and
 * publishing goes on.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const at = (...parts: string[]) => join(ROOT, ...parts);
const read = (...parts: string[]) => readFileSync(at(...parts), 'utf8');
const NATS_SERVER = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server';
const KUBECTL = process.env.KUBECTL ?? 'kubectl';

/** The chat processes: every services/<name> with a src/main.ts. */
const CHAT = readdirSync(at('services'))
  .filter((name) => existsSync(at('services', name, 'src', 'main.ts')))
  .sort();
const SERVICES = CHAT.filter((name) => name !== 'gateway');

type Dict = Record<string, unknown>;
type Labels = Record<string, string>;
const isDict = (v: unknown): v is Dict => typeof v === 'object' && v !== null && !Array.isArray(v);
function dict(v: unknown, what: string): Dict {
  if (!isDict(v)) throw new Error(`${what}: expected a mapping, got ${JSON.stringify(v)}`);
  return v;
}
const list = (v: unknown): unknown[] => (v === undefined || v === null ? [] : Array.isArray(v) ? v : [v]);
const words = (v: unknown): string[] => (typeof v === 'string' ? v.split(/\s+/).filter(Boolean) : list(v).map(String));

// ---------------------------------------------------------------------------
// The NATS configuration files: what they listen on, and which $VARIABLES they need.

interface NatsConf {
  text: string;
  client: number;
  http: number;
  route: number;
  storeDir: string;
  /** Every `$NAME` the file refers to (nats-server refuses to start if one is unset). */
  variables: string[];
}
function natsConf(text: string, where: string): NatsConf {
  const body = text.replace(/#.*$/gm, '');
  const one = (re: RegExp, what: string): string => {
    const all = [...body.matchAll(new RegExp(re.source, 'gm'))];
    if (all.length !== 1 || !all[0]?.[1]) throw new Error(`${where}: expected one ${what}, found ${all.length}`);
    return all[0][1];
  };
  const cluster = /^cluster\s*\{([\s\S]*?)^\}/m.exec(body)?.[1];
  if (!cluster) throw new Error(`${where}: no cluster block`);
  const routeListen = /^\s*listen:\s*0\.0\.0\.0:(\d+)\s*$/m.exec(cluster)?.[1];
  if (!routeListen) throw new Error(`${where}: no cluster listen 0.0.0.0:<port>`);
  return {
    text,
    client: Number(one(/^listen:\s*0\.0\.0\.0:(\d+)\s*$/, 'top-level listen 0.0.0.0:<port>')),
    http: Number(one(/^http:\s*0\.0\.0\.0:(\d+)\s*$/, 'http 0.0.0.0:<port>')),
    route: Number(routeListen),
    storeDir: one(/^\s*store_dir:\s*(\S+)\s*$/, 'store_dir'),
    variables: [...new Set([...body.matchAll(/\$([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]!))].sort(),
  };
}

/**
 * The same file for a nats-server of this test: its three listen addresses on
 * 127.0.0.1 at the given ports and its store in `dir`; each replaced where it
 * stands, exactly once, and the rest of the file left as it is.
 */
function localConf(c: NatsConf, ports: { client: number; http: number; route: number }, dir: string): string {
  let text = c.text;
  const swap = (from: RegExp, to: string) => {
    const hits = text.match(new RegExp(from.source, 'gm'))?.length ?? 0;
    if (hits !== 1) throw new Error(`expected ${from} once in the configuration, found it ${hits} times`);
    text = text.replace(new RegExp(from.source, 'm'), to);
  };
  swap(/^listen:\s*0\.0\.0\.0:\d+\s*$/, `listen: 127.0.0.1:${ports.client}`);
  swap(/^http:\s*0\.0\.0\.0:\d+\s*$/, `http: 127.0.0.1:${ports.http}`);
  swap(/^(\s+)listen:\s*0\.0\.0\.0:\d+\s*$/, `  listen: 127.0.0.1:${ports.route}`);
  swap(/^(\s*)store_dir:\s*\S+\s*$/, `  store_dir: ${JSON.stringify(join(dir, 'js'))}`);
  return text;
}

// ---------------------------------------------------------------------------
// Compose: the two files merged as `docker compose -f docker-compose.yml -f docker-compose.nats-cluster.yml` does.

const RESET = '\u0000!reset';
const OVERRIDE = '\u0000!override';

/** A Compose file as plain data, its `<<` merge keys resolved; `!reset x` becomes RESET, `!override {…}` becomes `{ [OVERRIDE]: {…} }`. */
function loadComposeFile(file: string): Dict {
  const doc = parseDocument(read(file), { merge: true });
  if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
  const unknown = doc.warnings.filter((w) => !/Unresolved tag: !(reset|override)\b/.test(w.message));
  if (unknown.length > 0) throw new Error(`${file}: ${unknown.map((w) => w.message).join('; ')}`);
  visit(doc, {
    Node(_key, node) {
      if (node.tag === '!reset') return new Scalar(RESET);
      if (node.tag === '!override') {
        node.tag = undefined;
        const wrapper = new YAMLMap();
        wrapper.set(OVERRIDE, node);
        return wrapper;
      }
      return undefined;
    },
  });
  return dict(doc.toJS({ maxAliasCount: 1000 }), file);
}

/** The attributes Compose replaces instead of appending to (merge rules, "Exceptions"). */
const REPLACED_SEQUENCES = new Set(['command', 'entrypoint', 'test']);
/** Compose's merge of one file onto the previous: mappings key by key, sequences appended, !reset drops, !override replaces. */
function composeMerge(base: unknown, over: unknown, key = ''): unknown {
  if (isDict(over) && OVERRIDE in over) return over[OVERRIDE];
  if (isDict(base) && isDict(over)) {
    const out: Dict = { ...base };
    for (const [k, v] of Object.entries(over)) {
      if (v === RESET) delete out[k];
      else out[k] = k in out ? composeMerge(out[k], v, k) : composeMerge(undefined, v, k);
    }
    return out;
  }
  if (Array.isArray(base) && Array.isArray(over) && !REPLACED_SEQUENCES.has(key)) return [...base, ...over.filter((o) => !base.some((b) => JSON.stringify(b) === JSON.stringify(o)))];
  if (isDict(over)) return composeMerge({}, over, key); // a new entry: still drop what it resets
  return over;
}

/** Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}` and `$$`, with `env` as the shell's (empty: a fresh checkout's defaults). */
function interpolate(value: string, env: Record<string, string> = {}): string {
  return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (m, name?: string, op?: string, def?: string, bare?: string) => {
    if (m === '$$') return '$';
    const v = env[name ?? bare!];
    if (op === ':-') return v === undefined || v === '' ? (def ?? '') : v;
    if (op === '-') return v === undefined ? (def ?? '') : v;
    return v ?? '';
  });
}

const baseCompose = loadComposeFile('docker-compose.yml');
const clusterFile = loadComposeFile('docker-compose.nats-cluster.yml');
const merged = dict(composeMerge(baseCompose, clusterFile), 'merged');
const services = dict(merged.services, 'services');
const svc = (name: string) => dict(services[name], `services.${name}`);
const environment = (name: string, env: Record<string, string> = {}): Record<string, string> =>
  Object.fromEntries(Object.entries(dict(svc(name).environment ?? {}, `${name}.environment`)).map(([k, v]) => [k, v === null ? '' : interpolate(String(v), env)]));
function dependsOn(name: string, from: Dict = services): Record<string, string | undefined> {
  const raw = dict(from[name], name).depends_on;
  if (Array.isArray(raw)) return Object.fromEntries(raw.map((d) => [String(d), undefined]));
  return Object.fromEntries(Object.entries(raw === undefined ? {} : dict(raw, `${name}.depends_on`)).map(([k, v]) => [k, isDict(v) ? String(v.condition) : undefined]));
}
/** Volumes as { source, target }: a named volume or a ./bind path. */
const volumesOf = (name: string) =>
  list(svc(name).volumes).map((v) => {
    const [source = '', target = ''] = interpolate(String(v)).split(':');
    return { source, target };
  });

const COMPOSE_NATS = ['nats-1', 'nats-2', 'nats-3'];
const composeConf = natsConf(read('deploy/nats/cluster.conf'), 'deploy/nats/cluster.conf');

// ---------------------------------------------------------------------------
// Kubernetes: the real kustomize, the real schemas.

interface Resource {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Labels };
  [key: string]: unknown;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    fieldRef?: { fieldPath: string };
    secretKeyRef?: { name: string; key: string; optional?: boolean };
    configMapKeyRef?: { name: string; key: string };
    resourceFieldRef?: { containerName?: string; resource: string };
  };
}
interface Probe {
  httpGet?: { path: string; port: number | string };
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  ports?: Array<{ name?: string; containerPort: number }>;
  env?: EnvVar[];
  envFrom?: Array<{ configMapRef?: { name: string }; secretRef?: { name: string } }>;
  startupProbe?: Probe;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: Dict;
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
}
interface PodSpec {
  containers: Container[];
  securityContext?: Dict;
  volumes?: Array<{ name: string; configMap?: { name: string } }>;
  affinity?: {
    podAntiAffinity?: {
      preferredDuringSchedulingIgnoredDuringExecution?: Array<{ weight: number; podAffinityTerm: { topologyKey: string; labelSelector?: { matchLabels?: Labels } } }>;
    };
  };
}
interface Workload extends Resource {
  spec: {
    replicas?: number;
    serviceName?: string;
    podManagementPolicy?: string;
    selector: { matchLabels: Labels };
    template: { metadata: { labels: Labels }; spec: PodSpec };
    volumeClaimTemplates?: Array<{ metadata: { name: string }; spec: { accessModes?: string[]; resources: { requests: { storage: string } } } }>;
  };
}
interface Service extends Resource {
  spec: { clusterIP?: string; publishNotReadyAddresses?: boolean; selector: Labels; ports: Array<{ name?: string; port: number; targetPort?: number | string }> };
}
interface LabelSelector {
  matchLabels?: Labels;
  matchExpressions?: Array<{ key: string; operator: string; values?: string[] }>;
}
interface NetworkPolicy extends Resource {
  spec: {
    podSelector: LabelSelector;
    policyTypes?: string[];
    ingress?: Array<{ from?: Array<{ podSelector?: LabelSelector; namespaceSelector?: LabelSelector; ipBlock?: unknown }>; ports?: Array<{ port?: number | string }> }>;
  };
}

const renderings = new Map<string, Resource[]>();
/** `kubectl kustomize <dir>`, every document parsed as YAML 1.1 as the API machinery does. */
function render(dir: string): Resource[] {
  const cached = renderings.get(dir);
  if (cached) return cached;
  let out: string;
  try {
    out = execFileSync(KUBECTL, ['kustomize', at(dir)], { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new Error(`${KUBECTL} not found: apt-get install -y kubernetes-client`);
    throw new Error(`${KUBECTL} kustomize ${dir} failed: ${String(e.stderr ?? e.message).trim()}`);
  }
  const resources = parseAllDocuments(out, { version: '1.1' })
    .map((d) => d.toJS() as unknown)
    .filter((d): d is Resource => isDict(d) && typeof d.kind === 'string');
  renderings.set(dir, resources);
  return resources;
}
const PROD = 'deploy/k8s/overlays/prod';
const DEV = 'deploy/k8s/overlays/dev';
const ofKind = <T extends Resource>(rs: Resource[], kind: string) => rs.filter((r) => r.kind === kind) as T[];
function must<T extends Resource>(rs: Resource[], kind: string, name: string): T {
  const found = ofKind<T>(rs, kind).find((r) => r.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name}`);
  return found;
}

/** kubernetes-models' model of the object's apiVersion and kind; validate() throws naming the offending path. */
async function validateAgainstSchema(r: Resource): Promise<void> {
  const module = (await import(`kubernetes-models/${r.apiVersion}`)) as Record<string, new (data: unknown) => { validate(): void }>;
  const Model = module[r.kind];
  if (!Model) throw new Error(`kubernetes-models has no ${r.apiVersion} ${r.kind}`);
  new Model(r).validate();
}

function selectorMatches(selector: LabelSelector, labels: Labels): boolean {
  return (
    Object.entries(selector.matchLabels ?? {}).every(([k, v]) => labels[k] === v) &&
    (selector.matchExpressions ?? []).every(({ key, operator, values = [] }) => {
      const v = labels[key];
      if (operator === 'In') return v !== undefined && values.includes(v);
      if (operator === 'NotIn') return v === undefined || !values.includes(v);
      if (operator === 'Exists') return v !== undefined;
      return v === undefined;
    })
  );
}
const portOf = (c: Container, port: number | string | undefined): number | undefined => (typeof port === 'number' ? port : c.ports?.find((p) => p.name === port)?.containerPort);

function bytes(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  if (!m?.[1]) throw new Error(`bad quantity ${q}`);
  return Number(m[1]) * ({ Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 }[m[2] ?? ''] ?? 1);
}

/**
 * A pod's environment as the kubelet builds it: `value` with `$(NAME)`
 * expanded from the variables before it, the pod's name, Secret keys from
 * `secrets`, and the container's memory limit.
 */
function podEnv(c: Container, podName: string, secrets: Record<string, Record<string, string>>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    const from = e.valueFrom;
    if (e.value !== undefined) env[e.name] = e.value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name: string) => env[name] ?? m);
    else if (from?.fieldRef?.fieldPath === 'metadata.name') env[e.name] = podName;
    else if (from?.secretKeyRef) {
      const v = secrets[from.secretKeyRef.name]?.[from.secretKeyRef.key];
      if (v === undefined) throw new Error(`${e.name}: no ${from.secretKeyRef.name}/${from.secretKeyRef.key} among the test's secrets`);
      env[e.name] = v;
    } else if (from?.resourceFieldRef?.resource === 'limits.memory') env[e.name] = String(bytes(String(c.resources?.limits?.memory)));
    else throw new Error(`${e.name}: a source this test does not know`);
  }
  return env;
}

const natsK8s = () => {
  const prod = render(PROD);
  const sts = must<Workload>(prod, 'StatefulSet', 'nats');
  const pod = sts.spec.template.spec;
  const container = pod.containers.find((c) => c.name === 'nats');
  if (!container) throw new Error('StatefulSet nats: no container nats');
  const configVolume = pod.volumes?.find((v) => v.configMap);
  const configMap = must<Resource & { data: Record<string, string> }>(prod, 'ConfigMap', configVolume?.configMap?.name ?? '');
  const mount = container.volumeMounts?.find((m) => m.name === configVolume?.name);
  const args = [...(container.command ?? []), ...(container.args ?? [])];
  const confArg = args[args.findIndex((a) => a === '--config' || a === '-c') + 1] ?? '';
  const file = confArg.slice((mount?.mountPath ?? '').length + 1);
  const text = configMap.data[file];
  if (!text) throw new Error(`ConfigMap ${configMap.metadata.name}: no ${file} (from ${confArg})`);
  return { prod, sts, pod, container, configMap, mount, confArg, conf: natsConf(text, `ConfigMap ${configMap.metadata.name}`) };
};

// ---------------------------------------------------------------------------
// Real nats-servers.

interface Member {
  name: string;
  conf: NatsConf;
  env: Record<string, string>;
}
interface Running {
  name: string;
  client: number;
  http: number;
  route: number;
  child: ChildProcess;
  exited: Promise<void>;
  log: () => string;
}

const children = new Set<ChildProcess>();
const dirs = new Set<string>();
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Polls `check` until it returns something other than undefined/false (an error counts as not yet), or fails with `what` and the last error. */
async function until<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? ` (last: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function getJson(url: string): Promise<{ status: number; body: Dict }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  return { status: res.status, body: dict(await res.json(), url) };
}

/**
 * Three nats-servers from the members' configurations and environments, on
 * free ports: `hostsOf` names how the environment reaches each member's route
 * port (`nats-1:6222`), which becomes 127.0.0.1:<its port>.
 */
async function startCluster(label: string, members: Member[], routeHost: (m: Member) => string): Promise<Running[]> {
  const dir = mkdtempSync(join(tmpdir(), `chat-nats-cluster-${label}-`));
  dirs.add(dir);
  const ports = [];
  for (const _ of members) ports.push({ client: await freePort(), http: await freePort(), route: await freePort() });
  const running: Running[] = [];
  for (const [i, m] of members.entries()) {
    const own = ports[i]!;
    const conf = join(dir, `${m.name}.conf`);
    writeFileSync(conf, localConf(m.conf, own, join(dir, m.name)));
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(m.env)) {
      let local = v;
      for (const [j, other] of members.entries()) local = local.split(routeHost(other)).join(`127.0.0.1:${ports[j]!.route}`);
      env[k] = local;
    }
    for (const [k, v] of Object.entries(env))
      if (/^NATS_ROUTE_\d+$/.test(k) && new URL(v).hostname !== '127.0.0.1') throw new Error(`${m.name} ${k}: a route host not substituted (${v})`);
    const child = spawn(NATS_SERVER, ['-c', conf], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    children.add(child);
    let log = '';
    child.stderr!.on('data', (d) => (log += String(d)));
    const exited = new Promise<void>((done) => child.once('exit', () => (children.delete(child), done())));
    running.push({ name: m.name, ...own, child, exited, log: () => log });
  }
  // Formed: every server routed to the two others, and its JetStream in the meta group (/healthz 200).
  try {
    for (const r of running) {
      await until(`${label} ${r.name}: two routes and /healthz 200`, async () => {
        if (r.child.exitCode !== null) throw new Error(`${r.name} exited with ${r.child.exitCode}: ${r.log().slice(-2000)}`);
        const routes = await getJson(`http://127.0.0.1:${r.http}/routez`);
        const health = await fetch(`http://127.0.0.1:${r.http}/healthz`, { signal: AbortSignal.timeout(2000) });
        return routes.body.num_routes === 2 && health.status === 200;
      });
    }
  } catch (err) {
    await stopAll(running);
    throw new Error(`${(err as Error).message}\n${running.map((r) => `--- ${r.name}\n${r.log().slice(-1500)}`).join('\n')}`);
  }
  return running;
}

async function stopAll(running: Running[]): Promise<void> {
  for (const r of running) r.child.kill('SIGKILL');
  await Promise.all(running.map((r) => r.exited));
}

/** What the route port answers a server that offers `connect` (no route password: `-ERR 'Authorization Violation'`). */
function routeAnswer(port: number, connect: Dict): Promise<string> {
  return new Promise((done, fail) => {
    const socket = tcpConnect(port, '127.0.0.1');
    let got = '';
    let sent = false;
    const timer = setTimeout(() => (socket.destroy(), done(got)), 5000);
    socket.on('data', (d) => {
      got += String(d);
      if (!sent && got.includes('\r\n')) {
        sent = true;
        socket.write(`CONNECT ${JSON.stringify(connect)}\r\nPING\r\n`);
      }
      if (/-ERR|PONG/.test(got)) (clearTimeout(timer), socket.destroy(), done(got));
    });
    socket.on('error', (err) => (clearTimeout(timer), fail(err)));
  });
}

const streamName = (label: string) => `CLUSTER_${label.toUpperCase()}`;

/** The cluster proof: credentials required, an R3 stream with a leader and 2 current replicas, and a new leader after SIGKILL of the old one. */
async function provesCluster(expect: ExpectStatic, label: string, running: Running[], user: string, pass: string): Promise<void> {
  const servers = running.map((r) => `nats://127.0.0.1:${r.client}`);
  await expect(natsConnect({ servers: servers[0], reconnect: false })).rejects.toThrow(/Authorization Violation/);
  await expect(routeAnswer(running[0]!.route, { verbose: false, pedantic: false, name: 'intruder', cluster: 'chat' })).resolves.toMatch(/-ERR 'Authorization Violation'/);

  const nc: NatsConnection = await natsConnect({ ...natsConnectOptions({ NATS_URL: servers.join(','), NATS_USER: user, NATS_PASSWORD: pass }), reconnectTimeWait: 100, maxReconnectAttempts: -1 });
  try {
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    const name = streamName(label);
    await until(`${label}: stream ${name} with 3 replicas created`, () => jsm.streams.add({ name, subjects: [`${label}.test.>`], storage: StorageType.File, num_replicas: 3 }));
    const current = (info: StreamInfo) => (info.cluster?.replicas ?? []).filter((p) => p.current);
    const before = await until(`${label}: a leader and 2 current replicas`, async () => {
      const info = await jsm.streams.info(name);
      return info.cluster?.leader && current(info).length === 2 ? info : undefined;
    });
    const names = running.map((r) => r.name).sort();
    expect(before.config.num_replicas).toBe(3);
    expect(before.cluster?.name).toBe('chat');
    expect([before.cluster!.leader!, ...current(before).map((p) => p.name)].sort()).toEqual(names);
    expect((await js.publish(`${label}.test.one`, 'one')).seq).toBe(1);

    // The leader's server dies (no shutdown: SIGKILL).
    const leader = running.find((r) => r.name === before.cluster!.leader)!;
    leader.child.kill('SIGKILL');
    await leader.exited;
    const after = await until(`${label}: a new leader after ${leader.name} died`, async () => {
      const info = await jsm.streams.info(name);
      return info.cluster?.leader && info.cluster.leader !== leader.name ? info : undefined;
    });
    expect(names.filter((n) => n !== leader.name)).toContain(after.cluster!.leader);
    // Publishing goes on with two of three (the quorum); the client has moved off the dead server if it was on it.
    const ack = await until(`${label}: a publish acknowledged by the new leader`, () => js.publish(`${label}.test.two`, 'two', { timeout: 2000 }));
    expect(ack.seq).toBe(2);
    expect(ack.stream).toBe(name);
    const end = await jsm.streams.info(name);
    expect(end.state.messages).toBe(2);
    expect(end.cluster?.replicas?.find((p) => p.name === leader.name)?.current ?? false, `${leader.name} is not current any more`).toBe(false);
  } finally {
    await nc.close();
  }
}

// ================================================================= tests

describe('compose: docker-compose.nats-cluster.yml on top of docker-compose.yml', () => {
  it('uses only the !reset and !override tags, and is merged onto the base file (not a project of its own)', () => {
    expect(clusterFile.name).toBe(baseCompose.name);
    for (const name of CHAT) expect(dict(dict(clusterFile.services, 'services')[name], name).image, `${name} keeps the base file's image`).toBeUndefined();
    expect(read('docker-compose.nats-cluster.yml')).toMatch(/docker compose -f docker-compose\.yml -f docker-compose\.nats-cluster\.yml up/);
  });

  it('takes out the single nats (service and volume) and nothing depends on it any more; every dependency names a service that exists', () => {
    expect(Object.keys(dict(baseCompose.services, 'base services'))).toContain('nats');
    expect(Object.keys(services)).not.toContain('nats');
    expect(Object.keys(dict(merged.volumes, 'volumes'))).not.toContain('nats-data');
    // Compose refuses a project with a dependency on a service it does not have.
    for (const name of Object.keys(services)) for (const dep of Object.keys(dependsOn(name))) expect(Object.keys(services), `${name} → ${dep}`).toContain(dep);
    // No two services publish the same host port.
    const published = Object.keys(services).flatMap((name) => list(svc(name).ports).map((p) => interpolate(String(p)).split(':').slice(0, -1).join(':')));
    expect(new Set(published).size, published.join(' ')).toBe(published.length);
  });

  it('runs nats-1, nats-2 and nats-3 from the base file\u2019s image with deploy/nats/cluster.conf, each with a JetStream volume of its own and the health check', () => {
    const baseNats = dict(dict(baseCompose.services, 'base services').nats, 'base nats');
    const stores = new Set<string>();
    for (const name of COMPOSE_NATS) {
      const s = svc(name);
      expect(s.image, name).toBe(baseNats.image);
      const conf = volumesOf(name).find((v) => v.source === './deploy/nats/cluster.conf');
      expect(conf, `${name} mounts deploy/nats/cluster.conf`).toBeDefined();
      expect(words(s.command), name).toEqual(['-c', conf!.target]);
      const store = volumesOf(name).find((v) => v.target === composeConf.storeDir);
      expect(store, `${name}: a volume at ${composeConf.storeDir}`).toBeDefined();
      expect(Object.keys(dict(merged.volumes, 'volumes')), name).toContain(store!.source);
      stores.add(store!.source);
      expect(words(dict(s.healthcheck, `${name}.healthcheck`).test).join(' ')).toContain(`:${composeConf.http}/healthz`);
      expect(s.restart).toBe('unless-stopped');
    }
    expect(stores.size, 'three distinct volumes').toBe(3);
  });

  it('gives each server its own name, the clients\u2019 user and password, and routes to all three on the route port with the password its cluster block demands', () => {
    const names = new Set<string>();
    for (const name of COMPOSE_NATS) {
      const env = environment(name);
      names.add(env.NATS_SERVER_NAME!);
      // Every variable the configuration refers to is set (nats-server stops at an unset one).
      for (const v of composeConf.variables) expect(env[v], `${name}: $${v}`).toBeTruthy();
      expect(composeConf.text).toMatch(/^\s*password:\s*\$NATS_ROUTE_PASSWORD\s*$/m);
      const routes = Object.keys(env).filter((k) => /^NATS_ROUTE_\d+$/.test(k)).sort().map((k) => new URL(env[k]!));
      expect(routes.map((u) => u.hostname).sort(), name).toEqual(COMPOSE_NATS);
      for (const u of routes) {
        expect([u.protocol, Number(u.port), u.username, decodeURIComponent(u.password)]).toEqual(['nats:', composeConf.route, 'route', env.NATS_ROUTE_PASSWORD]);
      }
      // An operator's own route password reaches the cluster block and every route alike.
      const own = environment(name, { NATS_ROUTE_PASSWORD: 'pw-own-route' });
      expect(own.NATS_ROUTE_PASSWORD).toBe('pw-own-route');
      for (const k of Object.keys(own).filter((x) => /^NATS_ROUTE_\d+$/.test(x))) expect(new URL(own[k]!).password).toBe('pw-own-route');
      for (const chat of CHAT) expect([environment(chat).NATS_USER, environment(chat).NATS_PASSWORD], `${chat} and ${name}`).toEqual([env.NATS_USER, env.NATS_PASSWORD]);
    }
    expect(names).toEqual(new Set(COMPOSE_NATS));
  });

  it('points every chat process at all three servers with JETSTREAM_REPLICAS=3, and has it wait for all three instead of nats (its other dependencies kept)', () => {
    const baseServices = dict(baseCompose.services, 'base services');
    for (const name of CHAT) {
      const env = environment(name);
      expect(env.SERVICE, `${name} keeps the base file's environment`).toBe(name);
      const urls = env.NATS_URL!.split(',').map((u) => new URL(u.trim()));
      expect(urls.map((u) => u.hostname).sort(), name).toEqual(COMPOSE_NATS);
      for (const u of urls) expect(Number(u.port), name).toBe(composeConf.client);
      const config = ConfigSchema.parse(env);
      expect(config.JETSTREAM_REPLICAS, name).toBe(3);
      expect(config.JETSTREAM_REPLICAS).toBeLessThanOrEqual(COMPOSE_NATS.length);
      expect(natsConnectOptions(config).servers, name).toHaveLength(3);
      const expected = { ...dependsOn(name, baseServices), ...Object.fromEntries(COMPOSE_NATS.map((n) => [n, 'service_healthy'])) };
      delete expected.nats;
      expect(dependsOn(name), name).toEqual(expected);
    }
    for (const s of SERVICES) expect(dependsOn('gateway')[s]).toBe('service_healthy');
  });
});

/** Stand-ins for the Kubernetes Secrets created out of band (chat-secrets, nats-routes). */
const SECRETS = {
  'chat-secrets': { NATS_USER: 'chat', NATS_PASSWORD: `pw-${randomBytes(16).toString('hex')}` },
  'nats-routes': { NATS_ROUTE_PASSWORD: `pw-${randomBytes(16).toString('hex')}` },
};

describe('Kubernetes: deploy/k8s/nats in the prod overlay', () => {
  it('every object of the prod rendering is valid against its Kubernetes schema, the NATS ones among them, all in the namespace chat', async () => {
    const prod = render(PROD);
    const nats = prod.filter((r) => r.metadata.labels?.['app.kubernetes.io/name'] === 'nats');
    expect(nats.map((r) => r.kind).sort()).toEqual(['ConfigMap', 'PodDisruptionBudget', 'Service', 'Service', 'StatefulSet']);
    for (const r of prod) await expect(validateAgainstSchema(r), `${r.kind} ${r.metadata.name}`).resolves.toBeUndefined();
    for (const r of nats) expect(r.metadata.namespace, `${r.kind} ${r.metadata.name}`).toBe('chat');
    // The check is not vacuous.
    const broken = structuredClone(must<Workload>(prod, 'StatefulSet', 'nats'));
    (broken.spec as { replicas: unknown }).replicas = 'three';
    await expect(validateAgainstSchema(broken)).rejects.toThrow(/replicas/);
  });

  it('a StatefulSet of 3 started together, each server with a PersistentVolumeClaim for JetStream and the ConfigMap\u2019s configuration (server_name $POD_NAME)', () => {
    const { sts, pod, container, mount, confArg, conf } = natsK8s();
    expect(sts.spec.replicas).toBe(3);
    expect(sts.spec.podManagementPolicy).toBe('Parallel');
    expect(selectorMatches(sts.spec.selector, sts.spec.template.metadata.labels)).toBe(true);
    expect(mount?.readOnly).toBe(true);
    expect(confArg.startsWith(`${mount!.mountPath}/`)).toBe(true);
    expect(conf.text).toMatch(/^server_name:\s*\$POD_NAME\s*$/m);
    expect(container.env?.find((e) => e.name === 'POD_NAME')?.valueFrom?.fieldRef?.fieldPath).toBe('metadata.name');
    const claim = sts.spec.volumeClaimTemplates?.find((t) => container.volumeMounts?.some((m) => m.name === t.metadata.name && m.mountPath === conf.storeDir));
    expect(claim, `a volumeClaimTemplate mounted at store_dir ${conf.storeDir}`).toBeDefined();
    expect(claim!.spec.accessModes).toEqual(['ReadWriteOnce']);
    const fileStore = /max_file_store:\s*(\d+)G\b/.exec(conf.text);
    if (fileStore) expect(Number(fileStore[1]) * 2 ** 30, 'max_file_store below the claim').toBeLessThan(bytes(claim!.spec.resources.requests.storage));
    expect(pod.volumes?.some((v) => v.name === claim!.metadata.name), 'the claim is not shadowed by a pod volume').toBe(false);
    expect(container.ports?.map((p) => [p.name, p.containerPort])).toEqual([['client', conf.client], ['cluster', conf.route], ['monitor', conf.http]]);
  });

  it('routes to nats-0, nats-1, nats-2 through the headless Service (listed before they are ready), with the route password from a Secret the chat pods do not read', () => {
    const { prod, sts, container, conf } = natsK8s();
    const headless = must<Service>(prod, 'Service', sts.spec.serviceName ?? '');
    expect(headless.spec.clusterIP).toBe('None');
    expect(headless.spec.publishNotReadyAddresses).toBe(true);
    expect(selectorMatches({ matchLabels: headless.spec.selector }, sts.spec.template.metadata.labels)).toBe(true);
    const routePort = headless.spec.ports.find((p) => portOf(container, p.targetPort ?? p.port) === conf.route);
    expect(routePort?.port).toBe(conf.route);
    const replicas = sts.spec.replicas ?? 1;
    for (let i = 0; i < replicas; i++) {
      const env = podEnv(container, `${sts.metadata.name}-${i}`, SECRETS);
      for (const v of conf.variables) expect(env[v], `$${v}`).toBeTruthy();
      const routes = conf.variables.filter((v) => /^NATS_ROUTE_\d+$/.test(v)).map((v) => new URL(env[v]!));
      expect(routes.map((u) => u.host).sort()).toEqual([...Array(replicas).keys()].map((j) => `${sts.metadata.name}-${j}.${headless.metadata.name}:${conf.route}`));
      for (const u of routes) expect([u.username, u.password]).toEqual(['route', SECRETS['nats-routes'].NATS_ROUTE_PASSWORD]);
      expect(env.POD_NAME).toBe(`nats-${i}`);
    }
    const ref = (name: string) => container.env?.find((e) => e.name === name)?.valueFrom?.secretKeyRef;
    // The clients' credentials from the chat pods' own Secret, the route password from another.
    expect(ref('NATS_USER')).toMatchObject({ name: 'chat-secrets', key: 'NATS_USER' });
    expect(ref('NATS_PASSWORD')).toMatchObject({ name: 'chat-secrets', key: 'NATS_PASSWORD' });
    const routeSecret = ref('NATS_ROUTE_PASSWORD')?.name;
    expect(routeSecret).toBeDefined();
    for (const d of ofKind<Workload>(prod, 'Deployment'))
      for (const c of d.spec.template.spec.containers) {
        expect(c.envFrom?.map((f) => f.secretRef?.name ?? f.configMapRef?.name), d.metadata.name).not.toContain(routeSecret);
        expect(c.envFrom?.some((f) => f.secretRef?.name === 'chat-secrets'), d.metadata.name).toBe(true);
      }
    // No credential is written in the configuration or the manifests: only references.
    expect(conf.text).not.toMatch(/password:\s*[^$\s]/);
    for (const e of container.env ?? []) if (e.value !== undefined) expect(e.value, e.name).not.toMatch(/:\/\/[^:/@]+:[^$/@][^/@]*@/);
  });

  it('probes /healthz on the monitoring port, spreads over nodes (preferred anti-affinity) and meets the restricted Pod Security Standard', () => {
    const { prod, sts, pod, container, conf } = natsK8s();
    for (const probe of [container.startupProbe, container.readinessProbe, container.livenessProbe]) {
      expect(probe?.httpGet?.path).toMatch(/^\/healthz(\?|$)/);
      expect(portOf(container, probe?.httpGet?.port)).toBe(conf.http);
    }
    // Losing the quorum must not get the remaining servers restarted: liveness asks only whether JetStream is on.
    expect(container.livenessProbe?.httpGet?.path).toBe('/healthz?js-enabled-only=true');
    const anti = pod.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? [];
    expect(anti.some((t) => t.podAffinityTerm.topologyKey === 'kubernetes.io/hostname' && selectorMatches(t.podAffinityTerm.labelSelector ?? {}, sts.spec.template.metadata.labels))).toBe(true);
    expect(must(prod, 'Namespace', 'chat').metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
    const sc = { ...pod.securityContext, ...container.securityContext };
    expect(sc).toMatchObject({ runAsNonRoot: true, allowPrivilegeEscalation: false, seccompProfile: { type: 'RuntimeDefault' }, capabilities: { drop: ['ALL'] } });
    expect(Number(sc.runAsUser)).toBeGreaterThan(0);
    const { requests, limits } = container.resources ?? {};
    for (const r of ['cpu', 'memory']) expect([requests?.[r], limits?.[r]], r).not.toContain(undefined);
  });

  it('a client Service on 4222 and a PodDisruptionBudget of maxUnavailable 1, both selecting the NATS pods', () => {
    const { prod, sts, container, conf } = natsK8s();
    const client = must<Service>(prod, 'Service', 'nats');
    expect(client.spec.clusterIP).not.toBe('None');
    expect(selectorMatches({ matchLabels: client.spec.selector }, sts.spec.template.metadata.labels)).toBe(true);
    expect(client.spec.ports.map((p) => [p.port, portOf(container, p.targetPort ?? p.port)])).toEqual([[4222, conf.client]]);
    const pdb = must<Resource & { spec: { maxUnavailable?: number; minAvailable?: number; selector: LabelSelector } }>(prod, 'PodDisruptionBudget', 'nats');
    expect(pdb.spec.maxUnavailable).toBe(1);
    expect(pdb.spec.minAvailable).toBeUndefined();
    expect(selectorMatches(pdb.spec.selector, sts.spec.template.metadata.labels)).toBe(true);
  });

  it('every chat pod\u2019s NATS_URL reaches that client Service, and JETSTREAM_REPLICAS is 3, the StatefulSet\u2019s size', () => {
    const { prod, sts, container } = natsK8s();
    const client = must<Service>(prod, 'Service', 'nats');
    const ns = client.metadata.namespace ?? 'default';
    const service = `${client.metadata.name}`;
    const names = [service, `${service}.${ns}`, `${service}.${ns}.svc`, `${service}.${ns}.svc.cluster.local`];
    for (const d of ofKind<Workload>(prod, 'Deployment')) {
      const c = d.spec.template.spec.containers[0]!;
      const env: Record<string, string> = {};
      for (const f of c.envFrom ?? []) if (f.configMapRef) Object.assign(env, must<Resource & { data: Record<string, string> }>(prod, 'ConfigMap', f.configMapRef.name).data);
      for (const e of c.env ?? []) if (e.value !== undefined) env[e.name] = e.value;
      expect(d.metadata.namespace).toBe(ns);
      const urls = env.NATS_URL!.split(',').map((u) => new URL(u.trim()));
      for (const u of urls) {
        expect(names, `${d.metadata.name}: ${u.href}`).toContain(u.hostname);
        const port = client.spec.ports.find((p) => p.port === Number(u.port || 4222));
        expect(portOf(container, port?.targetPort ?? port?.port), `${d.metadata.name}: ${u.href}`).toBe(4222);
      }
      expect(Number(env.JETSTREAM_REPLICAS), d.metadata.name).toBe(3);
      expect(Number(env.JETSTREAM_REPLICAS)).toBeLessThanOrEqual(sts.spec.replicas ?? 1);
    }
  });

  it('NetworkPolicies: every chat pod may reach NATS on 4222, NATS pods each other on 6222, and nothing else reaches NATS', () => {
    const { prod, sts, container, conf } = natsK8s();
    const natsLabels = sts.spec.template.metadata.labels;
    const policies = ofKind<NetworkPolicy>(prod, 'NetworkPolicy').filter((p) => selectorMatches(p.spec.podSelector, natsLabels) && (p.spec.policyTypes ?? ['Ingress']).includes('Ingress'));
    expect(policies.some((p) => JSON.stringify(p.spec.podSelector) === '{}' && (p.spec.ingress ?? []).length === 0), 'a default deny covers the NATS pods').toBe(true);
    const rules = policies.flatMap((p) => p.spec.ingress ?? []);
    const allowed = (from: Labels, port: number) =>
      rules.some(
        (rule) =>
          (rule.ports ?? [{}]).some((p) => p.port === undefined || portOf(container, p.port) === port) &&
          (rule.from ?? [{}]).some((peer) => !peer.namespaceSelector && !peer.ipBlock && selectorMatches(peer.podSelector ?? {}, from)),
      );
    const deployments = ofKind<Workload>(prod, 'Deployment');
    expect(deployments.map((d) => d.metadata.name).sort()).toEqual(CHAT);
    for (const d of deployments) {
      expect(allowed(d.spec.template.metadata.labels, conf.client), `${d.metadata.name} → NATS ${conf.client}`).toBe(true);
      expect(allowed(d.spec.template.metadata.labels, conf.route), `${d.metadata.name} → NATS ${conf.route}`).toBe(false);
    }
    expect(allowed(natsLabels, conf.route), `NATS ↔ NATS ${conf.route}`).toBe(true);
    for (const rule of rules) {
      expect(rule.from?.length, 'no rule open to everyone').toBeGreaterThan(0);
      for (const peer of rule.from ?? []) expect([peer.namespaceSelector, peer.ipBlock]).toEqual([undefined, undefined]);
    }
  });

  it('the dev overlay still expects a NATS of its own (no StatefulSet), at nats:4222', () => {
    const dev = render(DEV);
    expect(ofKind(dev, 'StatefulSet')).toEqual([]);
    expect(new URL(must<Resource & { data: Record<string, string> }>(dev, 'ConfigMap', 'chat-config').data.NATS_URL!).host).toBe('nats:4222');
  });
});

// Side by side: most of each is waiting for the election after the leader's death.
describe('the two configurations, each run by three real nats-servers', () => {
  it.concurrent('compose: deploy/nats/cluster.conf with the servers\u2019 environments forms a cluster that keeps an R3 stream through the death of its leader', async ({ expect }) => {
    const members = COMPOSE_NATS.map((name) => ({ name: environment(name).NATS_SERVER_NAME!, conf: composeConf, env: environment(name) }));
    const running = await startCluster('compose', members, (m) => `${m.name}:${composeConf.route}`);
    try {
      const env = environment('gateway');
      await provesCluster(expect, 'compose', running, env.NATS_USER!, env.NATS_PASSWORD!);
    } finally {
      await stopAll(running);
    }
  });

  it.concurrent('Kubernetes: the ConfigMap\u2019s nats.conf with the StatefulSet\u2019s environment forms a cluster that keeps an R3 stream through the death of its leader', async ({ expect }) => {
    const { sts, container, conf } = natsK8s();
    const headless = sts.spec.serviceName!;
    const members = [...Array(sts.spec.replicas ?? 1).keys()].map((i) => {
      const name = `${sts.metadata.name}-${i}`;
      return { name, conf, env: podEnv(container, name, SECRETS) };
    });
    const running = await startCluster('k8s', members, (m) => `${m.name}.${headless}:${conf.route}`);
    try {
      await provesCluster(expect, 'k8s', running, SECRETS['chat-secrets'].NATS_USER, SECRETS['chat-secrets'].NATS_PASSWORD);
    } finally {
      await stopAll(running);
    }
  });
});
