import { PassThrough } from 'node:stream';
import { createProgressRenderer, formatDuration, progressBar } from '../../cli/render-progress';

// Pure rendering: the terminal bar carries percent, counts, events/s and ETA; off a terminal each update
// is one JSON line.
const update = { phase: 'catching_up', processed: 12_000, total: 30_000, eventsPerSecond: 8512.4, etaSeconds: 2.2, ratio: 0.4 };

test('terminal bar shows phase, percent, counts, rate and ETA', () => {
  expect(progressBar(update, 10)).toBe('catching_up [####------]  40%  12,000/30,000  8,512 ev/s  ETA 2s');
  expect(formatDuration(null)).toBe('--');
  expect(formatDuration(125)).toBe('2m05s');
  expect(formatDuration(7300)).toBe('2h01m');
});

test('off a terminal, one JSON line per update', () => {
  const stream = new PassThrough() as unknown as NodeJS.WriteStream;
  let text = '';
  (stream as unknown as PassThrough).on('data', (d: Buffer) => (text += d.toString()));
  const r = createProgressRenderer(stream, 'rebuild_progress');
  r.update(update);
  r.update({ ...update, processed: 30_000, ratio: 1, etaSeconds: 0 });
  r.done();
  const lines = text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(lines).toEqual([
    { type: 'rebuild_progress', phase: 'catching_up', processed: 12000, total: 30000, ratio: 0.4, eventsPerSecond: 8512, etaSeconds: 2 },
    { type: 'rebuild_progress', phase: 'catching_up', processed: 30000, total: 30000, ratio: 1, eventsPerSecond: 8512, etaSeconds: 0 },
  ]);
});
