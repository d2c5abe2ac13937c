// The proof suite: every fault scenario under test/faults — the long *.fault.ts variants and the short
// *.test.ts ones that `npm test` also runs. `npm run test:faults` (about 26 minutes on a 2-core box at load 5–11, in band).

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
