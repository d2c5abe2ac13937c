/**
 * TypeScript types of the event payloads, declared by hand next to the .avsc files they mirror
 * (field names are the Avro field names, snake_case, exactly as in the outbox payload JSON).
 * `test/schemas/types.test.ts` checks that every field declared here exists in the latest .avsc.
 */
import type { DecodedEvent } from '../../event/envelope';

// ---- user aggregate, every version (what a writer may append) -----------------------------------
export interface UserRegisteredV1 {
  email: string;
  name: string;
}
export interface UserEmailChangedV1 {
  email: string;
}
export interface UserEmailChangedV2 {
  /** v1's `email` (Avro alias). */
  new_email: string;
  /** added in v2, default false. */
  verified: boolean;
}
export interface UserRenamedV1 {
  name: string;
}
export interface UserRenamedV2 {
  first_name: string;
  last_name: string;
}
export interface UserDeactivatedV1 {
  reason: string;
}

/** Payload of every (event type, version) a writer may append. */
export interface PayloadsByVersion {
  UserRegistered: { 1: UserRegisteredV1 };
  UserEmailChanged: { 1: UserEmailChangedV1; 2: UserEmailChangedV2 };
  UserRenamed: { 1: UserRenamedV1; 2: UserRenamedV2 };
  UserDeactivated: { 1: UserDeactivatedV1 };
}

/** Payload of each event type at its latest version: what a consumer sees after resolution and upcasting. */
export interface LatestPayloads {
  UserRegistered: UserRegisteredV1;
  UserEmailChanged: UserEmailChangedV2;
  UserRenamed: UserRenamedV2;
  UserDeactivated: UserDeactivatedV1;
}

export type KnownEventType = keyof LatestPayloads;

/** A decoded user event: the envelope (event/envelope.ts) with a payload in its latest shape. */
export type UserEvent = {
  [K in KnownEventType]: DecodedEvent<LatestPayloads[K]> & { eventType: K };
}[KnownEventType];
