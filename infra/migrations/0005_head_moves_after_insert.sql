-- The aggregate head moves only once its event is stored. Until now the BEFORE INSERT trigger advanced
-- the head itself; when INSERT ... ON CONFLICT DO NOTHING then skipped the row (its event_id had been
-- inserted by a transaction still open when the trigger looked), the head kept pointing at an event
-- that was never stored, and the aggregate's next event got a version and a prev_hash no stored event
-- has. 0003 refused such statements by counting moved heads in a setting, which a session can set
-- itself. Now:
--   * the BEFORE INSERT trigger locks the head as before, but chains the new event to the aggregate's
--     newest stored event (which it can see even when its own statement stored it);
--   * a row-level AFTER INSERT trigger, which fires only for rows actually stored, advances the head.
-- So INSERT ... ON CONFLICT (event_id) DO NOTHING is safe: a skipped row changes nothing. A plain
-- INSERT of a duplicate event_id fails with unique_violation (23505, outbox_event_id_key) as before.
-- (A first event skipped this way leaves its aggregate's head at version 0, which means no events.)
-- Rendered by infra/migrate.ts (:schema, :owner_role quoted).

CREATE OR REPLACE FUNCTION :schema.outbox_before_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  head_version bigint;
  head_hash    bytea;
BEGIN
  -- Validation: every message names the column.
  IF NEW.aggregate_type IS NULL THEN
    RAISE EXCEPTION 'outbox.aggregate_type must not be null' USING ERRCODE = 'not_null_violation', COLUMN = 'aggregate_type', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  ELSIF NEW.aggregate_type = '' THEN
    RAISE EXCEPTION 'outbox.aggregate_type must not be empty' USING ERRCODE = 'check_violation', COLUMN = 'aggregate_type', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  END IF;
  IF NEW.aggregate_id IS NULL THEN
    RAISE EXCEPTION 'outbox.aggregate_id must not be null' USING ERRCODE = 'not_null_violation', COLUMN = 'aggregate_id', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  ELSIF NEW.aggregate_id = '' THEN
    RAISE EXCEPTION 'outbox.aggregate_id must not be empty' USING ERRCODE = 'check_violation', COLUMN = 'aggregate_id', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  END IF;
  IF NEW.event_type IS NULL THEN
    RAISE EXCEPTION 'outbox.event_type must not be null' USING ERRCODE = 'not_null_violation', COLUMN = 'event_type', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  ELSIF NEW.event_type = '' THEN
    RAISE EXCEPTION 'outbox.event_type must not be empty' USING ERRCODE = 'check_violation', COLUMN = 'event_type', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  END IF;
  IF NEW.schema_version IS NULL THEN
    RAISE EXCEPTION 'outbox.schema_version must not be null' USING ERRCODE = 'not_null_violation', COLUMN = 'schema_version', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  ELSIF NEW.schema_version < 1 THEN
    RAISE EXCEPTION 'outbox.schema_version must be at least 1, got %', NEW.schema_version USING ERRCODE = 'check_violation', COLUMN = 'schema_version', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  END IF;
  IF NEW.payload IS NULL THEN
    RAISE EXCEPTION 'outbox.payload must not be null (a JSON object is required)' USING ERRCODE = 'not_null_violation', COLUMN = 'payload', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  ELSIF pg_catalog.jsonb_typeof(NEW.payload) <> 'object' THEN
    RAISE EXCEPTION 'outbox.payload must be a JSON object, got %', pg_catalog.jsonb_typeof(NEW.payload) USING ERRCODE = 'check_violation', COLUMN = 'payload', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  END IF;
  IF NEW.actor_id IS NULL THEN
    RAISE EXCEPTION 'outbox.actor_id is required: every event names the actor that caused it' USING ERRCODE = 'not_null_violation', COLUMN = 'actor_id', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  ELSIF pg_catalog.btrim(NEW.actor_id) = '' THEN
    RAISE EXCEPTION 'outbox.actor_id must not be empty' USING ERRCODE = 'check_violation', COLUMN = 'actor_id', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  END IF;
  IF NEW.trace_id IS NULL THEN
    RAISE EXCEPTION 'outbox.trace_id is required: every event carries the trace id of the request that caused it' USING ERRCODE = 'not_null_violation', COLUMN = 'trace_id', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  ELSIF pg_catalog.btrim(NEW.trace_id) = '' THEN
    RAISE EXCEPTION 'outbox.trace_id must not be empty' USING ERRCODE = 'check_violation', COLUMN = 'trace_id', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  END IF;
  IF NEW.event_id IS NULL THEN
    RAISE EXCEPTION 'outbox.event_id must not be null (omit it to get a generated UUID)' USING ERRCODE = 'not_null_violation', COLUMN = 'event_id', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  END IF;
  IF NEW.occurred_at IS NULL THEN
    RAISE EXCEPTION 'outbox.occurred_at must not be null (omit it to default to now())' USING ERRCODE = 'not_null_violation', COLUMN = 'occurred_at', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  ELSIF NOT pg_catalog.isfinite(NEW.occurred_at) OR NEW.occurred_at < '0001-01-01 00:00:00+00' OR NEW.occurred_at >= '10000-01-01 00:00:00+00' THEN
    RAISE EXCEPTION 'outbox.occurred_at must be a finite time between years 1 and 9999, got %', NEW.occurred_at USING ERRCODE = 'check_violation', COLUMN = 'occurred_at', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  END IF;
  IF NEW.expected_version IS NOT NULL AND NEW.expected_version < 0 THEN
    RAISE EXCEPTION 'outbox.expected_version must be 0 or more, got %', NEW.expected_version USING ERRCODE = 'check_violation', COLUMN = 'expected_version', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  END IF;

  -- occurred_at is kept at millisecond precision, so that it survives a round trip through a
  -- JavaScript Date or an Avro timestamp-millis unchanged (it is part of the hashed encoding).
  NEW.occurred_at := pg_catalog.date_trunc('milliseconds', NEW.occurred_at);

  -- Lock the aggregate head (create it, at version 0, for the first event). Held until the transaction
  -- ends: writers of one aggregate serialize here.
  PERFORM 1
     FROM :schema.outbox_aggregates a
    WHERE a.aggregate_type = NEW.aggregate_type AND a.aggregate_id = NEW.aggregate_id
      FOR UPDATE;
  IF NOT FOUND THEN
    INSERT INTO :schema.outbox_aggregates (aggregate_type, aggregate_id, version, last_hash)
    VALUES (NEW.aggregate_type, NEW.aggregate_id, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
    ON CONFLICT (aggregate_type, aggregate_id) DO NOTHING;
    PERFORM 1
       FROM :schema.outbox_aggregates a
      WHERE a.aggregate_type = NEW.aggregate_type AND a.aggregate_id = NEW.aggregate_id
        FOR UPDATE;
  END IF;

  -- The version and hash to chain to come from the aggregate's newest stored event, not from the head:
  -- the head moves only after a row is stored (outbox_advance_head, AFTER INSERT), so within a
  -- statement it lags behind, and a row that INSERT ... ON CONFLICT DO NOTHING skips never moves it.
  -- A row-level BEFORE trigger sees the rows its own statement stored before this one.
  SELECT o.aggregate_version, o.hash INTO head_version, head_hash
    FROM :schema.outbox o
   WHERE o.aggregate_type = NEW.aggregate_type AND o.aggregate_id = NEW.aggregate_id
   ORDER BY o.aggregate_version DESC
   LIMIT 1;
  IF NOT FOUND THEN
    head_version := 0;
    head_hash := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
  END IF;

  IF NEW.expected_version IS NOT NULL AND NEW.expected_version <> head_version THEN
    RAISE EXCEPTION 'outbox.expected_version % does not match the current version % of aggregate %/%',
        NEW.expected_version, head_version, NEW.aggregate_type, NEW.aggregate_id
      USING ERRCODE = 'KO409', DETAIL = 'current_version=' || head_version, COLUMN = 'expected_version',
            TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  END IF;

  -- A duplicate event_id is left to the unique index: a plain INSERT fails (23505), and
  -- INSERT ... ON CONFLICT (event_id) DO NOTHING skips the row; neither moves the head.

  -- Assigned after the head lock: within an aggregate, id order = version order = commit order.
  NEW.id := pg_catalog.nextval(':schema.outbox_id_seq'::pg_catalog.regclass);
  NEW.aggregate_version := head_version + 1;
  NEW.tx_id := pg_catalog.pg_current_xact_id();
  NEW.recorded_at := pg_catalog.clock_timestamp();
  NEW.prev_hash := head_hash;
  NEW.hash := pg_catalog.sha256(head_hash || :schema.outbox_canonical_encoding(
      NEW.event_id, NEW.aggregate_type, NEW.aggregate_id, NEW.aggregate_version, NEW.event_type,
      NEW.schema_version, NEW.occurred_at, NEW.actor_id, NEW.trace_id, NEW.correlation_id,
      NEW.causation_id, NEW.traceparent, NEW.payload));
  RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION :schema.outbox_after_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  n bigint;
BEGIN
  INSERT INTO :schema.outbox_delivery (id, aggregate_type, aggregate_id, aggregate_version)
  SELECT i.id, i.aggregate_type, i.aggregate_id, i.aggregate_version FROM inserted_rows i;
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n > 0 THEN
    PERFORM pg_catalog.pg_notify('kafka_outbox', TG_TABLE_SCHEMA::text);
  END IF;
  RETURN NULL;
END
$$;

-- AFTER INSERT (row): fires only for stored rows, in the order they were stored.
CREATE FUNCTION :schema.outbox_advance_head() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  UPDATE :schema.outbox_aggregates a
     SET version = NEW.aggregate_version, last_hash = NEW.hash
   WHERE a.aggregate_type = NEW.aggregate_type AND a.aggregate_id = NEW.aggregate_id
     AND a.version < NEW.aggregate_version;
  RETURN NULL;
END
$$;
ALTER FUNCTION :schema.outbox_advance_head() OWNER TO :owner_role;
REVOKE ALL ON FUNCTION :schema.outbox_advance_head() FROM PUBLIC;

CREATE TRIGGER outbox_advance_head
  AFTER INSERT ON :schema.outbox
  FOR EACH ROW EXECUTE FUNCTION :schema.outbox_advance_head();
