#!/usr/bin/env node
// The `outbox` command. In a source checkout it runs the TypeScript sources through tsx; an installed
// package (or the Docker image) has only the compiled dist/ and runs that.
const path = require('node:path');
const fs = require('node:fs');
const source = path.join(__dirname, '..', 'cli', 'main.ts');
if (fs.existsSync(source)) {
  require('tsx/cjs');
  require(source);
} else {
  require(path.join(__dirname, '..', 'dist', 'cli', 'main.js'));
}
