/**
 * HTML for the console, escaped by construction: `html\`...\`` escapes every interpolated value unless it
 * is itself the result of `html` (or of `raw`, which only this module's callers use for constant markup).
 * Event payloads, aggregate ids, actors and park reasons are data written by services: they are always
 * interpolated, never concatenated into markup, so `<script>` or `"><img onerror=...>` in them renders as
 * text. The browser side only ever sets `textContent`, and the Content-Security-Policy allows no inline
 * script at all (console/server.ts).
 */
export class SafeHtml {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };

export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"'`]/g, (c) => ESCAPES[c] ?? c);
}

/** One interpolated value: markup passes, arrays are joined, null/undefined/false render nothing, anything else is escaped text. */
function part(value: unknown): string {
  if (value instanceof SafeHtml) return value.value;
  if (Array.isArray(value)) return value.map(part).join('');
  if (value === null || value === undefined || value === false) return '';
  return escapeHtml(value);
}

export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0] ?? '';
  values.forEach((v, i) => {
    out += part(v) + (strings[i + 1] ?? '');
  });
  return new SafeHtml(out);
}

/** Constant markup written in this package (never data). */
export function raw(markup: string): SafeHtml {
  return new SafeHtml(markup);
}

/** JSON of a value for display (escaped when interpolated). Undefined renders as `(absent)`. */
export function showJson(value: unknown): string {
  if (value === undefined) return '(absent)';
  return JSON.stringify(value);
}

export type Page = 'overview' | 'parked' | 'projections' | 'audit';

export interface LayoutOptions {
  title: string;
  page: Page;
  /** Whether actions can be enabled with a token (OUTBOX_CONSOLE_TOKEN is set). */
  actionsConfigured: boolean;
  /** Shown in the header: database target and schemas. */
  target: string;
  body: SafeHtml;
}

const NAV: Array<[Page, string, string]> = [
  ['overview', '/', 'Overview'],
  ['parked', '/parked', 'Parked events'],
  ['projections', '/projections', 'Projections'],
  ['audit', '/audit', 'Audit'],
];

export function layout(o: LayoutOptions): SafeHtml {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${o.title} · outbox console</title>
<link rel="stylesheet" href="/assets/console.css">
<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">
<script src="/assets/console.js" defer></script>
</head>
<body data-page="${o.page}" data-actions="${o.actionsConfigured ? 'configured' : 'off'}">
<header>
  <div class="brand">outbox console <span class="target">${o.target}</span></div>
  <nav>${NAV.map(([p, href, label]) => html`<a href="${href}"${p === o.page ? raw(' aria-current="page"') : ''}>${label}</a>`)}</nav>
  <form class="credentials" id="credentials" autocomplete="off">
    ${
      o.actionsConfigured
        ? html`<label>Token <input type="password" id="token" name="token" autocomplete="off" placeholder="OUTBOX_CONSOLE_TOKEN"></label>
    <label>User <input type="text" id="user" name="user" maxlength="64" autocomplete="off" placeholder="your name"></label>
    <span id="auth-state" class="muted">read-only until a token is entered</span>`
        : html`<span class="muted">read-only: actions need OUTBOX_CONSOLE_TOKEN on the server</span>`
    }
  </form>
</header>
<main>
${o.body}
</main>
<div id="flash" role="status" aria-live="polite"></div>
</body>
</html>
`;
}

/** A table; cells are escaped unless they are SafeHtml. */
export function table(headers: string[], rows: unknown[][], attrs: { id?: string; empty?: string } = {}): SafeHtml {
  if (rows.length === 0 && attrs.empty !== undefined) return html`<p class="muted">${attrs.empty}</p>`;
  return html`<table${attrs.id ? html` id="${attrs.id}"` : ''}>
<thead><tr>${headers.map((h) => html`<th>${h}</th>`)}</tr></thead>
<tbody>${rows.map((r) => html`<tr>${r.map((c) => html`<td>${c}</td>`)}</tr>`)}</tbody>
</table>`;
}
