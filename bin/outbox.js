#!/usr/bin/env node
// The `outbox` command. The published package ships only the compiled dist/ (no .ts sources, no tsx), so
// it always runs dist/cli/main.js. A source checkout with its dev dependencies installed runs the
// TypeScript sources through tsx instead, so that a dist/ left behind by `npm run build` or `npm pack`
// can never run stale code in place of what the checkout holds.
const path = require('node:path');
const fs = require('node:fs');
const root = path.join(__dirname, '..');
const source = path.join(root, 'cli', 'main.ts');
const compiled = path.join(root, 'dist', 'cli', 'main.js');

function tsxLoader() {
  try {
    return require.resolve('tsx/cjs', { paths: [root] });
  } catch {
    return undefined;
  }
}

const loader = fs.existsSync(source) ? tsxLoader() : undefined;
if (loader) {
  require(loader);
  require(source);
} else if (fs.existsSync(compiled)) {
  require(compiled);
} else {
  process.stderr.write(
    `outbox: ${path.relative(process.cwd(), compiled) || compiled} not found. In a source checkout run \`npm ci\` (tsx runs the sources) or \`npm run build\`.\n`,
  );
  process.exit(1);
}
