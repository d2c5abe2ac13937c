import type { Admin } from 'kafkajs';
import type { Logger } from '../core/logger';
import { replicationConfigEntries, replicationMismatches, reportReplicationMismatches, resolveReplication, type ReplicationSettings, type TopicReplication } from '../core/topics';

/**
 * Topics the relay publishes to, created when missing with the configured partition count and
 * unlimited retention (the topic is the replayable log). Partition counts are cached: the relay
 * assigns partitions itself (murmur2 of the key, as the Java client does), so it must know them.
 */
export class TopicDirectory {
  private readonly partitions = new Map<string, number>();

  constructor(
    private readonly admin: Admin,
    private readonly options: { partitions: number; logger: Logger; replication?: ReplicationSettings },
  ) {}

  private replication: TopicReplication | undefined;

  partitionCount(topic: string): number | undefined {
    return this.partitions.get(topic);
  }

  /** Make sure every topic exists; returns when all are known with their partition counts. */
  async ensure(topics: Iterable<string>): Promise<void> {
    const missing = [...new Set(topics)].filter((t) => !this.partitions.has(t));
    if (missing.length === 0) return;
    const existing = new Set(await this.admin.listTopics());
    const toCreate = missing.filter((t) => !existing.has(t));
    this.replication ??= await resolveReplication(this.admin, this.options.replication ?? {});
    const replication = this.replication;
    reportReplicationMismatches(
      this.options.logger,
      await replicationMismatches(
        this.admin,
        missing.filter((t) => existing.has(t)),
        replication,
      ),
    );
    if (toCreate.length > 0) {
      await this.admin.createTopics({
        waitForLeaders: true,
        topics: toCreate.map((topic) => ({
          topic,
          numPartitions: this.options.partitions,
          replicationFactor: replication.replicationFactor,
          configEntries: [
            ...replicationConfigEntries(replication),
            { name: 'retention.ms', value: '-1' },
            { name: 'retention.bytes', value: '-1' },
            { name: 'cleanup.policy', value: 'delete' },
          ],
        })),
      });
      this.options.logger.info({ topics: toCreate, partitions: this.options.partitions, ...replication }, 'created topics');
    }
    const meta = await this.admin.fetchTopicMetadata({ topics: missing });
    for (const t of meta.topics) this.partitions.set(t.name, t.partitions.length);
  }
}
