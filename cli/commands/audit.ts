import { readFileSync } from 'node:fs';
import { Partitioners } from 'kafkajs';
import * as audit from '../../audit/index';
import { parseDuration, type OutboxConfig } from '../../core/config';
import { errorMessage, isOutboxError, OutboxError } from '../../core/errors';
import { createKafka } from '../../core/kafka';
import { sleep } from '../../core/retry';
import { requireKafka, withClient, withPool } from '../connections';
import { formatCsv, formatTable, onStopSignal, parseAggregateRef, parseTime, UsageError, type Command, type CommandGroup } from '../framework';
import { stateHistory, type StateHistory } from '../state';
import { diffFields, formatChange, historyAsOf, showValue, stateWithProvenance, type FieldChange, type FoldedEvent } from '../state-diff';
import { readHistory, type HistoryEvent } from '../../writer/read-history';
import { verifyChain } from '../../writer/verify';

const history: Command = {
  name: 'audit history',
  summary: 'Who changed an aggregate, when, from which request; the state as of a time, each field with the event that set it',
  description: [
    'Reads the permanent history in the outbox table: every event with actor, trace, correlation and causation ids.',
    "Where the domain has a reducer for the aggregate type, the states are folded with it: each event's state",
    'before/after, and after the events the state as of --at (or now), each top-level field with the event that',
    'last changed its value (version, type, time, actor). A field an event removed is not in the state; it is',
    'listed under "removed" with that event. --diff shows, per event, only the fields it changed',
    '(field: before → after, "(none)" for an added or removed side) instead of the whole states.',
    'An event that occurred before --at but follows one that occurred after it is shown, not folded (a note says so).',
    'Without a reducer, one line says why and the events are shown without state.',
    'JSON: each event also has `changes` [{field, kind, before, after}], and `asOf`',
    '{at, version, state, fields, removed, outOfOrder} (null without a reducer, `stateUnavailable` then says why).',
    'CSV: the event table only (with --diff a CHANGES column, JSON, replaces STATE_BEFORE/STATE_AFTER).',
    'See docs/audit.md "Point in time".',
  ].join('\n'),
  positionals: [{ name: 'aggregate', description: '<aggregate_type>/<id>, e.g. invoice/42', required: true }],
  flags: {
    at: { type: 'string', placeholder: 'time', description: 'Events at or before this time, and the state as of then (ISO 8601, e.g. 2025-01-31T12:00:00Z)' },
    diff: { type: 'boolean', description: 'Per event, only the fields it changed (before → after) instead of the whole states' },
    format: { type: 'string', placeholder: 'format', description: 'Output format', choices: ['table', 'json', 'csv'], default: 'table' },
  },
  needs: { database: true },
  async run({ config, logger, flags, positionals, json, out, domain: loadDomain }) {
    const ref = parseAggregateRef(positionals[0]!, '<aggregate>');
    // The domain's reducers fold the states; without schemas or a config module the history has no states.
    const domain = await loadDomain().then(
      (d) => ({ ok: true as const, reducers: d.reducers }),
      (err: unknown) => {
        logger.debug({ err }, 'no domain: history shown without state');
        return { ok: false as const, reason: `no domain loaded (${errorMessage(err)})` };
      },
    );
    const at = typeof flags.at === 'string' ? parseTime('at', flags.at) : undefined;
    const diff = flags.diff === true;
    const format = json ? 'json' : String(flags.format);
    // The whole history is read, --at selects from it, and the states are folded up to the last event shown:
    // each event shown keeps its real states even where occurred_at is not monotonic in the version (historyAsOf).
    const all: Array<HistoryEvent & { changes?: FieldChange[] }> = await withPool(config, logger, (pool) =>
      readHistory(pool, { schema: config.schema, aggregateType: ref.type, aggregateId: ref.id }),
    );
    const { shown: events, folded: prefix, outOfOrder } = historyAsOf(all, at);
    if (events.length === 0) {
      throw new OutboxError('NOT_FOUND', `no events for ${ref.type}/${ref.id}${at ? ` at or before ${at.toISOString()}` : ''} in schema "${config.schema}"`);
    }
    const toFold = all.slice(0, all.indexOf(events[events.length - 1]!) + 1);
    const folded: StateHistory = domain.ok ? stateHistory({ logger, reducers: domain.reducers, aggregateType: ref.type, events: toFold }) : domain;
    if (folded.ok) {
      toFold.forEach((e, i) => {
        const pair = folded.states[i]!;
        Object.assign(e, pair, { changes: diffFields(pair.state_before, pair.state_after) });
      });
    }
    const asOf = folded.ok
      ? {
          at: at?.toISOString() ?? null,
          ...(stateWithProvenance(prefix as FoldedEvent[]) ?? { version: 0, state: null, fields: {}, removed: {} }),
          outOfOrder: outOfOrder.map((e) => e.aggregate_version),
        }
      : null;
    if (format === 'json') {
      return out.json({ aggregate: `${ref.type}/${ref.id}`, at: at?.toISOString() ?? null, events, asOf, ...(folded.ok ? {} : { stateUnavailable: folded.reason }) });
    }
    const stateHeaders = diff ? ['CHANGES'] : ['STATE_BEFORE', 'STATE_AFTER'];
    const headers = ['VERSION', 'OCCURRED_AT', 'EVENT', 'ACTOR', 'TRACE_ID', 'CORRELATION_ID', 'CAUSATION_ID', 'EVENT_ID', 'PAYLOAD', ...stateHeaders];
    const rows = events.map((e) => [
      e.aggregate_version,
      e.occurred_at.toISOString(),
      `${e.event_type} v${e.schema_version}`,
      e.actor_id,
      e.trace_id,
      e.correlation_id,
      e.causation_id,
      e.event_id,
      JSON.stringify(e.payload),
      ...(diff
        ? [e.changes === undefined ? null : JSON.stringify(e.changes)]
        : [e.state_before === undefined ? null : JSON.stringify(e.state_before), e.state_after === undefined ? null : JSON.stringify(e.state_after)]),
    ]);
    if (format === 'csv') return out.line(formatCsv(headers, rows));
    out.line(`${ref.type}/${ref.id}: ${events.length} event(s)${at ? ` as of ${at.toISOString()}` : ''}`);
    if (!folded.ok) out.line(`no state: ${folded.reason}; events shown without state`);
    for (const e of events) {
      out.line('');
      out.line(`v${e.aggregate_version}  ${e.occurred_at.toISOString()}  ${e.event_type} (schema v${e.schema_version})`);
      out.line(`  actor        ${e.actor_id}`);
      out.line(`  trace        ${e.trace_id}`);
      out.line(`  correlation  ${e.correlation_id ?? '-'}`);
      out.line(`  causation    ${e.causation_id ?? '-'}`);
      out.line(`  event_id     ${e.event_id}`);
      out.line(`  payload      ${JSON.stringify(e.payload)}`);
      if (diff && e.changes !== undefined) {
        const lines = e.changes.length > 0 ? e.changes.map(formatChange) : ['(no field changed)'];
        lines.forEach((l, i) => out.line(`${i === 0 ? '  changes      ' : '               '}${l}`));
      } else {
        if (e.state_before !== undefined) out.line(`  before       ${JSON.stringify(e.state_before)}`);
        if (e.state_after !== undefined) out.line(`  after        ${JSON.stringify(e.state_after)}`);
      }
      out.line(`  hash         ${e.hash.slice(0, 16)}… (prev ${e.prev_hash.slice(0, 16)}…)`);
    }
    if (!asOf) return;
    out.line('');
    if (outOfOrder.length > 0) {
      const later = all[prefix.length]!;
      out.line(
        `note: version(s) ${outOfOrder.map((e) => e.aggregate_version).join(', ')} occurred at or before ${at!.toISOString()} but follow version ` +
          `${later.aggregate_version}, which occurred after it (${later.occurred_at.toISOString()}): not in the state below`,
      );
    }
    out.line(
      asOf.version === 0
        ? `State as of ${at!.toISOString()}: none (version ${all[0]!.aggregate_version}, the first, occurred after it)`
        : `${at ? `State as of ${at.toISOString()}` : 'Current state'} (version ${asOf.version}), each field with the event that last changed it:`,
    );
    if (asOf.version === 0) return;
    const fieldRows = Object.entries(asOf.fields).map(([name, f]) => [name, showValue(f.value), f.version, f.eventType, f.occurredAt, f.actorId]);
    out.line(fieldRows.length > 0 ? formatTable(['FIELD', 'VALUE', 'VERSION', 'EVENT', 'OCCURRED_AT', 'ACTOR'], fieldRows) : '(no fields: the state is empty)');
    const removed = Object.entries(asOf.removed);
    if (removed.length > 0) {
      out.line('');
      out.line('Removed fields (not in the state), each with the event that removed it:');
      out.line(
        formatTable(
          ['FIELD', 'LAST_VALUE', 'VERSION', 'EVENT', 'OCCURRED_AT', 'ACTOR'],
          removed.map(([name, f]) => [name, showValue(f.lastValue), f.version, f.eventType, f.occurredAt, f.actorId]),
        ),
      );
    }
  },
};

const verify: Command = {
  name: 'audit verify',
  summary: 'Verify the hash chains of all aggregates (or one): names the first broken link and reports events/s',
  description:
    'With KAFKA_BROKERS set (and no --no-kafka), also compares every event already published to the event topics\n' +
    '(headers event_id and hash) with its row: a rewrite after publication is found even when the chain was recomputed.\n' +
    'With --checkpoints <topic|file> --public-key <file>, also checks every signed checkpoint: its signature, and that\n' +
    'the history reproduces its Merkle root at its covered outbox id (docs/audit.md).',
  flags: {
    aggregate: { type: 'string', placeholder: 'type/id', description: 'Verify only this aggregate, e.g. invoice/42' },
    checkpoints: { type: 'string', placeholder: 'topic|file', description: 'Signed checkpoints to check: a JSON Lines file, else a Kafka topic (e.g. outbox.outbox.checkpoints)' },
    'public-key': { type: 'string', placeholder: 'file', description: 'The checkpoint signing public key (PEM), needed with --checkpoints' },
    'no-kafka': { type: 'boolean', description: 'Skip the comparison with the events published to Kafka' },
  },
  needs: { database: true },
  async run({ config, logger, libLogger, flags, json, out }) {
    const aggregate = typeof flags.aggregate === 'string' ? parseAggregateRef(flags.aggregate, '--aggregate') : undefined;
    const checkpointSource = typeof flags.checkpoints === 'string' ? flags.checkpoints : undefined;
    const publicKeyFile = typeof flags['public-key'] === 'string' ? flags['public-key'] : undefined;
    if ((checkpointSource === undefined) !== (publicKeyFile === undefined)) throw new UsageError('--checkpoints and --public-key go together', 'audit verify');
    const publicKey = publicKeyFile !== undefined ? audit.loadPublicKey(publicKeyFile) : undefined;
    const crossCheck = config.kafka.brokers.length > 0 && flags['no-kafka'] !== true;
    const result = await withClient(config, logger, (client) => verifyChain(client, { schema: config.schema, ...(aggregate ? { aggregate } : {}) }));
    let checkpoints: audit.CheckpointsResult | undefined;
    let kafka: audit.KafkaCrossCheckResult | undefined;
    if (checkpointSource !== undefined || crossCheck) {
      if (crossCheck || (checkpointSource !== undefined && !audit.isCheckpointFile(checkpointSource))) await requireKafka(config.kafka, libLogger);
      const client =
        checkpointSource !== undefined && audit.isCheckpointFile(checkpointSource) && !crossCheck ? undefined : createKafka(config.kafka, libLogger, 'audit', { retries: 2 });
      await withPool(config, logger, async (pool) => {
        if (checkpointSource !== undefined && publicKey !== undefined) {
          const stored = audit.isCheckpointFile(checkpointSource)
            ? audit.readCheckpointFile(checkpointSource)
            : await audit.readCheckpointTopic(client!, { topic: checkpointSource, logger });
          checkpoints = await audit.verifyCheckpoints(pool, { schema: config.schema, checkpoints: stored, publicKey: publicKey.publicKey, keyId: publicKey.keyId });
        }
        if (crossCheck) kafka = await audit.crossCheckKafka(pool, client!, { schema: config.schema, relay: config.relay, logger });
      });
    }
    const ok = result.ok && (checkpoints?.ok ?? true) && (kafka?.ok ?? true);
    if (json)
      out.json(
        checkpoints === undefined && kafka === undefined ? result : { ...result, ok, chainOk: result.ok, ...(checkpoints ? { checkpoints } : {}), ...(kafka ? { kafka } : {}) },
      );
    else {
      if (result.ok)
        out.line(`chain verified: ${result.checked} event(s)${aggregate ? ` of ${aggregate.type}/${aggregate.id}` : ''}, ${Math.round(result.eventsPerSecond)} events/s`);
      else out.line(`chain BROKEN: ${result.checked} event(s) checked, ${Math.round(result.eventsPerSecond)} events/s`);
      if (checkpoints)
        out.line(
          checkpoints.ok
            ? `checkpoints verified: ${checkpoints.checked} signed checkpoint(s) reproduced by the history`
            : `checkpoints FAILED: ${checkpoints.problems.length} of ${checkpoints.checked} checkpoint(s) do not hold`,
        );
      if (kafka)
        out.line(
          kafka.ok
            ? `published events match: ${kafka.compared} event(s) compared with ${kafka.topics.join(', ') || 'no topics'}`
            : `published events DIFFER: ${kafka.differences.length} difference(s) in ${kafka.compared} event(s) compared`,
        );
    }
    if (!result.ok) {
      const b = result.firstBroken;
      const where = b ? `${b.aggregateType}/${b.aggregateId} v${b.version}${b.eventId ? ` (event ${b.eventId})` : ''}: ${b.reason}` : 'unknown link';
      out.error(`outbox: hash chain broken at ${where}`);
    }
    for (const p of checkpoints?.problems ?? []) {
      out.error(`outbox: checkpoint ${p.where}${p.coveredId !== undefined ? ` (covered id ${p.coveredId}, taken ${p.timestamp})` : ''}: ${p.problem}`);
    }
    const firstDifference = kafka?.differences[0];
    if (firstDifference) {
      const d = firstDifference;
      out.error(`outbox: published event differs at ${d.aggregateType}/${d.aggregateId} v${d.version} (event ${d.eventId}, ${d.where}): ${d.kind}: ${d.detail}`);
    }
    return ok ? 0 : 1;
  },
};

/** The checkpoint signing key: `file` (--private-key), else OUTBOX_AUDIT_PRIVATE_KEY_FILE, else OUTBOX_AUDIT_PRIVATE_KEY. */
export function signingKeyOf(config: OutboxConfig, file: string | undefined): audit.SigningKey {
  if (file !== undefined) return audit.loadSigningKey({ file });
  return audit.loadSigningKey({
    ...(config.audit?.privateKeyFile !== undefined ? { file: config.audit.privateKeyFile, fileVariable: 'OUTBOX_AUDIT_PRIVATE_KEY_FILE' } : {}),
    ...(config.audit?.privateKey !== undefined ? { text: config.audit.privateKey } : {}),
  });
}

const keygen: Command = {
  name: 'audit keygen',
  summary: 'Create an Ed25519 key pair that signs checkpoints: the private key to a file (mode 0600), the public key beside it',
  description: 'The private key never goes to PostgreSQL: keep it where the database owner cannot read it, and give auditors\nthe public key (<out>.pub).',
  flags: {
    out: { type: 'string', placeholder: 'file', description: 'Where to write the private key (refused if it exists); the public key goes to <file>.pub' },
    'public-out': { type: 'string', placeholder: 'file', description: 'Where to write the public key instead of <out>.pub' },
  },
  needs: {},
  async run({ flags, json, out }) {
    if (typeof flags.out !== 'string') throw new UsageError('--out <file> is required', 'audit keygen');
    const k = audit.generateSigningKey({ out: flags.out, ...(typeof flags['public-out'] === 'string' ? { publicOut: flags['public-out'] } : {}) });
    if (json) return out.json({ privateKeyFile: k.privateKeyFile, publicKeyFile: k.publicKeyFile, keyId: k.keyId, publicKey: k.publicKeyPem });
    out.line(`private key: ${k.privateKeyFile} (mode 0600; never put it in PostgreSQL)`);
    out.line(`public key:  ${k.publicKeyFile}`);
    out.line(`key id:      ${k.keyId}`);
    out.raw(k.publicKeyPem);
  },
};

const checkpoint: Command = {
  name: 'audit checkpoint',
  summary: 'Take a signed checkpoint of every aggregate head and write it to <schema>.outbox.checkpoints (and --file)',
  description:
    'A checkpoint is a Merkle root over every aggregate head as of the highest outbox id it covers, with the event\n' +
    'count and a timestamp, signed with Ed25519 (docs/audit.md). The key comes from --private-key,\n' +
    'OUTBOX_AUDIT_PRIVATE_KEY_FILE or OUTBOX_AUDIT_PRIVATE_KEY. With --every, runs until stopped.',
  flags: {
    every: { type: 'string', placeholder: 'duration', description: 'Take one every this long (e.g. 15m) until SIGTERM/SIGINT' },
    file: { type: 'string', placeholder: 'path', description: 'Also append each checkpoint to this JSON Lines file' },
    'file-heads': {
      type: 'boolean',
      description: 'With --file, keep every aggregate head beside each checkpoint in the file, so that verify names the first aggregate and version that differs',
    },
    'private-key': { type: 'string', placeholder: 'file', description: 'The signing key file (else OUTBOX_AUDIT_PRIVATE_KEY_FILE / OUTBOX_AUDIT_PRIVATE_KEY)' },
  },
  needs: { database: true, kafka: true },
  async run({ config, logger, libLogger, flags, json, out }) {
    const everyMs = typeof flags.every === 'string' ? parseDuration('--every', flags.every) : undefined;
    if (everyMs !== undefined && everyMs < 1000) throw new UsageError('--every must be at least 1s', 'audit checkpoint');
    const file = typeof flags.file === 'string' ? flags.file : undefined;
    if (flags['file-heads'] === true && file === undefined) throw new UsageError('--file-heads needs --file', 'audit checkpoint');
    const key = signingKeyOf(config, typeof flags['private-key'] === 'string' ? flags['private-key'] : undefined);
    const log = logger.child({ component: 'audit-checkpoint' });
    const topic = audit.checkpointTopic(config.schema);
    await requireKafka(config.kafka, libLogger);
    const kafka = createKafka(config.kafka, libLogger, 'audit-checkpoint', { retries: 2 });
    try {
      await audit.ensureCheckpointTopic(kafka, { topic, settings: config.kafka, logger: log });
    } catch (err) {
      if (isOutboxError(err)) throw err;
      throw new OutboxError('KAFKA_UNAVAILABLE', `could not create the checkpoint topic ${topic}: ${(err as Error).message}`, { cause: err });
    }
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
    try {
      await producer.connect();
    } catch (err) {
      throw new OutboxError('KAFKA_UNAVAILABLE', `could not connect a producer for ${topic}: ${(err as Error).message}`, { cause: err });
    }
    const stopping = new AbortController();
    if (everyMs !== undefined) void onStopSignal().then(() => stopping.abort());
    try {
      await withPool(config, logger, async (pool) => {
        for (;;) {
          try {
            const { checkpoint: c, heads } = await audit.takeCheckpointWithHeads(pool, { schema: config.schema, key, logger: log });
            await audit.publishCheckpoint(producer, { topic, checkpoint: c });
            if (file !== undefined) audit.appendCheckpointFile(file, c, flags['file-heads'] === true ? heads : undefined);
            log.info({ coveredId: c.coveredId, eventCount: c.eventCount, root: c.root, keyId: c.keyId, topic, file }, 'checkpoint written');
            if (json) out.line(JSON.stringify(c));
            else
              out.line(
                `checkpoint at outbox id ${c.coveredId}: ${c.eventCount} event(s), ${c.aggregateCount} aggregate(s), root ${c.root}, key ${c.keyId} -> ${topic}${file !== undefined ? `, ${file}` : ''}`,
              );
          } catch (err) {
            if (everyMs === undefined || !isOutboxError(err) || !err.retriable) throw err;
            log.warn({ err }, 'checkpoint failed; trying again at the next interval');
          }
          if (everyMs === undefined || stopping.signal.aborted) return;
          await sleep(everyMs, stopping.signal);
          if (stopping.signal.aborted) return;
        }
      });
    } finally {
      await producer.disconnect().catch(() => undefined);
    }
  },
};

const prove: Command = {
  name: 'audit prove',
  summary: 'Print a self-contained JSON inclusion proof of one event against the latest signed checkpoint',
  description:
    "The proof holds the event's canonical bytes, its chain up to the aggregate's head as of the checkpoint, the\n" +
    "RFC 6962 Merkle audit path from that head to the checkpoint's root, and the signed checkpoint itself.\n" +
    'Check it with "outbox audit check-proof <file> --public-key <file>" (no database needed; docs/hash-chain.md).',
  positionals: [{ name: 'aggregate', description: '<aggregate_type>/<id>, e.g. invoice/42', required: true }],
  flags: {
    version: { type: 'string', placeholder: 'N', description: "The event's aggregate_version (default: the head as of the latest checkpoint)" },
    checkpoints: {
      type: 'string',
      placeholder: 'topic|file',
      description: 'Where the signed checkpoints are: a JSON Lines file, else a topic (default <schema>.outbox.checkpoints)',
    },
  },
  needs: { database: true },
  async run({ config, logger, libLogger, flags, positionals, out }) {
    const ref = parseAggregateRef(positionals[0]!, '<aggregate>');
    let version: bigint | undefined;
    if (typeof flags.version === 'string') {
      if (!/^[1-9][0-9]*$/.test(flags.version)) throw new UsageError(`--version must be a positive integer, got "${flags.version}"`, 'audit prove');
      version = BigInt(flags.version);
    }
    const source = typeof flags.checkpoints === 'string' ? flags.checkpoints : audit.checkpointTopic(config.schema);
    let stored: audit.StoredCheckpoint[];
    if (audit.isCheckpointFile(source)) stored = audit.readCheckpointFile(source);
    else {
      if (config.kafka.brokers.length === 0) throw new UsageError(`no file ${source}, and KAFKA_BROKERS is not set to read it as a topic`, 'audit prove');
      await requireKafka(config.kafka, libLogger);
      stored = await audit.readCheckpointTopic(createKafka(config.kafka, libLogger, 'audit', { retries: 2 }), { topic: source, logger });
    }
    const proof = await withPool(config, logger, (pool) =>
      audit.buildInclusionProof(pool, { schema: config.schema, aggregateType: ref.type, aggregateId: ref.id, checkpoints: stored, ...(version !== undefined ? { version } : {}) }),
    );
    out.raw(`${JSON.stringify(proof, null, 2)}\n`);
  },
};

const checkProof: Command = {
  name: 'audit check-proof',
  summary: 'Check an inclusion proof offline with the public key alone: signature, Merkle path, chain links, event hash',
  description: 'Needs no database and no Kafka. Exit code 0 when the proof holds, 1 when it does not (the reason on stderr).',
  positionals: [{ name: 'file', description: 'The proof, as printed by "outbox audit prove"', required: true }],
  flags: {
    'public-key': { type: 'string', placeholder: 'file', description: 'The checkpoint signing public key (PEM)' },
  },
  needs: {},
  async run({ flags, positionals, json, out }) {
    if (typeof flags['public-key'] !== 'string') throw new UsageError('--public-key <file> is required', 'audit check-proof');
    const { publicKey } = audit.loadPublicKey(flags['public-key']);
    const file = positionals[0]!;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new OutboxError('NOT_FOUND', `cannot read the proof ${file}: ${(err as Error).message}`, { cause: err });
    }
    const r = audit.checkInclusionProof(text, publicKey);
    if (json) out.json(r);
    if (!r.ok) {
      out.error(`outbox: proof does NOT hold: ${r.problem}`);
      return 1;
    }
    if (!json) {
      out.line(`proof holds: ${r.aggregateType}/${r.aggregateId} v${r.version} (event ${r.eventId}) is in the history signed by key ${r.checkpoint.keyId}`);
      out.line(`  checkpoint  schema ${r.checkpoint.schema}, covered id ${r.checkpoint.coveredId}, taken ${r.checkpoint.timestamp}, root ${r.checkpoint.root}`);
      out.line(`  chain       v${r.version}..v${r.headVersion} (head as of the checkpoint)`);
      for (const [k, v] of Object.entries(r.fields)) out.line(`  ${k.padEnd(17)} ${v ?? 'NULL'}`);
    }
    return 0;
  },
};

export const auditGroup: CommandGroup = {
  name: 'audit',
  summary: 'Audit the event history: who changed what, whether the hash chains verify, signed checkpoints outside PostgreSQL',
  subcommands: [history, verify, keygen, checkpoint, prove, checkProof],
};
