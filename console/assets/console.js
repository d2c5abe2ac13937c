// outbox console: refreshes the overview from /api/overview and sends actions (retry, skip, rebuild)
// with the token from the header's field. Plain browser JavaScript, no build step; it only ever sets
// textContent (never HTML from data), and the page's Content-Security-Policy allows no inline script.
'use strict';

(function () {
  var page = document.body.getAttribute('data-page');
  var actionsConfigured = document.body.getAttribute('data-actions') === 'configured';
  var tokenInput = document.getElementById('token');
  var userInput = document.getElementById('user');
  var authState = document.getElementById('auth-state');

  // ---- credentials (kept for this tab only) ------------------------------------------------------
  function restore(input, key) {
    if (!input) return;
    try {
      input.value = sessionStorage.getItem(key) || '';
    } catch (e) {
      /* storage disabled */
    }
    input.addEventListener('input', function () {
      try {
        sessionStorage.setItem(key, input.value);
      } catch (e) {
        /* storage disabled */
      }
      showAuthState();
    });
  }
  function showAuthState() {
    if (!authState) return;
    authState.textContent = tokenInput && tokenInput.value ? 'actions use this token' : 'read-only until a token is entered';
  }
  restore(tokenInput, 'outbox-console-token');
  restore(userInput, 'outbox-console-user');
  showAuthState();
  var credentials = document.getElementById('credentials');
  if (credentials) credentials.addEventListener('submit', function (e) { e.preventDefault(); });

  // ---- messages -----------------------------------------------------------------------------------
  var flashTimer;
  function flash(text, kind) {
    var el = document.getElementById('flash');
    if (!el) return;
    el.textContent = text;
    el.className = kind || 'info';
    clearTimeout(flashTimer);
    flashTimer = setTimeout(function () { el.textContent = ''; el.className = ''; }, 15000);
  }

  // ---- formatting (as console/pages.ts) -----------------------------------------------------------
  function formatInt(n) {
    if (n === null || n === undefined || isNaN(Number(n))) return '?';
    return Math.round(Number(n)).toLocaleString('en-US');
  }
  function pad(n) { return String(n).padStart(2, '0'); }
  function formatAge(s) {
    if (s === null || s === undefined) return '?';
    if (s < 60) return s.toFixed(1) + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm' + pad(Math.floor(s % 60)) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h' + pad(Math.floor((s % 3600) / 60)) + 'm';
    return Math.floor(s / 86400) + 'd' + pad(Math.floor((s % 86400) / 3600)) + 'h';
  }
  function get(obj, path) {
    return path.split('.').reduce(function (o, k) { return o === null || o === undefined ? undefined : o[k]; }, obj);
  }
  function format(value, fmt, el, data) {
    var zeroWhen = el.getAttribute('data-zero-when');
    if (zeroWhen && !get(data, zeroWhen)) return '-';
    if (fmt === 'leader') return value === null || value === undefined ? 'none' : 'pid ' + value;
    if (value === null || value === undefined) return '-';
    if (fmt === 'int') return formatInt(value);
    if (fmt === 'age') return formatAge(Number(value));
    if (fmt === 'time') return String(value).replace('T', ' ').replace(/\.\d+Z$/, 'Z');
    return String(value);
  }

  function cell(text, className) {
    var td = document.createElement('td');
    td.textContent = text === null || text === undefined ? '' : String(text);
    if (className) td.className = className;
    return td;
  }
  function row(cells) {
    var tr = document.createElement('tr');
    cells.forEach(function (c) { tr.appendChild(c); });
    return tr;
  }

  // ---- overview: poll the JSON endpoint -------------------------------------------------------------
  function applyOverview(data) {
    document.querySelectorAll('[data-bind]').forEach(function (el) {
      var path = el.getAttribute('data-bind');
      var part = path.split('.')[0];
      if (data[part] && data[part].ok === false) return;
      el.textContent = format(get(data, path), el.getAttribute('data-format'), el, data);
    });
    document.querySelectorAll('[data-show-when], [data-show-unless]').forEach(function (el) {
      var when = el.getAttribute('data-show-when');
      var path = when || el.getAttribute('data-show-unless');
      var part = data[path.split('.')[0]];
      if (part && part.ok === false) return;
      el.hidden = when ? !get(data, path) : !!get(data, path);
    });
    document.querySelectorAll('[data-error]').forEach(function (el) {
      var part = data[el.getAttribute('data-error')];
      var error = part && part.ok === false ? part.error : '';
      el.textContent = error;
      el.hidden = !error;
    });
    var items = data.projections && data.projections.ok ? data.projections.items : null;
    if (items) {
      var lag = document.querySelector('#projection-lag tbody');
      if (lag) {
        var rows = [];
        items.forEach(function (p) {
          ((p.live && p.live.partitions) || []).forEach(function (x) {
            rows.push(row([cell(p.name), cell(p.liveGeneration), cell(x.topic), cell(x.partition), cell(x.lastOffset),
              cell(x.highWatermark === undefined ? '?' : x.highWatermark), cell(x.lag === undefined ? '?' : formatInt(x.lag))]));
          });
        });
        lag.replaceChildren.apply(lag, rows);
      }
      var summary = document.querySelector('#projection-summary tbody');
      if (summary) {
        summary.replaceChildren.apply(summary, items.map(function (p) {
          var offsets = cell('', 'offsets');
          var code = document.createElement('code');
          (p.lastAppliedOffset === undefined ? '?' : p.lastAppliedOffset).split(',').forEach(function (x, i) {
            if (i > 0) {
              code.appendChild(document.createTextNode(','));
              code.appendChild(document.createElement('wbr'));
            }
            code.appendChild(document.createTextNode(x));
          });
          offsets.appendChild(code);
          var tr = row([cell(p.name), cell(p.lag === undefined ? '?' : formatInt(p.lag), 'lag'), offsets,
            cell(p.updatedAt ? format(p.updatedAt, 'time', summary, data) : '-'), cell(p.note || '', 'muted')]);
          tr.setAttribute('data-projection', p.name);
          return tr;
        }));
      }
    }
    var subjects = document.getElementById('subjects');
    if (subjects && data.registry && data.registry.ok) {
      subjects.replaceChildren.apply(subjects, data.registry.subjects.map(function (s) {
        var li = document.createElement('li');
        var code = document.createElement('code');
        code.textContent = s;
        li.appendChild(code);
        return li;
      }));
    }
    document.body.setAttribute('data-refreshed', data.generatedAt);
  }

  function pollOverview(delayMs) {
    setTimeout(function () {
      fetch('/api/overview', { credentials: 'same-origin', headers: { Accept: 'application/json' } })
        .then(function (r) { return r.json(); })
        .then(function (data) {
          applyOverview(data);
          pollOverview((data.refreshSeconds || 5) * 1000);
        })
        .catch(function (err) {
          flash('refresh failed: ' + err.message + ' (retrying)', 'error');
          pollOverview(10000);
        });
    }, delayMs);
  }
  if (page === 'overview') pollOverview(0);

  // ---- server-rendered pages: swap in a fresh <main> ---------------------------------------------------
  // The new markup comes from this server, which escapes every value; DOMParser documents never run scripts.
  function refreshMain() {
    return fetch(location.href, { credentials: 'same-origin', headers: { Accept: 'text/html' } })
      .then(function (r) { return r.text(); })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, 'text/html');
        var fresh = doc.querySelector('main');
        var main = document.querySelector('main');
        // Copy the list first: adopting a node removes it from the (live) childNodes of the parsed document.
        if (fresh && main) main.replaceChildren.apply(main, Array.from(fresh.childNodes).map(function (n) { return document.adoptNode(n); }));
        scheduleProjectionRefresh();
      });
  }
  var projectionTimer;
  function scheduleProjectionRefresh() {
    clearTimeout(projectionTimer);
    var view = document.getElementById('projections-view');
    var seconds = view ? Number(view.getAttribute('data-refresh')) : 0;
    if (seconds > 0) projectionTimer = setTimeout(function () { refreshMain().catch(function () { scheduleProjectionRefresh(); }); }, seconds * 1000);
  }
  if (page === 'projections') scheduleProjectionRefresh();

  // ---- actions ------------------------------------------------------------------------------------------
  function post(path, body) {
    var headers = { 'Content-Type': 'application/json', Accept: 'application/json' };
    if (tokenInput && tokenInput.value) headers.Authorization = 'Bearer ' + tokenInput.value.trim();
    if (userInput && userInput.value.trim()) headers['X-Outbox-User'] = userInput.value.trim();
    return fetch(path, { method: 'POST', credentials: 'same-origin', headers: headers, body: JSON.stringify(body) }).then(function (r) {
      return r.json().then(function (json) { return { status: r.status, body: json }; }, function () { return { status: r.status, body: {} }; });
    });
  }

  document.addEventListener('click', function (e) {
    var button = e.target instanceof Element ? e.target.closest('button[data-action]') : null;
    if (!button || button.disabled) return;
    if (!actionsConfigured) return flash('read-only: actions need OUTBOX_CONSOLE_TOKEN on the server', 'error');
    var action = button.getAttribute('data-action');
    var path;
    var body;
    var what;
    if (action === 'retry' || action === 'skip') {
      var eventId = button.getAttribute('data-event-id');
      path = '/api/parked/' + action;
      body = { eventId: eventId };
      what = (action === 'retry' ? 'retry of ' : 'skip of ') + eventId;
      if (action === 'skip') {
        var rowEl = button.closest('tr');
        var reason = rowEl ? rowEl.querySelector('.skip-reason') : null;
        if (reason && reason.value.trim()) body.reason = reason.value.trim();
      }
    } else if (action === 'rebuild') {
      path = '/api/projections/rebuild';
      body = { projection: button.getAttribute('data-projection') };
      what = 'rebuild of ' + body.projection;
    } else {
      return;
    }
    button.disabled = true;
    post(path, body)
      .then(function (r) {
        if (r.status >= 200 && r.status < 300) {
          flash(what + ': ' + (r.status === 202 ? 'started' : 'done') + ' (by ' + (r.body.by || '?') + ')', 'ok');
          return refreshMain();
        }
        flash(what + ' refused (HTTP ' + r.status + '): ' + (r.body.error || 'no reason given'), 'error');
      })
      .catch(function (err) { flash(what + ' failed: ' + err.message, 'error'); })
      .then(function () { button.disabled = false; });
  });
})();
