import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'packages/*/test/**/*.test.ts', 'packages/*/test/**/*.test.tsx', 'services/*/test/**/*.test.ts'],
    pool: 'forks',
    // Builds the web chat when its sources changed: the browser tests load it from the gateway.
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    coverage: {
      provider: 'v8',
      include: ['packages/*/src/**', 'services/*/src/**'],
      // The web chat runs in the browser tests' Chromium, out of reach of V8 coverage in this process.
      exclude: ['**/main.ts', 'packages/web/**'],
      reporter: ['text-summary', 'text'],
    },
  },
});
