// The proof suite (issue 8): every fault scenario under test/faults — the long *.fault.ts variants and
// the short *.test.ts ones that `npm test` also runs. `npm run test:faults` (≤ 15 minutes, in band).
const base = require('./jest.config');

/** @type {import('jest').Config} */
module.exports = {
  ...base,
  roots: ['<rootDir>/test/faults'],
  testMatch: ['**/*.fault.ts', '**/*.test.ts'],
  testTimeout: 600000,
};
