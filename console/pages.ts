import type { AggregateMatch, AuditResult, ChainMark, FieldChange, GenerationInfo, Overview, ParkedEvent, ProjectionInfo } from './data';
import { html, showJson, table, type SafeHtml } from './html';
import type { RebuildJob } from './jobs';

/**
 * The console's pages as server-rendered HTML (console/html.ts escapes every value). The overview's
 * figures carry `data-bind` paths into the /api/overview JSON, so console.js refreshes them in place;
 * the other pages are re-rendered by the server (console.js swaps the new <main> in after an action).
 */

export function formatInt(n: number | undefined | null): string {
  return n === undefined || n === null ? '?' : Math.round(n).toLocaleString('en-US');
}

/** 12.3s, 4m05s, 3h12m, 2d04h (as `outbox status`). */
export function formatAge(seconds: number | undefined | null): string {
  if (seconds === undefined || seconds === null) return '?';
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(Math.floor(seconds % 60)).padStart(2, '0')}s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(seconds / 86400)}d${String(Math.floor((seconds % 86400) / 3600)).padStart(2, '0')}h`;
}

/** `2026-01-31 12:00:00Z` (as console.js formats times). */
export function shortTime(value: Date | string | null | undefined): string {
  if (value === null || value === undefined) return '-';
  const iso = value instanceof Date ? value.toISOString() : value;
  return iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function time(value: Date | string | null | undefined): SafeHtml {
  if (value === null || value === undefined) return html`<span class="muted">-</span>`;
  const iso = value instanceof Date ? value.toISOString() : value;
  return html`<time datetime="${iso}">${shortTime(iso)}</time>`;
}

function partError(error: string): SafeHtml {
  return html`<p class="error">${error}</p>`;
}

function auditLink(type: string, id: string, label?: string): SafeHtml {
  return html`<a href="/audit?${new URLSearchParams({ type, id }).toString()}">${label ?? `${type}/${id}`}</a>`;
}

// ---- overview ---------------------------------------------------------------------------------------

function card(title: string, body: SafeHtml, part: string, error?: string): SafeHtml {
  return html`<section class="card" data-part="${part}"><h2>${title}</h2>${body}<p class="error" data-error="${part}"${error ? '' : html` hidden`}>${error ?? ''}</p></section>`;
}

/** `topic/0@5,topic/1@3` with a line-break opportunity after each comma (the text stays the same). */
function offsetList(value: string | undefined): SafeHtml {
  if (value === undefined) return html`?`;
  return html`${value.split(',').map((x, i) => html`${i > 0 ? html`,<wbr>` : ''}${x}`)}`;
}

export function partitionRows(items: ProjectionInfo[]): unknown[][] {
  return items.flatMap((p) =>
    (p.live?.partitions ?? []).map((x) => [p.name, p.liveGeneration, x.topic, x.partition, x.lastOffset, x.highWatermark ?? '?', x.lag === undefined ? '?' : formatInt(x.lag)]),
  );
}

export function overviewPage(o: Overview): SafeHtml {
  const out = o.outbox.ok ? o.outbox : undefined;
  const rate = o.publishRate.ok ? o.publishRate : undefined;
  const relay = o.relay.ok ? o.relay : undefined;
  const projections = o.projections.ok ? o.projections.items : [];
  const subjects = o.registry.ok ? o.registry.subjects : [];
  const leader = relay?.leader;
  return html`<h1>Overview <span class="muted small">schema <code>${o.schema}</code>, read models in <code>${o.projectorSchema}</code></span></h1>
<p class="muted small">Refreshed every few seconds without reloading · as of <span data-bind="generatedAt" data-format="time">${shortTime(o.generatedAt)}</span></p>
<div class="cards">
${card(
  'Backlog',
  html`<p class="figure"><span id="backlog" data-bind="outbox.backlog" data-format="int">${formatInt(out?.backlog)}</span></p><p class="muted">events not yet delivered</p>`,
  'outbox',
  o.outbox.ok ? undefined : o.outbox.error,
)}
${card(
  'Oldest undelivered',
  html`<p class="figure"><span id="oldest-age" data-bind="outbox.oldestUndeliveredAgeSeconds" data-format="age" data-zero-when="outbox.backlog">${out && out.backlog > 0 ? formatAge(out.oldestUndeliveredAgeSeconds) : '-'}</span></p>
<p class="muted">enqueued <span id="oldest-at" data-bind="outbox.oldestUndeliveredAt">${out?.oldestUndeliveredAt ?? '-'}</span></p>`,
  'outbox',
)}
${card(
  'Parked',
  html`<p class="figure"><a href="/parked"><span id="parked-aggregates" data-bind="outbox.parkedAggregates" data-format="int">${formatInt(out?.parkedAggregates)}</span></a></p>
<p class="muted">aggregate(s) stopped, <span id="parked-events" data-bind="outbox.parkedEvents" data-format="int">${formatInt(out?.parkedEvents)}</span> parked event(s)</p>`,
  'outbox',
)}
${card(
  'Publish rate',
  html`<p class="figure"><span id="publish-rate" data-bind="publishRate.perSecond">${rate?.perSecond ?? '?'}</span> <span class="unit">ev/s</span></p>
<p class="muted"><span data-bind="publishRate.lastMinute" data-format="int">${formatInt(rate?.lastMinute)}</span> in the last minute; last at <span data-bind="publishRate.lastPublishedAt" data-format="time">${shortTime(rate?.lastPublishedAt)}</span></p>`,
  'publishRate',
  o.publishRate.ok ? undefined : o.publishRate.error,
)}
${card(
  'Relay leader',
  html`<p class="figure small-figure" id="relay-leader" data-bind="relay.leader.pid" data-format="leader">${leader ? `pid ${leader.pid}` : 'none'}</p>
<p class="muted" data-show-when="relay.leader"${leader ? '' : html` hidden`}>from <span data-bind="relay.leader.clientAddr">${leader?.clientAddr ?? '-'}</span> since <span data-bind="relay.leader.since" data-format="time">${shortTime(leader?.since)}</span></p>
<p class="error" data-show-unless="relay.leader"${leader ? html` hidden` : ''}>no relay holds the leader lock: nothing is being published</p>
<p class="muted"><span data-bind="relay.otherConnections" data-format="int">${formatInt(relay?.otherConnections)}</span> standby relay connection(s)</p>`,
  'relay',
  o.relay.ok ? undefined : o.relay.error,
)}
${card(
  'Registered subjects',
  html`<p class="figure"><span id="subject-count" data-bind="registry.subjects.length" data-format="int">${formatInt(subjects.length)}</span></p><p class="muted">in the schema registry</p>`,
  'registry',
  o.registry.ok ? undefined : o.registry.error,
)}
</div>
<section data-part="projections">
<h2>Projection lag per partition</h2>
<p class="error" data-error="projections"${o.projections.ok ? html` hidden` : ''}>${o.projections.ok ? '' : o.projections.error}</p>
${table(['Projection', 'Generation', 'Topic', 'Partition', 'Last applied', 'High watermark', 'Lag'], partitionRows(projections), { id: 'projection-lag' })}
<table id="projection-summary">
<thead><tr><th>Projection</th><th>Lag (all partitions)</th><th>Last applied offsets</th><th>Updated</th><th>Note</th></tr></thead>
<tbody>${projections.map(
    (p) =>
      html`<tr data-projection="${p.name}"><td>${p.name}</td><td class="lag">${p.lag === undefined ? '?' : formatInt(p.lag)}</td><td class="offsets"><code>${offsetList(p.lastAppliedOffset)}</code></td><td>${time(p.updatedAt)}</td><td class="muted">${p.note ?? ''}</td></tr>`,
  )}</tbody>
</table>
</section>
<section data-part="registry">
<details${subjects.length <= 30 ? html` open` : ''}><summary><h2 class="inline">Schema registry subjects</h2></summary>
<ul id="subjects" class="columns">${subjects.map((s) => html`<li><code>${s}</code></li>`)}</ul>
</details>
</section>`;
}

// ---- parked -----------------------------------------------------------------------------------------

export function parkedPage(rows: ParkedEvent[], actions: boolean): SafeHtml {
  const disabled = actions ? '' : html` disabled title="read-only: OUTBOX_CONSOLE_TOKEN is not set on the server"`;
  return html`<h1>Parked events <span class="muted small">${rows.length} parked</span></h1>
<p class="muted">A parked event could not be published (its reason below); later events of its aggregate wait behind it, every other aggregate keeps flowing.
<strong>Retry</strong> lets the relay try it (and those behind it) again, as <code>outbox parked retry</code>; <strong>Skip</strong> marks it delivered <em>without publishing</em>, as <code>outbox parked skip</code>.</p>
${
  rows.length === 0
    ? html`<p class="ok-note" id="no-parked">No parked events.</p>`
    : html`<table id="parked">
<thead><tr><th>Aggregate</th><th>Version</th><th>Event</th><th>Parked</th><th>Reason</th><th>Held behind it</th><th>Actions</th></tr></thead>
<tbody>${rows.map(
        (r) => html`<tr data-event-id="${r.event_id}">
<td>${auditLink(r.aggregate_type, r.aggregate_id)}</td>
<td>${r.aggregate_version}</td>
<td><span class="event-type">${r.event_type}</span><br><code class="small">${r.event_id}</code></td>
<td>${time(r.parked_at)}<br><span class="muted small">${r.attempts} attempt(s)</span></td>
<td><pre class="reason">${r.park_reason ?? ''}</pre></td>
<td class="held">${
          Number(r.held_back) === 0
            ? html`<span class="muted">none</span>`
            : html`<details><summary>${r.held_back} event(s)</summary><ol class="small">${r.held.map(
                (h) => html`<li>v${h.aggregate_version} ${h.event_type} <code>${h.event_id}</code></li>`,
              )}${Number(r.held_back) > r.held.length ? html`<li class="muted">… ${Number(r.held_back) - r.held.length} more</li>` : ''}</ol></details>`
        }</td>
<td class="actions">
<button type="button" class="retry" data-action="retry" data-event-id="${r.event_id}"${disabled}>Retry</button>
<details class="skip"><summary>Skip…</summary>
<label class="small">Reason <input type="text" class="skip-reason" maxlength="500" placeholder="why it is skipped"></label>
<button type="button" class="danger" data-action="skip" data-event-id="${r.event_id}"${disabled}>Skip without publishing</button>
</details>
</td>
</tr>`,
      )}</tbody>
</table>`
}`;
}

// ---- projections ------------------------------------------------------------------------------------

function generationBlock(g: GenerationInfo): SafeHtml {
  const progress =
    g.status === 'building'
      ? g.ratio === undefined
        ? html`<p class="muted">progress unknown (no high watermarks)</p>`
        : html`<p><progress max="1" value="${g.ratio.toFixed(4)}"></progress> <span class="rebuild-progress">${Math.round(g.ratio * 100)}%</span>
 <span class="muted">${formatInt(g.applied)} of ${formatInt(g.total)} message(s) applied</span></p>`
      : '';
  return html`<div class="generation ${g.status}" data-generation="${g.generation}">
<h3>Generation ${g.generation} <span class="badge ${g.status}">${g.status}</span> <span class="muted small">in <code>${g.pgSchema}</code>, created ${time(g.createdAt)}${g.updatedAt ? html`, last applied ${time(g.updatedAt)}` : ''}</span></h3>
${progress}
${table(
  ['Topic', 'Partition', 'Last applied offset', 'High watermark', 'Lag'],
  g.partitions.map((x) => [x.topic, x.partition, x.lastOffset, x.highWatermark ?? '?', x.lag === undefined ? '?' : formatInt(x.lag)]),
  { empty: 'no checkpoint yet' },
)}
</div>`;
}

function jobLine(j: RebuildJob): SafeHtml {
  const p = j.progress;
  return html`<li class="job ${j.state}" data-job="${j.id}"><strong>${j.projection}</strong> ${j.state} · started ${time(j.startedAt)} by ${j.by}${
    p ? html` · ${p.phase} ${Math.round(p.ratio * 100)}% (${formatInt(p.processed)}/${formatInt(p.total)}, ${formatInt(p.eventsPerSecond)} ev/s)` : ''
  }${j.finishedAt ? html` · finished ${time(j.finishedAt)}` : ''}${j.error ? html`<br><span class="error">${j.error}</span>` : ''}</li>`;
}

export function projectionsPage(items: ProjectionInfo[] | { error: string }, jobs: RebuildJob[], actions: boolean): SafeHtml {
  const disabled = actions ? '' : html` disabled title="read-only: OUTBOX_CONSOLE_TOKEN is not set on the server"`;
  const list = Array.isArray(items) ? items : [];
  const building = list.some((p) => p.building.length > 0) || jobs.some((j) => j.state === 'running');
  return html`<h1>Projections</h1>
<div id="projections-view" data-refresh="${building ? '3' : ''}">
${Array.isArray(items) ? '' : partError(items.error)}
${Array.isArray(items) && items.length === 0 ? html`<p class="muted">No projection has run against this database yet.</p>` : ''}
${list.map(
  (p) => html`<section class="projection" data-projection="${p.name}">
<h2>${p.name} <span class="muted small">live generation ${p.liveGeneration} · lag <span class="lag">${p.lag === undefined ? '?' : formatInt(p.lag)}</span></span></h2>
${p.note ? html`<p class="muted">${p.note}</p>` : ''}
${p.live ? generationBlock(p.live) : html`<p class="error">the live generation ${p.liveGeneration} has no generation row</p>`}
${p.building.map(generationBlock)}
<details class="rebuild"><summary>Rebuild…</summary>
<p class="small">Rebuilds <strong>${p.name}</strong> from the topics into a new generation while the live one keeps serving, then swaps it in (<code>outbox rebuild ${p.name}</code>).</p>
<button type="button" data-action="rebuild" data-projection="${p.name}"${disabled}>Rebuild ${p.name}</button>
</details>
</section>`,
)}
${jobs.length > 0 ? html`<section><h2>Rebuilds started from this console</h2><ul id="jobs">${jobs.map(jobLine)}</ul></section>` : ''}
</div>`;
}

// ---- audit ------------------------------------------------------------------------------------------

function chainBadge(mark: ChainMark): SafeHtml {
  if (mark.status === 'ok') return html`<span class="badge ok chain">chain ok</span>`;
  if (mark.status === 'broken') return html`<span class="badge broken chain" title="${mark.reason}">chain broken</span><br><span class="small error">${mark.reason}</span>`;
  return html`<span class="badge unverified chain" title="${mark.reason}">not verified</span>`;
}

function changesTable(changes: FieldChange[]): SafeHtml {
  if (changes.length === 0) return html`<span class="muted">empty payload</span>`;
  return html`<table class="changes"><thead><tr><th>Field</th><th>Before</th><th>After</th></tr></thead><tbody>${changes.map(
    (c) =>
      html`<tr class="${c.changed ? 'changed' : 'unchanged'}"><td><code>${c.field}</code></td><td><code class="before${c.before === undefined ? ' absent' : ''}">${showJson(c.before)}</code></td><td><code class="after">${showJson(c.after)}</code></td></tr>`,
  )}</tbody></table>`;
}

export interface AuditPageInput {
  type: string;
  id: string;
  types: string[];
  result?: AuditResult;
  matches?: AggregateMatch[];
  error?: string;
  /** Whether checkpoints are configured (proof links shown). */
  proofs: boolean;
}

export function auditPage(a: AuditPageInput): SafeHtml {
  const r = a.result;
  return html`<h1>Audit</h1>
<form class="search" method="get" action="/audit">
<label>Aggregate type <input name="type" list="aggregate-types" value="${a.type}" required maxlength="200"></label>
<datalist id="aggregate-types">${a.types.map((t) => html`<option value="${t}">`)}</datalist>
<label>Aggregate id <input name="id" value="${a.id}" maxlength="500" placeholder="exact id, or the start of one"></label>
<button type="submit">Search</button>
</form>
${a.error ? partError(a.error) : ''}
${
  a.matches
    ? a.matches.length === 0
      ? html`<p class="muted">No ${a.type} aggregate${a.id ? html` whose id starts with <code>${a.id}</code>` : ''}.</p>`
      : html`<p>${a.matches.length} ${a.type} aggregate(s)${a.id ? html` whose id starts with <code>${a.id}</code>` : ''}:</p><ul id="matches">${a.matches.map(
          (m) => html`<li>${auditLink(a.type, m.aggregate_id)} <span class="muted small">version ${m.version}</span></li>`,
        )}</ul>`
    : ''
}
${
  r
    ? html`<section id="history" data-aggregate="${r.aggregateType}/${r.aggregateId}">
<h2><code>${r.aggregateType}/${r.aggregateId}</code> <span class="muted small">${r.events.length} event(s)</span>
${r.chain.ok ? html`<span class="badge ok" id="chain-summary">chain ok</span>` : html`<span class="badge broken" id="chain-summary">chain broken</span>`}</h2>
<p class="muted small">Chain recomputed from the outbox now (${formatInt(r.chain.checked)} event(s) checked)${
        r.chain.firstBroken ? html`: first broken link at version ${r.chain.firstBroken.version}: ${r.chain.firstBroken.reason}` : ''
      }. Before/after: each payload field against the merge of the earlier payloads.</p>
<p>Actors: <span id="actors">${r.actors.map((actor, i) => html`${i > 0 ? ', ' : ''}<code class="actor">${actor}</code>`)}</span></p>
<table id="events">
<thead><tr><th>Version</th><th>When</th><th>Event</th><th>Who and from which request</th><th>Changes</th><th>Chain</th></tr></thead>
<tbody>${r.events.map(
        (e) => html`<tr data-version="${e.aggregate_version}">
<td>${e.aggregate_version}</td>
<td>${time(e.occurred_at)}<br><span class="muted small">recorded ${time(e.recorded_at)}</span></td>
<td><span class="event-type">${e.event_type}</span> <span class="muted small">v${e.schema_version}</span><br><code class="small">${e.event_id}</code></td>
<td class="who"><dl>
<dt>actor</dt><dd class="actor">${e.actor_id}</dd>
<dt>trace</dt><dd><code>${e.trace_id}</code></dd>
<dt>correlation</dt><dd><code>${e.correlation_id ?? '-'}</code></dd>
${e.causation_id ? html`<dt>causation</dt><dd><code>${e.causation_id}</code></dd>` : ''}
</dl></td>
<td>${changesTable(e.changes)}</td>
<td>${chainBadge(e.chain)}${
          a.proofs
            ? html`<br><a class="proof small" href="/audit/proof?${new URLSearchParams({ type: r.aggregateType, id: r.aggregateId, version: String(e.aggregate_version) }).toString()}">proof</a>`
            : ''
        }<br><code class="small muted" title="${e.hash}">${e.hash.slice(0, 12)}…</code></td>
</tr>`,
      )}</tbody>
</table>
</section>`
    : ''
}`;
}

export function messagePage(title: string, message: string): SafeHtml {
  return html`<h1>${title}</h1><p class="error">${message}</p>`;
}
