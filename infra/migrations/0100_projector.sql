-- kafka-outbox projector: checkpoints, generations of projection tables, dead letters and aggregate
-- snapshots, in the projector's own schema (:projector_schema, apart from the history in :schema). The
-- projection-owned tables themselves (audit_log, users, ...) are created by the projector in one
-- PostgreSQL schema per generation (<projector schema>_prj_<projection>_g<N>) and exposed under their
-- plain name as a view in :projector_schema; a rebuild fills a new generation and swaps the view atomically.

-- Which generation of a projection is live (what the views in :projector_schema point to).
CREATE TABLE :projector_schema.projector_projections (
  projection      text        PRIMARY KEY,
  live_generation integer     NOT NULL,
  updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Every generation ever created: live, building (a rebuild in progress) or retired (swapped out, dropped).
CREATE TABLE :projector_schema.projector_generations (
  projection  text        NOT NULL,
  generation  integer     NOT NULL,
  pg_schema   text        NOT NULL,
  status      text        NOT NULL CHECK (status IN ('live', 'building', 'retired')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  swapped_at  timestamptz,
  PRIMARY KEY (projection, generation)
);

-- The checkpoint, the truth about what a generation has applied: the last applied offset of each
-- partition, written in the same transaction as the handlers' effects.
CREATE TABLE :projector_schema.projector_offsets (
  projection  text        NOT NULL,
  generation  integer     NOT NULL,
  topic       text        NOT NULL,
  partition   integer     NOT NULL,
  last_offset bigint      NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (projection, generation, topic, partition)
);

-- event_ids a generation has applied (a re-published event at a new offset is skipped).
CREATE TABLE :projector_schema.projector_seen_events (
  projection text    NOT NULL,
  generation integer NOT NULL,
  event_id   text    NOT NULL,
  PRIMARY KEY (projection, generation, event_id)
);

-- Every message sent to a dead-letter topic. Decode failures are shared by all projections of a topic
-- (projection = ''), handler rejections are per projection: the key makes each land in the DLQ once.
CREATE TABLE :projector_schema.projector_dead_letters (
  topic         text        NOT NULL,
  partition     integer     NOT NULL,
  "offset"      bigint      NOT NULL,
  projection    text        NOT NULL DEFAULT '',
  kind          text        NOT NULL CHECK (kind IN ('bad_magic', 'unknown_schema_id', 'undecodable', 'handler_rejected')),
  reason        text        NOT NULL,
  dlq_topic     text        NOT NULL,
  event_id      text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (topic, partition, "offset", projection)
);

-- Aggregate snapshots: the state of an aggregate after `aggregate_version`, by reducer version.
CREATE TABLE :projector_schema.projector_snapshots (
  aggregate_type    text        NOT NULL,
  aggregate_id      text        NOT NULL,
  aggregate_version bigint      NOT NULL,
  reducer_version   integer     NOT NULL,
  schema_version    integer     NOT NULL,
  state             jsonb       NOT NULL,
  created_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (aggregate_type, aggregate_id, reducer_version, aggregate_version)
);
