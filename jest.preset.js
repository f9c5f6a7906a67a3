// Shared jest settings for every workspace: @swc/jest for speed (types are checked
// separately by `tsc --noEmit`), a per-file database and key prefix from @safepkg/testkit.
const path = require('node:path');

/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: path.join(__dirname, 'packages/testkit/environment.js'),
  transform: {
    '^.+\\.ts$': [
      '@swc/jest',
      { jsc: { parser: { syntax: 'typescript' }, target: 'es2023' }, module: { type: 'commonjs' } },
    ],
  },
  moduleFileExtensions: ['ts', 'js', 'json'],
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  // Tests run against the workspaces' sources, never stale dist output.
  moduleNameMapper: {
    '^@safepkg/core$': path.join(__dirname, 'packages/core/src/index.ts'),
    '^@safepkg/testkit$': path.join(__dirname, 'packages/testkit/src/index.ts'),
    '^@safepkg/pg-process$': path.join(__dirname, 'packages/pg-process/src/index.ts'),
  },
  testTimeout: 30000,
};
