// The users service's domain, as a team declares its own: the Avro schemas under ./schemas
// (schemas/<aggregate_type>/<EventType>.v<N>.avsc), the upcaster of its one breaking change, the `users`
// read model and the reducer of the `user` aggregate. Connections come from the environment.
import { defineConfig } from '../../index';
import { usersProjection, userReducer } from './projections/users';
import { upcastUserRenamedV1 } from './upcasters';

export default defineConfig({
  schemasDir: './schemas',
  upcasters: { UserRenamed: { 1: upcastUserRenamedV1 } },
  projections: [usersProjection],
  reducers: [userReducer],
});
