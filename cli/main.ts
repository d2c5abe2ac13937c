import { redact } from '../core/redact';
import { auditGroup } from './commands/audit';
import { consoleCommand } from './commands/console';
import { migrateCommand } from './commands/migrate';
import { parkedGroup } from './commands/parked';
import { projectCommand, rebuildCommand, relayCommand } from './commands/run';
import { schemasGroup } from './commands/schemas';
import { statusCommand } from './commands/status';
import { runCli, type Entry } from './framework';

/** The `outbox` command line (bin/outbox.js loads this file); a config module may add `commands`. */
export const COMMANDS: Entry[] = [migrateCommand, relayCommand, projectCommand, rebuildCommand, schemasGroup, parkedGroup, auditGroup, statusCommand, consoleCommand];

export { runCli };

if (require.main === module || process.env.OUTBOX_CLI_MAIN === '1' || isBinEntry()) {
  const argv = process.argv.slice(2);
  const verbose = argv.includes('--verbose') || argv.includes('-v');
  // Process warnings (e.g. pg's sslmode notice) would add lines to stderr: shown with --verbose only.
  process.removeAllListeners('warning');
  process.on('warning', (w) => {
    if (verbose) process.stderr.write(`${redact(`outbox: warning: ${w.name}: ${w.message}`)}\n`);
  });
  runCli(COMMANDS, argv).then(
    (code) => {
      process.exitCode = code;
      // Flush stdout, then exit even if a client library left a socket or timer behind.
      process.stdout.write('', () => process.exit(code));
    },
    (err: unknown) => {
      process.stderr.write(`${redact(`outbox: ${String(err)}`)}\n`);
      process.exit(1);
    },
  );
}

function isBinEntry(): boolean {
  const entry = process.argv[1] ?? '';
  return /(^|[\\/])(outbox|outbox\.js)$/.test(entry);
}
