-- The delivery queue in shards, so that several relay instances can publish at once (active-active).
-- Each event's shard is a hash of its aggregate (aggregate_type, aggregate_id) modulo the shard count,
-- so all the events of one aggregate are in one shard, and one relay instance at a time publishes a
-- shard (relay/own-shards.ts): per-aggregate order holds. The shard count is fixed here, at migrate
-- time (OUTBOX_RELAY_SHARDS, default 32): changing it afterwards would move an aggregate's later events
-- to another shard while its earlier ones may still be pending, so it is not supported.
-- The plain-SQL INSERT contract of the history does not change: the AFTER INSERT trigger fills the shard.
-- Rendered by infra/migrate.ts (:schema, the roles quoted; :relay_shards the shard count).

CREATE TABLE :schema.outbox_sharding (
  singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  shard_count integer NOT NULL CHECK (shard_count BETWEEN 1 AND 1024)
);
INSERT INTO :schema.outbox_sharding (shard_count) VALUES (:relay_shards);
COMMENT ON TABLE :schema.outbox_sharding IS
  'kafka-outbox: the number of relay shards, fixed at migrate time (OUTBOX_RELAY_SHARDS); never change it';
ALTER TABLE :schema.outbox_sharding OWNER TO :owner_role;

-- The shard of an aggregate (0 .. shard_count-1). No SET clause, so it inlines; names are qualified.
-- The aggregate type is length-prefixed, so ('ab', 'c') and ('a', 'bc') hash differently.
CREATE FUNCTION :schema.outbox_shard_of(aggregate_type text, aggregate_id text, shard_count integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT (((pg_catalog.hashtextextended(
             pg_catalog.octet_length(aggregate_type)::text || ':' || aggregate_type || aggregate_id, 0)
           % shard_count) + shard_count) % shard_count)::integer
$$;
ALTER FUNCTION :schema.outbox_shard_of(text, text, integer) OWNER TO :owner_role;

-- Pending rows get their shard now; delivered bookkeeping has no use for one.
ALTER TABLE :schema.outbox_delivery ADD COLUMN shard integer;
UPDATE :schema.outbox_delivery d
   SET shard = :schema.outbox_shard_of(d.aggregate_type, d.aggregate_id, (SELECT s.shard_count FROM :schema.outbox_sharding s))
 WHERE d.delivered_at IS NULL;

-- Serves the sharded claim: per owned shard, its oldest pending ids.
CREATE INDEX outbox_delivery_shard_pending_idx ON :schema.outbox_delivery (shard, id) WHERE delivered_at IS NULL;

CREATE OR REPLACE FUNCTION :schema.outbox_after_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  n      bigint;
  shards integer;
BEGIN
  SELECT s.shard_count INTO shards FROM :schema.outbox_sharding s;
  INSERT INTO :schema.outbox_delivery (id, aggregate_type, aggregate_id, aggregate_version, shard)
  SELECT i.id, i.aggregate_type, i.aggregate_id, i.aggregate_version,
         :schema.outbox_shard_of(i.aggregate_type, i.aggregate_id, shards)
    FROM inserted_rows i;
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n > 0 THEN
    PERFORM pg_catalog.pg_notify('kafka_outbox', TG_TABLE_SCHEMA::text);
  END IF;
  RETURN NULL;
END
$$;

GRANT SELECT ON :schema.outbox_sharding TO :relay_role;
