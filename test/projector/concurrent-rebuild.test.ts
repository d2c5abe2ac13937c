import { silentLogger } from '../../core/logger';
import { generationSchema, rebuildProjection, type Projection, type RebuildResult } from '../../projector';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { projectorFixture, thingsProjection, waitFor } from './support';

// One rebuild of a projection at a time: a second one started while the first is running is refused
// with an error that says so, and the first one's shadow is left alone (it finishes and swaps in).
const db = useTestDatabase({ poolSize: 8 });
const logger = silentLogger();
let openGate: () => void = () => undefined;

afterAll(() => openGate());

test('a second concurrent rebuild of the same projection is refused; the first one finishes', async () => {
  const { config, topic, catalog, streams, produce } = await projectorFixture(db.url, logger);
  await produce(['a', 'b', 'c'].map((id) => streams.event(id, 'UserRegistered', 1, { email: 'x@x', name: id })));

  // The shadow's handler waits at a gate: the first rebuild stays in progress until the test opens it.
  const gate = new Promise<void>((resolve) => (openGate = resolve));
  const plain = thingsProjection(topic);
  const things: Projection = {
    ...plain,
    handlers: {
      UserRegistered: async (e, ctx) => {
        if (ctx.rebuilding && ctx.generation === 2) await gate;
        await plain.handlers.UserRegistered!(e, ctx);
      },
    },
  };
  const options = { config, logger, projection: things, pool: db.pool, catalog, sessionTimeoutMs: 6000 };

  const first = rebuildProjection({ ...options, groupIdPrefix: uniqueName('r1'), timeoutMs: 60_000 });
  first.catch(() => undefined);
  await waitFor(
    'the first rebuild building generation 2',
    async () => (await db.pool.query("SELECT 1 FROM projector_generations WHERE projection = 'things' AND generation = 2 AND status = 'building'")).rowCount === 1,
  );

  let timer: NodeJS.Timeout | undefined;
  const second = await Promise.race([
    rebuildProjection({ ...options, groupIdPrefix: uniqueName('r2'), timeoutMs: 5_000 }).then(
      (r: RebuildResult) => r,
      (err: unknown) => err,
    ),
    new Promise((resolve) => (timer = setTimeout(() => resolve(new Error('the second rebuild was neither refused nor finished')), 30_000))),
  ]);
  clearTimeout(timer);
  expect(second).toMatchObject({ code: 'ALREADY_RUNNING' });
  expect((second as Error).message).toMatch(/a rebuild of projection things is already running/);
  // The first one's shadow is untouched.
  expect((await db.pool.query("SELECT generation, status FROM projector_generations WHERE projection = 'things' ORDER BY generation")).rows).toEqual([
    { generation: 1, status: 'live' },
    { generation: 2, status: 'building' },
  ]);
  expect((await db.pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [generationSchema(config.projector.schema, 'things', 2)])).rowCount).toBe(1);

  openGate();
  expect(await first).toMatchObject({ projection: 'things', generation: 2, swapped: true });
  expect((await db.pool.query('SELECT id FROM things ORDER BY id')).rows).toEqual([{ id: 'a' }, { id: 'b' }, { id: 'c' }]);

  // Once the first has finished, a new rebuild runs.
  expect(await rebuildProjection({ ...options, groupIdPrefix: uniqueName('r3'), timeoutMs: 60_000 })).toMatchObject({ generation: 3, swapped: true });
}, 120_000);
