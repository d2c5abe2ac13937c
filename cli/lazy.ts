/**
 * The parts of the library that cli/ loads only when a command runs them: the Avro code (avsc) behind the
 * schema catalog, the decoder and the registry commands, the relay, the projector's runtime and the web
 * console. A command line that does not use them (`outbox --help`, `outbox <command> --help`, `migrate`,
 * `parked`, `audit`) starts without loading them. Everything else in cli/ is imported statically: this is
 * the one file of cli/ that calls require() (test/architecture/imports.test.ts checks it).
 */
const parts = {
  /** `loadCatalog` (schemas/catalog.ts, avsc). */
  catalog: () => require('../schemas/catalog') as typeof import('../schemas/catalog'),
  /** `createEventDecoder` (schemas/decode-event.ts, avsc and the registry client). */
  decoder: () => require('../schemas/decode-event') as typeof import('../schemas/decode-event'),
  /** `checkSchemas`, `registerSchemas` and the rest of schemas/. */
  schemas: () => require('../schemas/index') as typeof import('../schemas/index'),
  /** `startRelay`. */
  relay: () => require('../relay/index') as typeof import('../relay/index'),
  /** `startProjector`, `rebuildProjection`. */
  projector: () => require('../projector/index') as typeof import('../projector/index'),
  /** `startConsole`. */
  console: () => require('../console/index') as typeof import('../console/index'),
};

export type LazyPart = keyof typeof parts;

/** The module of `part`, loaded on first use (Node's module cache keeps it). */
export function load<P extends LazyPart>(part: P): ReturnType<(typeof parts)[P]> {
  return parts[part]() as ReturnType<(typeof parts)[P]>;
}
