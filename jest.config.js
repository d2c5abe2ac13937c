/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: '<rootDir>/test/support/environment.js',
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // Type checking is `tsc --noEmit` (part of npm test); the transform only strips types.
  transform: { '^.+\\.ts$': ['ts-jest', {}] },
  testTimeout: 120000,
  // Integration tests share one broker and one PostgreSQL on a 2-core machine: npm test runs them in band.
  maxWorkers: 1,
};
