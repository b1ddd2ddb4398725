import { describe, expect, it } from 'vitest';
import { runChaos, summaryLine } from '../scripts/chaos/run';

/**
 * The reduced form of `npm run chaos`: the real processes (two messages
 * replicas, two gateways, one of each other service) on a 3-node NATS
 * cluster of the test's own with streams at 3 replicas, under ~50 msg/s over
 * resuming WebSockets plus REST reads; each fault once, each checked against
 * PostgreSQL as the full run does. PostgreSQL and Redis are the machine's,
 * isolated by a database and a prefix of the run's own (restarting them is
 * the full run's business).
 */
describe('chaos, reduced: faults under load lose nothing and double nothing', () => {
  it('survives the loss of the NATS node leading the event stream, SIGKILL of a messages replica and SIGKILL of a gateway holding half the sockets', async () => {
    const lines: string[] = [];
    const report = await runChaos({
      faults: ['nats-leader', 'kill:messages-1', 'kill:gateway-1'],
      rate: 50,
      restRate: 5,
      pairs: 20,
      offlinePairs: 2,
      phaseMs: 12_000,
      replicas: { messages: 2 },
      gateways: 2,
      ownServers: false,
      log: (line) => lines.push(line),
    });
    const detail = [...lines, ...report.problems].join('\n');
    expect(report.results.map((r) => r.fault), detail).toEqual([
      'SIGKILL the NATS node leading the event stream',
      'SIGKILL messages-1',
      'SIGKILL gateway-1 (half the sockets)',
    ]);
    for (const r of report.results) {
      // Traffic flowed through every fault, and every send was answered.
      expect(r.sent, summaryLine(r)).toBeGreaterThan(300);
      expect(r.acked, summaryLine(r)).toBe(r.sent);
      // Each reached its receiver: the socket of an online one, a notification for one who never connects.
      expect(r.notified, summaryLine(r)).toBeGreaterThan(0);
      expect(r.delivered + r.notified, summaryLine(r)).toBe(r.acked);
    }
    expect(report.lost, detail).toBe(0);
    expect(report.doubled, detail).toBe(0);
    expect(report.problems, detail).toEqual([]);
    expect(report.whole.lost + report.whole.doubled, detail).toBe(0);
  }, 300_000);
});
