import { leaderKill, useCluster } from './cluster';

// Proof-suite scenario "three brokers: leader kill -9", short variant (in npm test): a private
// three-broker stack (replication factor 3, min.insync.replicas 2), the broker leading most partitions
// killed -9 under 300 ev/s and started again once publishing resumed on the other two. cluster.fault.ts
// runs it with a longer load beside the rolling restart, the zombie broker and two brokers down.
const cluster = useCluster();

test(
  '3 brokers: kill -9 of the leader of most partitions under load: 0 lost, 0 reordered, 0 double-applied',
  () => cluster.underLoad('cluster-leader-kill-9-short', 'lk', leaderKill(cluster), { total: 4_500 }),
  600_000,
);
