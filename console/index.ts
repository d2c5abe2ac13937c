/**
 * The operator and auditor console (`outbox console`): overview, parked events, projections and audit
 * pages on node:http, served with everything they need from this package. See docs/operating.md.
 */
export { startConsole, matchToken, type ConsoleOptions, type RunningConsole } from './server';
export { ConsoleData, payloadChanges, chainMarks, type Overview, type ParkedEvent, type ProjectionInfo, type AuditResult, type FieldChange, type ChainMark } from './data';
export { html, escapeHtml, raw, SafeHtml } from './html';
export { Jobs, outboxBin, type RebuildJob } from './jobs';
