-- Least privilege, end to end: one role per kind of process, each with only the rights it uses. All
-- roles are NOLOGIN group roles, created by infra/migrate.ts when missing; grant them to login roles.
--
--   :owner_role      owns the history's tables and functions; the trigger functions run as it. Nobody
--                    needs to log in as it (the migrating user is made a member of it).
--   :app_role        the services that write events: INSERT, SELECT on outbox, SELECT on the heads.
--   :relay_role      the relay: reads the history, updates and deletes its delivery rows, refreshes
--                    their statistics through outbox_analyze_delivery(); cannot change the history.
--   :projector_role  the projector: reads the history; its tables and views in :projector_schema;
--                    creates its generation schemas (CREATE on the database); see 0101.
--
-- Rendered by infra/migrate.ts (:schema, :projector_schema and the roles quoted).

-- ---------------------------------------------------------------------------------------------------
-- The owner. Until now the objects belonged to whoever ran the migrations (often a superuser), so the
-- SECURITY DEFINER trigger functions ran with that user's rights.
-- CREATE too: a new owner must be allowed to create in the objects' schema (and later migrations create as it).
GRANT USAGE, CREATE ON SCHEMA :schema TO :owner_role;
ALTER TABLE :schema.outbox OWNER TO :owner_role; -- with its sequence, indexes and triggers
ALTER TABLE :schema.outbox_aggregates OWNER TO :owner_role;
ALTER TABLE :schema.outbox_delivery OWNER TO :owner_role;
ALTER FUNCTION :schema.outbox_netstring(text) OWNER TO :owner_role;
ALTER FUNCTION :schema.outbox_canonical_time(timestamptz) OWNER TO :owner_role;
ALTER FUNCTION :schema.outbox_canonical_encoding(uuid, text, text, bigint, text, integer, timestamptz, text, text, text, text, text, jsonb) OWNER TO :owner_role;
ALTER FUNCTION :schema.outbox_before_insert() OWNER TO :owner_role;
ALTER FUNCTION :schema.outbox_after_insert() OWNER TO :owner_role;
ALTER FUNCTION :schema.outbox_reject_change() OWNER TO :owner_role;

-- ---------------------------------------------------------------------------------------------------
-- The relay. ANALYZE is reserved to the owner: the relay refreshes the queue's statistics through
-- this function (same pinned search_path as the trigger functions).
CREATE FUNCTION :schema.outbox_analyze_delivery() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  ANALYZE :schema.outbox_delivery;
END
$$;
ALTER FUNCTION :schema.outbox_analyze_delivery() OWNER TO :owner_role;
REVOKE ALL ON FUNCTION :schema.outbox_analyze_delivery() FROM PUBLIC;

GRANT USAGE ON SCHEMA :schema TO :relay_role;
GRANT SELECT ON :schema.outbox TO :relay_role;
GRANT SELECT, UPDATE, DELETE ON :schema.outbox_delivery TO :relay_role;
GRANT EXECUTE ON FUNCTION :schema.outbox_analyze_delivery() TO :relay_role;

-- ---------------------------------------------------------------------------------------------------
-- The projector.
GRANT USAGE ON SCHEMA :schema TO :projector_role;
GRANT SELECT ON :schema.outbox TO :projector_role;
-- Its own schema's tables, and CREATE on the database: 0101_projector_privileges.sql (after 0100 creates them).
