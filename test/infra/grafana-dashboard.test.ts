import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createMetrics } from '../../core/metrics';
import { projectorMetrics } from '../../projector/metrics';

// infra/grafana/kafka-outbox.json parses, has the panels an operator needs (backlog, oldest age, publish
// latency, lag, parked), and every metric its queries name is one kafka-outbox exports.
const dashboard = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'infra', 'grafana', 'kafka-outbox.json'), 'utf8')) as {
  title: string;
  panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
};

test('the dashboard parses, and every query names an exported metric', async () => {
  const metrics = createMetrics({ defaultMetrics: false });
  projectorMetrics(metrics.registry);
  const exported = new Set((await metrics.registry.getMetricsAsJSON()).map((m) => m.name));
  const queried = new Set<string>();
  for (const p of dashboard.panels) for (const t of p.targets) for (const m of t.expr.matchAll(/\boutbox_[a-z_]+/g)) queried.add(m[0]);
  expect(queried.size).toBeGreaterThan(8);
  const unknown = [...queried].filter((name) => !exported.has(name) && !exported.has(name.replace(/_(bucket|sum|count)$/, '')));
  expect(unknown).toEqual([]);
  const titles = dashboard.panels.map((p) => p.title.toLowerCase()).join(' | ');
  for (const needed of ['backlog', 'oldest', 'latency', 'lag', 'parked']) expect(titles).toContain(needed);
});
