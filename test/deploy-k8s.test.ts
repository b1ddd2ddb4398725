import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ConfigSchema, DEV_JWT_SECRET, defaultMetricsPort, loadConfig, natsConnectOptions, type Config } from '@chat/platform';

/**
 * The Kubernetes manifests in deploy/k8s (a Kustomize base and the dev and
 * prod overlays), rendered by the real kustomize (`kubectl kustomize`) and
 * every rendered object validated against the Kubernetes OpenAPI schemas
 * (kubernetes-models). The renderings are then held against the code:
 * ConfigSchema and loadConfig, defaultMetricsPort, the services/ folder, the
 * shutdown timings, and the NetworkPolicies against the pods they select.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const K8S = join(ROOT, 'deploy/k8s');
const BASE = join(K8S, 'base');
const DEV = join(K8S, 'overlays/dev');
const PROD = join(K8S, 'overlays/prod');

// ---------------------------------------------------------------------------
// Shapes of what the checks read (the resolver itself works on plain data).

type Labels = Record<string, string>;
interface Meta {
  name: string;
  namespace?: string;
  labels?: Labels;
  annotations?: Labels;
}
interface Resource {
  apiVersion: string;
  kind: string;
  metadata: Meta;
  [key: string]: unknown;
}
interface HttpProbe {
  httpGet?: { path: string; port: number | string };
  periodSeconds?: number;
  failureThreshold?: number;
}
interface EnvVar {
  name: string;
  value?: unknown;
  valueFrom?: {
    secretKeyRef?: { name: string; key: string; optional?: boolean };
    configMapKeyRef?: { name: string; key: string; optional?: boolean };
  };
}
interface EnvFrom {
  configMapRef?: { name: string; optional?: boolean };
  secretRef?: { name: string; optional?: boolean };
}
interface SecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  allowPrivilegeEscalation?: boolean;
  readOnlyRootFilesystem?: boolean;
  capabilities?: { drop?: string[]; add?: string[] };
  seccompProfile?: { type: string };
  privileged?: boolean;
}
interface Container {
  name: string;
  image: string;
  ports?: Array<{ name?: string; containerPort: number }>;
  env?: EnvVar[];
  envFrom?: EnvFrom[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: SecurityContext;
  livenessProbe?: HttpProbe;
  readinessProbe?: HttpProbe;
  startupProbe?: HttpProbe;
  lifecycle?: { preStop?: { sleep?: { seconds: number }; exec?: { command: string[] } } };
  volumeMounts?: Array<{ name: string; mountPath: string }>;
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  securityContext?: SecurityContext;
  terminationGracePeriodSeconds?: number;
  automountServiceAccountToken?: boolean;
  enableServiceLinks?: boolean;
  volumes?: Array<{ name: string; emptyDir?: object; secret?: { secretName: string }; configMap?: { name: string } }>;
  topologySpreadConstraints?: Array<{ topologyKey: string; maxSkew: number; whenUnsatisfiable: string; labelSelector?: { matchLabels?: Labels } }>;
}
interface Deployment extends Resource {
  spec: {
    replicas?: number;
    selector: { matchLabels: Labels };
    template: { metadata: { labels: Labels; annotations?: Labels }; spec: PodSpec };
  };
}
interface Service extends Resource {
  spec: { selector: Labels; ports: Array<{ name?: string; port: number; targetPort?: number | string }> };
}
interface Hpa extends Resource {
  spec: {
    scaleTargetRef: { apiVersion: string; kind: string; name: string };
    minReplicas?: number;
    maxReplicas: number;
    metrics?: Array<{ type: string; resource?: { name: string; target: { type: string; averageUtilization?: number } } }>;
  };
}
interface LabelSelector {
  matchLabels?: Labels;
  matchExpressions?: Array<{ key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }>;
}
interface NetworkPolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: { cidr: string };
}
interface NetworkPolicy extends Resource {
  spec: {
    podSelector: LabelSelector;
    policyTypes?: string[];
    ingress?: Array<{ from?: NetworkPolicyPeer[]; ports?: Array<{ port?: number | string; protocol?: string }> }>;
  };
}
interface Pdb extends Resource {
  spec: { minAvailable?: number | string; maxUnavailable?: number | string; selector: { matchLabels: Labels } };
}
interface DataResource extends Resource {
  data?: Record<string, unknown>;
  stringData?: Record<string, unknown>;
}

// ---------------------------------------------------------------------------
// Rendering: the real kustomize, `kubectl kustomize` (Debian: apt-get install
// kubernetes-client, whose kubectl 1.20 embeds kustomize v2.0.3; the
// manifests use only what that version knows, and render the same on newer
// ones). KUBECTL picks another binary.

interface Kustomization {
  resources?: string[];
  bases?: string[];
  namespace?: string;
  commonLabels?: Labels;
  labels?: unknown;
  images?: Array<{ name: string; newName?: string; newTag?: string; digest?: string }>;
  patchesStrategicMerge?: string[];
  patchesJson6902?: Array<{ path: string; target: { group?: string; version: string; kind: string; name: string } }>;
  secretGenerator?: Array<{ name: string; literals?: string[]; envs?: string[]; files?: string[] }>;
  configMapGenerator?: Array<{ name: string; literals?: string[]; envs?: string[]; files?: string[] }>;
}

interface Rendered {
  dir: string;
  kustomization: Kustomization;
  resources: Resource[];
  /** Every file the kustomization refers to, its own and its bases'. */
  files: string[];
  /** Generated name of each generator output: `Secret/chat-secrets` → `chat-secrets-<hash>`. */
  generatedNames: Map<string, string>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Every document of a YAML file, parsed as YAML 1.1 like the Kubernetes API machinery (`yes` is a boolean there). */
function readYamlDocs(file: string): unknown[] {
  return parseYamlDocs(readFileSync(file, 'utf8'), file);
}
function parseYamlDocs(text: string, where: string): unknown[] {
  const out: unknown[] = [];
  for (const doc of parseAllDocuments(text, { version: '1.1' })) {
    if (doc.errors.length > 0) throw new Error(`${where}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value: unknown = doc.toJS();
    if (value !== null && value !== undefined) out.push(value);
  }
  return out;
}

function asResource(value: unknown, file: string): Resource {
  if (!isObject(value) || typeof value.kind !== 'string' || typeof value.apiVersion !== 'string' || !isObject(value.metadata) || typeof value.metadata.name !== 'string')
    throw new Error(`${file}: a document without apiVersion, kind and metadata.name`);
  return value as Resource;
}

const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'PriorityClass', 'StorageClass']);

function splitImage(image: string): { name: string; tag?: string; digest?: string } {
  const [nameAndTag = '', digest] = image.split('@');
  const slash = nameAndTag.lastIndexOf('/');
  const colon = nameAndTag.lastIndexOf(':');
  if (colon > slash) return { name: nameAndTag.slice(0, colon), tag: nameAndTag.slice(colon + 1), ...(digest ? { digest } : {}) };
  return { name: nameAndTag, ...(digest ? { digest } : {}) };
}

const KUBECTL = process.env.KUBECTL ?? 'kubectl';
function kubectlKustomize(dir: string): string {
  try {
    return execFileSync(KUBECTL, ['kustomize', dir], { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT')
      throw new Error(`${KUBECTL} not found: install it with \`apt-get install -y kubernetes-client\` (Debian; .ci/run does) or see https://kubernetes.io/docs/tasks/tools/`);
    throw new Error(`${KUBECTL} kustomize ${relative(ROOT, dir)} failed: ${String(e.stderr ?? e.message).trim()}`);
  }
}

/** The files a kustomization refers to (not a renderer: only which paths it names), so an unused manifest stands out. */
function referencedFiles(dir: string, k: Kustomization): string[] {
  const files = [join(dir, 'kustomization.yaml')];
  const add = (entry: string) => {
    const path = resolve(dir, entry);
    if (statSync(path).isDirectory()) files.push(...referencedFiles(path, readKustomization(path)));
    else files.push(path);
  };
  for (const entry of [...(k.resources ?? []), ...(k.bases ?? []), ...(k.patchesStrategicMerge ?? [])]) add(entry);
  for (const p of k.patchesJson6902 ?? []) add(p.path);
  for (const g of [...(k.secretGenerator ?? []), ...(k.configMapGenerator ?? [])]) {
    for (const entry of [...(g.envs ?? []), ...(g.files ?? []).map((f) => f.split('=').pop() ?? f)]) add(entry);
  }
  return files;
}

function readKustomization(dir: string): Kustomization {
  const [doc] = readYamlDocs(join(dir, 'kustomization.yaml'));
  if (!isObject(doc)) throw new Error(`${dir}/kustomization.yaml: not a mapping`);
  return doc as Kustomization;
}

const renderings = new Map<string, Rendered>();
function render(dir: string): Rendered {
  const cached = renderings.get(dir);
  if (cached) return cached;
  const kustomization = readKustomization(dir);
  const resources = parseYamlDocs(kubectlKustomize(dir), `kubectl kustomize ${dir}`).map((d) => asResource(d, dir));
  const generatedNames = new Map<string, string>();
  for (const [kind, generators] of [['Secret', kustomization.secretGenerator], ['ConfigMap', kustomization.configMapGenerator]] as const) {
    for (const g of generators ?? []) {
      const made = resources.find((r) => r.kind === kind && new RegExp(`^${g.name}-[a-z0-9]{10}$`).test(r.metadata.name));
      if (made) generatedNames.set(`${kind}/${g.name}`, made.metadata.name);
    }
  }
  const rendered = { dir, kustomization, resources, files: [...new Set(referencedFiles(dir, kustomization))], generatedNames };
  renderings.set(dir, rendered);
  return rendered;
}

/**
 * The Kubernetes OpenAPI schema of an object's apiVersion and kind, from
 * kubernetes-models (one model class per kind, generated from the official
 * schemas; `validate()` throws naming the offending path).
 */
async function validateAgainstSchema(r: Resource): Promise<void> {
  const module = (await import(`kubernetes-models/${r.apiVersion}`)) as Record<string, new (data: unknown) => { validate(): void }>;
  const Model = module[r.kind];
  if (!Model) throw new Error(`kubernetes-models has no ${r.apiVersion} ${r.kind}`);
  // kustomize wraps long base64 values over lines; the API server's decoder (Go's encoding/base64) skips
  // line breaks, the schema's "byte" format does not, so they are joined first.
  const data = r.kind === 'Secret' && isObject(r.data) ? { data: Object.fromEntries(Object.entries(r.data).map(([k, v]) => [k, String(v).replace(/\s/g, '')])) } : {};
  new Model({ ...r, ...data }).validate();
}

// ---------------------------------------------------------------------------
// Facts from the code.

/** Every process: each folder of services/ with a main.ts. */
const PROCESSES = readdirSync(join(ROOT, 'services'))
  .filter((name) => existsSync(join(ROOT, 'services', name, 'src/main.ts')))
  .sort();
const SERVICES = PROCESSES.filter((p) => p !== 'gateway');
const metricsPortOf = (service: string): number => {
  const port = (defaultMetricsPort as Record<string, number>)[service];
  if (port === undefined) throw new Error(`no defaultMetricsPort for ${service}`);
  return port;
};
/** The processes whose Deployment has an autoscaler: the gateway and the request/reply services. */
const WITH_HPA = ['gateway', 'conversations', 'messages', 'blocks', 'presence'];
const GATEWAY_PORT = 8080;
const SCHEMA_KEYS = new Set(Object.keys(ConfigSchema.shape));
const isKnownKey = (key: string) => SCHEMA_KEYS.has(key) || key === 'SERVICE' || key.startsWith('OTEL_');
/** Settings that hold credentials: never in a ConfigMap, never with a value outside the dev overlay. */
const SECRET_KEYS = ['JWT_SECRET', 'DATABASE_URL', 'REDIS_URL', 'NOTIFICATION_WEBHOOK_URL', 'JWT_JWKS_URL', 'NATS_USER', 'NATS_PASSWORD', 'NATS_TOKEN'];
/** How long a process may take to stop after SIGTERM before it forces its own exit (exitOnSignals' default). */
const APP_STOP_SECONDS = (() => {
  const source = readFileSync(join(ROOT, 'packages/platform/src/lifecycle.ts'), 'utf8');
  const m = /exitOnSignals\([^)]*graceMs = ([\d_]+)\)/.exec(source);
  if (!m?.[1]) throw new Error('lifecycle.ts: exitOnSignals graceMs default not found');
  return Number(m[1].replace(/_/g, '')) / 1000;
})();

// ---------------------------------------------------------------------------
// Helpers over a rendering.

const ofKind = <T extends Resource>(r: Rendered, kind: string) => r.resources.filter((x) => x.kind === kind) as T[];
const find = <T extends Resource>(r: Rendered, kind: string, name: string) => ofKind<T>(r, kind).find((x) => x.metadata.name === name);
function must<T extends Resource>(r: Rendered, kind: string, name: string): T {
  const found = find<T>(r, kind, name);
  if (!found) throw new Error(`${relative(ROOT, r.dir)}: no ${kind} ${name}`);
  return found;
}
const containerOf = (d: Deployment): Container => {
  const c = d.spec.template.spec.containers.find((x) => x.name === d.metadata.name);
  if (!c) throw new Error(`Deployment ${d.metadata.name}: no container named ${d.metadata.name}`);
  return c;
};
/** The NATS cluster's objects (deploy/k8s/nats, in prod), which test/deploy-nats-cluster.test.ts checks. */
const isNats = (x: Resource) => x.metadata.labels?.['app.kubernetes.io/name'] === 'nats';
const selects = (selector: Labels, labels: Labels) => Object.entries(selector).every(([k, v]) => labels[k] === v);
const portNumber = (c: Container, port: number | string | undefined): number | undefined =>
  typeof port === 'number' ? port : c.ports?.find((p) => p.name === port)?.containerPort;
const preStopSeconds = (c: Container): number => {
  const p = c.lifecycle?.preStop;
  if (p?.sleep) return p.sleep.seconds;
  const cmd = p?.exec?.command;
  if (cmd?.[0] === 'sleep' && cmd[1] !== undefined) return Number(cmd[1]);
  return 0;
};
const decode = (s: DataResource): Record<string, string> => ({
  ...Object.fromEntries(Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(String(v), 'base64').toString('utf8')])),
  ...Object.fromEntries(Object.entries(s.stringData ?? {}).map(([k, v]) => [k, String(v)])),
});

function cpu(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(m?)$/.exec(q);
  if (!m?.[1]) throw new Error(`bad cpu quantity ${q}`);
  return Number(m[1]) / (m[2] ? 1000 : 1);
}
function memory(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  if (!m?.[1]) throw new Error(`bad memory quantity ${q}`);
  const unit = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 }[m[2] ?? ''] ?? 1;
  return Number(m[1]) * unit;
}

/**
 * The environment a container starts with (envFrom in order, then env), from
 * the rendering's ConfigMaps and Secrets. A Secret that is not in the
 * rendering (prod: created out of band) is taken from `outOfBand`.
 */
function effectiveEnv(r: Rendered, c: Container, outOfBand: Record<string, string> = {}): Record<string, string> {
  const sources = (kind: string, name: string): Record<string, string> | undefined => {
    const res = find<DataResource>(r, kind, name);
    if (res) return kind === 'Secret' ? decode(res) : (res.data as Record<string, string> | undefined) ?? {};
    return kind === 'Secret' && name === 'chat-secrets' ? outOfBand : undefined;
  };
  const env: Record<string, string> = {};
  for (const from of c.envFrom ?? []) {
    const [kind, ref] = from.configMapRef ? ['ConfigMap', from.configMapRef] : ['Secret', from.secretRef];
    if (!ref) throw new Error(`${c.name}: empty envFrom entry`);
    const data = sources(kind, ref.name);
    if (!data && !ref.optional) throw new Error(`${c.name}: envFrom ${kind} ${ref.name} does not exist`);
    Object.assign(env, data ?? {});
  }
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = String(e.value);
    const ref = e.valueFrom?.secretKeyRef ?? e.valueFrom?.configMapKeyRef;
    if (ref) {
      const data = sources(e.valueFrom?.secretKeyRef ? 'Secret' : 'ConfigMap', ref.name);
      const value = data?.[ref.key];
      if (value !== undefined) env[e.name] = value;
      else if (!ref.optional) throw new Error(`${c.name}: ${e.name} refers to ${ref.name}/${ref.key}, which does not exist`);
    }
  }
  return env;
}

/** Every scalar of a parsed document, with its key path. */
function* scalars(value: unknown, path = ''): Generator<[string, unknown]> {
  if (Array.isArray(value)) for (const [i, v] of value.entries()) yield* scalars(v, `${path}[${i}]`);
  else if (isObject(value)) for (const [k, v] of Object.entries(value)) yield* scalars(v, path ? `${path}.${k}` : k);
  else yield [path, value];
}
/** A URL carrying a password (`scheme://user:pass@host`). */
const CREDENTIAL_URL = /^[a-z][a-z0-9+.-]*:\/\/[^/\s:@]*:[^/\s@]+@/i;

/** Kubernetes fields whose names end like a credential's but hold none. */
const BENIGN_KEYS = new Set(['automountServiceAccountToken']);
/**
 * Lines of a YAML file that look like a credential, comments left out: the
 * word password anywhere, a key ending in secret/token/password/apikey with a
 * value (`JWT_SECRET: x`, `token: x`), or a URL with a password in it.
 */
function secretLookingLines(file: string): string[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .map((line) => line.replace(/(^|\s)#.*$/, ''))
    .filter((line) => {
      const kv = /^\s*(?:-\s*)?([\w.-]+)\s*:\s*(\S.*)?$/.exec(line);
      const key = kv?.[1] ?? '';
      const value = (kv?.[2] ?? '').trim();
      if (/password|passwd/i.test(line)) return true;
      if (value && !BENIGN_KEYS.has(key) && /(secret|token|password|passwd|api_?key)$/i.test(key)) return true;
      return CREDENTIAL_URL.test(value.replace(/^["']/, ''));
    });
}

/** Placeholder values standing in for the prod Secret that is created out of band. */
const OUT_OF_BAND_SECRET = {
  DATABASE_URL: 'postgres://chat:out-of-band@db.example.internal:5432/chat',
  REDIS_URL: 'rediss://:out-of-band@redis.example.internal:6379',
  // Made here, not written down: production refuses every JWT secret committed to the repository.
  JWT_SECRET: randomBytes(32).toString('base64'),
  NOTIFICATION_WEBHOOK_URL: 'https://hooks.example.com/out-of-band',
  NATS_USER: 'chat',
  NATS_PASSWORD: 'out-of-band-nats',
};

// ---------------------------------------------------------------------------

const base = render(BASE);
const dev = render(DEV);
const prod = render(PROD);
const RENDERINGS = [
  { label: 'base', r: base, tag: 'latest', outOfBand: OUT_OF_BAND_SECRET },
  { label: 'dev', r: dev, tag: 'dev', outOfBand: {} },
  { label: 'prod', r: prod, tag: '1.0.0', outOfBand: OUT_OF_BAND_SECRET },
] as const;

describe('kustomizations', () => {
  const dirs: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) walk(path);
      else if (entry === 'kustomization.yaml') dirs.push(dir);
    }
  };
  walk(K8S);

  it('are the base, the NATS cluster and the two overlays', () => {
    expect(dirs.map((d) => relative(K8S, d)).sort()).toEqual(['base', 'nats', 'overlays/dev', 'overlays/prod']);
  });

  it.each(dirs.map((d) => [relative(K8S, d), d]))('%s: every referenced file exists and kubectl kustomize renders it', (_, dir) => {
    expect(() => render(dir)).not.toThrow();
  });

  it.each(dirs.map((d) => [relative(K8S, d), d]))('%s: every YAML file in the directory is used (no orphan manifest)', (_, dir) => {
    const used = new Set(render(dir).files);
    const here = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).map((f) => join(dir, f));
    expect(here.filter((f) => !used.has(f)).map((f) => relative(ROOT, f))).toEqual([]);
  });

  it.each(dirs.map((d) => [relative(K8S, d), d]))('%s: every rendered object is valid against its Kubernetes OpenAPI schema (kubernetes-models)', async (_, dir) => {
    const r = render(dir);
    expect(r.resources.length).toBeGreaterThan(0);
    for (const resource of r.resources) {
      await expect(validateAgainstSchema(resource), `${resource.kind} ${resource.metadata.name}`).resolves.toBeUndefined();
    }
  });

  it('the schema check is not vacuous: a broken Deployment, Service and NetworkPolicy are refused', async () => {
    const d = structuredClone(must<Deployment>(base, 'Deployment', 'gateway'));
    (d.spec as { replicas: unknown }).replicas = 'two';
    await expect(validateAgainstSchema(d)).rejects.toThrow(/replicas must be integer/);
    const s = structuredClone(must<Service>(base, 'Service', 'gateway'));
    delete (s.spec.ports[0] as { port?: number }).port;
    await expect(validateAgainstSchema(s)).rejects.toThrow(/port/);
    const np = structuredClone(must<NetworkPolicy>(base, 'NetworkPolicy', 'gateway-ingress'));
    (np.spec as { podSelector?: unknown }).podSelector = 'gateway';
    await expect(validateAgainstSchema(np)).rejects.toThrow(/podSelector/);
  });

  it('the overlays build on the base', () => {
    expect(dev.kustomization.bases).toContain('../../base');
    expect(prod.kustomization.bases).toContain('../../base');
  });

  it('the base names the image `chat` and labels everything part-of chat without touching selectors', () => {
    expect(base.kustomization.images?.map((i) => i.name)).toEqual(['chat']);
    // Not through commonLabels, which would put it into the (immutable) selectors too.
    expect(base.kustomization.commonLabels).toBeUndefined();
    for (const r of [...base.resources, ...dev.resources, ...prod.resources].filter((x) => x.kind !== 'Namespace' && x.kind !== 'Secret'))
      expect(r.metadata.labels?.['app.kubernetes.io/part-of'], `${r.kind} ${r.metadata.name}`).toBe('chat');
    for (const d of ofKind<Deployment>(base, 'Deployment')) {
      expect(d.spec.selector.matchLabels).toEqual({ 'app.kubernetes.io/name': d.metadata.name });
      expect(d.spec.template.metadata.labels['app.kubernetes.io/part-of']).toBe('chat');
    }
  });
});

describe('base: one Deployment, Service and PodDisruptionBudget per process', () => {
  it('the processes are the folders of services/, and each service has a metrics port', () => {
    expect(PROCESSES).toContain('gateway');
    expect(SERVICES.sort()).toEqual(Object.keys(defaultMetricsPort).sort());
  });

  it.each(PROCESSES)('%s', (name) => {
    const d = must<Deployment>(base, 'Deployment', name);
    expect(d.metadata.labels?.['app.kubernetes.io/name']).toBe(name);
    expect(d.spec.template.metadata.labels['app.kubernetes.io/name']).toBe(name);
    must<Service>(base, 'Service', name);
    must<Pdb>(base, 'PodDisruptionBudget', name);
  });

  it('autoscalers: the gateway and the request/reply services; notifications none, with the reason in its manifest', () => {
    expect(ofKind<Hpa>(base, 'HorizontalPodAutoscaler').map((h) => h.spec.scaleTargetRef.name).sort()).toEqual([...WITH_HPA].sort());
    const text = readFileSync(join(BASE, 'notifications.yaml'), 'utf8');
    expect(text).toMatch(/No HorizontalPodAutoscaler on purpose/);
  });

  it('no other kinds than those, the ConfigMap and (in overlays) a Namespace', () => {
    const kinds = new Set(base.resources.map((r) => r.kind));
    expect([...kinds].sort()).toEqual(['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'NetworkPolicy', 'PodDisruptionBudget', 'Service']);
  });
});

describe.each(RENDERINGS)('$label rendering', ({ label, r, tag, outOfBand }) => {
  const deployments = ofKind<Deployment>(r, 'Deployment');

  it('has every process', () => {
    expect(deployments.map((d) => d.metadata.name).sort()).toEqual(PROCESSES);
  });

  it('every Deployment selects its own pods, runs one container named after it, with SERVICE set to its name', () => {
    for (const d of deployments) {
      expect(selects(d.spec.selector.matchLabels, d.spec.template.metadata.labels), d.metadata.name).toBe(true);
      expect(d.spec.template.spec.containers).toHaveLength(1);
      const env = containerOf(d).env ?? [];
      expect(env.filter((e) => e.name === 'SERVICE'), d.metadata.name).toEqual([{ name: 'SERVICE', value: d.metadata.name }]);
    }
  });

  it('every setting is a ConfigSchema key (or SERVICE / OTEL_*), every value a string, no credential in a ConfigMap', () => {
    for (const cm of ofKind<DataResource>(r, 'ConfigMap').filter((x) => !isNats(x))) {
      for (const [key, value] of Object.entries(cm.data ?? {})) {
        expect(isKnownKey(key), `ConfigMap ${cm.metadata.name}: ${key}`).toBe(true);
        expect(typeof value, `ConfigMap ${cm.metadata.name}: ${key}`).toBe('string');
        expect(SECRET_KEYS, `ConfigMap ${cm.metadata.name} holds ${key}`).not.toContain(key);
        expect(CREDENTIAL_URL.test(String(value)), `ConfigMap ${cm.metadata.name}: ${key}`).toBe(false);
      }
    }
    for (const d of deployments) {
      for (const e of containerOf(d).env ?? []) {
        expect(isKnownKey(e.name), `${d.metadata.name}: env ${e.name}`).toBe(true);
        if (e.value !== undefined) expect(typeof e.value, `${d.metadata.name}: env ${e.name}`).toBe('string');
        const ref = e.valueFrom?.secretKeyRef;
        if (ref) {
          expect(isKnownKey(ref.key), `${d.metadata.name}: secretKeyRef ${ref.key}`).toBe(true);
          expect(ref.key, `${d.metadata.name}: ${e.name} reads another key`).toBe(e.name);
        }
      }
    }
  });

  it('every Deployment reads chat-config and chat-secrets, and starts with a configuration that loadConfig accepts', () => {
    const secretName = r.generatedNames.get('Secret/chat-secrets') ?? 'chat-secrets';
    for (const d of deployments) {
      const c = containerOf(d);
      expect(c.envFrom?.map((f) => f.configMapRef?.name ?? f.secretRef?.name), d.metadata.name).toEqual(['chat-config', secretName]);
      const env = effectiveEnv(r, c, outOfBand);
      // The very function every process starts with, over the same config/config.yaml the image carries.
      let config: Config;
      try {
        config = loadConfig(env);
      } catch (err) {
        throw new Error(`${label} ${d.metadata.name}: ${(err as Error).message}`);
      }
      // The dev overlay's committed JWT_SECRET is refused in production, so a dev cluster runs as development.
      expect(config.NODE_ENV).toBe(label === 'dev' ? 'development' : 'production');
      if (label === 'dev') expect(() => loadConfig({ ...env, NODE_ENV: 'production' }), `${d.metadata.name}: dev secrets in production`).toThrow(/JWT_SECRET: this value is committed/);
      if (d.metadata.name === 'gateway') expect(config.PORT).toBe(GATEWAY_PORT);
      else expect(config.METRICS_PORT ?? metricsPortOf(d.metadata.name)).toBe(metricsPortOf(d.metadata.name));
      // The secret, not config.yaml's localhost default, names the backing servers.
      if (c.env?.some((e) => e.name === 'DATABASE_URL')) expect(new URL(config.DATABASE_URL).hostname).not.toBe('127.0.0.1');
      if (c.env?.some((e) => e.name === 'REDIS_URL')) expect(new URL(config.REDIS_URL).hostname).not.toBe('127.0.0.1');
    }
  });

  it('the gateway probes /healthz (liveness, startup) and /readyz (readiness) on 8080', () => {
    const c = containerOf(must<Deployment>(r, 'Deployment', 'gateway'));
    expect(c.ports?.map((p) => p.containerPort)).toEqual([GATEWAY_PORT]);
    for (const [probe, path] of [[c.livenessProbe, '/healthz'], [c.startupProbe, '/healthz'], [c.readinessProbe, '/readyz']] as const) {
      expect(probe?.httpGet?.path).toBe(path);
      expect(portNumber(c, probe?.httpGet?.port)).toBe(GATEWAY_PORT);
    }
  });

  it.each(SERVICES)('%s probes /healthz on its defaultMetricsPort, and METRICS_PORT agrees', (name) => {
    const c = containerOf(must<Deployment>(r, 'Deployment', name));
    const port = metricsPortOf(name);
    expect(c.ports?.map((p) => p.containerPort)).toEqual([port]);
    for (const probe of [c.livenessProbe, c.readinessProbe, c.startupProbe]) {
      expect(probe?.httpGet?.path).toBe('/healthz');
      expect(portNumber(c, probe?.httpGet?.port)).toBe(port);
    }
    const metricsPort = c.env?.find((e) => e.name === 'METRICS_PORT')?.value;
    if (metricsPort !== undefined) expect(Number(metricsPort)).toBe(port);
  });

  it('Prometheus scrape annotations point at each process\'s metrics port', () => {
    for (const d of deployments) {
      const a = d.spec.template.metadata.annotations ?? {};
      const port = d.metadata.name === 'gateway' ? GATEWAY_PORT : metricsPortOf(d.metadata.name);
      expect(a, d.metadata.name).toMatchObject({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(port), 'prometheus.io/path': '/metrics' });
      expect(containerOf(d).ports?.some((p) => p.containerPort === port)).toBe(true);
    }
  });

  it('each Service selects exactly its Deployment\'s pods and targets a port the container opens (gateway: 80 → 8080 http; services: metrics)', () => {
    for (const s of ofKind<Service>(r, 'Service').filter((x) => !isNats(x))) {
      const matching = deployments.filter((d) => selects(s.spec.selector, d.spec.template.metadata.labels));
      expect(matching.map((d) => d.metadata.name), `Service ${s.metadata.name}`).toEqual([s.metadata.name]);
      const c = containerOf(matching[0] as Deployment);
      for (const p of s.spec.ports) expect(portNumber(c, p.targetPort ?? p.port), `Service ${s.metadata.name} port ${p.port}`).toBeDefined();
    }
    const gw = must<Service>(r, 'Service', 'gateway');
    expect(gw.spec.ports).toHaveLength(1);
    expect(gw.spec.ports[0]?.port).toBe(80);
    expect(gw.spec.ports[0]?.name).toBe('http');
    expect(portNumber(containerOf(must<Deployment>(r, 'Deployment', 'gateway')), gw.spec.ports[0]?.targetPort)).toBe(GATEWAY_PORT);
    for (const name of SERVICES) {
      const svc = must<Service>(r, 'Service', name);
      expect(svc.spec.ports.map((p) => [p.name, p.port])).toEqual([['metrics', metricsPortOf(name)]]);
      expect(portNumber(containerOf(must<Deployment>(r, 'Deployment', name)), svc.spec.ports[0]?.targetPort)).toBe(metricsPortOf(name));
    }
  });

  it('every container has cpu and memory requests and limits, requests within limits', () => {
    for (const d of deployments) {
      for (const c of d.spec.template.spec.containers) {
        const { requests, limits } = c.resources ?? {};
        for (const res of ['cpu', 'memory'] as const) {
          expect(requests?.[res], `${d.metadata.name} requests.${res}`).toBeDefined();
          expect(limits?.[res], `${d.metadata.name} limits.${res}`).toBeDefined();
        }
        expect(cpu(String(requests?.cpu))).toBeLessThanOrEqual(cpu(String(limits?.cpu)));
        expect(memory(String(requests?.memory))).toBeLessThanOrEqual(memory(String(limits?.memory)));
      }
    }
  });

  it('every container runs as uid 1000, non-root, no privilege escalation, read-only root, no capabilities, RuntimeDefault seccomp; /tmp is an emptyDir', () => {
    for (const d of deployments) {
      const pod = d.spec.template.spec;
      expect(pod.automountServiceAccountToken, d.metadata.name).toBe(false);
      for (const c of pod.containers) {
        const sc = { ...pod.securityContext, ...c.securityContext };
        expect(sc, d.metadata.name).toMatchObject({
          runAsNonRoot: true,
          runAsUser: 1000,
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          seccompProfile: { type: 'RuntimeDefault' },
        });
        expect(sc.privileged ?? false).toBe(false);
        expect(sc.capabilities?.drop).toEqual(['ALL']);
        expect(sc.capabilities?.add ?? []).toEqual([]);
        const tmp = c.volumeMounts?.find((m) => m.mountPath === '/tmp');
        expect(tmp, `${d.metadata.name}: /tmp`).toBeDefined();
        expect(pod.volumes?.find((v) => v.name === tmp?.name)?.emptyDir, `${d.metadata.name}: /tmp volume`).toBeDefined();
      }
    }
  });

  it(`shutdown fits: preStop sleep, then the process's own ${APP_STOP_SECONDS} s, within terminationGracePeriodSeconds (> 10)`, () => {
    for (const d of deployments) {
      const grace = d.spec.template.spec.terminationGracePeriodSeconds ?? 30;
      const preStop = preStopSeconds(containerOf(d));
      expect(grace, d.metadata.name).toBeGreaterThan(10);
      expect(preStop, `${d.metadata.name}: preStop sleep`).toBeGreaterThan(0);
      expect(grace, d.metadata.name).toBeGreaterThan(preStop + APP_STOP_SECONDS);
    }
  });

  it('each autoscaler scales an existing Deployment on CPU, and that Deployment\'s replicas sit within its bounds', () => {
    const hpas = ofKind<Hpa>(r, 'HorizontalPodAutoscaler');
    expect(hpas.map((h) => h.metadata.name).sort()).toEqual([...WITH_HPA].sort());
    for (const h of hpas) {
      const { scaleTargetRef: ref, minReplicas = 1, maxReplicas } = h.spec;
      expect(h.apiVersion).toBe('autoscaling/v2');
      expect([ref.apiVersion, ref.kind]).toEqual(['apps/v1', 'Deployment']);
      const d = must<Deployment>(r, 'Deployment', ref.name);
      expect(minReplicas).toBeGreaterThanOrEqual(1);
      expect(minReplicas).toBeLessThanOrEqual(maxReplicas);
      const replicas = d.spec.replicas ?? 1;
      expect(replicas, h.metadata.name).toBeGreaterThanOrEqual(minReplicas);
      expect(replicas, h.metadata.name).toBeLessThanOrEqual(maxReplicas);
      expect(h.spec.metrics?.[0]?.resource).toMatchObject({ name: 'cpu', target: { type: 'Utilization' } });
    }
  });

  it('each PodDisruptionBudget selects exactly its Deployment\'s pods and can never block a drain', () => {
    const pdbs = ofKind<Pdb>(r, 'PodDisruptionBudget').filter((x) => !isNats(x));
    expect(pdbs.map((p) => p.metadata.name).sort()).toEqual(PROCESSES);
    for (const p of pdbs) {
      const matching = deployments.filter((d) => selects(p.spec.selector.matchLabels, d.spec.template.metadata.labels));
      expect(matching.map((d) => d.metadata.name), `PDB ${p.metadata.name}`).toEqual([p.metadata.name]);
      const replicas = (matching[0] as Deployment).spec.replicas ?? 1;
      if (p.spec.minAvailable !== undefined) expect(Number(p.spec.minAvailable)).toBeLessThan(replicas);
      else expect(Number(p.spec.maxUnavailable)).toBeGreaterThanOrEqual(1);
    }
  });

  it(`every container runs the one image chat, tagged ${tag}`, () => {
    const images = new Set(deployments.flatMap((d) => d.spec.template.spec.containers.map((c) => c.image)));
    expect(images.size).toBe(1);
    const image = splitImage([...images][0] ?? '');
    expect(image.name.split('/').pop()).toBe('chat');
    expect(image.tag).toBe(tag);
  });

  it('no resource is a Secret with a value, except the dev overlay\'s generated one', () => {
    const secrets = ofKind<DataResource>(r, 'Secret');
    if (label === 'dev') expect(secrets.map((s) => s.metadata.name)).toEqual([r.generatedNames.get('Secret/chat-secrets')]);
    else expect(secrets).toEqual([]);
  });
});

describe('secrets stay out of base and prod', () => {
  const baseFiles = base.files;
  const prodOwn = prod.files.filter((f) => f.startsWith(PROD));

  it('the base has no kind: Secret, and no file of it has a password, a secret/token value or a URL with credentials', () => {
    for (const file of baseFiles) {
      expect(readFileSync(file, 'utf8'), relative(ROOT, file)).not.toMatch(/^kind:\s*Secret\s*$/m);
      expect(secretLookingLines(file), relative(ROOT, file)).toEqual([]);
    }
  });

  it('no value anywhere in base or prod carries a credential (parsed values; comments may show placeholders)', () => {
    for (const file of [...baseFiles, ...prodOwn]) {
      for (const doc of readYamlDocs(file)) {
        for (const [path, value] of scalars(doc)) {
          if (typeof value !== 'string') continue;
          expect(CREDENTIAL_URL.test(value), `${relative(ROOT, file)}: ${path}`).toBe(false);
          expect(/password/i.test(value), `${relative(ROOT, file)}: ${path}`).toBe(false);
        }
      }
    }
  });

  it('the prod overlay generates no Secret and contains none; it tells how chat-secrets is made', () => {
    expect(prod.kustomization.secretGenerator).toBeUndefined();
    expect(ofKind(prod, 'Secret')).toEqual([]);
    for (const file of prodOwn) {
      expect(readFileSync(file, 'utf8'), relative(ROOT, file)).not.toMatch(/^kind:\s*(Secret|SealedSecret|ExternalSecret)\s*$/m);
      expect(secretLookingLines(file), relative(ROOT, file)).toEqual([]);
    }
    expect(readFileSync(join(PROD, 'kustomization.yaml'), 'utf8')).toMatch(/kubectl -n chat create secret generic chat-secrets/);
  });

  it('only the dev overlay generates secrets, and its values are obviously for development', () => {
    expect(base.kustomization.secretGenerator).toBeUndefined();
    const secret = must<DataResource>(dev, 'Secret', dev.generatedNames.get('Secret/chat-secrets') ?? '');
    const values = decode(secret);
    expect(values.DATABASE_URL).toBe('postgres://chat:chat-dev-password@postgres:5432/chat');
    expect(values.REDIS_URL).toBe('redis://redis:6379');
    expect(values.JWT_SECRET).toMatch(/dev/);
    expect(Buffer.byteLength(values.JWT_SECRET ?? '', 'utf8')).toBeGreaterThanOrEqual(32);
    expect(values.JWT_SECRET).not.toBe(DEV_JWT_SECRET);
  });

  it('the dev Secret provides every key a Deployment requires, under the hashed name the Deployments now use', () => {
    const name = dev.generatedNames.get('Secret/chat-secrets');
    expect(name).toMatch(/^chat-secrets-[a-z0-9]{10}$/);
    const keys = Object.keys(decode(must<DataResource>(dev, 'Secret', name ?? '')));
    for (const d of ofKind<Deployment>(dev, 'Deployment')) {
      const c = containerOf(d);
      expect(c.envFrom?.find((f) => f.secretRef)?.secretRef?.name).toBe(name);
      for (const e of c.env ?? []) {
        const ref = e.valueFrom?.secretKeyRef;
        if (!ref) continue;
        expect(ref.name, `${d.metadata.name}: ${e.name}`).toBe(name);
        if (!ref.optional) expect(keys, `${d.metadata.name} needs ${ref.key}`).toContain(ref.key);
      }
    }
  });

  it('the required secret keys: DATABASE_URL where there is a database, REDIS_URL where Redis is used; JWT_SECRET optional (JWKS instead)', () => {
    const refs = (name: string) =>
      Object.fromEntries((containerOf(must<Deployment>(base, 'Deployment', name)).env ?? []).flatMap((e) => (e.valueFrom?.secretKeyRef ? [[e.valueFrom.secretKeyRef.key, e.valueFrom.secretKeyRef.optional ?? false]] : [])));
    expect(refs('gateway')).toEqual({ REDIS_URL: false, JWT_SECRET: true });
    expect(refs('conversations')).toEqual({ DATABASE_URL: false, REDIS_URL: false });
    expect(refs('messages')).toEqual({ DATABASE_URL: false, REDIS_URL: false });
    expect(refs('blocks')).toEqual({ DATABASE_URL: false });
    expect(refs('presence')).toEqual({ REDIS_URL: false });
    expect(refs('notifications')).toEqual({ DATABASE_URL: false, NOTIFICATION_WEBHOOK_URL: true });
  });

  it('a prod gateway without JWT_SECRET (and without JWT_JWKS_URL) refuses to start, so the optional reference cannot go unnoticed', () => {
    const c = containerOf(must<Deployment>(prod, 'Deployment', 'gateway'));
    const { JWT_SECRET: _dropped, ...withoutJwt } = OUT_OF_BAND_SECRET;
    expect(_dropped).toBeDefined();
    expect(() => loadConfig(effectiveEnv(prod, c, withoutJwt))).toThrow(/JWT_SECRET/);
  });
});

describe('overlays', () => {
  const namespaced = (r: Rendered) => r.resources.filter((x) => !CLUSTER_SCOPED.has(x.kind));

  it('dev: namespace chat-dev, one replica of everything, autoscalers from 1, debug logs, smaller than base', () => {
    expect(namespaced(dev).every((x) => x.metadata.namespace === 'chat-dev')).toBe(true);
    expect(find(dev, 'Namespace', 'chat-dev')).toBeDefined();
    for (const d of ofKind<Deployment>(dev, 'Deployment')) expect(d.spec.replicas, d.metadata.name).toBe(1);
    for (const h of ofKind<Hpa>(dev, 'HorizontalPodAutoscaler')) expect(h.spec.minReplicas, h.metadata.name).toBe(1);
    expect(must<DataResource>(dev, 'ConfigMap', 'chat-config').data?.LOG_LEVEL).toBe('debug');
    for (const d of ofKind<Deployment>(dev, 'Deployment')) {
      const small = containerOf(d).resources;
      const big = containerOf(must<Deployment>(base, 'Deployment', d.metadata.name)).resources;
      expect(memory(String(small?.requests?.memory))).toBeLessThan(memory(String(big?.requests?.memory)));
      expect(cpu(String(small?.requests?.cpu))).toBeLessThan(cpu(String(big?.requests?.cpu)));
    }
  });

  it('prod: namespace chat, three gateways and at least two of everything, raised autoscaler bounds, info logs', () => {
    expect(namespaced(prod).every((x) => x.metadata.namespace === 'chat')).toBe(true);
    expect(must<Deployment>(prod, 'Deployment', 'gateway').spec.replicas).toBeGreaterThanOrEqual(3);
    for (const d of ofKind<Deployment>(prod, 'Deployment')) expect(d.spec.replicas, d.metadata.name).toBeGreaterThanOrEqual(2);
    for (const h of ofKind<Hpa>(prod, 'HorizontalPodAutoscaler')) {
      const b = must<Hpa>(base, 'HorizontalPodAutoscaler', h.metadata.name);
      expect(h.spec.minReplicas ?? 1, h.metadata.name).toBeGreaterThanOrEqual(2);
      expect(h.spec.maxReplicas, h.metadata.name).toBeGreaterThan(b.spec.maxReplicas);
    }
    expect(must<DataResource>(prod, 'ConfigMap', 'chat-config').data?.LOG_LEVEL).toBe('info');
  });

  it('prod: the image is pinned (a registry, a version tag, never latest)', () => {
    const image = prod.kustomization.images?.find((i) => i.name === 'chat');
    expect(image?.newTag).toMatch(/^\d+\.\d+\.\d+/);
    expect(image?.newName).toMatch(/\/chat$/);
  });

  it('prod: gateways spread across zones (and nodes), selecting the gateway pods', () => {
    const d = must<Deployment>(prod, 'Deployment', 'gateway');
    const spread = d.spec.template.spec.topologySpreadConstraints ?? [];
    expect(spread.map((s) => s.topologyKey)).toContain('topology.kubernetes.io/zone');
    for (const s of spread) expect(selects(s.labelSelector?.matchLabels ?? {}, d.spec.template.metadata.labels)).toBe(true);
    // The strategic merge kept the base container whole (only resources changed).
    expect(containerOf(d).readinessProbe?.httpGet?.path).toBe('/readyz');
  });

  it('prod: docs/deployment.md states the PostgreSQL connection budget these bounds give', () => {
    const withDb = ['conversations', 'messages', 'blocks', 'notifications'];
    const poolMax = Number(must<DataResource>(prod, 'ConfigMap', 'chat-config').data?.DB_POOL_MAX);
    const podsAtRest = withDb.reduce((n, name) => n + (must<Deployment>(prod, 'Deployment', name).spec.replicas ?? 1), 0);
    const podsAtMax = withDb.reduce((n, name) => n + (find<Hpa>(prod, 'HorizontalPodAutoscaler', name)?.spec.maxReplicas ?? must<Deployment>(prod, 'Deployment', name).spec.replicas ?? 1), 0);
    const doc = readFileSync(join(ROOT, 'docs/deployment.md'), 'utf8');
    expect(doc).toContain(`${podsAtRest} pods × ${poolMax} = ${podsAtRest * poolMax}`);
    expect(doc).toContain(`${podsAtMax} × ${poolMax} = ${podsAtMax * poolMax}`);
  });

  it('prod: the pods meet the restricted Pod Security Standard the namespace enforces', () => {
    expect(must(prod, 'Namespace', 'chat').metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
  });
});

// ---------------------------------------------------------------------------
// NATS credentials and NetworkPolicies (issue 13, finding 7).

function selectorMatches(selector: LabelSelector, labels: Labels): boolean {
  const byLabels = Object.entries(selector.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
  return byLabels && (selector.matchExpressions ?? []).every(({ key, operator, values = [] }) => {
    const v = labels[key];
    if (operator === 'In') return v !== undefined && values.includes(v);
    if (operator === 'NotIn') return v === undefined || !values.includes(v);
    if (operator === 'Exists') return v !== undefined;
    return v === undefined;
  });
}

/** NATS, PostgreSQL and Redis as their Helm charts label them (dev runs them in the chat namespace). */
const BACKING = { nats: 4222, postgresql: 5432, redis: 6379 } as const;

describe.each(RENDERINGS)('$label rendering: the bus and the backing servers are closed', ({ r, outOfBand }) => {
  const deployments = ofKind<Deployment>(r, 'Deployment');
  const policies = ofKind<NetworkPolicy>(r, 'NetworkPolicy');
  const podLabels = (name: string) => must<Deployment>(r, 'Deployment', name).spec.template.metadata.labels;
  /** The ingress rules that apply to pods with these labels (every policy selecting them, Ingress type). */
  const rulesFor = (labels: Labels) =>
    policies.filter((p) => selectorMatches(p.spec.podSelector, labels) && (p.spec.policyTypes ?? ['Ingress']).includes('Ingress')).flatMap((p) => p.spec.ingress ?? []);
  /** Which chat processes (pods in the same namespace) the rules let reach `port` (a number, or a named container port of `target`). */
  const chatPodsAllowed = (labels: Labels, port: number, target?: Container) =>
    deployments
      .filter((d) =>
        rulesFor(labels).some(
          (rule) =>
            (rule.ports ?? [{}]).some((p) => p.port === undefined || (target ? portNumber(target, p.port) : p.port) === port) &&
            (rule.from ?? [{}]).some((peer) => !peer.namespaceSelector && !peer.ipBlock && selectorMatches(peer.podSelector ?? {}, d.spec.template.metadata.labels)),
        ),
      )
      .map((d) => d.metadata.name)
      .sort();

  it('every Deployment gets NATS credentials (NATS_USER and NATS_PASSWORD from chat-secrets) and loadConfig hands them to the connection', () => {
    for (const d of deployments) {
      const config = loadConfig(effectiveEnv(r, containerOf(d), outOfBand));
      const opts = natsConnectOptions(config);
      expect(opts.user, d.metadata.name).toBeTruthy();
      expect(opts.pass, d.metadata.name).toBeTruthy();
    }
  });

  it('a default-deny ingress policy selects every pod of the namespace (chat processes and co-located backing servers)', () => {
    const denyAll = policies.filter((p) => isDeepStrictEqualish(p.spec.podSelector, {}) && (p.spec.ingress ?? []).length === 0);
    expect(denyAll.map((p) => p.spec.policyTypes)).toEqual([['Ingress']]);
    for (const d of deployments) expect(rulesFor(d.spec.template.metadata.labels).length, d.metadata.name).toBeGreaterThan(0);
  });

  it('only the gateway is reachable from anywhere, and only on its HTTP port', () => {
    const open = (labels: Labels) => rulesFor(labels).filter((rule) => rule.from === undefined || rule.from.length === 0);
    const gatewayOpen = open(podLabels('gateway'));
    expect(gatewayOpen.length).toBeGreaterThan(0);
    const gw = containerOf(must<Deployment>(r, 'Deployment', 'gateway'));
    for (const rule of gatewayOpen) expect(rule.ports?.map((p) => portNumber(gw, p.port))).toEqual([GATEWAY_PORT]);
    for (const name of SERVICES) expect(open(podLabels(name)), name).toEqual([]);
    for (const name of Object.keys(BACKING)) expect(open({ 'app.kubernetes.io/name': name }), name).toEqual([]);
  });

  it.each(SERVICES)('%s: reachable only on its metrics port, only from the monitoring namespace', (name) => {
    const rules = rulesFor(podLabels(name));
    expect(rules.length).toBeGreaterThan(0);
    const c = containerOf(must<Deployment>(r, 'Deployment', name));
    for (const rule of rules) {
      expect(rule.ports?.map((p) => portNumber(c, p.port))).toEqual([metricsPortOf(name)]);
      expect(rule.from).toEqual([{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }]);
    }
    expect(chatPodsAllowed(podLabels(name), metricsPortOf(name), c)).toEqual([]);
  });

  it('NATS is reached by every chat process, PostgreSQL only by those with DATABASE_URL, Redis only by those with REDIS_URL; nothing else from outside', () => {
    const using = (key: string) => deployments.filter((d) => containerOf(d).env?.some((e) => e.valueFrom?.secretKeyRef?.key === key)).map((d) => d.metadata.name).sort();
    const expected = { nats: [...PROCESSES].sort(), postgresql: using('DATABASE_URL'), redis: using('REDIS_URL') };
    expect(expected.postgresql).toEqual(['blocks', 'conversations', 'messages', 'notifications']);
    expect(expected.redis).toEqual(['conversations', 'gateway', 'messages', 'presence']);
    for (const [name, port] of Object.entries(BACKING) as Array<[keyof typeof BACKING, number]>) {
      const labels = { 'app.kubernetes.io/name': name };
      expect(chatPodsAllowed(labels, port), name).toEqual(expected[name]);
      for (const rule of rulesFor(labels)) {
        for (const peer of rule.from ?? []) {
          expect(peer.namespaceSelector, `${name}: no other namespace`).toBeUndefined();
          expect(peer.ipBlock, `${name}: no address range`).toBeUndefined();
          expect(peer.podSelector, `${name}: a pod selector`).toBeDefined();
        }
      }
      // Its own peers (cluster routes, replication) may reach it; no chat pod is one of them.
      expect(rulesFor(labels).some((rule) => rule.from?.some((peer) => selectorMatches(peer.podSelector ?? {}, labels)))).toBe(true);
    }
  });
});

const isDeepStrictEqualish = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
