import pino, { type Logger } from 'pino';
import { redact, redactDeep } from './redact';

export type { Logger } from 'pino';

/**
 * The process logger. Components receive it (or a child of it) as a parameter and scope it with
 * `logger.child({ component: 'relay' })`; library code never creates its own or writes to the console.
 * Every string that reaches a log line passes through `redact` (URLs with passwords, registered secrets).
 */
export function createLogger(options: { level?: string; name?: string; destination?: pino.DestinationStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      name: options.name ?? 'kafka-outbox',
      base: { pid: process.pid },
      redact: {
        paths: ['password', '*.password', 'sasl.password', '*.sasl.password', 'config.*.password', 'authorization', '*.authorization'],
        censor: '***',
      },
      serializers: { err: (e: unknown) => redactDeep(e), error: (e: unknown) => redactDeep(e) },
      // Bindings of `logger.child({...})` are serialized once, outside logMethod: redact them here.
      onChild(child) {
        const c = child as unknown as Record<symbol, unknown>;
        const key = pino.symbols.chindingsSym;
        if (typeof c[key] === 'string') c[key] = redact(c[key] as string);
      },
      hooks: {
        logMethod(args, method) {
          const redacted = args.map((a) => (typeof a === 'string' ? redact(a) : redactDeep(a))) as Parameters<typeof method>;
          method.apply(this, redacted);
        },
      },
    },
    options.destination ?? pino.destination(2),
  );
}

/** A logger that drops everything (tests that do not care about output). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
