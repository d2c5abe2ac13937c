// The configuration of this checkout: the users-service example's domain (examples/users-service), so
// that `outbox relay|project|rebuild|...` and the tests run on it here, plus its `outbox demo` command.
// A service that uses kafka-outbox has its own outbox.config.* (see README "Use it in your service").
import { defineConfig } from './index';
import usersService from './examples/users-service/outbox.config';
import { demoCommand } from './examples/users-service/demo';

export default defineConfig({ ...usersService, schemasDir: './examples/users-service/schemas', commands: [demoCommand] });
