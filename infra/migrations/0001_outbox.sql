-- kafka-outbox write path: the permanent, append-only event history, the per-aggregate heads
-- (version + hash chain), the relay's delivery bookkeeping, and the least-privilege application role.
--
-- Rendered by infra/migrate.ts: :schema = quoted target schema, :app_role = quoted application role.
-- Runs with search_path = pg_catalog, :schema. Requires PostgreSQL 13+ (gen_random_uuid, xid8) and a UTF8
-- database (the hash chain hashes UTF-8 bytes). The contract is documented in README.md
-- ("Writing events") and docs/hash-chain.md.

DO $$
BEGIN
  IF current_setting('server_encoding') <> 'UTF8' THEN
    RAISE EXCEPTION 'kafka-outbox needs a UTF8 database (server_encoding is %)', current_setting('server_encoding');
  END IF;
END
$$;

-- ---------------------------------------------------------------------------------------------------
-- The application role (:app_role), a NOLOGIN group role that may only INSERT and SELECT the history,
-- is created by infra/migrate.ts before any migration runs, and only when it is missing: a migrating
-- user without CREATEROLE can use a role created beforehand.

-- ---------------------------------------------------------------------------------------------------
-- Tables

CREATE SEQUENCE :schema.outbox_id_seq AS bigint;

-- The permanent history. Rows are never updated or deleted (triggers below); delivery state lives in
-- outbox_delivery. id, aggregate_version, prev_hash, hash, tx_id and recorded_at are assigned by the
-- BEFORE INSERT trigger whatever the INSERT supplies.
CREATE TABLE :schema.outbox (
  id                bigint      PRIMARY KEY,
  event_id          uuid        NOT NULL UNIQUE DEFAULT gen_random_uuid(),
  aggregate_type    text        NOT NULL,
  aggregate_id      text        NOT NULL,
  aggregate_version bigint      NOT NULL,
  event_type        text        NOT NULL,
  schema_version    integer     NOT NULL,
  payload           jsonb       NOT NULL,
  actor_id          text        NOT NULL,
  trace_id          text        NOT NULL,
  correlation_id    text,
  causation_id      text,
  traceparent       text,
  occurred_at       timestamptz NOT NULL DEFAULT now(),
  recorded_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
  tx_id             xid8        NOT NULL DEFAULT pg_current_xact_id(),
  expected_version  bigint,
  prev_hash         bytea       NOT NULL,
  hash              bytea       NOT NULL,
  CONSTRAINT outbox_aggregate_version_key UNIQUE (aggregate_type, aggregate_id, aggregate_version)
);
ALTER SEQUENCE :schema.outbox_id_seq OWNED BY :schema.outbox.id;

COMMENT ON TABLE :schema.outbox IS
  'kafka-outbox: permanent append-only event history (INSERT only; see README "Writing events")';

-- Per-aggregate head: current version and the hash of the newest event. Locked by the insert trigger,
-- so writers of one aggregate serialize and writers of different aggregates do not block each other.
CREATE TABLE :schema.outbox_aggregates (
  aggregate_type text   NOT NULL,
  aggregate_id   text   NOT NULL,
  version        bigint NOT NULL,
  last_hash      bytea  NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id)
);

-- Relay bookkeeping, kept apart from the history. One row per outbox row, inserted by the outbox insert
-- trigger; the relay (running as the owner) updates and deletes these rows, never the history.
CREATE TABLE :schema.outbox_delivery (
  id                bigint      PRIMARY KEY REFERENCES :schema.outbox (id),
  aggregate_type    text        NOT NULL,
  aggregate_id      text        NOT NULL,
  aggregate_version bigint      NOT NULL,
  enqueued_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
  delivered_at      timestamptz,
  topic             text,
  kafka_partition   integer,
  kafka_offset      bigint,
  attempts          integer     NOT NULL DEFAULT 0,
  parked_at         timestamptz,
  park_reason       text
);
CREATE INDEX outbox_delivery_pending_idx ON :schema.outbox_delivery (id) WHERE delivered_at IS NULL;
CREATE INDEX outbox_delivery_parked_idx ON :schema.outbox_delivery (aggregate_type, aggregate_id)
  WHERE parked_at IS NOT NULL AND delivered_at IS NULL;
CREATE INDEX outbox_delivery_delivered_idx ON :schema.outbox_delivery (delivered_at) WHERE delivered_at IS NOT NULL;

-- ---------------------------------------------------------------------------------------------------
-- Hash chain helpers (see docs/hash-chain.md). Pure functions, no privileges needed. No SET clause
-- (that would stop the planner from inlining them into the trigger); calls are schema-qualified.

-- One netstring field: '<utf8 byte length>:<utf8 bytes>,' or '-,' for NULL.
CREATE FUNCTION :schema.outbox_netstring(v text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT CASE WHEN v IS NULL THEN '\x2d2c'::bytea
              ELSE pg_catalog.convert_to(pg_catalog.octet_length(v)::text || ':' || v || ',', 'UTF8') END
$$;

-- occurred_at in the canonical text form: UTC, microseconds, 'YYYY-MM-DDTHH:MI:SS.ffffffZ'.
CREATE FUNCTION :schema.outbox_canonical_time(t timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT pg_catalog.to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- The canonical encoding of an event (the bytes hashed after prev_hash).
CREATE FUNCTION :schema.outbox_canonical_encoding(
  event_id uuid, aggregate_type text, aggregate_id text, aggregate_version bigint, event_type text,
  schema_version integer, occurred_at timestamptz, actor_id text, trace_id text, correlation_id text,
  causation_id text, traceparent text, payload jsonb
) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT :schema.outbox_netstring(event_id::text)
      || :schema.outbox_netstring(aggregate_type)
      || :schema.outbox_netstring(aggregate_id)
      || :schema.outbox_netstring(aggregate_version::text)
      || :schema.outbox_netstring(event_type)
      || :schema.outbox_netstring(schema_version::text)
      || :schema.outbox_netstring(:schema.outbox_canonical_time(occurred_at))
      || :schema.outbox_netstring(actor_id)
      || :schema.outbox_netstring(trace_id)
      || :schema.outbox_netstring(correlation_id)
      || :schema.outbox_netstring(causation_id)
      || :schema.outbox_netstring(traceparent)
      || :schema.outbox_netstring(payload::text)
$$;

-- ---------------------------------------------------------------------------------------------------
-- BEFORE INSERT (row): validate, lock/create the aggregate head, check expected_version, assign id,
-- version and hash chain, advance the head. SECURITY DEFINER: the app role has no rights on the heads.
CREATE FUNCTION :schema.outbox_before_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = :schema, pg_temp
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
  ELSIF jsonb_typeof(NEW.payload) <> 'object' THEN
    RAISE EXCEPTION 'outbox.payload must be a JSON object, got %', jsonb_typeof(NEW.payload) USING ERRCODE = 'check_violation', COLUMN = 'payload', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  END IF;
  IF NEW.actor_id IS NULL THEN
    RAISE EXCEPTION 'outbox.actor_id is required: every event names the actor that caused it' USING ERRCODE = 'not_null_violation', COLUMN = 'actor_id', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  ELSIF btrim(NEW.actor_id) = '' THEN
    RAISE EXCEPTION 'outbox.actor_id must not be empty' USING ERRCODE = 'check_violation', COLUMN = 'actor_id', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  END IF;
  IF NEW.trace_id IS NULL THEN
    RAISE EXCEPTION 'outbox.trace_id is required: every event carries the trace id of the request that caused it' USING ERRCODE = 'not_null_violation', COLUMN = 'trace_id', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  ELSIF btrim(NEW.trace_id) = '' THEN
    RAISE EXCEPTION 'outbox.trace_id must not be empty' USING ERRCODE = 'check_violation', COLUMN = 'trace_id', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  END IF;
  IF NEW.event_id IS NULL THEN
    RAISE EXCEPTION 'outbox.event_id must not be null (omit it to get a generated UUID)' USING ERRCODE = 'not_null_violation', COLUMN = 'event_id', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  END IF;
  IF NEW.occurred_at IS NULL THEN
    RAISE EXCEPTION 'outbox.occurred_at must not be null (omit it to default to now())' USING ERRCODE = 'not_null_violation', COLUMN = 'occurred_at', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  ELSIF NOT isfinite(NEW.occurred_at) OR NEW.occurred_at < '0001-01-01 00:00:00+00' OR NEW.occurred_at >= '10000-01-01 00:00:00+00' THEN
    RAISE EXCEPTION 'outbox.occurred_at must be a finite time between years 1 and 9999, got %', NEW.occurred_at USING ERRCODE = 'check_violation', COLUMN = 'occurred_at', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  END IF;
  IF NEW.expected_version IS NOT NULL AND NEW.expected_version < 0 THEN
    RAISE EXCEPTION 'outbox.expected_version must be 0 or more, got %', NEW.expected_version USING ERRCODE = 'check_violation', COLUMN = 'expected_version', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  END IF;

  -- occurred_at is kept at millisecond precision, so that it survives a round trip through a
  -- JavaScript Date or an Avro timestamp-millis unchanged (it is part of the hashed encoding).
  NEW.occurred_at := date_trunc('milliseconds', NEW.occurred_at);

  -- Lock the aggregate head (create it for the first event). Held until the transaction ends.
  SELECT a.version, a.last_hash INTO head_version, head_hash
    FROM outbox_aggregates a
   WHERE a.aggregate_type = NEW.aggregate_type AND a.aggregate_id = NEW.aggregate_id
     FOR UPDATE;
  IF NOT FOUND THEN
    INSERT INTO outbox_aggregates (aggregate_type, aggregate_id, version, last_hash)
    VALUES (NEW.aggregate_type, NEW.aggregate_id, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
    ON CONFLICT (aggregate_type, aggregate_id) DO NOTHING;
    SELECT a.version, a.last_hash INTO head_version, head_hash
      FROM outbox_aggregates a
     WHERE a.aggregate_type = NEW.aggregate_type AND a.aggregate_id = NEW.aggregate_id
       FOR UPDATE;
  END IF;

  IF NEW.expected_version IS NOT NULL AND NEW.expected_version <> head_version THEN
    RAISE EXCEPTION 'outbox.expected_version % does not match the current version % of aggregate %/%',
        NEW.expected_version, head_version, NEW.aggregate_type, NEW.aggregate_id
      USING ERRCODE = 'KO409', DETAIL = 'current_version=' || head_version, COLUMN = 'expected_version',
            TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  END IF;

  -- A duplicate event_id would otherwise be found only by the unique index, after the head moved;
  -- with INSERT ... ON CONFLICT that would skip the row but keep the version. Refuse it here.
  IF EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = NEW.event_id) THEN
    RAISE EXCEPTION 'outbox.event_id % already exists', NEW.event_id
      USING ERRCODE = 'unique_violation', COLUMN = 'event_id', CONSTRAINT = 'outbox_event_id_key',
            TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
  END IF;

  -- Assigned after the head lock: within an aggregate, id order = version order = commit order.
  NEW.id := nextval('outbox_id_seq');
  NEW.aggregate_version := head_version + 1;
  NEW.tx_id := pg_current_xact_id();
  NEW.recorded_at := clock_timestamp();
  NEW.prev_hash := head_hash;
  NEW.hash := sha256(head_hash || outbox_canonical_encoding(
      NEW.event_id, NEW.aggregate_type, NEW.aggregate_id, NEW.aggregate_version, NEW.event_type,
      NEW.schema_version, NEW.occurred_at, NEW.actor_id, NEW.trace_id, NEW.correlation_id,
      NEW.causation_id, NEW.traceparent, NEW.payload));

  UPDATE outbox_aggregates a
     SET version = NEW.aggregate_version, last_hash = NEW.hash
   WHERE a.aggregate_type = NEW.aggregate_type AND a.aggregate_id = NEW.aggregate_id;
  RETURN NEW;
END
$$;

CREATE TRIGGER outbox_before_insert
  BEFORE INSERT ON :schema.outbox
  FOR EACH ROW EXECUTE FUNCTION :schema.outbox_before_insert();

-- AFTER INSERT (statement): enqueue one delivery row per inserted event and wake the relay with
-- NOTIFY kafka_outbox '<schema>' (delivered at commit; a latency hint only, the relay also polls).
CREATE FUNCTION :schema.outbox_after_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = :schema, pg_temp
AS $$
DECLARE
  n bigint;
BEGIN
  INSERT INTO outbox_delivery (id, aggregate_type, aggregate_id, aggregate_version)
  SELECT i.id, i.aggregate_type, i.aggregate_id, i.aggregate_version FROM inserted_rows i;
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n > 0 THEN
    PERFORM pg_notify('kafka_outbox', TG_TABLE_SCHEMA);
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER outbox_after_insert
  AFTER INSERT ON :schema.outbox
  REFERENCING NEW TABLE AS inserted_rows
  FOR EACH STATEMENT EXECUTE FUNCTION :schema.outbox_after_insert();

-- Append-only: UPDATE, DELETE (row) and TRUNCATE (statement) of the history are refused for everyone
-- whose triggers fire (that is, unless a superuser sets session_replication_role = replica).
CREATE FUNCTION :schema.outbox_reject_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = :schema, pg_temp
AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'restrict_violation', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA,
          HINT = 'the event history is permanent; relay bookkeeping lives in outbox_delivery';
END
$$;

CREATE TRIGGER outbox_no_update BEFORE UPDATE ON :schema.outbox
  FOR EACH ROW EXECUTE FUNCTION :schema.outbox_reject_change();
CREATE TRIGGER outbox_no_delete BEFORE DELETE ON :schema.outbox
  FOR EACH ROW EXECUTE FUNCTION :schema.outbox_reject_change();
CREATE TRIGGER outbox_no_truncate BEFORE TRUNCATE ON :schema.outbox
  FOR EACH STATEMENT EXECUTE FUNCTION :schema.outbox_reject_change();

-- ---------------------------------------------------------------------------------------------------
-- Privileges: the application role may append and read the history and read the heads; nothing else.
-- It owns nothing. The trigger functions run as their owner (the migrating user).
REVOKE ALL ON :schema.outbox, :schema.outbox_aggregates, :schema.outbox_delivery FROM PUBLIC;
REVOKE ALL ON FUNCTION :schema.outbox_before_insert(), :schema.outbox_after_insert() FROM PUBLIC;
GRANT USAGE ON SCHEMA :schema TO :app_role;
GRANT SELECT, INSERT ON :schema.outbox TO :app_role;
GRANT SELECT ON :schema.outbox_aggregates TO :app_role;
