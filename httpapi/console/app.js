// contactstop console: a small Preact + htm app over the JSON API (/v1/).
// No build step: the modules are served as they are (see vendor/README.md).
import { h, render } from 'preact';
import { useState, useEffect, useRef, useCallback } from 'preact/hooks';
import htm from 'htm';

const html = htm.bind(h);

const TOKEN_KEY = 'contactstop.token';
const STATES = ['INITIATED', 'QUEUED', 'CONNECTED', 'ON_HOLD'];
const CHANNELS = ['VOICE', 'CHAT', 'EMAIL', 'SMS', 'VOICEMAIL', 'WORK_ITEM'];
const nf = new Intl.NumberFormat('en');
const fmt = (n) => nf.format(n ?? 0);

function getToken() { return sessionStorage.getItem(TOKEN_KEY) || ''; }

class APIError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

// api calls the JSON API with the signed-in token; it throws an APIError
// with the error shape's code and message.
async function api(method, path, body) {
  const headers = {};
  const token = getToken();
  if (token) headers.Authorization = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new APIError(0, 'NETWORK', 'The server cannot be reached: ' + e.message);
  }
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    throw new APIError(res.status, data?.error?.code || 'HTTP_' + res.status, data?.error?.message || res.statusText);
  }
  return data;
}

function duration(seconds) {
  if (seconds == null) return '—';
  if (seconds < 1) return '< 1 s';
  if (seconds < 90) return Math.round(seconds) + ' s';
  if (seconds < 5400) return Math.round(seconds / 60) + ' min';
  return (seconds / 3600).toFixed(1) + ' h';
}

function time(ts) {
  if (!ts) return '—';
  const d = new Date(ts);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

function randomID(prefix) {
  return prefix + '-' + new Date().toISOString().replace(/[-:T.Z]/g, '').slice(0, 14) + '-' + Math.random().toString(36).slice(2, 6);
}

const bulkKey = (b) => b.instanceId + '/' + b.bulkId;
const running = (b) => b.status !== 'COMPLETED';

// ---------------------------------------------------------------- sign-in

function SignIn({ onSignIn, message }) {
  const [value, setValue] = useState('');
  const submit = (e) => {
    e.preventDefault();
    if (value.trim()) onSignIn(value.trim());
  };
  return html`
    <section aria-labelledby="signin-h">
      <h2 id="signin-h">Sign in</h2>
      <p>Authorization is on. Paste a security-user token (<code>contactstop token issue</code>) that grants
        <code>contact:Read</code> or <code>contact:BulkStop</code> on the instances you operate; clearing needs
        <code>contact:BulkStop</code>. The token stays in this browser tab only (session storage).</p>
      ${message && html`<p class="error-box" role="alert">${message}</p>`}
      <form onSubmit=${submit}>
        <label for="token">Security-user token
          <input id="token" name="token" type="password" autocomplete="off" required
            value=${value} onInput=${(e) => setValue(e.target.value)} />
        </label>
        <button type="submit">Sign in</button>
      </form>
    </section>`;
}

// ---------------------------------------------------------------- instances

function InstanceCard({ inst, summary, onEmergency }) {
  if (!summary) {
    return html`<article><h3>${inst.instanceId}</h3><p aria-busy="true">Counting contacts…</p></article>`;
  }
  return html`
    <article aria-labelledby=${'inst-' + inst.instanceId}>
      <header>
        <h3 id=${'inst-' + inst.instanceId}>${inst.instanceId}</h3>
        <p><strong data-testid="active-count">${fmt(summary.active)}</strong> active contacts
          ${inst.platform !== 'none' ? html` · on ${inst.platform}` : ''}
          <span class="muted"> · counted ${time(summary.countedAt)}</span></p>
      </header>
      ${summary.queues.length === 0 ? html`<p>No active contacts.</p>` : html`
      <div class="overflow-auto">
      <table class="striped">
        <caption class="visually-hidden">Active contacts of ${inst.instanceId} per queue and state</caption>
        <thead><tr><th scope="col">Queue</th>${STATES.map((s) => html`<th scope="col" class="num">${s}</th>`)}<th scope="col" class="num">Total</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
        <tbody>
          ${summary.queues.map((q) => html`
          <tr>
            <th scope="row">${q.queueId || html`<em>(none)</em>`}</th>
            ${STATES.map((s) => html`<td class="num">${fmt(q.byState[s] || 0)}</td>`)}
            <td class="num"><strong>${fmt(q.active)}</strong></td>
            <td>${(q.byState.QUEUED || 0) > 0 && html`
              <button class="small danger" type="button" onClick=${() => onEmergency(inst.instanceId, q.queueId)}
                aria-label=${'Emergency clear of queue ' + (q.queueId || '(none)') + ' of ' + inst.instanceId}>Emergency clear</button>`}</td>
          </tr>`)}
        </tbody>
      </table></div>`}
      ${summary.unreadable > 0 && html`<p class="failed">${fmt(summary.unreadable)} records are not valid contacts.</p>`}
    </article>`;
}

// ---------------------------------------------------------------- clears

// ClearsTable: running and recent clears. While a clear is still finding
// contacts the server knows no total; for a clear this console started,
// the dry run's count stands in for it (marked ≈), so that the operator
// sees an ETA from the start.
function ClearsTable({ bulks, onCancel, announce, counted }) {
  const live = bulks.filter(running);
  return html`
    <section aria-labelledby="clears-h" id="clears">
      <h2 id="clears-h">Clears</h2>
      <p aria-live="polite" data-testid="clears-status">${announce}</p>
      ${bulks.length === 0 ? html`<p>No clears yet.</p>` : html`
      <div class="overflow-auto">
      <table>
        <caption class="visually-hidden">Running and recent clears, newest first (${live.length} running)</caption>
        <thead><tr>
          <th scope="col">Clear</th><th scope="col">Instance</th><th scope="col">Status</th><th scope="col">Progress</th>
          <th scope="col" class="num">Stopped</th><th scope="col" class="num">Failed</th><th scope="col" class="num">Skipped</th>
          <th scope="col" class="num">Rate</th><th scope="col" class="num">ETA</th><th scope="col"><span class="visually-hidden">Actions</span></th>
        </tr></thead>
        <tbody>
          ${bulks.map((b) => {
            const status = b.cancelled ? 'CANCELLED' : b.cancelRequested && running(b) ? 'CANCELLING' : b.status;
            const estimate = b.walking && running(b) && counted[b.bulkId] > b.matched ? counted[b.bulkId] : 0;
            const total = estimate || b.matched;
            const label = estimate ? fmt(b.done) + ' of ≈' + fmt(estimate) + ' done (counted before it started)'
              : b.walking && b.matched === 0 ? 'finding contacts…'
              : fmt(b.done) + ' of ' + fmt(b.matched) + (b.walking ? '+' : '') + ' done';
            const eta = estimate && b.rate > 0 ? (estimate - b.done) / b.rate : b.etaSeconds;
            return html`
            <tr data-bulk=${b.bulkId}>
              <th scope="row"><code>${b.bulkId}</code></th>
              <td>${b.instanceId}</td>
              <td class=${'status-' + b.status} data-testid="bulk-status">${status}</td>
              <td><progress max=${Math.max(total, 1)} value=${b.done} aria-label=${'Clear ' + b.bulkId + ': ' + label}></progress>
                <br /><small>${label}</small></td>
              <td class="num">${fmt(b.stopped)}</td>
              <td class=${'num' + (b.failed ? ' failed' : '')}>${fmt(b.failed)}</td>
              <td class="num">${fmt(b.skipped)}</td>
              <td class="num">${b.rate ? fmt(Math.round(b.rate)) + '/s' : '—'}</td>
              <td class="num" data-testid="bulk-eta">${estimate && eta != null ? '≈ ' + duration(eta) : duration(eta)}</td>
              <td>${running(b) && !b.cancelRequested && html`
                <button class="small secondary" type="button" onClick=${() => onCancel(b)}
                  aria-label=${'Cancel clear ' + b.bulkId}>Cancel</button>`}</td>
            </tr>`;
          })}
        </tbody>
      </table></div>`}
    </section>`;
}

// ConfirmDialog asks for an explicit confirmation naming the count.
function ConfirmDialog({ ask, onClose }) {
  const ref = useRef(null);
  useEffect(() => {
    const d = ref.current;
    if (ask && !d.open) d.showModal();
    if (!ask && d.open) d.close();
  }, [ask]);
  return html`
    <dialog ref=${ref} aria-labelledby="confirm-h" aria-describedby="confirm-d" onCancel=${(e) => { e.preventDefault(); onClose(false); }}>
      ${ask && html`
      <article>
        <h2 id="confirm-h">${ask.title}</h2>
        <p id="confirm-d">${ask.text}</p>
        <footer>
          <button type="button" class="secondary" autofocus onClick=${() => onClose(false)}>Keep them</button>
          <button type="button" class="danger" onClick=${() => onClose(true)}>${ask.confirm}</button>
        </footer>
      </article>`}
    </dialog>`;
}

function checkedValues(form, name) {
  return [...form.querySelectorAll('input[name="' + name + '"]:checked')].map((i) => i.value);
}

// ClearForm: filters → dry-run count → confirmation naming the count.
function ClearForm({ instances, queues, onStarted, confirm }) {
  const [count, setCount] = useState(null); // {filter, instanceId, matched, byQueue, disconnectReason, bulkId}
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const formRef = useRef(null);

  const readForm = () => {
    const f = formRef.current;
    const filter = {};
    const qs = f.queues.value.split(',').map((s) => s.trim()).filter(Boolean);
    if (qs.length) filter.queueIds = qs;
    const states = checkedValues(f, 'state');
    if (states.length) filter.states = states;
    const channels = checkedValues(f, 'channel');
    if (channels.length) filter.channels = channels;
    if (f.before.value) filter.enqueuedBefore = new Date(f.before.value).toISOString();
    return { instanceId: f.instance.value, filter, disconnectReason: f.reason.value.trim(), bulkId: f.bulkId.value.trim() };
  };

  const dryRun = async (e) => {
    e.preventDefault();
    setError(''); setCount(null); setBusy(true);
    const req = readForm();
    try {
      const n = await api('POST', '/v1/instances/' + req.instanceId + '/clears', { filter: req.filter, dryRun: true });
      setCount({ ...req, matched: n.matched, byQueue: n.byQueue });
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };

  const start = async () => {
    const c = count;
    const ok = await confirm({
      title: 'Stop ' + fmt(c.matched) + ' contacts?',
      text: 'This stops the ' + fmt(c.matched) + ' contacts of ' + c.instanceId + ' that match the filter now' +
        (c.filter.queueIds ? ' (queues ' + c.filter.queueIds.join(', ') + ')' : '') +
        '. Contacts that stop matching before they are reached are left alone. Stopped contacts cannot be restarted.',
      confirm: 'Stop ' + fmt(c.matched) + ' contacts',
    });
    if (!ok) return;
    setBusy(true);
    try {
      const body = { filter: c.filter };
      if (c.disconnectReason) body.disconnectReason = c.disconnectReason;
      body.bulkId = c.bulkId || randomID('console');
      const r = await api('POST', '/v1/instances/' + c.instanceId + '/clears', body);
      setCount(null);
      onStarted(r, c.matched);
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };

  if (instances.length === 0) return null;
  return html`
    <section aria-labelledby="clear-h" id="start-clear">
      <h2 id="clear-h">Start a clear</h2>
      <form ref=${formRef} onSubmit=${dryRun} onChange=${() => setCount(null)}>
        <div class="grid">
          <label for="clear-instance">Instance
            <select id="clear-instance" name="instance" required>
              ${instances.map((i) => html`<option value=${i.instanceId}>${i.instanceId}</option>`)}
            </select>
          </label>
          <label for="clear-queues">Queues <small class="muted">(comma-separated; empty: all)</small>
            <input id="clear-queues" name="queues" list="known-queues" placeholder="billing, sales" />
            <datalist id="known-queues">${queues.map((q) => html`<option value=${q}></option>`)}</datalist>
          </label>
        </div>
        <fieldset class="inline">
          <legend>States <small class="muted">(none checked: QUEUED)</small></legend>
          ${STATES.map((s) => html`<label><input type="checkbox" name="state" value=${s} checked=${s === 'QUEUED'} /> ${s}</label>`)}
        </fieldset>
        <fieldset class="inline">
          <legend>Channels <small class="muted">(none checked: all)</small></legend>
          ${CHANNELS.map((c) => html`<label><input type="checkbox" name="channel" value=${c} /> ${c}</label>`)}
        </fieldset>
        <div class="grid">
          <label for="clear-before">Enqueued before <small class="muted">(optional, your local time)</small>
            <input id="clear-before" name="before" type="datetime-local" step="1" />
          </label>
          <label for="clear-reason">Disconnect reason <small class="muted">(optional)</small>
            <input id="clear-reason" name="reason" maxlength="128" placeholder="QUEUE_CLOSED" />
          </label>
          <label for="clear-bulkid">Clear id <small class="muted">(optional; idempotency key)</small>
            <input id="clear-bulkid" name="bulkId" maxlength="128" />
          </label>
        </div>
        ${error && html`<p class="error-box" role="alert">${error}</p>`}
        <div aria-live="polite">
          ${count && html`
          <div class="count-box" data-testid="dry-run">
            <p><strong>${fmt(count.matched)}</strong> contacts of ${count.instanceId} match now
              ${Object.keys(count.byQueue).length > 0 && html` (${Object.entries(count.byQueue).map(([q, n]) => (q || '(none)') + ': ' + fmt(n)).join(', ')})`}.</p>
            ${count.matched > 0 ? html`<button type="button" class="danger" disabled=${busy} onClick=${start}>Stop ${fmt(count.matched)} contacts…</button>`
              : html`<p>Nothing to clear.</p>`}
          </div>`}
        </div>
        <button type="submit" class="secondary" disabled=${busy} aria-busy=${busy ? 'true' : 'false'}>Count matching contacts</button>
      </form>
    </section>`;
}

// EmergencyForm: an emergency clear of one queue (or all) of an instance:
// its QUEUED contacts, with disconnectReason EMERGENCY.
function EmergencyForm({ instances, queuesOf, preset, onStarted, confirm }) {
  const [inst, setInst] = useState('');
  const [queue, setQueue] = useState('*');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const sectionRef = useRef(null);
  useEffect(() => {
    if (!preset) return;
    setInst(preset.instanceId);
    setQueue(preset.queueId);
    sectionRef.current?.scrollIntoView({ block: 'start' });
    sectionRef.current?.querySelector('select')?.focus();
  }, [preset]);
  const instanceId = inst || instances[0]?.instanceId || '';
  const queues = queuesOf(instanceId);

  const submit = async (e) => {
    e.preventDefault();
    setError(''); setBusy(true);
    const filter = { states: ['QUEUED'] };
    if (queue !== '*') filter.queueIds = [queue];
    try {
      const n = await api('POST', '/v1/instances/' + instanceId + '/clears', { filter, dryRun: true });
      const where = queue === '*' ? 'every queue' : 'queue ' + (queue || '(none)');
      if (n.matched === 0) {
        setError('No queued contacts in ' + where + ' of ' + instanceId + '.');
        return;
      }
      const ok = await confirm({
        title: 'Emergency: stop ' + fmt(n.matched) + ' queued contacts?',
        text: 'This stops the ' + fmt(n.matched) + ' QUEUED contacts in ' + where + ' of ' + instanceId +
          ' with disconnect reason EMERGENCY. Stopped contacts cannot be restarted.',
        confirm: 'Stop ' + fmt(n.matched) + ' contacts now',
      });
      if (!ok) return;
      const r = await api('POST', '/v1/instances/' + instanceId + '/clears',
        { filter, disconnectReason: 'EMERGENCY', bulkId: randomID('console-emergency') });
      setQueue('*');
      onStarted(r, n.matched);
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };

  if (instances.length === 0) return null;
  return html`
    <section aria-labelledby="emergency-h" id="emergency" ref=${sectionRef}>
      <h2 id="emergency-h">Emergency clear</h2>
      <p>Stops every <strong>queued</strong> contact of a queue at once, with disconnect reason <code>EMERGENCY</code>.
        You are shown the count and asked to confirm first.</p>
      <form onSubmit=${submit}>
        <div class="grid">
          <label for="em-instance">Instance
            <select id="em-instance" value=${instanceId} onChange=${(e) => { setInst(e.target.value); setQueue('*'); }}>
              ${instances.map((i) => html`<option value=${i.instanceId}>${i.instanceId}</option>`)}
            </select>
          </label>
          <label for="em-queue">Queue
            <select id="em-queue" value=${queue} onChange=${(e) => setQueue(e.target.value)}>
              <option value="*">All queues</option>
              ${(queue === '*' || queues.includes(queue) ? queues : [...queues, queue]).map((q) => html`<option value=${q}>${q || '(none)'}</option>`)}
            </select>
          </label>
        </div>
        ${error && html`<p class="error-box" role="alert">${error}</p>`}
        <button type="submit" class="danger" disabled=${busy} aria-busy=${busy ? 'true' : 'false'}>Emergency clear…</button>
      </form>
    </section>`;
}

// ---------------------------------------------------------------- failures and dead letters

function Failures({ instances, failures }) {
  return html`
    <section aria-labelledby="failures-h" id="failures">
      <h2 id="failures-h">Failures in the last hour</h2>
      <div class="grid-instances">
      ${instances.map((i) => {
        const f = failures[i.instanceId];
        if (!f) return html`<article><h3>${i.instanceId}</h3><p aria-busy="true">Reading results…</p></article>`;
        const codes = Object.entries(f.byReasonCode).sort((a, b) => b[1] - a[1]);
        return html`
        <article>
          <h3>${i.instanceId}: <span class=${f.total ? 'failed' : ''}>${fmt(f.total)}</span> failures</h3>
          ${codes.length > 0 && html`
          <table>
            <caption class="visually-hidden">Failures of ${i.instanceId} by reason code</caption>
            <thead><tr><th scope="col">Reason code</th><th scope="col" class="num">Count</th></tr></thead>
            <tbody>${codes.map(([c, n]) => html`<tr><th scope="row"><code>${c}</code></th><td class="num">${fmt(n)}</td></tr>`)}</tbody>
          </table>
          <details>
            <summary>Last ${f.recent.length} failures</summary>
            <ul>${f.recent.map((r) => html`<li><time datetime=${r.failedAt}>${time(r.failedAt)}</time> <code>${r.contactId}</code> ${r.reasonCode}: ${r.message}</li>`)}</ul>
          </details>`}
        </article>`;
      })}
      </div>
    </section>`;
}

function DeadLetters({ items }) {
  return html`
    <section aria-labelledby="dead-h" id="deadletters">
      <h2 id="dead-h">Dead letters (last 24 hours)</h2>
      ${items.length === 0 ? html`<p>No dead letters: no request ran out of retries.</p>` : html`
      <div class="overflow-auto">
      <table>
        <caption class="visually-hidden">Requests copied to the dead-letter stream, newest first</caption>
        <thead><tr><th scope="col">Stored</th><th scope="col">Instance</th><th scope="col">Contact</th><th scope="col">Error</th><th scope="col" class="num">Deliveries</th></tr></thead>
        <tbody>${items.map((d) => html`
          <tr><td><time datetime=${d.storedAt}>${time(d.storedAt)}</time></td><td>${d.instanceId || '(unreadable)'}</td>
            <td><code>${d.request?.contactId ?? '—'}</code></td><td>${d.error || d.body || '—'}</td><td class="num">${d.deliveries ?? '—'}</td></tr>`)}
        </tbody>
      </table></div>`}
    </section>`;
}

// ---------------------------------------------------------------- app

function App() {
  const [signedIn, setSignedIn] = useState(!!getToken());
  const [authNeeded, setAuthNeeded] = useState(false);
  const [authMessage, setAuthMessage] = useState('');
  const [error, setError] = useState('');
  const [instances, setInstances] = useState([]);
  const [summaries, setSummaries] = useState({});
  const [failures, setFailures] = useState({});
  const [bulks, setBulks] = useState([]);
  const [dead, setDead] = useState([]);
  const [live, setLive] = useState('connecting');
  const [announce, setAnnounce] = useState('');
  // counted: the dry run's count of each clear this console started.
  const [counted, setCounted] = useState({});
  const [ask, setAsk] = useState(null);
  const [preset, setPreset] = useState(null);
  const askResolve = useRef(null);
  const instRef = useRef([]);
  const timers = useRef({});

  const fail = useCallback((err) => {
    if (err.status === 401) {
      setAuthNeeded(true);
      setAuthMessage(getToken() ? 'The token was refused: ' + err.message : '');
      return;
    }
    setError(err.message);
  }, []);

  const loadSummaries = useCallback(async () => {
    for (const i of instRef.current) {
      api('GET', '/v1/instances/' + i.instanceId + '/summary')
        .then((s) => setSummaries((m) => ({ ...m, [i.instanceId]: s }))).catch(fail);
    }
  }, [fail]);
  const loadFailures = useCallback(async () => {
    for (const i of instRef.current) {
      api('GET', '/v1/instances/' + i.instanceId + '/failures?limit=10')
        .then((f) => setFailures((m) => ({ ...m, [i.instanceId]: f }))).catch(fail);
    }
  }, [fail]);
  const loadBulks = useCallback(() => api('GET', '/v1/bulks?limit=20').then((r) => setBulks(r.bulks)).catch(fail), [fail]);
  const loadDead = useCallback(() => api('GET', '/v1/deadletters').then((r) => setDead(r.deadLetters)).catch(fail), [fail]);

  const loadAll = useCallback(async () => {
    setError('');
    try {
      const r = await api('GET', '/v1/instances');
      instRef.current = r.instances;
      setInstances(r.instances);
      setAuthNeeded(false);
    } catch (err) {
      fail(err);
      return false;
    }
    loadSummaries(); loadFailures(); loadBulks(); loadDead();
    return true;
  }, [fail, loadSummaries, loadFailures, loadBulks, loadDead]);

  // later runs f once, at most every ms milliseconds.
  const later = useCallback((name, ms, f) => {
    if (timers.current[name]) return;
    timers.current[name] = setTimeout(() => { delete timers.current[name]; f(); }, ms);
  }, []);

  useEffect(() => { loadAll(); }, [signedIn]);

  // Live: results, completions and progress as server-sent events.
  useEffect(() => {
    if (authNeeded) return undefined;
    const token = getToken();
    const es = new EventSource('/v1/events' + (token ? '?access_token=' + encodeURIComponent(token) : ''));
    es.onopen = () => setLive('live');
    es.onerror = () => setLive('offline');
    es.addEventListener('stopped', () => later('summaries', 1000, loadSummaries));
    es.addEventListener('failed', () => { later('summaries', 1000, loadSummaries); later('failures', 2000, loadFailures); });
    es.addEventListener('bulkProgress', (e) => {
      const b = JSON.parse(e.data);
      setBulks((list) => {
        const i = list.findIndex((x) => bulkKey(x) === bulkKey(b));
        if (i < 0) return [b, ...list];
        const copy = list.slice();
        copy[i] = b;
        return copy;
      });
    });
    es.addEventListener('bulkCompleted', (e) => {
      const c = JSON.parse(e.data);
      setAnnounce('Clear ' + c.bulkId + ' on ' + c.instanceId + (c.cancelled ? ' was cancelled' : ' completed') + ': ' +
        fmt(c.stopped) + ' stopped, ' + fmt(c.failed) + ' failed, ' + fmt(c.skipped) + ' skipped.');
      loadBulks(); later('summaries', 300, loadSummaries); loadFailures();
    });
    // A safety net should events be blocked on the way: poll slowly.
    const poll = setInterval(() => { loadBulks(); loadSummaries(); }, 15000);
    return () => { es.close(); clearInterval(poll); };
  }, [authNeeded, signedIn]);

  const confirm = useCallback((q) => new Promise((resolve) => { askResolve.current = resolve; setAsk(q); }), []);
  const closeAsk = (ok) => { setAsk(null); askResolve.current?.(ok); askResolve.current = null; };

  const started = (r, matched) => {
    setCounted((c) => ({ ...c, [r.bulkId]: matched }));
    setAnnounce('Clear ' + r.bulkId + ' of ' + r.instanceId + ' started: ' + fmt(matched) + ' contacts matched when counted.');
    loadBulks();
    document.getElementById('clears-h')?.scrollIntoView({ block: 'start' });
  };

  const cancel = async (b) => {
    const ok = await confirm({
      title: 'Cancel clear ' + b.bulkId + '?',
      text: 'The clear stops starting new contacts and finishes those in hand; ' + fmt(b.done) + ' of ' + fmt(b.matched) +
        ' are done. Contacts already stopped stay stopped.',
      confirm: 'Cancel the clear',
    });
    if (!ok) return;
    try {
      const v = await api('POST', '/v1/instances/' + b.instanceId + '/bulks/' + encodeURIComponent(b.bulkId) + '/cancel');
      setBulks((list) => list.map((x) => (bulkKey(x) === bulkKey(v) ? v : x)));
      setAnnounce('Cancelling clear ' + b.bulkId + '.');
    } catch (err) {
      setError(err.message);
    }
  };

  const signIn = (token) => {
    sessionStorage.setItem(TOKEN_KEY, token);
    setAuthMessage('');
    setSignedIn(true);
    loadAll();
  };
  const signOut = () => {
    sessionStorage.removeItem(TOKEN_KEY);
    setSignedIn(false);
    setInstances([]); setSummaries({}); setFailures({}); setBulks([]); setDead([]);
    setAuthNeeded(true);
  };

  const queuesOf = (id) => (summaries[id]?.queues || []).map((q) => q.queueId);
  const allQueues = [...new Set(Object.values(summaries).flatMap((s) => s.queues.map((q) => q.queueId)).filter(Boolean))];

  return html`
    <a class="skip-link" href="#main">Skip to main content</a>
    <header class="top container-fluid">
      <h1>contactstop console</h1>
      <nav aria-label="Sections"><ul>
        <li><a href="#instances">Instances</a></li><li><a href="#clears">Clears</a></li>
        <li><a href="#start-clear">Start a clear</a></li><li><a href="#emergency">Emergency</a></li>
        <li><a href="#failures">Failures</a></li><li><a href="#deadletters">Dead letters</a></li>
      </ul></nav>
      <p role="status" class="live" data-state=${live} data-testid="live">
        ${live === 'live' ? '● Live' : live === 'offline' ? '○ Reconnecting…' : '○ Connecting…'}
      </p>
      ${getToken() && html`<button type="button" class="small secondary" onClick=${signOut}>Sign out</button>`}
    </header>
    <main id="main" class="container-fluid" tabindex="-1">
      ${error && html`<p class="error-box" role="alert">${error}</p>`}
      ${authNeeded ? html`<${SignIn} onSignIn=${signIn} message=${authMessage} />` : html`
      <section aria-labelledby="instances-h" id="instances">
        <h2 id="instances-h">Instances</h2>
        ${instances.length === 0 ? html`<p>No instances you may read are registered (<code>contactstop instances add</code>).</p>` : html`
        <div class="grid-instances">
          ${instances.map((i) => html`<${InstanceCard} key=${i.instanceId} inst=${i} summary=${summaries[i.instanceId]}
            onEmergency=${(id, q) => setPreset({ instanceId: id, queueId: q, at: Date.now() })} />`)}
        </div>`}
      </section>
      <${ClearsTable} bulks=${bulks} onCancel=${cancel} announce=${announce} counted=${counted} />
      <${ClearForm} instances=${instances} queues=${allQueues} onStarted=${started} confirm=${confirm} />
      <${EmergencyForm} instances=${instances} queuesOf=${queuesOf} preset=${preset} onStarted=${started} confirm=${confirm} />
      <${Failures} instances=${instances} failures=${failures} />
      <${DeadLetters} items=${dead} />`}
    </main>
    <${ConfirmDialog} ask=${ask} onClose=${closeAsk} />`;
}

render(html`<${App} />`, document.getElementById('app'));
