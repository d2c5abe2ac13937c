import pg from 'pg';
import { silentLogger } from '../../core/logger';
import { rebuildProjection } from '../../projector';
import { asRole, grantProjectorDatabase, ROLES } from '../faults/support';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { projectorFixture, thingsProjection } from './support';

// A rebuild run under another role than the projector's would create the new generation's tables owned
// by that role: once swapped in, the projector could no longer write them, and the projector schema's
// views (owned by the projector's role) could no longer read them — for anyone, superusers included
// (found by the PostgreSQL crash scenario, whose rebuild ran as the test's superuser login). So a rebuild
// refuses to start under a role other than the owner of the live generation, naming both roles.
const db = useTestDatabase({ poolSize: 4 });
const logger = silentLogger();

test('a rebuild under another role than the owner of the live generation is refused, naming both; nothing changes', async () => {
  const { config, topic, catalog, streams, produce } = await projectorFixture(db.url, logger);
  await produce(['a', 'b'].map((id) => streams.event(id, 'UserRegistered', 1, { email: 'x@x', name: id })));
  await grantProjectorDatabase(db.url);
  const things = thingsProjection(topic);
  const asProjector = new pg.Pool({ connectionString: asRole(db.url, ROLES.projector), max: 4 });
  try {
    const options = { config, logger, projection: things, catalog, sessionTimeoutMs: 6000, timeoutMs: 60_000 };
    // The projector's role builds and owns the live generation.
    await rebuildProjection({ ...options, pool: asProjector, groupIdPrefix: uniqueName('r1') });
    const before = (await db.pool.query('SELECT generation, status FROM projector_generations WHERE projection = $1 ORDER BY generation', ['things'])).rows;
    expect(before).toContainEqual({ generation: 2, status: 'live' });

    // The test's login (a superuser) is refused.
    await expect(rebuildProjection({ ...options, pool: db.pool, groupIdPrefix: uniqueName('r2') })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      message: expect.stringMatching(new RegExp(`projection things.*owned by ${ROLES.projector}.*runs as postgres`, 's')),
    });
    expect((await db.pool.query('SELECT generation, status FROM projector_generations WHERE projection = $1 ORDER BY generation', ['things'])).rows).toEqual(before);
    expect((await db.pool.query('SELECT id FROM things ORDER BY id')).rows).toEqual([{ id: 'a' }, { id: 'b' }]);
  } finally {
    await asProjector.end();
  }
});
