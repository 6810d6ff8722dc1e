import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // The nemesis runs with `npm run chaos` (which sets CHAOS_SECONDS), not in `npm test`:
          // its runs still find violations now and then (docs/reliability.md, issue 16 open),
          // and a suite that fails at random proves nothing.
          exclude: [...configDefaults.exclude, ...(process.env.CHAOS_SECONDS ? [] : ['test/integration/chaos.test.ts'])],
          // Real containers on a 2-core machine: one file at a time, generous start-up.
          fileParallelism: false,
          hookTimeout: 180_000,
          testTimeout: 120_000,
          env: { TESTCONTAINERS_RYUK_DISABLED: 'true' },
        },
      },
    ],
  },
});
