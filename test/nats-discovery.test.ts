import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Empty } from '@nats-io/nats-core';
import { Svcm, type ServiceClient, type ServiceIdentity, type ServiceInfo, type ServiceStats } from '@nats-io/services';
import { microServiceName, subjects, type ServiceName } from '@chat/contracts';
import { useStack } from './helpers/stack';
import { conversationPair, knownUser } from './helpers/client';

/**
 * Every service answers the NATS services (micro) API: `$SRV.PING|INFO|STATS`.
 * Several test runs (and `npm start`) may share one NATS server, so this run's
 * services are told apart by name: `<NATS_PREFIX>-<service>` (contracts'
 * `microServiceName`), and their endpoint subjects start with `<NATS_PREFIX>.`.
 * The last test stops a service: it must stay last.
 */

const ctx = useStack();
const SERVICES = ['conversations', 'messages', 'blocks', 'presence', 'notifications'] as const satisfies readonly ServiceName[];

let nc: NatsConnection;
let svc: ServiceClient;

beforeAll(async () => {
  nc = await connect({ servers: ctx.stack.config.NATS_URL, name: 'nats-discovery-test' });
  // Wait for answers until none came for 250 ms (or 3 s in all): long enough on one machine to see a second instance.
  svc = new Svcm(nc).client({ strategy: 'stall', stall: 250, maxWait: 3000 });
});

afterAll(async () => {
  await nc?.close();
});

const prefix = () => ctx.stack.config.NATS_PREFIX;
const nameOf = (service: ServiceName) => microServiceName(prefix(), service);
const ours = (name: string) => name.startsWith(`${prefix()}-`);

/** Every answer to a bare `$SRV.<verb>` from all services on the server, collected for a fixed time. */
async function everyone<T>(verb: 'PING' | 'INFO' | 'STATS'): Promise<T[]> {
  const answers: T[] = [];
  for await (const m of await nc.requestMany(`$SRV.${verb}`, Empty, { strategy: 'timer', maxWait: 1500 })) answers.push(m.json<T>());
  return answers;
}

async function collect<T>(iter: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of iter) out.push(x);
  return out;
}

/** The one instance of this run's service, by its name. */
async function one<T>(what: Promise<AsyncIterable<T>>, service: ServiceName): Promise<T> {
  const answers = await collect(await what);
  expect(answers, `answers for ${nameOf(service)}`).toHaveLength(1);
  return answers[0]!;
}

const statsOf = (service: ServiceName) => one<ServiceStats>(svc.stats(nameOf(service)), service);
const allStats = async () =>
  Object.fromEntries(await Promise.all(SERVICES.map(async (s) => [s, await statsOf(s)] as const))) as Record<(typeof SERVICES)[number], ServiceStats>;
const endpointRequests = (s: ServiceStats, verb: string) => s.endpoints?.find((e) => e.name === verb)?.num_requests ?? 0;
const totalRequests = (s: ServiceStats) => (s.endpoints ?? []).reduce((n, e) => n + e.num_requests, 0);

describe('discovery through $SRV.PING', () => {
  it("finds all five services of this run (and none twice) among everything on the server", async () => {
    const all = await everyone<ServiceIdentity>('PING');
    const mine = all.filter((p) => ours(p.name));
    expect(mine.map((p) => p.name).sort(), `this run's services among ${all.length} answers`).toEqual(SERVICES.map(nameOf).sort());
    for (const p of mine) {
      expect(p.type, `${p.name}: response type`).toBe('io.nats.micro.v1.ping_response');
      expect(p.id, `${p.name}: id`).toMatch(/^\S+$/);
      expect(p.version, `${p.name}: version`).toMatch(/^\d+\.\d+\.\d+(?:[-+]\S*)?$/);
    }
    expect(new Set(mine.map((p) => p.id)).size, 'instance ids are unique').toBe(mine.length);
  });

  it.each(SERVICES)('%s answers PING by name with name, id and version', async (service) => {
    const p = await one<ServiceIdentity>(svc.ping(nameOf(service)), service);
    expect(p).toMatchObject({ type: 'io.nats.micro.v1.ping_response', name: nameOf(service) });
    expect(p.id).toMatch(/^\S+$/);
    expect(p.version).toMatch(/^\d+\.\d+\.\d+/);
    // And by name and id: the same instance.
    const again = await one<ServiceIdentity>(svc.ping(nameOf(service), p.id), service);
    expect(again.id).toBe(p.id);
  });
});

describe('$SRV.INFO', () => {
  it.each(SERVICES)("%s lists its endpoints, on this run's subjects, exactly those of the contract", async (service) => {
    const info = await one<ServiceInfo>(svc.info(nameOf(service)), service);
    expect(info).toMatchObject({ type: 'io.nats.micro.v1.info_response', name: nameOf(service) });
    expect(info.description, `${service}: description`).toMatch(/\S/);
    expect(info.endpoints.length, `${service}: endpoints`).toBeGreaterThan(0);
    for (const e of info.endpoints) {
      expect(e.subject, `${service}: endpoint ${e.name}`).toMatch(new RegExp(`^${prefix()}\\.${service}\\.`));
      expect(e.subject, `${service}: endpoint ${e.name} is <prefix>.<service>.<name>`).toBe(`${prefix()}.${service}.${e.name}`);
      expect(e.queue_group, `${service}: endpoint ${e.name} is in a queue group (replicas share the load)`).toMatch(/\S/);
    }
    const contract = Object.values(subjects(prefix())[service]).sort();
    expect(info.endpoints.map((e) => e.subject).sort(), `${service}: subjects served vs. contracts' subjects`).toEqual(contract);
  });

  it("the bare $SRV.INFO answers include this run's five services, each with subjects under this run's prefix only", async () => {
    const all = await everyone<ServiceInfo>('INFO');
    const mine = all.filter((i) => ours(i.name));
    expect(mine.map((i) => i.name).sort()).toEqual(SERVICES.map(nameOf).sort());
    for (const i of mine) for (const e of i.endpoints) expect(e.subject.startsWith(`${prefix()}.`), `${i.name}: ${e.subject}`).toBe(true);
    // Another run's services never serve this run's subjects.
    const others = all.filter((i) => !ours(i.name));
    for (const i of others) for (const e of i.endpoints ?? []) expect(e.subject.startsWith(`${prefix()}.`), `${i.name} serves ${e.subject}`).toBe(false);
  });
});

describe('$SRV.STATS', () => {
  it('counts requests driven through the gateway, per endpoint, and the totals grow with more', async () => {
    const { api } = ctx;
    const { alice, bob, conv } = await conversationPair(api);

    // notifications: put-preferences; blocks: status-by-username; messages: send.
    expect((await api.put('/notifications/preferences', alice.token, { enabled: true, mutedConversationIds: [] })).status).toBe(200);
    expect((await api.get(`/blocks/status/${bob.username}`, alice.token)).status).toBe(200);
    expect((await api.post(`/conversations/${conv}/messages`, alice.token, { content: 'counted' })).status).toBe(201);

    const before = await allStats();
    for (const [service, s] of Object.entries(before)) {
      expect(s.type, service).toBe('io.nats.micro.v1.stats_response');
      expect(s.name, service).toBe(nameOf(service as ServiceName));
      expect(Number.isNaN(Date.parse(s.started)), `${service}: started`).toBe(false);
      for (const e of s.endpoints ?? []) expect(e.subject, `${service}: ${e.name}`).toBe(`${prefix()}.${service}.${e.name}`);
    }
    expect(endpointRequests(before.notifications, 'put-preferences')).toBeGreaterThan(0);
    expect(endpointRequests(before.blocks, 'status-by-username')).toBeGreaterThan(0);
    expect(endpointRequests(before.messages, 'send')).toBeGreaterThan(0);
    expect(endpointRequests(before.conversations, 'get-or-create')).toBeGreaterThan(0);
    const send = before.messages.endpoints!.find((e) => e.name === 'send')!;
    expect(send.processing_time, 'messages.send processing_time (ns)').toBeGreaterThan(0);
    expect(send.average_processing_time).toBeGreaterThan(0);

    // Three more of each.
    for (let i = 0; i < 3; i++) {
      expect((await api.put('/notifications/preferences', alice.token, { enabled: i % 2 === 0, mutedConversationIds: [] })).status).toBe(200);
      expect((await api.get(`/blocks/status/${bob.username}`, alice.token)).status).toBe(200);
      expect((await api.post(`/conversations/${conv}/messages`, bob.token, { content: `more ${i}` })).status).toBe(201);
    }
    const carol = await knownUser(api, 'carol');
    expect((await api.get(`/presence?userIds=${encodeURIComponent(carol.id)}`, alice.token)).status).toBe(200);

    const after = await allStats();
    expect(endpointRequests(after.notifications, 'put-preferences')).toBeGreaterThanOrEqual(endpointRequests(before.notifications, 'put-preferences') + 3);
    expect(endpointRequests(after.blocks, 'status-by-username')).toBeGreaterThanOrEqual(endpointRequests(before.blocks, 'status-by-username') + 3);
    expect(endpointRequests(after.messages, 'send')).toBeGreaterThanOrEqual(endpointRequests(before.messages, 'send') + 3);
    for (const service of SERVICES) {
      expect(totalRequests(after[service]), `${service}: total requests grew`).toBeGreaterThan(totalRequests(before[service]));
      // The same instance answered both times: the counts are of one running service, not a restart.
      expect(after[service].id, `${service}: instance id`).toBe(before[service].id);
      expect(after[service].started, `${service}: started`).toBe(before[service].started);
    }
  });
});

describe('/readyz', () => {
  it('is 200 naming NATS and every service while they all answer', async () => {
    const res = await fetch(`${ctx.stack.baseUrl}/readyz`);
    const body = (await res.json()) as { ready: boolean; checks: Record<string, string> };
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body.ready).toBe(true);
    for (const service of SERVICES) expect(body.checks[service], `readyz check for ${service}`).toBe('ok');
    expect(body.checks.nats).toBe('ok');
  });

  // Stops a service of the shared stack: keep this the last test of the file.
  it('is 503 naming blocks once blocks stops, and blocks no longer answers PING', async () => {
    await ctx.stack.services.blocks.stop();

    const started = Date.now();
    const res = await fetch(`${ctx.stack.baseUrl}/readyz`);
    const text = await res.text();
    expect(res.status, text).toBe(503);
    expect(Date.now() - started, '/readyz answers within its 1 s budget (plus slack)').toBeLessThan(2500);
    expect(text).toContain('blocks');
    const body = JSON.parse(text) as { ready: boolean; checks: Record<string, string> };
    expect(body.ready).toBe(false);
    expect(body.checks.blocks, 'the failed check names blocks').not.toBe('ok');
    for (const service of SERVICES.filter((s) => s !== 'blocks')) expect(body.checks[service], `${service} still answers`).toBe('ok');
    expect(body.checks.nats).toBe('ok');

    const mine = (await everyone<ServiceIdentity>('PING')).filter((p) => ours(p.name));
    expect(mine.map((p) => p.name).sort()).toEqual(SERVICES.filter((s) => s !== 'blocks').map(nameOf).sort());
  });
});
