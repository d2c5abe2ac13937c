// Two projects, each test file in exactly one: `unit` (pure logic, no servers: no global setup, runs
// in seconds; `jest --selectProjects unit`) and `integration` (everything else, against the real
// servers: the global setup ensures the stack and builds the template database). `jest` alone runs both.

/** Test files that need no server (no database, broker, registry or child process). */
const UNIT_TESTS = [
  'test/support/ledger-verifier.test.ts',
  'test/core/config.test.ts',
  'test/core/retry.test.ts',
  'test/core/kafka-log.test.ts',
  'test/core/kafka-record-encoding.test.ts',
  'test/core/options.test.ts',
  'test/core/tracing.test.ts',
  'test/architecture/imports.test.ts',
  'test/infra/grafana-dashboard.test.ts',
  'test/schemas/catalog.test.ts',
  'test/cli/render-progress.test.ts',
  'test/cli/relay-metrics.test.ts',
  'test/cli/state-diff.test.ts',
  'test/relay/sharded-sink.test.ts',
  'test/console/render.test.ts',
  'test/relay/shard-plan.test.ts',
  'test/relay/pipeline-order.test.ts',
];

const common = {
  testEnvironment: '<rootDir>/test/support/environment.js',
  // Type checking is `tsc --noEmit` (part of npm test); the transform only strips types.
  transform: { '^.+\\.ts$': ['ts-jest', {}] },
};

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** @type {import('jest').Config} */
module.exports = {
  testTimeout: 120000,
  // Integration tests share one broker and one PostgreSQL on a 2-core machine: npm test runs them in band.
  maxWorkers: 1,
  projects: [
    {
      ...common,
      displayName: 'unit',
      roots: ['<rootDir>/test'],
      testMatch: UNIT_TESTS.map((f) => `<rootDir>/${f}`),
    },
    {
      ...common,
      displayName: 'integration',
      globalSetup: '<rootDir>/test/support/global-setup.ts',
      roots: ['<rootDir>/test'],
      testMatch: ['**/*.test.ts'],
      testPathIgnorePatterns: ['/node_modules/', ...UNIT_TESTS.map((f) => `/${escape(f)}$`)],
    },
  ],
};
