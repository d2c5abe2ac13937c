-- Aggregate snapshots belong to the generation of the projection whose events they were folded from
-- (audit_log). A rebuild folds new snapshots in its shadow generation, and loadAggregate reads those of
-- the live generation only: a snapshot folded by an old generation (say, with a buggy upcaster) is never
-- used once a rebuilt generation is live. Existing snapshots are attributed to the live audit_log
-- generation (the only generation they could have been used with).
ALTER TABLE :projector_schema.projector_snapshots
  ADD COLUMN projection text NOT NULL DEFAULT 'audit_log',
  ADD COLUMN generation integer NOT NULL DEFAULT 1;

UPDATE :projector_schema.projector_snapshots s SET generation = p.live_generation
  FROM :projector_schema.projector_projections p WHERE p.projection = s.projection;

ALTER TABLE :projector_schema.projector_snapshots
  DROP CONSTRAINT projector_snapshots_pkey,
  ADD PRIMARY KEY (projection, generation, aggregate_type, aggregate_id, reducer_version, aggregate_version),
  ALTER COLUMN projection DROP DEFAULT,
  ALTER COLUMN generation DROP DEFAULT;
