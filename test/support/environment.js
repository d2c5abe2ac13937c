// Jest environment for kafka-outbox tests: records whether any test of the file failed (so the
// per-file database is kept as evidence) and fails the file if it leaves a relay, projector or
// child process running.
const { TestEnvironment } = require('jest-environment-node');

class OutboxTestEnvironment extends TestEnvironment {
  async handleTestEvent(event) {
    if (event.name === 'test_fn_failure' || event.name === 'hook_failure') this.global.__outboxTestFailed = true;
  }

  async teardown() {
    const running = this.global.__kafkaOutboxRunning;
    const left = running ? [...running.values()] : [];
    await super.teardown();
    if (left.length > 0) {
      throw new Error(`test file left ${left.length} component(s) running: ${left.map((c) => `${c.kind} ${c.id}`).join(', ')}`);
    }
  }
}

module.exports = OutboxTestEnvironment;
