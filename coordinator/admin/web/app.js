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

async function getJSON(url) {
  const r = await fetch(url, { headers: { Accept: 'application/json' } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || r.status + ' ' + r.statusText);
  return body;
}

function fmtTime(iso) {
  return iso ? iso.replace('T', ' ').replace('Z', '') : '';
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

async function listPage() {
  const q = new URLSearchParams(location.search);
  const state = q.get('state') || '', type = q.get('type') || '';
  const stuck = q.get('stuck') === 'true';
  const states = ['', 'running', 'compensating', 'completed', 'compensated',
                  'compensation_failed'];
  const form = el('form', { class: 'filters', method: 'get', action: '/ui' },
    el('label', {}, 'state ',
       el('select', { name: 'state', id: 'f-state' },
          states.map(s => el('option', { value: s, selected: s === state },
                             s || 'any')))),
    el('label', {}, 'type ',
       el('input', { name: 'type', id: 'f-type', value: type,
                     placeholder: 'any' })),
    el('label', {}, el('input', { type: 'checkbox', name: 'stuck',
                                  value: 'true', checked: stuck,
                                  id: 'f-stuck' }), ' stuck only'),
    el('button', { type: 'submit' }, 'filter'));
  const api = new URLSearchParams({ limit: '50' });
  if (state) api.set('state', state);
  if (type) api.set('type', type);
  if (stuck) api.set('stuck', 'true');
  if (q.get('after')) api.set('after', q.get('after'));
  let data;
  try {
    data = await getJSON('/sagas?' + api);
  } catch (e) {
    show(form, el('p', { class: 'error' }, 'could not list sagas: ' + e.message));
    return;
  }
  const rows = data.sagas.map(s => el('tr', { class: 'saga-row',
                                              'data-saga-id': s.saga_id },
    el('td', {}, el('a', { href: '/ui/saga/' + encodeURIComponent(s.saga_id) },
                    s.saga_id)),
    el('td', {}, s.saga_type + ' v' + s.definition_version),
    el('td', {}, badge(s.status)),
    el('td', {}, s.current_step || ''),
    el('td', {}, fmtTime(s.started_at)),
    el('td', {}, fmtTime(s.updated_at)),
    el('td', {}, s.stuck ? el('span', { class: 'stuck' }, 'stuck') : '')));
  const head = el('tr', {}, ['saga', 'type', 'status', 'waiting on',
                             'started', 'last progress', ''].map(
    h => el('th', {}, h)));
  let more = null;
  if (data.next) {
    const n = new URLSearchParams(q);
    n.set('after', data.next);
    more = el('p', {}, el('a', { href: '/ui?' + n, id: 'next' }, 'next page'));
  }
  show(form,
       rows.length ? el('table', { id: 'sagas' }, head, rows)
                   : el('p', { class: 'muted' }, 'no saga matches'),
       more);
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

function timeline(saga, history) {
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
  const t0 = history.length ? history[0].time_ms : 0;
  const head = el('tr', {}, ['time', '+', 'event', 'step', 'action',
                             'attempt', 'outcome', 'reason', 'operator'].map(
    h => el('th', {}, h)));
  return el('table', { id: 'history' }, head, history.map(h =>
    el('tr', { class: 'event' },
       el('td', {}, fmtTime(h.time)), el('td', {}, fmtMs(h.time_ms - t0)),
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
  return el('ul', { id: 'trail', class: 'trail' }, rows.map(h =>
    el('li', { 'data-event': h.event },
       fmtTime(h.time) + ' ' + acts[h.event] + ' by ' +
       (h.operator || 'an unnamed operator') +
       (h.reason ? ': ' + h.reason : ''))));
}

// Cancel a running saga (POST /sagas/{id}/cancel) after a confirmation.
// Before its pivot step it is compensated; after it the answer says why
// not (409).
function cancelForm(s) {
  if (s.status !== 'running') return null;
  const reason = el('input', { id: 'cancel-reason', name: 'reason',
                               placeholder: 'reason (required)',
                               required: true, maxlength: 1024 });
  const who = el('input', { id: 'cancel-operator', name: 'operator',
                            placeholder: 'operator', maxlength: 255 });
  const out = el('span', { id: 'cancel-result', class: 'muted' });
  const form = el('form', { id: 'cancel', class: 'cancel' }, reason, who,
                  el('button', { type: 'submit', id: 'cancel-button' },
                     'Cancel saga'), out);
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    if (!reason.value.trim()) { out.textContent = 'a reason is required'; return; }
    if (!window.confirm('Cancel saga ' + s.saga_id + '?\n\nBefore its ' +
                        'pivot step it stops and what it did is undone; ' +
                        'after the pivot the cancel is refused.')) return;
    const r = await fetch('/sagas/' + encodeURIComponent(s.saga_id) +
                          '/cancel', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ reason: reason.value,
                             operator: who.value || null }) });
    const body = await r.json().catch(() => ({}));
    out.textContent = r.ok ? 'cancel sent: the page reloads'
                           : (body.error || r.status + ' ' + r.statusText);
    if (r.ok) setTimeout(() => location.reload(), 1500);
  });
  return form;
}

// The saga's output (its definition's "output" mapping), recorded in its
// Completed event; null when it has none.
function output(history) {
  const done = history.find(h => h.event === 'Completed');
  if (!done || done.output === undefined || done.output === null) return null;
  return el('div', {}, el('span', { class: 'k' }, 'output'),
            el('code', { id: 'saga-output' }, JSON.stringify(done.output)));
}

async function sagaPage(id) {
  document.getElementById('crumb').textContent = '/ ' + id;
  document.title = 'saga ' + id;
  let data;
  try {
    data = await getJSON('/sagas/' + encodeURIComponent(id));
  } catch (e) {
    show(el('p', { class: 'error' }, 'could not read saga ' + id + ': ' +
                                     e.message));
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
    el('div', {}, el('span', { class: 'k' }, 'next deadline'), fmtTime(s.next_deadline_at) || '-'),
    output(h));
  show(summary, cancelForm(s), trail(h), timeline(s, h),
       data.history_truncated ? el('p', { class: 'muted' },
                                   'history truncated') : null,
       historyTable(h));
}

const m = location.pathname.match(/^\/ui\/saga\/([^/]+)$/);
if (m) sagaPage(decodeURIComponent(m[1])); else listPage();
