// sagad timeline page: the saga list (/ui) and one saga's steps on a time
// axis (/ui/saga/{id}), drawn from the admin API's JSON. No framework, no
// build step; everything is plain DOM so headless browsers can check it.
'use strict';

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'style') e.style.cssText = v; else e.setAttribute(k, v);
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

function show(...nodes) {
  const app = document.getElementById('app');
  app.replaceChildren(...nodes.filter(n => n !== null));
}

// A number whose text JavaScript's own would change (an id past 2^53,
// 1.50, 1e400) kept as written, so a payload shows what was sent: read
// with the parse's source text and printed back raw by JSON.stringify
// (browsers without JSON.rawJSON show JavaScript's reading of it).
function exactNumbers(key, value, context) {
  if (typeof value === 'number' && context && typeof JSON.rawJSON ===
      'function' && context.source !== String(value))
    return JSON.rawJSON(context.source);
  return value;
}

async function getJSON(url) {
  const r = await fetch(url, { headers: { Accept: 'application/json' } });
  const body = await r.text().then(t => JSON.parse(t, exactNumbers))
    .catch(() => ({}));
  if (!r.ok) throw new Error(body.error || r.status + ' ' + r.statusText);
  return body;
}

const pad = (n, w) => String(n).padStart(w || 2, '0');

// A time in the browser's zone ("2025-01-31 13:00:00.000 +01:00"), as a
// <time> whose title is the UTC time; empty for none.
function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  const off = -d.getTimezoneOffset();
  const zone = (off < 0 ? '-' : '+') + pad(Math.floor(Math.abs(off) / 60)) +
               ':' + pad(Math.abs(off) % 60);
  const local = d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' +
                pad(d.getDate()) + ' ' + pad(d.getHours()) + ':' +
                pad(d.getMinutes()) + ':' + pad(d.getSeconds()) + '.' +
                pad(d.getMilliseconds(), 3) + ' ' + zone;
  return el('time', { datetime: d.toISOString(),
                      title: d.toISOString().replace('T', ' ')
                               .replace('Z', ' UTC') }, local);
}

function fmtMs(ms) {
  if (ms < 1000) return ms + ' ms';
  if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
  if (ms < 3600000) return (ms / 60000).toFixed(1) + ' min';
  return (ms / 3600000).toFixed(1) + ' h';
}

function badge(status) {
  return el('span', { class: 'badge ' + status }, status.replace('_', ' '));
}

// ---- list ----------------------------------------------------------------

const STATES = ['running', 'compensating', 'completed', 'compensated',
                'compensation_failed'];
const REFRESH_MS = 5000;

// A since/until field as the API takes it: a duration before now ("1h")
// or a time with its zone as they are; a time without a zone (what a
// datetime-local field gives) is the browser's local time. null when it is
// neither.
function timeBound(v) {
  if (/^\d+(ms|s|m|h|d)$/.test(v) || /(Z|[+-]\d\d:\d\d)$/i.test(v)) return v;
  const d = new Date(v);
  return isNaN(d) ? null : d.toISOString();
}

function sagaRow(s) {
  return el('tr', { class: 'saga-row', 'data-saga-id': s.saga_id },
    el('td', {}, el('a', { href: '/ui/saga/' + encodeURIComponent(s.saga_id) },
                    s.saga_id)),
    el('td', {}, s.saga_type + ' v' + s.definition_version),
    el('td', {}, badge(s.status)),
    el('td', {}, s.current_step || ''),
    el('td', {}, fmtTime(s.started_at)),
    el('td', {}, fmtTime(s.updated_at)),
    el('td', {}, s.stuck ? el('span', { class: 'stuck' }, 'stuck') : ''));
}

// Counts per state under the other filters; each links to its filter.
function countsBar(q, counts) {
  if (!counts) return null;
  const link = (state, n) => {
    const u = new URLSearchParams(q);
    u.delete('after');
    if (state) u.set('state', state); else u.delete('state');
    const cur = (q.get('state') || '') === state;
    return el('a', { class: 'count' + (cur ? ' current' : ''),
                     'data-state': state || 'any', href: '/ui?' + u },
              (state ? state.replace('_', ' ') : 'any') + ' ',
              el('b', {}, String(n)));
  };
  const total = STATES.reduce((a, s) => a + (counts[s] || 0), 0);
  return el('nav', { id: 'counts', class: 'counts' }, link('', total),
            STATES.map(s => link(s, counts[s] || 0)));
}

async function listPage() {
  const q = new URLSearchParams(location.search);
  const v = k => q.get(k) || '';
  const state = v('state'), type = v('type'), stuck = v('stuck') === 'true';
  const limit = Math.min(Math.max(parseInt(v('limit'), 10) || 50, 1), 1000);
  const search = el('form', { id: 'search', class: 'filters' },
    el('input', { id: 'f-id', name: 'id', placeholder: 'saga id',
                  size: 36 }),
    el('button', { type: 'submit' }, 'open saga'));
  search.addEventListener('submit', ev => {
    ev.preventDefault();
    const id = search.elements.id.value.trim();
    if (id) location.href = '/ui/saga/' + encodeURIComponent(id);
  });
  const refresh = el('input', { type: 'checkbox', name: 'refresh',
                                value: '1', checked: v('refresh') === '1',
                                id: 'f-refresh' });
  const form = el('form', { class: 'filters', id: 'filters', method: 'get',
                            action: '/ui' },
    el('label', {}, 'state ',
       el('select', { name: 'state', id: 'f-state' },
          ['', ...STATES].map(s => el('option', { value: s,
                                                  selected: s === state },
                                      s || 'any')))),
    el('label', {}, 'type ',
       el('input', { name: 'type', id: 'f-type', value: type,
                     placeholder: 'any', size: 12 })),
    el('label', {}, 'since ',
       el('input', { name: 'since', id: 'f-since', value: v('since'),
                     placeholder: '1h or 2025-01-31T12:00', size: 18,
                     title: 'a duration before now (30m, 2h, 1d) or a ' +
                            'time, in your zone unless it names one' })),
    el('label', {}, 'until ',
       el('input', { name: 'until', id: 'f-until', value: v('until'),
                     placeholder: 'now', size: 18 })),
    el('label', {}, el('input', { type: 'checkbox', name: 'stuck',
                                  value: 'true', checked: stuck,
                                  id: 'f-stuck' }), ' stuck only'),
    limit !== 50 ? el('input', { type: 'hidden', name: 'limit',
                                 value: String(limit) }) : null,
    el('button', { type: 'submit' }, 'filter'),
    el('label', { title: 'reload the list every ' + REFRESH_MS / 1000 +
                         ' s, with these filters' },
       refresh, ' auto-refresh'),
    el('span', { id: 'refreshed', class: 'muted' }));
  // Empty fields stay out of the URL.
  form.addEventListener('submit', () => {
    for (const f of form.elements)
      if (f.name && f.value === '' && f.type !== 'checkbox') f.disabled = true;
  });
  const results = el('div', { id: 'results' });
  show(search, form, results);

  const api = new URLSearchParams({ limit: String(limit), counts: 'true' });
  if (state) api.set('state', state);
  if (type) api.set('type', type);
  if (stuck) api.set('stuck', 'true');
  for (const k of ['since', 'until']) {
    if (!v(k)) continue;
    const t = timeBound(v(k));
    if (t === null) {
      results.replaceChildren(el('p', { class: 'error' }, k + ': "' + v(k) +
        '" is neither a duration (30m, 2h, 1d) nor a time'));
      return;
    }
    api.set(k, t);
  }

  let next = null, shown = 0;
  const table = el('table', { id: 'sagas' },
    el('tr', {}, ['saga', 'type', 'status', 'waiting on', 'started',
                  'last progress', ''].map(h => el('th', {}, h))));
  const more = el('button', { id: 'more', type: 'button' }, 'more');
  const footer = el('p', {}, more);

  // The first page again (as many rows as shown, at least one page), or
  // the page after the last row shown.
  async function load(append) {
    const u = new URLSearchParams(api);
    if (append) u.set('after', next);
    else u.set('limit', String(Math.min(Math.max(shown, limit), 1000)));
    let data;
    try {
      data = await getJSON('/sagas?' + u);
    } catch (e) {
      results.replaceChildren(el('p', { class: 'error' },
                                 'could not list sagas: ' + e.message));
      return;
    }
    if (!append) {
      table.replaceChildren(table.firstChild);
      shown = 0;
    }
    table.append(...data.sagas.map(sagaRow));
    shown += data.sagas.length;
    next = data.next;
    more.hidden = !next;
    const summary = el('p', { class: 'muted', id: 'total' },
                       shown + ' of ' + data.total + ' matching, newest ' +
                       'first');
    results.replaceChildren(countsBar(q, data.counts), summary,
      shown ? table : el('p', { class: 'muted' }, 'no saga matches'),
      footer);
    document.getElementById('refreshed').replaceChildren(
      refresh.checked ? el('span', {}, 'updated ',
                           fmtTime(new Date().toISOString())) : '');
  }
  more.addEventListener('click', () => next && load(true));

  let timer = null;
  const arm = () => {
    clearInterval(timer);
    timer = refresh.checked ? setInterval(() => load(false), REFRESH_MS)
                            : null;
  };
  refresh.addEventListener('change', () => {
    // The URL keeps the choice with the filters (a reload keeps both).
    const u = new URLSearchParams(location.search);
    if (refresh.checked) u.set('refresh', '1'); else u.delete('refresh');
    history.replaceState(null, '', '/ui' + (u.toString() ? '?' + u : ''));
    arm();
    load(false);
  });
  await load(false);
  arm();
}

// ---- one saga --------------------------------------------------------------

// Attempts (a command and what decided it) per step, from the history.
function attemptsOf(history) {
  const open = new Map(), bars = [];
  for (const h of history) {
    const key = h.step_index + '/' + h.action + '/' + h.attempt;
    if (h.event === 'Dispatched') {
      const b = { step: h.step, index: h.step_index, action: h.action,
                  attempt: h.attempt, start: h.time_ms, end: null,
                  outcome: null, reason: null, until: h.until_ms };
      open.set(key, b);
      bars.push(b);
    } else if ((h.event === 'Succeeded' || h.event === 'AttemptFailed') &&
               open.has(key)) {
      const b = open.get(key);
      b.end = h.time_ms;
      b.outcome = h.outcome;
      b.reason = h.reason;
      open.delete(key);
    }
  }
  return bars;
}

// The events that carry a time: an undecodable record (one a newer sagad
// wrote) has none, and placed on the axis it made every bar NaN.
const timed = history => history.filter(h => typeof h.time_ms === 'number');

function timeline(saga, all) {
  const history = timed(all);
  if (!history.length) return el('p', { class: 'muted' }, 'no history');
  const t0 = history[0].time_ms;
  let t1 = history[history.length - 1].time_ms;
  const bars = attemptsOf(history);
  for (const b of bars) if (b.end === null && b.until) t1 = Math.max(t1, b.until);
  const span = Math.max(t1 - t0, 1);
  const pct = t => ((t - t0) / span * 100).toFixed(3) + '%';
  const steps = new Map();
  for (const b of bars) if (!steps.has(b.index)) steps.set(b.index, b.step);
  const order = [...steps.keys()].sort((a, b) => a - b);
  const lanes = [];
  // The saga itself: from start to its last transition.
  const end = history[history.length - 1];
  lanes.push(el('div', { class: 'lane saga-lane' },
    el('div', { class: 'label' }, 'saga'),
    el('div', { class: 'track' },
       el('div', { class: 'bar saga ' + saga.status,
                   style: 'left:0;width:' + pct(end.time_ms),
                   title: saga.status }, saga.status.replace('_', ' ')),
       history.filter(h => h.event === 'Compensating').map(
         h => el('div', { class: 'mark', style: 'left:' + pct(h.time_ms),
                          title: 'compensation starts: ' + h.step })))));
  for (const i of order) {
    const track = el('div', { class: 'track' });
    for (const b of bars.filter(x => x.index === i)) {
      const stop = b.end === null ? t1 : b.end;
      const outcome = b.outcome || 'pending';
      const label = (b.action === 'compensate' ? 'undo #' : '#') + b.attempt;
      track.append(el('div', {
        class: 'bar ' + b.action + ' ' + outcome,
        'data-step': b.step, 'data-action': b.action,
        'data-attempt': b.attempt, 'data-outcome': outcome,
        style: 'left:' + pct(b.start) + ';width:' +
               ((stop - b.start) / span * 100).toFixed(3) + '%',
        title: b.step + ' ' + label + ': ' + outcome +
               (b.reason ? ' (' + b.reason + ')' : '') + ', ' +
               fmtMs(stop - b.start)
      }, label));
    }
    lanes.push(el('div', { class: 'lane step-lane', 'data-step': steps.get(i) },
                  el('div', { class: 'label', title: steps.get(i) },
                     steps.get(i)),
                  track));
  }
  const axis = el('div', { class: 'axis' },
    [0, 0.25, 0.5, 0.75, 1].map(f => el('span', {}, '+' + fmtMs(Math.round(f * span)))));
  const legend = el('div', { class: 'legend' },
    [['success', 'var(--ok)'], ['failure', 'var(--fail)'],
     ['retryable', 'var(--retry)'], ['timeout', 'var(--timeout)'],
     ['compensation', 'var(--comp)'], ['in flight', 'var(--run)']].map(
      ([n, c]) => el('span', {}, el('i', { style: 'background:' + c }), n)));
  return el('div', { class: 'timeline', id: 'timeline' }, lanes, axis, legend);
}

function historyTable(history) {
  const first = timed(history)[0];
  const t0 = first ? first.time_ms : 0;
  const head = el('tr', {}, ['time', '+', 'event', 'step', 'action',
                             'attempt', 'outcome', 'reason', 'operator'].map(
    h => el('th', {}, h)));
  return el('table', { id: 'history' }, head, history.map(h =>
    el('tr', { class: 'event' },
       el('td', {}, fmtTime(h.time)), el('td', {},
          typeof h.time_ms === 'number' ? fmtMs(h.time_ms - t0) : ''),
       el('td', {}, h.event), el('td', {}, h.step || ''),
       el('td', {}, h.action || ''), el('td', {}, h.attempt || ''),
       el('td', {}, h.outcome || ''), el('td', {}, h.reason || ''),
       el('td', { class: 'operator' }, h.operator || ''))));
}

// The operator trail: who retried, resolved or cancelled, and why.
function trail(history) {
  const acts = { OperatorRetry: 'retried', Resolved: 'resolved',
                 CancelRequested: 'cancelled' };
  const rows = history.filter(h => acts[h.event]);
  if (!rows.length) return null;
  return el('div', { class: 'section' }, el('h3', {}, 'operator trail'),
    el('ul', { id: 'trail', class: 'trail' }, rows.map(h =>
      el('li', { 'data-event': h.event },
         fmtTime(h.time), ' ', acts[h.event] + ' by ',
         el('b', { class: 'who' }, h.operator || 'an unnamed operator'),
         h.reason ? ': ' : '',
         h.reason ? el('span', { class: 'why' }, h.reason) : null))));
}

// The last failure: the last attempt that failed (its participant's
// reason) and, when the saga is parked, where it stopped.
function failure(s, history) {
  const f = [...history].reverse().find(h => h.event === 'AttemptFailed');
  if (!f) return null;
  const parked = s.status === 'compensation_failed';
  return el('div', { id: 'failure', class: 'failure' + (parked ? ' parked'
                                                                  : '') },
    el('span', { class: 'k' }, parked ? 'parked: compensation failed'
                                      : 'last failure'),
    el('b', {}, f.step), ' ',
    (f.action === 'compensate' ? 'compensation' : 'attempt') + ' #' +
      f.attempt + ' ' + f.outcome + ' at ', fmtTime(f.time), ': ',
    el('span', { id: 'failure-reason' }, f.reason || '(no reason given)'));
}

// A payload, collapsed: its size in the summary, pretty JSON when opened.
function payload(name, value, label) {
  const text = typeof value === 'string' ? value
                                         : JSON.stringify(value, null, 2);
  const bytes = new TextEncoder().encode(typeof value === 'string' ? value
    : JSON.stringify(value)).length;
  return el('details', { class: 'payload', 'data-payload': name },
            el('summary', {}, label + ' ', el('span', { class: 'muted' },
                                              bytes + ' bytes')),
            el('pre', {}, text));
}

// The saga's input, each step's output and the saga's output.
function payloads(history) {
  const items = [];
  const start = history.find(h => h.event === 'Started');
  if (start && start.input !== undefined && start.input !== null)
    items.push(payload('input', start.input, 'input'));
  for (const h of history)
    if (h.event === 'Succeeded' && h.action === 'do' &&
        h.output !== undefined && h.output !== null)
      items.push(payload('step:' + h.step, h.output,
                         'output of ' + h.step));
  const done = history.find(h => h.event === 'Completed');
  if (done && done.output !== undefined && done.output !== null)
    items.push(payload('output', done.output, 'saga output'));
  if (!items.length) return null;
  return el('div', { id: 'payloads', class: 'section' },
            el('h3', {}, 'payloads'), items);
}

// What an operator may do now, as sagactl does it: cancel a running saga;
// retry or resolve one parked in compensation_failed.
const ACTIONS = {
  cancel: { label: 'Cancel saga', when: ['running'],
            ask: 'Cancel saga %s?\n\nBefore its pivot step it stops and ' +
                 'what it did is undone; after the pivot the cancel is ' +
                 'refused.' },
  retry: { label: 'Retry compensation', when: ['compensation_failed'],
           ask: 'Retry the failed compensation of saga %s?\n\nThe ' +
                'compensation is sent to its participant again.' },
  resolve: { label: 'Resolve', when: ['compensation_failed'],
             ask: 'Resolve saga %s?\n\nIt is closed as compensated: you ' +
                  'say that what is left was undone by hand. This cannot ' +
                  'be undone.' },
};

function actionsForm(s) {
  const can = Object.keys(ACTIONS).filter(
    a => ACTIONS[a].when.includes(s.status));
  if (!can.length) return null;
  const reason = el('input', { id: 'action-reason', name: 'reason',
                               placeholder: 'reason (required, recorded)',
                               maxlength: 1024, size: 40 });
  const who = el('input', { id: 'action-operator', name: 'operator',
                            placeholder: 'operator', maxlength: 255,
                            value: localStorage.getItem('sagad.operator') });
  const out = el('span', { id: 'action-result', class: 'muted' });
  const buttons = can.map(a => {
    const b = el('button', { type: 'button', id: 'action-' + a,
                             'data-action': a }, ACTIONS[a].label);
    b.addEventListener('click', () => act(a));
    return b;
  });
  async function act(a) {
    if (!reason.value.trim()) {
      out.textContent = 'a reason is required: it is recorded in the ' +
                        'saga\'s history';
      reason.focus();
      return;
    }
    if (!window.confirm(ACTIONS[a].ask.replace('%s', s.saga_id) +
                        '\n\nReason: ' + reason.value)) {
      out.textContent = a + ' not sent';
      return;
    }
    if (who.value) localStorage.setItem('sagad.operator', who.value);
    for (const b of buttons) b.disabled = true;
    let r, body = {};
    try {
      r = await fetch('/sagas/' + encodeURIComponent(s.saga_id) + '/' + a, {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ reason: reason.value,
                               operator: who.value || null }) });
      body = await r.json().catch(() => ({}));
    } catch (e) {
      r = { ok: false, status: 0, statusText: e.message };
    }
    out.textContent = r.ok ? a + ' sent: the page reloads'
                           : (body.error || r.status + ' ' + r.statusText);
    out.className = r.ok ? 'muted' : 'error';
    if (r.ok) setTimeout(() => location.reload(), 1500);
    else for (const b of buttons) b.disabled = false;
  }
  return el('form', { id: 'actions', class: 'actions' },
            reason, who, buttons, out);
}

async function sagaPage(id) {
  document.getElementById('crumb').textContent = '/ ' + id;
  document.title = 'saga ' + id;
  let data;
  try {
    data = await getJSON('/sagas/' + encodeURIComponent(id));
  } catch (e) {
    show(el('p', { class: 'error', id: 'not-found' },
            'could not read saga ' + id + ': ' + e.message),
         el('p', {}, el('a', { href: '/ui' }, 'back to the list')));
    return;
  }
  const s = data.saga, h = data.history || [];
  const summary = el('div', { class: 'summary' },
    el('div', {}, el('span', { class: 'k' }, 'saga'), el('b', { id: 'saga-id' }, s.saga_id)),
    el('div', {}, el('span', { class: 'k' }, 'type'), s.saga_type + ' v' + s.definition_version),
    el('div', {}, el('span', { class: 'k' }, 'status'), badge(s.status),
       s.stuck ? el('span', { class: 'stuck' }, ' stuck') : null),
    el('div', {}, el('span', { class: 'k' }, 'started'), fmtTime(s.started_at)),
    el('div', {}, el('span', { class: 'k' }, 'last progress'), fmtTime(s.updated_at)),
    el('div', {}, el('span', { class: 'k' }, 'waiting on'), s.current_step || '-'),
    el('div', {}, el('span', { class: 'k' }, 'next deadline'), fmtTime(s.next_deadline_at) || '-'));
  show(summary, failure(s, h), actionsForm(s), trail(h), payloads(h),
       timeline(s, h),
       data.history_truncated ? el('p', { class: 'muted' },
                                   'history truncated') : null,
       historyTable(h));
}

// A saga's address whose escapes are not UTF-8 (a cut or hand-edited
// link) is said so; decodeURIComponent threw, and the page stayed at
// "loading..." with nothing said.
function sagaAddress(m) {
  try {
    sagaPage(decodeURIComponent(m));
  } catch (e) {
    if (!(e instanceof URIError)) throw e;
    show(el('p', { class: 'error' }, 'could not read saga ' + m +
                                     ': its address is not UTF-8'));
  }
}

const m = location.pathname.match(/^\/ui\/saga\/([^/]+)$/);
if (m) sagaAddress(m[1]); else listPage();
