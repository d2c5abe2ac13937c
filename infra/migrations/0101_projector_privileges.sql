-- The projector's role (:projector_role, created by infra/migrate.ts; see 0004_least_privilege.sql):
-- its tables in :projector_schema, the read-model views it creates there, and the schemas of its
-- projections' generations (<projector schema>_prj_<projection>_g<N>), which it creates itself.
-- Rendered by infra/migrate.ts (:projector_schema and :projector_role quoted).

GRANT USAGE, CREATE ON SCHEMA :projector_schema TO :projector_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON
  :projector_schema.projector_projections, :projector_schema.projector_generations,
  :projector_schema.projector_offsets, :projector_schema.projector_seen_events,
  :projector_schema.projector_dead_letters, :projector_schema.projector_snapshots
  TO :projector_role;
-- Each generation of a projection lives in a schema of its own, created by the projector. Only the
-- database's owner (or a superuser) may grant this; otherwise a DBA runs the statement in the warning.
DO $$
DECLARE
  stmt text := 'GRANT CREATE ON DATABASE ' || pg_catalog.quote_ident(pg_catalog.current_database()) || ' TO :projector_role';
BEGIN
  EXECUTE stmt;
  IF NOT pg_catalog.has_database_privilege(':projector_role'::pg_catalog.regrole::pg_catalog.oid, pg_catalog.current_database(), 'CREATE') THEN
    RAISE WARNING 'the projector role may not create schemas in this database; run: %', stmt;
  END IF;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE WARNING 'the projector role may not create schemas in this database; run: %', stmt;
END
$$;
