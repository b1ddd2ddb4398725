import { describe, expect, it } from 'vitest';
import { createLogger } from '@chat/platform';
import { SendBatcher } from '../src/send-batcher';
import { SendDeadlineError, type SendItem, type SendResult } from '../src/messages.repository';

// The batcher's own logic (who waits, who goes together, what a failed batch does); the SQL it drives is tested through the stack.
const item = (id: string): SendItem => ({ id, conversationId: 'c', sender: 's', content: id, clientMessageId: null, eventId: id, trace: null, deadline: null });
const log = createLogger('test', 'silent');

function recorder(fail: (items: readonly SendItem[]) => unknown = () => undefined) {
  const calls: string[][] = [];
  const release: Array<() => void> = [];
  const run = async (items: readonly SendItem[]): Promise<SendResult[]> => {
    calls.push(items.map((i) => i.id));
    await new Promise<void>((r) => release.push(r));
    const err = fail(items);
    if (err) throw err;
    return items.map((i) => ({ status: 'existing', message: { id: i.id } as never }));
  };
  return { calls, release, run };
}

describe('SendBatcher', () => {
  it('a lone send goes at once; sends arriving while batches run go together in the next batch', async () => {
    const r = recorder();
    const b = new SendBatcher(r.run, log);
    const all = ['a', 'b', 'c', 'd', 'e'].map((id) => b.submit(item(id)));
    expect(r.calls).toEqual([['a'], ['b']]);
    r.release.shift()!();
    await new Promise((res) => setImmediate(res));
    expect(r.calls).toEqual([['a'], ['b'], ['c', 'd', 'e']]);
    while (r.release.length) r.release.shift()!(), await new Promise((res) => setImmediate(res));
    expect((await Promise.all(all)).map((x) => (x as { message: { id: string } }).message.id)).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('a batch that fails as a whole is retried one send at a time; a lone send past its deadline is expired, other errors are its own', async () => {
    const boom = new Error('refused');
    const r = recorder((items) => (items.length > 1 ? new SendDeadlineError() : items[0]!.id === 'late' ? new SendDeadlineError() : items[0]!.id === 'bad' ? boom : undefined));
    const b = new SendBatcher(r.run, log);
    const first = [b.submit(item('x')), b.submit(item('y'))];
    const rest = Promise.allSettled([b.submit(item('ok')), b.submit(item('late')), b.submit(item('bad'))]);
    const settle = async () => {
      for (let i = 0; i < 20; i++) {
        while (r.release.length) r.release.shift()!();
        await new Promise((res) => setImmediate(res));
      }
    };
    await settle();
    await Promise.all(first);
    expect(r.calls).toContainEqual(['ok', 'late', 'bad']);
    expect(r.calls.slice(-3).sort()).toEqual([['bad'], ['late'], ['ok']]);
    const [ok, late, bad] = await rest;
    expect(ok).toMatchObject({ status: 'fulfilled', value: { status: 'existing' } });
    expect(late).toMatchObject({ status: 'fulfilled', value: { status: 'expired' } });
    expect(bad).toMatchObject({ status: 'rejected', reason: boom });
  });
});

describe('SendBatcher and deadlocks', () => {
  it('a lone send chosen as a deadlock victim is tried again, and only a few times', async () => {
    let calls = 0;
    const deadlock = Object.assign(new Error('deadlock detected'), { code: '40P01' });
    const flaky = new SendBatcher(async (items) => {
      if (++calls === 1) throw deadlock;
      return items.map((i) => ({ status: 'existing', message: { id: i.id } as never }));
    }, log);
    await expect(flaky.submit(item('once'))).resolves.toMatchObject({ status: 'existing' });
    expect(calls).toBe(2);

    let stuck = 0;
    const always = new SendBatcher(async () => {
      stuck++;
      throw deadlock;
    }, log);
    await expect(always.submit(item('never'))).rejects.toBe(deadlock);
    expect(stuck).toBe(4);
  });
});
