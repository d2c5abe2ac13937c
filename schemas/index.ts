/** Event schemas: catalog, encoding/decoding through the registry, upcasters, registration and the compatibility check. */
export { loadCatalog, subjectName, defaultSchemasDir, envelopeSchemaFor, DEFAULT_NAMESPACE, type CatalogEntry, type SchemaCatalog, type CatalogOptions } from './catalog';
export { createEventEncoder, envelopeValue, toMicros, type EventEncoder, type EventEncoderOptions, type EncodeResult, type OutboxEventForEncoding } from './encode-event';
export { createEventDecoder, type EventDecoder, type EventDecoderOptions, type DecodeResult } from './decode-event';
export { createUpcasterRegistry, defaultUpcasters, upcasterRegistryFrom, type Upcaster, type UpcasterRegistry } from './upcasters';
export { registerSchemas, type RegisteredSchema, type RegisterSchemasOptions, type RegisterReport, type RegisterRejection } from './register-schemas';
export { checkSchemas, formatCheckReport, type CheckReport, type CheckSchemasOptions, type CompatibilityProblem, type SubjectStatus } from './check-compatibility';
export {
  COMPATIBILITY_LEVELS,
  DEFAULT_COMPATIBILITY,
  compatibilityFor,
  parseCompatibility,
  explainIncompatibility,
  type CompatibilityConfig,
  type CompatibilityLevel,
  type Incompatibility,
} from './compatibility';
export { validationProblems } from './validate';
