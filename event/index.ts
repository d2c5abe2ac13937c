/**
 * The event: its envelope (the one type every component uses), its outbox row, its Kafka headers, its
 * canonical encoding and its hash chain. Neutral ground: imported by the writer, the relay, the schema
 * layer, the projector and the audit tools, importing none of them.
 */
export type { EventEnvelope, StoredEvent, DecodedEvent, ReducibleEvent } from './envelope';
export { storedEventColumns, storedEventFromRow, type StoredEventRow } from './outbox-row';
export { EVENT_HEADERS, envelopeHeaders, headerText, metadataFromHeaders, type RawHeaders } from './headers';
export { canonicalEncoding, canonicalJsonb, canonicalTimestamp, assertJsonSafe, type ChainFields } from './canonical';
export { ZERO_HASH, chainFieldsOf, computeHash, toHashBuffer, verifyEventLink, type LinkEvent, type LinkResult } from './hash-chain';
