import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, terminalDestination } from '../src/logger';

function fakeStream(isTTY: boolean) {
  const out = new PassThrough() as PassThrough & { isTTY?: boolean };
  out.isTTY = isTTY;
  let text = '';
  out.on('data', (c: Buffer) => (text += c.toString()));
  return { out: out as unknown as NodeJS.WriteStream, text: () => text };
}

describe('log output', () => {
  it('is readable (pino-pretty) on a terminal', async () => {
    const tty = fakeStream(true);
    const destination = await terminalDestination(tty.out);
    expect(destination).toBeDefined();
    createLogger('gateway', 'info', destination).info({ requestId: 'r-1' }, 'gateway ready');
    await new Promise((r) => setTimeout(r, 50));
    const plain = tty.text().replace(/\u001b\[[0-9;]*m/g, '');
    expect(plain).toMatch(/INFO.*gateway ready/);
    expect(plain).toContain('requestId: "r-1"');
    expect(() => JSON.parse(plain)).toThrow();
  });

  it('is JSON lines anywhere else (a pipe, a file, a container)', async () => {
    expect(await terminalDestination(fakeStream(false).out)).toBeUndefined();
  });
});
