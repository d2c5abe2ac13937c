-- kafka-outbox projector: the event_ids a generation has applied are kept only near the checkpoint.
-- A re-published event (the relay re-sends what it published but could not mark delivered) arrives a
-- few batches after the original, never far behind it: each row now records where it was applied, and
-- the projector deletes those more than a window of offsets below the partition's checkpoint, so the
-- table stays bounded instead of growing by one row per event. Rows written before this migration have
-- no offset and are left alone (they go with their generation).
ALTER TABLE :projector_schema.projector_seen_events
  ADD COLUMN topic     text,
  ADD COLUMN partition integer,
  ADD COLUMN "offset"  bigint;

CREATE INDEX projector_seen_events_by_offset ON :projector_schema.projector_seen_events (projection, generation, topic, partition, "offset");
