import type { RelayStage } from './relay-step';

/** Hooks for metrics; every method is optional. */
export interface RelayObserver {
  /** `latenciesMs[i]` (commit → ack) and `topics[i]` belong to the same published event. */
  published?(count: number, latenciesMs: number[], topics?: string[]): void;
  parked?(eventId: string, reason: string): void;
  failed?(stage: RelayStage, err: unknown): void;
  leadership?(isLeader: boolean): void;
  /** The loop goes round (liveness: core/lifecycle.ts createLiveness). */
  heartbeat?(): void;
}

/** What the loop needs from leadership (acquire-leadership.ts implements it). */
export interface LeadershipPort {
  readonly isLeader: boolean;
  /** `<database>.<schema>` of the outbox, known once connected. */
  readonly outboxName: string | undefined;
  tryAcquire(): Promise<boolean>;
  /** Throws OutboxError('FENCED') when this instance no longer holds leadership. */
  verify(): Promise<void>;
  /**
   * `verify` decides what the next claim may take (a sharded relay's handover: the shards it claims
   * from change at a verify), so the claim must wait for it. Otherwise (one leader, whose claim is the
   * whole queue) the check and the claim, a read, run at once, and a failed check discards the claim.
   */
  readonly verifyShapesClaim?: boolean;
  release(): Promise<void>;
}
