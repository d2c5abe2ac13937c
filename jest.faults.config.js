// The proof suite: every fault scenario under test/faults — the long *.fault.ts variants and the short
// *.test.ts ones that `npm test` also runs. `npm run test:faults` (≤ 15 minutes, in band).

/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: '<rootDir>/test/support/environment.js',
  transform: { '^.+\\.ts$': ['ts-jest', {}] },
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  roots: ['<rootDir>/test/faults'],
  testMatch: ['**/*.fault.ts', '**/*.test.ts'],
  testTimeout: 600000,
  maxWorkers: 1,
};
