import { isOutboxError } from '../../core/errors';
import { appendEvents, canonicalEncoding, canonicalJsonb, canonicalTimestamp, computeHash, verifyEventLink, withTransaction, ZERO_HASH, type ChainFields } from '../../writer';
import { useTestDatabase } from '../support/isolation';
import { makeEvent } from './helpers';

// The canonical encoding is recomputable outside PostgreSQL: canonicalJsonb renders like jsonb::text,
// canonicalEncoding matches the SQL function byte for byte, verifyEventLink checks links on arrival.
const db = useTestDatabase();

const PAYLOADS: unknown[] = [
  {},
  { email: 'ada@example.com' },
  { b: 1, a: 2, aa: 3, ab: 4, ba: 5, A: 6, _: 7, '': 8 },
  { nested: { z: { y: { x: [1, { deep: true, d: null }] } }, list: [], obj: {} }, 'key with spaces': 'v' },
  { unicode: 'Grüße, 東京, Ελληνικά, עברית, 👩‍👩‍👧‍👦 and 🎉', ключ: 'значение', é: 'é', 'e\u0301': 'combining', 日本: 1, ab: 2, ü: 3 },
  { escapes: 'quote " backslash \\ slash / newline \n tab \t cr \r bs \b ff \f bell \u0007 esc \u001b unit \u001f del \u007f', '"k"': '\\' },
  { line: 'sep \u2028 \u2029 nbsp \u00a0 bom \ufeff replacement \ufffd' },
  { ints: [0, 1, -1, 42, 2147483647, -2147483648, 9007199254740991, -9007199254740991, 1e21, 123456789012345680000] },
  { floats: [1.5, -0.25, 0.1, 0.30000000000000004, 3.141592653589793, 1e-7, 1.2345e-7, 5e-324, 1.7976931348623157e308, -0, 100.0, 2.5e25] },
  { bools: [true, false], nulls: [null, null], mixed: [1, 'two', { three: 3 }, [4], null, false] },
  { when: new Date('2024-05-01T12:00:00.123Z'), skipped: undefined, arr: [undefined, 1] },
  { long: 'x'.repeat(5000), keys: Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${(i * 7919) % 97}`, i])) },
];

test('canonicalJsonb renders JS values exactly as PostgreSQL renders jsonb::text', async () => {
  for (const value of PAYLOADS) {
    const { rows } = await db.pool.query<{ t: string }>('SELECT $1::jsonb::text AS t', [JSON.stringify(value)]);
    expect(canonicalJsonb(value)).toBe(rows[0]?.t);
  }
  // Scalars and arrays at the top level, too.
  for (const value of ['s', 1, 0.5, true, null, [1, 'a', { b: [] }]]) {
    const { rows } = await db.pool.query<{ t: string }>('SELECT $1::jsonb::text AS t', [JSON.stringify(value)]);
    expect(canonicalJsonb(value)).toBe(rows[0]?.t);
  }
});

test('canonicalJsonb refuses what PostgreSQL would refuse or JSON would silently change', () => {
  for (const bad of [{ x: Number.NaN }, { x: Infinity }, { x: 'a\u0000b' }, { x: '\ud800' }, { x: 1n }]) {
    let err: unknown;
    try {
      canonicalJsonb(bad);
    } catch (e) {
      err = e;
    }
    expect(isOutboxError(err, 'PAYLOAD_INVALID')).toBe(true);
    expect((err as Error).message).toMatch(/^payload\.x /);
  }
});

test('canonicalTimestamp: UTC, six fraction digits', () => {
  expect(canonicalTimestamp(new Date('2024-02-29T23:59:59.007Z'))).toBe('2024-02-29T23:59:59.007000Z');
  expect(canonicalTimestamp('2024-02-29T23:59:59Z')).toBe('2024-02-29T23:59:59.000000Z');
  expect(canonicalTimestamp('2024-02-29T23:59:59.5Z')).toBe('2024-02-29T23:59:59.500000Z');
  expect(canonicalTimestamp('2024-02-29T23:59:59.123456Z')).toBe('2024-02-29T23:59:59.123456Z');
  expect(canonicalTimestamp('2024-03-01T01:59:59.250+02:00')).toBe('2024-02-29T23:59:59.250000Z');
  expect(canonicalTimestamp(new Date('0099-01-02T03:04:05.006Z'))).toBe('0099-01-02T03:04:05.006000Z');
  expect(() => canonicalTimestamp('yesterday')).toThrow(/occurredAt/);
});

test('canonicalEncoding and computeHash match the SQL functions and the stored rows byte for byte', async () => {
  const fields: ChainFields = {
    eventId: '6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f',
    aggregateType: 'usér',
    aggregateId: '42/🎉',
    aggregateVersion: 7,
    eventType: 'UserEmailChanged',
    schemaVersion: 3,
    occurredAt: '2024-05-01T12:00:00.123000Z',
    actorId: 'user:7',
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    correlationId: null,
    causationId: 'cause,with:separators',
    traceparent: '',
    payload: canonicalJsonb({ email: 'ada@example.com', tags: ['a', 'ü'] }),
  };
  const { rows } = await db.pool.query<{ enc: Buffer }>(
    `SELECT outbox_canonical_encoding($1::uuid, $2, $3, $4::bigint, $5, $6::int, $7::timestamptz, $8, $9, $10, $11, $12, $13::jsonb) AS enc`,
    [
      fields.eventId,
      fields.aggregateType,
      fields.aggregateId,
      7,
      fields.eventType,
      3,
      fields.occurredAt,
      fields.actorId,
      fields.traceId,
      null,
      fields.causationId,
      fields.traceparent,
      fields.payload,
    ],
  );
  const enc = canonicalEncoding(fields);
  expect(enc).toEqual(rows[0]?.enc);
  expect(enc.toString('utf8')).toBe(
    '36:6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f,5:usér,7:42/🎉,1:7,16:UserEmailChanged,1:3,27:2024-05-01T12:00:00.123000Z,' +
      '6:user:7,32:4bf92f3577b34da6a3ce929d0e0e4736,-,21:cause,with:separators,0:,' +
      '49:{"tags": ["a", "ü"], "email": "ada@example.com"},',
  );
  const sqlHash = await db.pool.query<{ h: Buffer }>('SELECT sha256($1::bytea || $2::bytea) AS h', [ZERO_HASH, enc]);
  expect(computeHash(ZERO_HASH, fields)).toEqual(sqlHash.rows[0]?.h);
});

test('verifyEventLink verifies a chain from message fields, and names what is wrong with a broken link', async () => {
  const occurredAt = new Date('2024-05-01T12:00:00.123Z');
  const payloads = [
    { step: 1, name: 'Ada' },
    { step: 2, tags: ['x', 'ÿ'] },
    { step: 3, nested: { a: { b: null } } },
  ];
  const appended = await withTransaction(db.pool, (c) =>
    appendEvents(
      c,
      payloads.map((payload, i) => makeEvent('link', 'L', { payload, occurredAt, ...(i === 1 ? { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' } : {}) })),
    ),
  );
  expect(appended.status).toBe('appended');
  const { rows } = await db.pool.query(
    `SELECT event_id::text, aggregate_type, aggregate_id, aggregate_version, event_type, schema_version, occurred_at, actor_id, trace_id,
            correlation_id, causation_id, traceparent, prev_hash, hash
       FROM outbox WHERE aggregate_type = 'link' ORDER BY aggregate_version`,
  );
  // As a consumer would: the fields from the message, the payload rendered with canonicalJsonb, the
  // occurred_at as a Date (stored at millisecond precision), hashes as hex.
  const messages = rows.map((r, i) => ({
    eventId: r.event_id as string,
    aggregateType: r.aggregate_type as string,
    aggregateId: r.aggregate_id as string,
    aggregateVersion: r.aggregate_version as string,
    eventType: r.event_type as string,
    schemaVersion: r.schema_version as number,
    occurredAt: r.occurred_at as Date,
    actorId: r.actor_id as string,
    traceId: r.trace_id as string,
    correlationId: r.correlation_id as string | null,
    causationId: r.causation_id as string | null,
    traceparent: r.traceparent as string | null,
    payload: canonicalJsonb(payloads[i]),
    prevHash: (r.prev_hash as Buffer).toString('hex'),
    hash: (r.hash as Buffer).toString('hex'),
  }));
  let previous: Buffer | null = null;
  for (const m of messages) {
    const link = verifyEventLink(previous, m);
    expect(link).toEqual({ ok: true, hash: Buffer.from(m.hash, 'hex') });
    previous = link.hash;
  }
  // Starting in the middle of a chain (previous hash unknown): self-consistency against the carried prevHash.
  expect(verifyEventLink(undefined, messages[2]!).ok).toBe(true);

  const [m1, m2, m3] = messages as [(typeof messages)[0], (typeof messages)[0], (typeof messages)[0]];
  const tampered = verifyEventLink(m1.hash, { ...m2, payload: canonicalJsonb({ step: 2, tags: ['x', 'y'] }) });
  expect(tampered.ok).toBe(false);
  expect(tampered.reason).toMatch(/^hash mismatch/);
  const wrongPrev = verifyEventLink(m1.hash, m3);
  expect(wrongPrev.ok).toBe(false);
  expect(wrongPrev.reason).toMatch(/does not link to the previous hash/);
  expect(() => verifyEventLink(null, { ...m2, prevHash: null })).toThrow(/needs previousHash/);
  const notFirst = verifyEventLink(null, { ...m2, aggregateVersion: 1 });
  expect(notFirst.ok).toBe(false); // version 1 must link to the zero hash
  expect(() => verifyEventLink(m1.hash, { ...m2, hash: 'abc' })).toThrow(/hash must be 32 bytes/);
});
