// Writes docs/configuration.md from the declarations in core/options.ts (`npm run docs:config`).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { renderConfigurationDoc } from '../core/options';

const file = path.join(__dirname, '..', 'docs', 'configuration.md');
writeFileSync(file, renderConfigurationDoc());
process.stdout.write(`wrote ${path.relative(process.cwd(), file)}\n`);
