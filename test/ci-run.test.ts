import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const script = readFileSync(new URL('../.ci/run', import.meta.url), 'utf8');
const lines = script.split('\n');

/** The Chromium block of .ci/run, from its `if` to its `fi`, with the checked path swapped for `chromium`. */
function chromiumBlock(chromium: string): string {
  const start = lines.findIndex((l) => /^if .*\/usr\/bin\/chromium/.test(l));
  expect(start, '.ci/run checks /usr/bin/chromium').toBeGreaterThanOrEqual(0);
  const end = lines.findIndex((l, i) => i > start && l === 'fi');
  return lines.slice(start, end + 1).join('\n').replaceAll('/usr/bin/chromium', chromium);
}

const dir = mkdtempSync(join(tmpdir(), 'chat-ci-run-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Runs the block with a stand-in apt-get that records each call (and the
 * DEBIAN_FRONTEND it saw) and fails `install` until `update` has run when
 * `stale` is set.
 */
function run(opts: { present: boolean; stale: boolean }): string[] {
  const log = join(dir, `calls-${Math.random().toString(36).slice(2)}`);
  const chromium = join(dir, 'chromium');
  rmSync(chromium, { force: true });
  if (opts.present) {
    writeFileSync(chromium, '#!/bin/sh\n');
    chmodSync(chromium, 0o755);
  }
  const bin = join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  writeFileSync(
    join(bin, 'apt-get'),
    `#!/bin/sh
echo "$DEBIAN_FRONTEND apt-get $*" >> "${log}"
if [ "$1" = update ]; then touch "${log}.updated"; exit 0; fi
if [ "${opts.stale ? 1 : 0}" = 1 ] && [ ! -e "${log}.updated" ]; then exit 100; fi
exit 0
`,
  );
  chmodSync(join(bin, 'apt-get'), 0o755);
  writeFileSync(log, '');
  execFileSync('bash', ['-c', `set -euo pipefail\n${chromiumBlock(chromium)}`], {
    env: { PATH: `${bin}:/usr/bin:/bin` },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return readFileSync(log, 'utf8').split('\n').filter(Boolean);
}

describe('.ci/run installs Chromium when it is missing', () => {
  it('comes before npm ci, and the rest is unchanged: npm ci then npm test', () => {
    const chromium = lines.findIndex((l) => l.includes('/usr/bin/chromium'));
    const npm = lines.map((l) => l.trim()).filter((l) => /^npm /.test(l));
    expect(npm).toEqual(['npm ci', 'npm test']);
    expect(chromium).toBeLessThan(lines.indexOf('npm ci'));
  });

  it('does nothing when /usr/bin/chromium is there', () => {
    expect(run({ present: true, stale: false })).toEqual([]);
  });

  it('installs it, non-interactively, without updating the lists first', () => {
    expect(run({ present: false, stale: false })).toEqual(['noninteractive apt-get install -y chromium']);
  });

  it('updates the lists and installs again only when the first install fails', () => {
    expect(run({ present: false, stale: true })).toEqual([
      'noninteractive apt-get install -y chromium',
      'noninteractive apt-get update',
      'noninteractive apt-get install -y chromium',
    ]);
  });
});

/** The kubectl block of .ci/run, from its `if` to its `fi`. */
function kubectlBlock(): string {
  const start = lines.findIndex((l) => /^if ! command -v kubectl/.test(l));
  expect(start, '.ci/run checks for kubectl').toBeGreaterThanOrEqual(0);
  const end = lines.findIndex((l, i) => i > start && l === 'fi');
  return lines.slice(start, end + 1).join('\n');
}

/** Runs the kubectl block with only a stand-in apt-get (and, when `present`, a kubectl) on PATH. */
function runKubectl(opts: { present: boolean; stale: boolean }): string[] {
  const log = join(dir, `kubectl-calls-${Math.random().toString(36).slice(2)}`);
  const bin = join(dir, `kbin-${Math.random().toString(36).slice(2)}`);
  mkdirSync(bin, { recursive: true });
  writeFileSync(
    join(bin, 'apt-get'),
    `#!/bin/sh
echo "$DEBIAN_FRONTEND apt-get $*" >> "${log}"
if [ "$1" = update ]; then : > "${log}.updated"; exit 0; fi
if [ "${opts.stale ? 1 : 0}" = 1 ] && [ ! -e "${log}.updated" ]; then exit 100; fi
exit 0
`,
  );
  chmodSync(join(bin, 'apt-get'), 0o755);
  if (opts.present) {
    writeFileSync(join(bin, 'kubectl'), '#!/bin/sh\n');
    chmodSync(join(bin, 'kubectl'), 0o755);
  }
  writeFileSync(log, '');
  execFileSync('/bin/bash', ['-c', `set -euo pipefail\n${kubectlBlock()}`], { env: { PATH: bin }, stdio: ['ignore', 'ignore', 'inherit'] });
  return readFileSync(log, 'utf8').split('\n').filter(Boolean);
}

describe('.ci/run installs kubectl (for test/deploy-k8s.test.ts) when it is missing', () => {
  it('comes before npm ci', () => {
    const at = lines.findIndex((l) => l.includes('command -v kubectl'));
    expect(at).toBeGreaterThanOrEqual(0);
    expect(at).toBeLessThan(lines.indexOf('npm ci'));
  });

  it('does nothing when kubectl is on PATH', () => {
    expect(runKubectl({ present: true, stale: false })).toEqual([]);
  });

  it("installs Debian's kubernetes-client, non-interactively, without updating the lists first", () => {
    expect(runKubectl({ present: false, stale: false })).toEqual(['noninteractive apt-get install -y kubernetes-client']);
  });

  it('updates the lists and installs again only when the first install fails', () => {
    expect(runKubectl({ present: false, stale: true })).toEqual([
      'noninteractive apt-get install -y kubernetes-client',
      'noninteractive apt-get update',
      'noninteractive apt-get install -y kubernetes-client',
    ]);
  });
});
