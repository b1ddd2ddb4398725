import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { delimiter, join, relative, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ConfigSchema, DEV_JWT_SECRET, defaultMetricsPort, loadConfig, type Config } from '@chat/platform';

/**
 * The Kubernetes manifests in deploy/k8s (a Kustomize base and the dev and
 * prod overlays), checked without a cluster or a kustomize binary: a small
 * resolver below renders each kustomization the way `kubectl kustomize`
 * would for the fields these files use (resources, patches, namespace,
 * labels, images, replicas, secretGenerator), and refuses any field it does
 * not implement, so nothing is silently skipped. Where the machine has a
 * real kustomize (`kubectl kustomize`), the resolver's output is compared
 * with it. The renderings are then held against the code: ConfigSchema and
 * loadConfig, defaultMetricsPort, the services/ folder and the shutdown
 * timings.
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
interface Pdb extends Resource {
  spec: { minAvailable?: number | string; maxUnavailable?: number | string; selector: { matchLabels: Labels } };
}
interface DataResource extends Resource {
  data?: Record<string, unknown>;
  stringData?: Record<string, unknown>;
}

// ---------------------------------------------------------------------------
// A tiny kustomize.

interface PatchRef {
  path?: string;
  patch?: string;
  target?: { group?: string; version?: string; kind?: string; name?: string; namespace?: string; labelSelector?: string };
}
interface GeneratorSpec {
  name: string;
  type?: string;
  literals?: string[];
  envs?: string[];
  files?: string[];
  behavior?: string;
}
interface Kustomization {
  apiVersion?: string;
  kind?: string;
  resources?: string[];
  namespace?: string;
  labels?: Array<{ pairs: Labels; includeSelectors?: boolean; includeTemplates?: boolean }>;
  commonLabels?: Labels;
  images?: Array<{ name: string; newName?: string; newTag?: string; digest?: string }>;
  replicas?: Array<{ name: string; count: number }>;
  patches?: PatchRef[];
  patchesStrategicMerge?: string[];
  secretGenerator?: GeneratorSpec[];
  configMapGenerator?: GeneratorSpec[];
  generatorOptions?: { disableNameSuffixHash?: boolean };
}
const SUPPORTED_FIELDS = new Set([
  'apiVersion', 'kind', 'resources', 'namespace', 'labels', 'commonLabels', 'images', 'replicas',
  'patches', 'patchesStrategicMerge', 'secretGenerator', 'configMapGenerator', 'generatorOptions',
]);

interface Rendered {
  dir: string;
  kustomization: Kustomization;
  resources: Resource[];
  /** Every file this rendering read, its own and its bases'. */
  files: string[];
  /** Generated name of each generator output: `Secret/chat-secrets` → `chat-secrets-<hash>`. */
  generatedNames: Map<string, string>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const clone = <T>(v: T): T => structuredClone(v);

/** Every document of a YAML file, parsed as YAML 1.1 like the Kubernetes API machinery (`yes` is a boolean there). */
function readYamlDocs(file: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'), { version: '1.1' });
  const out: unknown[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
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
const WORKLOADS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job']);

/** Strategic merge: maps merge key by key, lists of these fields merge by their key, other lists are replaced, null deletes. */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  env: 'name',
  envFrom: '',
  volumes: 'name',
  volumeMounts: 'mountPath',
  ports: 'containerPort',
  topologySpreadConstraints: 'topologyKey',
  imagePullSecrets: 'name',
};
function strategicMerge(base: unknown, patch: unknown, field = ''): unknown {
  if (isObject(patch) && '$patch' in patch) throw new Error('strategic merge directive $patch is not supported by this resolver');
  if (isObject(base) && isObject(patch)) {
    const out: Record<string, unknown> = { ...base };
    for (const [k, v] of Object.entries(patch)) {
      if (v === null) delete out[k];
      else out[k] = k in base ? strategicMerge(base[k], v, k) : clone(v);
    }
    return out;
  }
  const key = MERGE_KEYS[field];
  if (Array.isArray(base) && Array.isArray(patch) && key) {
    const out = [...base];
    for (const item of patch) {
      const at = isObject(item) ? out.findIndex((b) => isObject(b) && b[key] === item[key]) : -1;
      if (at >= 0) out[at] = strategicMerge(out[at], item, '');
      else out.push(clone(item));
    }
    return out;
  }
  return clone(patch);
}

/** JSON patch (RFC 6902): add, replace, remove, enough for these overlays. */
function jsonPatch(target: unknown, ops: unknown[], where: string): void {
  for (const op of ops) {
    if (!isObject(op) || typeof op.op !== 'string' || typeof op.path !== 'string') throw new Error(`${where}: not a JSON 6902 operation`);
    const tokens = op.path.split('/').slice(1).map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
    const last = tokens.pop();
    if (last === undefined) throw new Error(`${where}: empty path`);
    let parent: unknown = target;
    for (const t of tokens) {
      parent = Array.isArray(parent) ? parent[Number(t)] : isObject(parent) ? parent[t] : undefined;
      if (parent === undefined) throw new Error(`${where}: ${op.path} does not exist`);
    }
    if (Array.isArray(parent)) {
      const index = last === '-' ? parent.length : Number(last);
      if (op.op === 'add') parent.splice(index, 0, clone(op.value));
      else if (op.op === 'replace' && index < parent.length) parent[index] = clone(op.value);
      else if (op.op === 'remove' && index < parent.length) parent.splice(index, 1);
      else throw new Error(`${where}: cannot ${op.op} ${op.path}`);
    } else if (isObject(parent)) {
      if (op.op === 'add') parent[last] = clone(op.value);
      else if (op.op === 'replace' && last in parent) parent[last] = clone(op.value);
      else if (op.op === 'remove' && last in parent) delete parent[last];
      else throw new Error(`${where}: cannot ${op.op} ${op.path}`);
    } else throw new Error(`${where}: ${op.path} has no parent`);
  }
}

function matchesTarget(r: Resource, t: NonNullable<PatchRef['target']>): boolean {
  const [group, version] = r.apiVersion.includes('/') ? r.apiVersion.split('/') : ['', r.apiVersion];
  if (t.kind !== undefined && t.kind !== r.kind) return false;
  if (t.group !== undefined && t.group !== group) return false;
  if (t.version !== undefined && t.version !== version) return false;
  if (t.name !== undefined && !new RegExp(`^(?:${t.name})$`).test(r.metadata.name)) return false;
  if (t.namespace !== undefined && t.namespace !== r.metadata.namespace) return false;
  if (t.labelSelector !== undefined) {
    for (const term of t.labelSelector.split(',')) {
      const [k, v] = term.split('=').map((s) => s.trim());
      if (!k || v === undefined || r.metadata.labels?.[k] !== v) return false;
    }
  }
  return true;
}

function applyPatch(resources: Resource[], ref: PatchRef, dir: string, files: string[]): void {
  let docs: unknown[];
  let where: string;
  if (ref.path !== undefined) {
    const file = resolve(dir, ref.path);
    if (!existsSync(file)) throw new Error(`${dir}: patch ${ref.path} does not exist`);
    files.push(file);
    docs = readYamlDocs(file);
    where = file;
  } else if (ref.patch !== undefined) {
    docs = parseAllDocuments(ref.patch, { version: '1.1' }).map((d) => d.toJS() as unknown);
    where = `${dir}: inline patch`;
  } else throw new Error(`${dir}: a patch with neither path nor patch`);

  if (docs.length === 1 && Array.isArray(docs[0])) {
    if (!ref.target) throw new Error(`${where}: a JSON 6902 patch needs a target`);
    const targets = resources.filter((r) => matchesTarget(r, ref.target ?? {}));
    if (targets.length === 0) throw new Error(`${where}: the target matches nothing`);
    for (const r of targets) jsonPatch(r, docs[0], where);
    return;
  }
  for (const doc of docs) {
    const patch = asResource(doc, where);
    const targets = ref.target
      ? resources.filter((r) => matchesTarget(r, ref.target ?? {}))
      : resources.filter((r) => r.kind === patch.kind && r.metadata.name === patch.metadata.name);
    if (targets.length === 0) throw new Error(`${where}: no ${patch.kind} ${patch.metadata.name} to patch`);
    for (const r of targets) {
      // With a target, the patch's own name does not rename what it patches.
      const body = ref.target ? { ...patch, metadata: { ...patch.metadata, name: r.metadata.name } } : patch;
      const merged = strategicMerge(r, body) as Resource;
      resources[resources.indexOf(r)] = merged;
    }
  }
}

function podSpecOf(r: Resource): PodSpec | undefined {
  if (!WORKLOADS.has(r.kind)) return undefined;
  const spec = r.spec;
  if (!isObject(spec) || !isObject(spec.template) || !isObject(spec.template.spec)) return undefined;
  return spec.template.spec as unknown as PodSpec;
}

function splitImage(image: string): { name: string; tag?: string; digest?: string } {
  const [nameAndTag = '', digest] = image.split('@');
  const slash = nameAndTag.lastIndexOf('/');
  const colon = nameAndTag.lastIndexOf(':');
  if (colon > slash) return { name: nameAndTag.slice(0, colon), tag: nameAndTag.slice(colon + 1), ...(digest ? { digest } : {}) };
  return { name: nameAndTag, ...(digest ? { digest } : {}) };
}

function generate(kind: 'Secret' | 'ConfigMap', g: GeneratorSpec, dir: string, files: string[], hashSuffix: boolean): Resource {
  if (g.behavior !== undefined && g.behavior !== 'create') throw new Error(`${dir}: generator behavior ${g.behavior} is not supported by this resolver`);
  const data: Record<string, string> = {};
  for (const literal of g.literals ?? []) {
    const eq = literal.indexOf('=');
    if (eq <= 0) throw new Error(`${dir}: literal without a key: ${literal}`);
    data[literal.slice(0, eq)] = literal.slice(eq + 1);
  }
  for (const env of g.envs ?? []) {
    const file = resolve(dir, env);
    if (!existsSync(file)) throw new Error(`${dir}: generator env file ${env} does not exist`);
    files.push(file);
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
      if (m?.[1] !== undefined) data[m[1]] = m[2] ?? '';
    }
  }
  for (const entry of g.files ?? []) {
    const [key, path] = entry.includes('=') ? entry.split('=') : [entry.split('/').pop(), entry];
    const file = resolve(dir, path ?? '');
    if (!key || !existsSync(file)) throw new Error(`${dir}: generator file ${entry} does not exist`);
    files.push(file);
    data[key] = readFileSync(file, 'utf8');
  }
  // Kustomize appends a hash of the content; the digest differs from its, the behaviour does not.
  const hash = createHash('sha256').update(JSON.stringify({ kind, data })).digest('hex').slice(0, 10);
  const name = hashSuffix ? `${g.name}-${hash}` : g.name;
  const resource: Resource = { apiVersion: 'v1', kind, metadata: { name } };
  if (kind === 'Secret') {
    resource.type = g.type ?? 'Opaque';
    resource.data = Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
  } else resource.data = data;
  return resource;
}

/** Points references to a generated ConfigMap/Secret at its suffixed name, in every pod spec. */
function renameReferences(resources: Resource[], generatedNames: Map<string, string>): void {
  const rename = (kind: string, name: string) => generatedNames.get(`${kind}/${name}`) ?? name;
  for (const r of resources) {
    const pod = podSpecOf(r);
    if (!pod) continue;
    for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
      for (const from of c.envFrom ?? []) {
        if (from.secretRef) from.secretRef.name = rename('Secret', from.secretRef.name);
        if (from.configMapRef) from.configMapRef.name = rename('ConfigMap', from.configMapRef.name);
      }
      for (const e of c.env ?? []) {
        if (e.valueFrom?.secretKeyRef) e.valueFrom.secretKeyRef.name = rename('Secret', e.valueFrom.secretKeyRef.name);
        if (e.valueFrom?.configMapKeyRef) e.valueFrom.configMapKeyRef.name = rename('ConfigMap', e.valueFrom.configMapKeyRef.name);
      }
    }
    for (const v of pod.volumes ?? []) {
      if (v.secret) v.secret.secretName = rename('Secret', v.secret.secretName);
      if (v.configMap) v.configMap.name = rename('ConfigMap', v.configMap.name);
    }
  }
}

function render(dir: string): Rendered {
  const kfile = join(dir, 'kustomization.yaml');
  if (!existsSync(kfile)) throw new Error(`${dir}: no kustomization.yaml`);
  const [doc] = readYamlDocs(kfile);
  if (!isObject(doc)) throw new Error(`${kfile}: not a mapping`);
  for (const field of Object.keys(doc)) if (!SUPPORTED_FIELDS.has(field)) throw new Error(`${kfile}: field ${field} is not implemented by this resolver`);
  const k = doc as Kustomization;
  const files = [kfile];
  let resources: Resource[] = [];

  for (const entry of k.resources ?? []) {
    const path = resolve(dir, entry);
    if (!existsSync(path)) throw new Error(`${kfile}: resource ${entry} does not exist`);
    if (statSync(path).isDirectory()) {
      const sub = render(path);
      resources.push(...sub.resources);
      files.push(...sub.files);
    } else {
      files.push(path);
      resources.push(...readYamlDocs(path).map((d) => asResource(d, path)));
    }
  }

  const generatedNames = new Map<string, string>();
  const hashSuffix = k.generatorOptions?.disableNameSuffixHash !== true;
  for (const [kind, generators] of [['Secret', k.secretGenerator], ['ConfigMap', k.configMapGenerator]] as const) {
    for (const g of generators ?? []) {
      const made = generate(kind, g, dir, files, hashSuffix);
      generatedNames.set(`${kind}/${g.name}`, made.metadata.name);
      resources.push(made);
    }
  }

  for (const path of k.patchesStrategicMerge ?? []) applyPatch(resources, { path }, dir, files);
  for (const ref of k.patches ?? []) applyPatch(resources, ref, dir, files);

  if (k.namespace !== undefined) {
    for (const r of resources) if (!CLUSTER_SCOPED.has(r.kind)) r.metadata.namespace = k.namespace;
  }

  const labelSets = [...(k.labels ?? []), ...(k.commonLabels ? [{ pairs: k.commonLabels, includeSelectors: true, includeTemplates: true }] : [])];
  for (const set of labelSets) {
    for (const r of resources) {
      r.metadata.labels = { ...r.metadata.labels, ...set.pairs };
      const spec = r.spec;
      if (!isObject(spec)) continue;
      if ((set.includeTemplates || set.includeSelectors) && WORKLOADS.has(r.kind) && isObject(spec.template) && isObject(spec.template.metadata))
        spec.template.metadata.labels = { ...(spec.template.metadata.labels as Labels | undefined), ...set.pairs };
      if (set.includeSelectors) {
        if (r.kind === 'Service') spec.selector = { ...(spec.selector as Labels | undefined), ...set.pairs };
        else if (isObject(spec.selector)) spec.selector.matchLabels = { ...(spec.selector.matchLabels as Labels | undefined), ...set.pairs };
      }
    }
  }

  for (const image of k.images ?? []) {
    for (const r of resources) {
      const pod = podSpecOf(r);
      for (const c of [...(pod?.containers ?? []), ...(pod?.initContainers ?? [])]) {
        const current = splitImage(c.image);
        if (current.name !== image.name) continue;
        const name = image.newName ?? current.name;
        const tag = image.newTag ?? current.tag;
        const digest = image.digest ?? current.digest;
        c.image = `${name}${tag !== undefined ? `:${tag}` : ''}${digest !== undefined ? `@${digest}` : ''}`;
      }
    }
  }

  for (const { name, count } of k.replicas ?? []) {
    const targets = resources.filter((r) => WORKLOADS.has(r.kind) && r.metadata.name === name);
    if (targets.length === 0) throw new Error(`${kfile}: replicas for ${name}, which does not exist`);
    for (const r of targets) (r.spec as { replicas?: number }).replicas = count;
  }

  renameReferences(resources, generatedNames);

  const ids = resources.map((r) => `${r.kind}/${r.metadata.namespace ?? ''}/${r.metadata.name}`);
  const dup = ids.find((id, i) => ids.indexOf(id) !== i);
  if (dup) throw new Error(`${kfile}: ${dup} twice`);
  resources = resources.map((r) => clone(r));
  return { dir, kustomization: k, resources, files: [...new Set(files)], generatedNames };
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
const SECRET_KEYS = ['JWT_SECRET', 'DATABASE_URL', 'REDIS_URL', 'NOTIFICATION_WEBHOOK_URL', 'JWT_JWKS_URL'];
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
  JWT_SECRET: 'out-of-band-placeholder-0123456789abcdefghij',
  NOTIFICATION_WEBHOOK_URL: 'https://hooks.example.com/out-of-band',
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

/**
 * The real kustomize, when this machine has one (`kubectl kustomize` or
 * `kustomize build`; GitHub's ubuntu runners have both): the resolver above
 * must render exactly what it renders.
 */
function findKustomize(): ((dir: string) => string) | undefined {
  const onPath = (bin: string) => (process.env.PATH ?? '').split(delimiter).some((d) => d && existsSync(join(d, bin)));
  const run = (cmd: string, args: string[]) => (dir: string) => execFileSync(cmd, [...args, dir], { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] });
  if (onPath('kustomize')) return run('kustomize', ['build']);
  if (onPath('kubectl')) {
    try {
      execFileSync('kubectl', ['kustomize', '--help'], { stdio: 'ignore', timeout: 30_000 });
      return run('kubectl', ['kustomize']);
    } catch {
      return undefined;
    }
  }
  return undefined;
}
const kustomize = findKustomize();

/** Resources by kind/namespace/name, with generated-name hashes and base64 line breaks (kustomize wraps long values) evened out. */
function comparable(resources: Resource[]): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const r of resources) {
    const text = JSON.stringify(r, (_, v: unknown) => (typeof v === 'string' ? v.replace(/^(chat-secrets)-[a-z0-9]{10}$/, '$1-HASH') : v));
    const c = JSON.parse(text) as DataResource;
    if (c.kind === 'Secret' && c.data) c.data = Object.fromEntries(Object.entries(c.data).map(([k, v]) => [k, String(v).replace(/\s/g, '')]));
    out.set(`${c.kind}/${c.metadata.namespace ?? ''}/${c.metadata.name}`, c);
  }
  return out;
}

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

  it('are the base and the two overlays', () => {
    expect(dirs.map((d) => relative(K8S, d)).sort()).toEqual(['base', 'overlays/dev', 'overlays/prod']);
  });

  it.each(dirs.map((d) => [relative(K8S, d), d]))('%s: every referenced file exists and renders (the resolver throws on a missing file or an unknown field)', (_, dir) => {
    expect(() => render(dir)).not.toThrow();
  });

  it.each(dirs.map((d) => [relative(K8S, d), d]))('%s: every YAML file in the directory is used (no orphan manifest)', (_, dir) => {
    const used = new Set(render(dir).files);
    const here = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).map((f) => join(dir, f));
    expect(here.filter((f) => !used.has(f)).map((f) => relative(ROOT, f))).toEqual([]);
  });

  it.skipIf(!kustomize).each(dirs.map((d) => [relative(K8S, d), d]))('%s: renders exactly as the real kustomize does', (_, dir) => {
    const theirs = parseAllDocuments(kustomize?.(dir) ?? '', { version: '1.1' }).map((d) => asResource(d.toJS(), dir));
    const a = comparable(render(dir).resources);
    const b = comparable(theirs);
    expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
    for (const [key, value] of a) expect(isDeepStrictEqual(value, b.get(key)) ? key : { key, mine: value, kustomize: b.get(key) }).toBe(key);
  });

  it('the overlays build on the base', () => {
    expect(dev.kustomization.resources).toContain('../../base');
    expect(prod.kustomization.resources).toContain('../../base');
  });

  it('the base names the image `chat` and labels everything part-of chat without touching selectors', () => {
    expect(base.kustomization.images?.map((i) => i.name)).toEqual(['chat']);
    expect(base.kustomization.labels?.[0]?.pairs).toEqual({ 'app.kubernetes.io/part-of': 'chat' });
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
    expect([...kinds].sort()).toEqual(['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'Service']);
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
    for (const cm of ofKind<DataResource>(r, 'ConfigMap')) {
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
      expect(config.NODE_ENV).toBe('production');
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
    for (const s of ofKind<Service>(r, 'Service')) {
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
    const pdbs = ofKind<Pdb>(r, 'PodDisruptionBudget');
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
    expect(name).toMatch(/^chat-secrets-[0-9a-f]{10}$/);
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
