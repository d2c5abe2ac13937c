/**
 * Every setting of kafka-outbox, declared once: its name, what it does, its default and an example.
 * core/config.ts reads the environment only through these declarations (reading an undeclared name is a
 * programming error), and docs/configuration.md is generated from them (`npm run docs:config`; a test
 * fails when the committed file is stale).
 */

export type OptionGroup = 'connections' | 'domain' | 'outbox' | 'kafka' | 'registry' | 'relay' | 'projector' | 'admin' | 'console' | 'audit' | 'logging';

export interface OptionDeclaration {
  name: string;
  group: OptionGroup;
  /** One or two sentences: what it does, accepted values. */
  doc: string;
  /** The value used when the variable is unset (numbers in the unit the reader returns). */
  default?: string | number | boolean;
  /** How the default reads in the docs when it is not a plain value (a rule, or "required by ..."). */
  defaultText?: string;
  example: string;
  /** Bounds of whole-number options. */
  min?: number;
  max?: number;
  /** Redacted from logs and error messages. */
  secret?: boolean;
}

const GROUP_TITLES: Record<OptionGroup, string> = {
  connections: 'Connections',
  domain: 'Your domain (schemas and config module)',
  outbox: 'Outbox schemas',
  kafka: 'Kafka',
  registry: 'Schema registry',
  relay: 'Relay',
  projector: 'Projector',
  admin: 'Admin HTTP server (metrics and health)',
  console: 'Console',
  audit: 'Audit checkpoints',
  logging: 'Logging and environment',
};

export const OPTIONS: readonly OptionDeclaration[] = [
  {
    name: 'DATABASE_URL',
    group: 'connections',
    defaultText: 'required by commands that use the database',
    example: 'postgres://app:secret@db:5432/outbox?sslmode=verify-full',
    doc:
      'PostgreSQL connection URL. `sslmode`: `disable`, `prefer`/`require`/`verify-ca` (treated as `verify-full` by node-postgres), ' +
      '`verify-full` (certificate and host name verified), `no-verify` (encrypted, unverified: an explicit opt-out only). ' +
      '`sslrootcert=/path/ca.pem` names a private CA. The password is redacted everywhere.',
  },
  {
    name: 'KAFKA_BROKERS',
    group: 'connections',
    defaultText: 'required by relay, project, rebuild and status',
    example: 'k1:9092,k2:9092',
    doc: 'Bootstrap brokers, a comma-separated `host:port` list.',
  },
  {
    name: 'SCHEMA_REGISTRY_URL',
    group: 'connections',
    defaultText: 'required by relay, project, rebuild, schemas and status',
    example: 'http://registry:8081/apis/ccompat/v7',
    doc: 'Confluent-compatible schema registry API. Credentials written in the URL (`https://user:pw@host`) become basic auth and are removed from the URL.',
  },
  {
    name: 'OUTBOX_SCHEMAS_DIR',
    group: 'domain',
    defaultText: "the config module's schemasDir",
    example: '/srv/billing/schemas',
    doc:
      'Directory of the event schemas, `<dir>/<aggregate_type>/<EventType>.v<N>.avsc`, read by relay, project, rebuild, schemas, status and audit. ' +
      "The `--schemas <dir>` flag wins over it; it wins over the config module's `schemasDir`.",
  },
  {
    name: 'OUTBOX_CONFIG',
    group: 'domain',
    defaultText: '`outbox.config.{js,mjs,cjs,ts}` in the working directory, if any',
    example: '/srv/billing/outbox.config.js',
    doc: 'The config module declaring the domain (schemas directory, upcasters, projections, reducers, topics). The `--config <path>` flag wins over it. A `.ts` module needs `tsx` installed.',
  },
  {
    name: 'OUTBOX_SCHEMA',
    group: 'outbox',
    default: 'outbox',
    example: 'billing_outbox',
    doc: 'PostgreSQL schema of the outbox tables: the history, the heads and the delivery queue. A lower-case SQL identifier.',
  },
  {
    name: 'OUTBOX_PROJECTOR_SCHEMA',
    group: 'outbox',
    defaultText: '`<OUTBOX_SCHEMA>_read`',
    example: 'billing_read',
    doc: "PostgreSQL schema of the projector's tables and read-model views. Must differ from `OUTBOX_SCHEMA`.",
  },
  {
    name: 'KAFKA_CLIENT_ID',
    group: 'kafka',
    default: 'kafka-outbox',
    example: 'billing-outbox',
    doc: 'Client id prefix sent to the brokers.',
  },
  {
    name: 'KAFKA_SASL_MECHANISM',
    group: 'kafka',
    defaultText: 'none',
    example: 'SCRAM-SHA-512',
    doc: '`PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`. Needs `KAFKA_SASL_USERNAME` and `KAFKA_SASL_PASSWORD`.',
  },
  {
    name: 'KAFKA_SASL_USERNAME',
    group: 'kafka',
    defaultText: 'required with a mechanism',
    example: 'relay',
    doc: 'SASL user name.',
  },
  {
    name: 'KAFKA_SASL_PASSWORD',
    group: 'kafka',
    defaultText: 'required with a mechanism',
    example: '…',
    secret: true,
    doc: 'SASL password (redacted everywhere).',
  },
  {
    name: 'KAFKA_TLS',
    group: 'kafka',
    default: false,
    defaultText: '`false` (`true` when a CA file is set)',
    example: 'true',
    doc: "TLS to the brokers. The certificate is always verified: the system's CAs unless `KAFKA_TLS_CA_FILE` names a bundle.",
  },
  {
    name: 'KAFKA_TLS_CA_FILE',
    group: 'kafka',
    defaultText: 'none',
    example: '/etc/kafka/ca.pem',
    doc: "PEM CA bundle for the brokers' certificates; implies `KAFKA_TLS=true`. Must exist.",
  },
  {
    name: 'OUTBOX_KAFKA_ALLOW_PLAINTEXT_SASL',
    group: 'kafka',
    default: false,
    example: 'true',
    doc: 'A SASL mechanism without `KAFKA_TLS` is refused at start-up (PLAIN would send the password in clear, and SCRAM still exposes every record); `true` accepts it, for a trusted network only.',
  },
  {
    name: 'KAFKA_CONNECTION_TIMEOUT_MS',
    group: 'kafka',
    default: 3000,
    min: 100,
    max: 600_000,
    example: '5000',
    doc: 'Broker connect timeout, in milliseconds.',
  },
  {
    name: 'KAFKA_REQUEST_TIMEOUT_MS',
    group: 'kafka',
    default: 30_000,
    min: 100,
    max: 600_000,
    example: '60000',
    doc: 'Broker request timeout, in milliseconds.',
  },
  {
    name: 'SCHEMA_REGISTRY_USERNAME',
    group: 'registry',
    defaultText: 'none',
    example: 'outbox',
    doc: 'Registry basic-auth user; set together with `SCHEMA_REGISTRY_PASSWORD`.',
  },
  {
    name: 'SCHEMA_REGISTRY_PASSWORD',
    group: 'registry',
    defaultText: 'none',
    example: '…',
    secret: true,
    doc: 'Registry basic-auth password (redacted everywhere); set together with `SCHEMA_REGISTRY_USERNAME`.',
  },
  {
    name: 'OUTBOX_RELAY_BATCH_SIZE',
    group: 'relay',
    default: 1000,
    min: 1,
    max: 100_000,
    example: '500',
    doc: 'Events claimed per relay batch.',
  },
  {
    name: 'OUTBOX_RELAY_POLL_INTERVAL',
    group: 'relay',
    default: 1000,
    defaultText: '`1s`',
    example: '250ms',
    doc: 'How often an idle relay polls; NOTIFY wakes it earlier. A duration: `500ms`, `30s`, `15m`, `12h`, `7d`.',
  },
  {
    name: 'OUTBOX_TOPIC_MAP',
    group: 'relay',
    defaultText: 'none',
    example: 'user=users.v1,order=orders',
    doc: 'Explicit topic per aggregate type, `aggregate_type=topic[,...]`. Unmapped types use `OUTBOX_TOPIC_SUFFIX`.',
  },
  {
    name: 'OUTBOX_TOPIC_SUFFIX',
    group: 'relay',
    default: '.events',
    example: '.events',
    doc: 'Topic of an unmapped aggregate type: `<aggregate_type><suffix>`.',
  },
  {
    name: 'OUTBOX_TOPIC_TEMPLATE',
    group: 'relay',
    defaultText: '`{aggregate_type}.events` (through `OUTBOX_TOPIC_SUFFIX`)',
    example: 'prod.{aggregate_type}.events',
    doc: 'Topic of an unmapped aggregate type, with `{aggregate_type}` replaced. Set it or `OUTBOX_TOPIC_SUFFIX`, not both.',
  },
  {
    name: 'OUTBOX_CLOUDEVENTS',
    group: 'relay',
    default: false,
    example: 'true',
    doc: 'Add CloudEvents binary-mode headers (`ce_id`, `ce_source`, `ce_type`, `ce_specversion`, `ce_time`, `content-type`) to every record, from the metadata the event carries.',
  },
  {
    name: 'OUTBOX_CLOUDEVENTS_SOURCE',
    group: 'relay',
    defaultText: '`/kafka-outbox/<OUTBOX_SCHEMA>`',
    example: 'https://billing.example.com',
    doc: 'The `ce_source` header (a URI reference); only with `OUTBOX_CLOUDEVENTS=true`.',
  },
  {
    name: 'OUTBOX_TOPIC_PARTITIONS',
    group: 'relay',
    default: 6,
    min: 1,
    max: 10_000,
    example: '12',
    doc: 'Partitions of the topics the relay creates.',
  },
  {
    name: 'OUTBOX_TOPIC_REPLICATION_FACTOR',
    group: 'kafka',
    defaultText: 'min(3, brokers in the cluster)',
    min: 1,
    max: 32,
    example: '3',
    doc: 'Replication factor of the topics kafka-outbox creates (event and dead-letter topics). An existing topic with another is reported at start-up and used as it is.',
  },
  {
    name: 'OUTBOX_TOPIC_MIN_INSYNC_REPLICAS',
    group: 'kafka',
    defaultText: 'replication factor − 1 (at least 1)',
    min: 1,
    max: 32,
    example: '2',
    doc: '`min.insync.replicas` of the topics kafka-outbox creates: with acks=all, a write needs this many replicas in sync, so losing more brokers than RF − this stalls the relay (nothing is lost or marked) until they return.',
  },
  {
    name: 'OUTBOX_DELIVERED_RETENTION',
    group: 'relay',
    default: 7 * 86_400_000,
    defaultText: '`7d`',
    example: '24h',
    doc: 'How long the delivery bookkeeping of delivered events is kept. The history itself is permanent.',
  },
  {
    name: 'OUTBOX_KAFKA_MAX_MESSAGE_BYTES',
    group: 'relay',
    default: 1_000_000,
    min: 1024,
    max: 100_000_000,
    example: '4000000',
    doc: "Largest record the brokers accept (their `message.max.bytes`). A bigger event is parked; requests keep each partition's records under 90% of it.",
  },
  {
    name: 'OUTBOX_RELAY_BATCH_BYTES',
    group: 'relay',
    default: 16 * 1024 * 1024,
    min: 1024,
    max: 1024 * 1024 * 1024,
    example: '4194304',
    doc: 'Byte budget of one claim (payload JSON text); a claim always takes at least one event.',
  },
  {
    name: 'OUTBOX_RELAY_TRANSACTIONAL',
    group: 'relay',
    default: true,
    example: 'false',
    doc: 'Publish each batch in a Kafka transaction with a `transactional.id` per outbox, so the broker fences a relay that lost its leadership (a zombie). Consumers must read with `isolation.level=read_committed` and must not assume dense offsets (each commit writes a marker that takes an offset). `false`: the idempotent producer alone (no broker-side fence; lower latency).',
  },
  {
    name: 'OUTBOX_RELAY_TRANSACTIONAL_ID',
    group: 'relay',
    defaultText: '`kafka-outbox-relay.<database>.<OUTBOX_SCHEMA>`',
    example: 'billing-outbox-relay',
    doc: "The `transactional.id` of the relay's producer with `OUTBOX_RELAY_TRANSACTIONAL`; every relay of one outbox must use the same.",
  },
  {
    name: 'OUTBOX_RELAY_SHARDED',
    group: 'relay',
    default: false,
    example: 'true',
    doc: "Run relays active-active: every running relay instance publishes a fair share of the delivery queue's shards (each under its own lock, and with `OUTBOX_RELAY_TRANSACTIONAL` its own `transactional.id`). Off: one relay leads, the others stand by. See docs/relay.md.",
  },
  {
    name: 'OUTBOX_RELAY_SHARDS',
    group: 'relay',
    default: 32,
    min: 1,
    max: 1024,
    example: '64',
    doc: "Number of shards of the delivery queue, read by `outbox migrate` when it creates them (an aggregate's events are all in one shard); fixed afterwards. More instances than shards leaves the extra ones standing by.",
  },
  {
    name: 'OUTBOX_RELAY_REBALANCE_INTERVAL',
    group: 'relay',
    default: 1000,
    defaultText: '`1s`',
    example: '500ms',
    doc: 'With `OUTBOX_RELAY_SHARDED`, how often a relay compares its shards with its fair share of the running instances (taking free shards, giving up surplus between batches). A duration.',
  },
  {
    name: 'OUTBOX_INSTANCE_ID',
    group: 'relay',
    defaultText: '`<HOSTNAME>-<pid>`',
    example: 'relay-a',
    doc: 'Name of this relay instance in logs, metrics and leader election.',
  },
  {
    name: 'OUTBOX_SNAPSHOT_EVERY',
    group: 'projector',
    default: 100,
    min: 1,
    max: 1_000_000,
    example: '50',
    doc: 'Aggregate snapshot interval, in events.',
  },
  {
    name: 'OUTBOX_PROJECTOR_BATCH_SIZE',
    group: 'projector',
    default: 500,
    min: 1,
    max: 100_000,
    example: '1000',
    doc: 'Messages applied per projector transaction.',
  },
  {
    name: 'OUTBOX_ADMIN_PORT',
    group: 'admin',
    defaultText: 'relay `9464`, project `9465`',
    min: 0,
    max: 65535,
    example: '9500',
    doc: 'Admin HTTP port of `relay` and `project`: `/metrics`, `/healthz`, `/readyz`. `0` turns it off; a default port that is taken falls back to a free one (logged), a chosen one that is taken stops the command.',
  },
  {
    name: 'OUTBOX_ADMIN_HOST',
    group: 'admin',
    default: '127.0.0.1',
    example: '0.0.0.0',
    doc: 'Interface the admin port binds to.',
  },
  {
    name: 'OUTBOX_LIVENESS_TIMEOUT',
    group: 'admin',
    default: 120_000,
    defaultText: '`2m`',
    example: '90s',
    doc: "`/healthz` answers 503 when the relay's or projector's main loop has not gone round for this long. At least `1s`; keep it above the 10 s retry backoff cap, a Kafka request timeout and a consumer rebalance.",
  },
  {
    name: 'OUTBOX_CONSOLE_PORT',
    group: 'console',
    default: 9470,
    min: 0,
    max: 65535,
    example: '8080',
    doc: 'Port of `outbox console`; `0` picks a free port.',
  },
  {
    name: 'OUTBOX_CONSOLE_HOST',
    group: 'console',
    default: '127.0.0.1',
    example: '0.0.0.0',
    doc: 'Interface `outbox console` binds to. On loopback it answers only to loopback host names.',
  },
  {
    name: 'OUTBOX_CONSOLE_TOKEN',
    group: 'console',
    defaultText: 'none (read-only console)',
    example: 'alice:3f9c…,bob:77a1…',
    secret: true,
    doc: 'Tokens that allow actions (retry, skip, rebuild): `name:token[,name:token...]` or one bare token. Tokens of at least 16 characters; every action is logged with the name.',
  },
  {
    name: 'OUTBOX_CONSOLE_CHECKPOINTS',
    group: 'console',
    defaultText: 'none (no proof links)',
    example: '/var/lib/outbox/checkpoints.jsonl',
    doc: 'Where `outbox audit prove` finds checkpoints, so that audited events link to their proof.',
  },
  {
    name: 'OUTBOX_AUDIT_PRIVATE_KEY_FILE',
    group: 'audit',
    defaultText: 'none (`outbox audit checkpoint` then needs --private-key or OUTBOX_AUDIT_PRIVATE_KEY)',
    example: '/run/secrets/outbox-audit.key',
    doc: 'File with the Ed25519 private key (PKCS#8 PEM, from `outbox audit keygen`) that signs checkpoints. Keep it out of PostgreSQL and away from the database owner; auditors need only the public key.',
  },
  {
    name: 'OUTBOX_AUDIT_PRIVATE_KEY',
    group: 'audit',
    defaultText: 'none',
    example: 'MC4CAQAwBQYDK2VwBCIEI…',
    secret: true,
    doc: 'The Ed25519 checkpoint signing key itself (PKCS#8 PEM, or its base64 DER), when no key file is used. OUTBOX_AUDIT_PRIVATE_KEY_FILE wins when both are set.',
  },
  {
    name: 'OUTBOX_AUDIT_CHECKPOINT_EVERY',
    group: 'audit',
    default: 0,
    defaultText: 'off',
    example: '15m',
    doc: '`outbox relay` also takes a signed checkpoint this often (the first at start), beside the relay with its own connections; every relay process does, leader or standby. Needs the signing key (OUTBOX_AUDIT_PRIVATE_KEY_FILE or OUTBOX_AUDIT_PRIVATE_KEY). At least `1s`; `0` is off.',
  },
  {
    name: 'OUTBOX_AUDIT_CHECKPOINT_FILE',
    group: 'audit',
    defaultText: 'none (the checkpoint topic only)',
    example: '/var/lib/outbox/checkpoints.jsonl',
    doc: 'With OUTBOX_AUDIT_CHECKPOINT_EVERY, also append each checkpoint the relay takes to this JSON Lines file (as `outbox audit checkpoint --file`).',
  },
  {
    name: 'LOG_LEVEL',
    group: 'logging',
    default: 'info',
    example: 'debug',
    doc: '`fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`. JSON lines on stderr; one-shot commands log warnings only unless `--verbose`.',
  },
  {
    name: 'OUTBOX_ENV_FILE',
    group: 'logging',
    defaultText: '`.stack/env`',
    example: '/run/secrets/outbox.env',
    doc: 'File of `KEY=value` lines read for variables the environment does not set (the environment wins). Must exist when named.',
  },
];

const BY_NAME = new Map(OPTIONS.map((o) => [o.name, o]));

/** The declaration of `name`; reading an undeclared setting is a programming error. */
export function option(name: string): OptionDeclaration {
  const o = BY_NAME.get(name);
  if (!o) throw new Error(`setting ${name} is not declared in core/options.ts`);
  return o;
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function defaultCell(o: OptionDeclaration): string {
  if (o.defaultText !== undefined) return o.defaultText;
  if (o.default === undefined) return 'none';
  return `\`${String(o.default)}\``;
}

/** docs/configuration.md, generated from OPTIONS. */
export function renderConfigurationDoc(): string {
  const lines: string[] = [
    '# Configuration',
    '',
    '<!-- Generated from core/options.ts by `npm run docs:config`; edit the declarations, not this file. -->',
    '',
    "All configuration is environment variables (connections stay in the environment; a team's domain lives in its",
    'config module, see [writing events](writing-events.md)). Every command validates the variables it uses once at',
    'start-up and reports all problems together, one line per variable, before it connects to anything. Variables',
    'not set in the environment are read from `OUTBOX_ENV_FILE`; the environment wins. Secrets are redacted from',
    'logs and error messages.',
    '',
  ];
  for (const group of Object.keys(GROUP_TITLES) as OptionGroup[]) {
    const items = OPTIONS.filter((o) => o.group === group);
    if (items.length === 0) continue;
    lines.push(`## ${GROUP_TITLES[group]}`, '', '| Variable | Default | Example | Meaning |', '| --- | --- | --- | --- |');
    for (const o of items) {
      const bounds = o.min !== undefined && o.max !== undefined ? ` Between ${o.min} and ${o.max}.` : '';
      lines.push(`| \`${o.name}\` | ${cell(defaultCell(o))} | \`${cell(o.example)}\` | ${cell(o.doc + bounds)} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
}
