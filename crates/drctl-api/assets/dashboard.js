// drctl dashboard: reads the JSON API under /api/v1 and draws it.
//
// Owns: fetching, refreshing (figures every 5 s, history and evidence every
// 15 s), rendering with plain DOM and SVG, and the little state a person
// sets (expanded operations, 1 h / 24 h per chart) kept across refreshes.
// Does not own: any judgement. Compliance, statuses and reasons come from
// the API; this file only shows them. Every field may be missing or null,
// and nothing here may throw because the API grew or shrank.
//
// The page runs under `default-src 'self'`: no inline script or style, no
// innerHTML with data; every element is built with createElement and text
// goes in through textContent.
'use strict';

(function () {
  const FAST_MS = 5000;
  const SLOW_EVERY = 3; // lag charts, operations, backups, restore tests: every 3rd tick
  const REQUEST_TIMEOUT_MS = 10000;
  const TOKEN_KEY = 'drctl-token';
  const UI_KEY = 'drctl-dashboard-ui';
  const LAG_WINDOWS = {
    '1h': { seconds: 3600, query: 'since=1h&limit=20000', label: '1 h' },
    '24h': { seconds: 86400, query: 'since=24h&bucket=5m&limit=20000', label: '24 h' },
  };
  const SVGNS = 'http://www.w3.org/2000/svg';

  // ------------------------------------------------------------------ state

  const state = {
    report: null,          // GET /api/v1/rpo-rto
    configs: new Map(),    // name -> service config (GET /api/v1/services)
    lag: new Map(),        // name -> {window, data, fetchedAt, error, loading}
    operations: null,
    opDetails: new Map(),  // id -> {data, error, loading, fetchedAt}
    backups: null,
    restoreTests: null,
    health: new Map(),     // request group -> failure or absent
    clockOffset: 0,        // server clock − browser clock, ms
    lastOkAt: null,
    tick: 0,
    timer: null,
    refreshes: 0,
    ui: loadUi(),          // {lagWindow: {name: '1h'|'24h'}, expanded: [id], outputs: [key]}
  };
  const expanded = new Set(arrayOf(state.ui.expanded).filter(isString));
  const openOutputs = new Set(arrayOf(state.ui.outputs).filter(isString));
  const cards = new Map(); // name -> card elements

  // ------------------------------------------------------------ small utils

  function isObj(v) { return v !== null && typeof v === 'object' && !Array.isArray(v); }
  function isString(v) { return typeof v === 'string'; }
  function obj(v) { return isObj(v) ? v : {}; }
  function arrayOf(v) { return Array.isArray(v) ? v : []; }
  function str(v) { return typeof v === 'string' && v !== '' ? v : null; }
  function num(v) { return typeof v === 'number' && isFinite(v) ? v : null; }
  function first(...vals) {
    for (const v of vals) if (v !== null && v !== undefined) return v;
    return null;
  }

  function loadUi() {
    try {
      const v = JSON.parse(sessionStorage.getItem(UI_KEY) || '{}');
      return isObj(v) ? v : {};
    } catch (e) { return {}; }
  }
  function saveUi() {
    state.ui.expanded = Array.from(expanded).slice(-50);
    state.ui.outputs = Array.from(openOutputs).slice(-100);
    try { sessionStorage.setItem(UI_KEY, JSON.stringify(state.ui)); } catch (e) { /* private mode */ }
  }
  function readToken() {
    try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }
  function lagWindowOf(name) {
    const w = obj(state.ui.lagWindow)[name];
    return LAG_WINDOWS[w] ? w : '1h';
  }

  // An RFC 3339 time in ms, or null. Trims nanoseconds, which Date.parse
  // does not promise to read.
  function parseTime(v) {
    if (!isString(v) || v === '') return null;
    const m = v.match(/^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|z|[+-]\d{2}:?\d{2})?$/);
    let t;
    if (m) {
      const frac = m[3] ? m[3].slice(0, 4).padEnd(4, '0') : '';
      let zone = m[4] || 'Z';
      if (/^[+-]\d{4}$/.test(zone)) zone = zone.slice(0, 3) + ':' + zone.slice(3);
      t = Date.parse(m[1] + 'T' + m[2] + frac + zone.toUpperCase());
    } else {
      t = Date.parse(v);
    }
    return isFinite(t) ? t : null;
  }
  function serverNow() { return Date.now() + state.clockOffset; }
  function ageOf(iso) {
    const t = parseTime(iso);
    return t === null ? null : Math.max(0, (serverNow() - t) / 1000);
  }

  // --------------------------------------------------------------- formats

  function trimZeros(text) { return text.indexOf('.') < 0 ? text : text.replace(/\.?0+$/, ''); }

  // Seconds for people: "0 s", "0.29 s", "1.2 s", "42 s", "4 m 10 s", "3 h", "2 d 4 h".
  function fmtSeconds(v) {
    const s0 = num(v);
    if (s0 === null) return '—';
    const neg = s0 < 0;
    const s = Math.abs(s0);
    let out;
    if (s === 0) out = '0 s';
    else if (s < 0.1) out = trimZeros(s.toFixed(3)) + ' s';
    else if (s < 1) out = trimZeros(s.toFixed(2)) + ' s';
    else if (s < 9.95) out = trimZeros(s.toFixed(1)) + ' s';
    else if (s < 59.5) out = Math.round(s) + ' s';
    else if (s < 3570) {
      const t = Math.round(s);
      const m = Math.floor(t / 60), r = t % 60;
      out = m + ' m' + (r ? ' ' + r + ' s' : '');
    } else if (s < 86370) {
      const t = Math.round(s / 60);
      const hh = Math.floor(t / 60), m = t % 60;
      out = hh + ' h' + (m ? ' ' + m + ' m' : '');
    } else {
      const t = Math.round(s / 3600);
      const d = Math.floor(t / 24), hh = t % 24;
      out = d + ' d' + (hh ? ' ' + hh + ' h' : '');
    }
    return (neg ? '−' : '') + out;
  }
  // Short durations of steps and operations read better in ms.
  function fmtDurationMs(ms) {
    const v = num(ms);
    if (v === null) return '—';
    if (v < 1000) return Math.round(v) + ' ms';
    return fmtSeconds(v / 1000);
  }
  function fmtAge(seconds) {
    const s = num(seconds);
    if (s === null) return '—';
    if (s < 1) return 'just now';
    if (s < 60) return Math.round(s) + ' s ago';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    if (s < 86400) {
      const hh = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
      return hh + ' h' + (hh < 6 && m ? ' ' + m + ' min' : '') + ' ago';
    }
    const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600);
    return d + ' d' + (d < 7 && hh ? ' ' + hh + ' h' : '') + ' ago';
  }
  function fmtBytes(v) {
    const b = num(v);
    if (b === null) return '—';
    if (Math.abs(b) < 1024) return b + ' B';
    const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let x = b, i = -1;
    do { x /= 1024; i++; } while (Math.abs(x) >= 1024 && i < units.length - 1);
    return (x < 10 ? x.toFixed(1) : Math.round(x)) + ' ' + units[i];
  }
  function pad2(n) { return String(n).padStart(2, '0'); }
  function fmtClock(ms, withSeconds) {
    const d = new Date(ms);
    return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + (withSeconds === false ? '' : ':' + pad2(d.getSeconds()));
  }
  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  // A time in the local zone: "02:41:31" today, "Nov 23 02:41" otherwise.
  function fmtWhen(iso) {
    const t = parseTime(iso);
    if (t === null) return '—';
    const d = new Date(t), now = new Date(serverNow());
    if (d.toDateString() === now.toDateString()) return fmtClock(t);
    return MONTHS[d.getMonth()] + ' ' + d.getDate() + ' ' + fmtClock(t, false);
  }
  function label(status) { return String(status).replace(/_/g, ' '); }
  // "op-2282a3b8674f408bb8307a2424cdb6a6" -> "op-2282a3b8"
  function shortId(id) {
    if (!isString(id)) return '—';
    const m = id.match(/^([a-z]+-)([0-9a-f]{16,})$/i);
    if (m) return m[1] + m[2].slice(0, 8);
    const rt = id.match(/^(rt-)\d{8}T\d{6}Z-([0-9a-z]+)$/i);
    return rt ? rt[1] + '…' + rt[2] : id;
  }
  // "drill op-bb1e38aa…" : shortens an id inside an evidence source.
  function shortSource(text) {
    if (!isString(text)) return '—';
    return text
      .replace(/\b([a-z]+-)([0-9a-f]{16,})\b/gi, (all, p, hex) => p + hex.slice(0, 8) + '…')
      .replace(/\b(rt-)\d{8}T\d{6}Z-([0-9a-z]+)\b/gi, (all, p, tail) => p + '…' + tail)
      .replace(/^([a-z]+)_([a-z]+) /, '$1 $2 ');
  }
  // A time ahead: "Dec 1" when days away, "14:05" when within a day.
  function fmtAhead(iso) {
    const t = parseTime(iso);
    if (t === null) return '—';
    if (t - serverNow() < 86400000) return fmtClock(t, false);
    const d = new Date(t);
    return MONTHS[d.getMonth()] + ' ' + d.getDate();
  }

  // Status words to the five tones of the page.
  const TONES = {
    compliant: 'ok', met: 'ok', fresh: 'ok', ok: 'ok', succeeded: 'ok', passed: 'ok',
    verified: 'ok', done: 'ok', complete: 'ok', completed: 'ok', streaming: 'ok',
    at_risk: 'warn', stale: 'warn', unverified: 'warn', missing: 'warn', stopped: 'warn',
    catchup: 'warn', startup: 'warn', pending: 'unknown', skipped: 'unknown',
    breach: 'bad', failed: 'bad', error: 'bad', missed: 'bad', deleted: 'unknown',
    running: 'info', started: 'info', verifying: 'info', in_progress: 'info',
    unknown: 'unknown',
  };
  function tone(status) { return TONES[String(status || '').toLowerCase()] || 'unknown'; }

  // ------------------------------------------------------------------- DOM

  function setAttrs(el, attrs) {
    if (!attrs) return;
    for (const k of Object.keys(attrs)) {
      const v = attrs[k];
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
      else if (k === 'text') el.textContent = String(v);
      else if (k.slice(0, 2) === 'on' && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    return append(el, children);
  }
  function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVGNS, tag);
    setAttrs(el, attrs);
    return append(el, children);
  }
  function replaceChildren(el, ...children) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return append(el, children);
  }
  function pill(status, text) {
    const s = str(status) || 'unknown';
    return h('span', { class: ['pill', 'tone-' + tone(s)], text: text || label(s) });
  }
  function timeEl(iso) {
    return h('time', { datetime: str(iso), title: str(iso), text: fmtWhen(iso) });
  }
  function mono(text, title) {
    return h('span', { class: 'mono', title: title || null, text: text });
  }

  // ------------------------------------------------------------------- API

  class ApiFailure extends Error {
    constructor(kind, status, code, message) {
      super(message);
      this.kind = kind; // network | auth | forbidden | http
      this.status = status;
      this.code = code;
    }
  }

  async function apiGet(path) {
    const headers = { Accept: 'application/json' };
    const token = readToken();
    if (token) headers.Authorization = 'Bearer ' + token;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
    let res, text;
    try {
      res = await fetch(path, { headers, cache: 'no-store', credentials: 'same-origin', signal: abort.signal });
      text = await res.text();
    } catch (e) {
      throw new ApiFailure('network', 0, null, 'API unreachable');
    } finally {
      clearTimeout(timer);
    }
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
    if (res.ok) {
      if (!isObj(body)) throw new ApiFailure('http', res.status, 'not_json', 'the API answered ' + path + ' with something that is not a JSON object');
      return body;
    }
    const err = obj(obj(body).error);
    const kind = res.status === 401 ? 'auth' : res.status === 403 ? 'forbidden' : 'http';
    const message = str(err.message) || (res.status + ' ' + (res.statusText || 'error') + ' from ' + path);
    throw new ApiFailure(kind, res.status, str(err.code), message);
  }

  // Runs a request of a group (for the banner), keeping the last data on failure.
  async function load(group, path, onData) {
    try {
      const body = await apiGet(path);
      state.health.delete(group);
      onData(body);
      return true;
    } catch (e) {
      if (e instanceof ApiFailure) state.health.set(group, e);
      else {
        state.health.set(group, new ApiFailure('http', 0, 'render', 'could not show ' + path + ': ' + e.message));
        if (window.console) console.error(e && e.stack ? e.stack : e);
      }
      return false;
    }
  }

  function refreshReport() {
    return load('rpo-rto', '/api/v1/rpo-rto', (body) => {
      const gen = parseTime(body.generated_at);
      if (gen !== null) state.clockOffset = gen - Date.now();
      state.report = body;
      renderReport();
      const now = new Date();
      state.lastOkAt = now.getTime();
      const refreshed = document.getElementById('refreshed');
      refreshed.textContent = fmtClock(now.getTime());
      refreshed.setAttribute('data-at', now.toISOString());
      refreshed.classList.remove('late');
      state.refreshes += 1;
      document.body.setAttribute('data-refreshes', String(state.refreshes));
    });
  }
  function refreshConfigs() {
    return load('services', '/api/v1/services', (body) => {
      const m = new Map();
      for (const c of arrayOf(body.services)) if (isObj(c) && str(c.name)) m.set(c.name, c);
      state.configs = m;
    });
  }
  // Which daemon answers, and whether it leads (several daemons may share
  // the store; only the leader starts work).
  function refreshCluster() {
    return load('cluster', '/api/v1/cluster', (body) => {
      const me = obj(body.this);
      const leader = obj(body.leader);
      const el = document.getElementById('daemon');
      el.setAttribute('data-leading', me.leading === true ? 'true' : 'false');
      if (me.leading === true) {
        el.textContent = 'the leader';
        el.title = str(me.id) || '';
      } else {
        el.textContent = str(leader.id) ? 'a follower' : 'a follower (election under way)';
        el.title = str(leader.id) ? 'leader: ' + leader.id + (str(leader.api_url) ? ' at ' + leader.api_url : '') : '';
      }
    });
  }
  function refreshOperations() {
    return load('operations', '/api/v1/operations?limit=20', (body) => {
      state.operations = arrayOf(body.operations).filter(isObj).slice(0, 20);
      renderOperations();
    });
  }
  function refreshBackups() {
    return load('backups', '/api/v1/backups?limit=50', (body) => {
      state.backups = arrayOf(body.backups).filter(isObj);
      renderBackups();
    });
  }
  function refreshRestoreTests() {
    return load('restore-tests', '/api/v1/restore-tests?limit=20', (body) => {
      state.restoreTests = arrayOf(body.restore_tests).filter(isObj);
      renderRestoreTests();
    });
  }
  function replicated(svc) {
    return arrayOf(svc.standbys).length > 0 || (str(svc.tier) !== null && svc.tier !== 'cold');
  }
  // The 1 h chart holds one sample a second per standby: after a full read
  // it asks only for what is new (since the newest sample it has), and reads
  // the whole hour again every few minutes so late or rewritten samples show.
  const FULL_REFETCH_MS = 5 * 60 * 1000;
  function sampleKey(smp) { return String(smp.sampled_at) + '|' + String(smp.standby_region); }
  function refreshLag(name) {
    const win = lagWindowOf(name);
    const entry = state.lag.get(name) || {};
    entry.loading = true;
    state.lag.set(name, entry);
    const have = entry.data && entry.window === win ? arrayOf(entry.data.samples).filter(isObj) : null;
    let newest = null, newestT = -Infinity;
    if (win === '1h' && have && have.length && entry.fullAt && Date.now() - entry.fullAt < FULL_REFETCH_MS && entry.data.truncated !== true) {
      for (const smp of have) {
        const t = parseTime(smp.sampled_at);
        if (t !== null && t > newestT) { newestT = t; newest = smp.sampled_at; }
      }
    }
    const base = '/api/v1/services/' + encodeURIComponent(name) + '/lag?';
    const path = base + (newest ? 'since=' + encodeURIComponent(newest) + '&limit=20000' : LAG_WINDOWS[win].query);
    return load('lag:' + name, path, (body) => {
      if (lagWindowOf(name) !== win) return; // the person switched while this was in flight
      let data = body, fullAt = Date.now();
      if (newest) {
        const seen = new Set(have.map(sampleKey));
        const added = arrayOf(body.samples).filter((smp) => isObj(smp) && !seen.has(sampleKey(smp)));
        const cutoff = serverNow() - LAG_WINDOWS[win].seconds * 1000;
        const kept = have.filter((smp) => { const t = parseTime(smp.sampled_at); return t === null || t >= cutoff; });
        data = Object.assign({}, entry.data, { samples: kept.concat(added), truncated: body.truncated === true });
        fullAt = entry.fullAt;
      }
      state.lag.set(name, { window: win, data, fetchedAt: Date.now(), fullAt, loading: false, failed: null });
      renderLag(name);
    }).then((ok) => {
      const e = state.lag.get(name);
      if (e) {
        e.loading = false;
        const failure = state.health.get('lag:' + name);
        const failed = ok ? null : (failure ? failure.message : 'request failed');
        if (failed !== (e.failed || null)) { e.failed = failed; renderLag(name); }
      }
      return ok;
    });
  }
  function refreshLags() {
    const svcs = arrayOf(obj(state.report).services).filter(isObj);
    return Promise.all(svcs.filter(replicated).map((s) => refreshLag(String(s.service))));
  }
  function refreshOpDetail(id) {
    const entry = state.opDetails.get(id) || {};
    entry.loading = true;
    state.opDetails.set(id, entry);
    return apiGet('/api/v1/operations/' + encodeURIComponent(id)).then(
      (body) => { state.opDetails.set(id, { data: body, fetchedAt: Date.now() }); },
      (e) => {
        const old = state.opDetails.get(id) || {};
        state.opDetails.set(id, { data: old.data || null, error: e, fetchedAt: Date.now() });
        if (e instanceof ApiFailure && (e.kind === 'auth' || e.kind === 'forbidden')) state.health.set('operation', e);
      },
    ).then(() => { renderOperations(); });
  }
  function refreshOpenDetails() {
    const ops = arrayOf(state.operations);
    const jobs = [];
    for (const id of expanded) {
      const op = ops.find((o) => o.id === id);
      if (!op) continue;
      const d = state.opDetails.get(id);
      const seen = d && d.data ? obj(d.data.operation) : null;
      if (!d || !d.data || op.status === 'running' || !seen || seen.status !== op.status) jobs.push(refreshOpDetail(id));
    }
    return Promise.all(jobs);
  }

  async function cycle() {
    clearTimeout(state.timer);
    const slow = state.tick % SLOW_EVERY === 0;
    state.tick += 1;
    try {
      const jobs = [refreshReport()];
      if (slow) jobs.push(refreshConfigs(), refreshCluster(), refreshOperations(), refreshBackups(), refreshRestoreTests());
      await Promise.all(jobs);
      if (slow) {
        if (state.report) await refreshLags();
        await refreshOpenDetails();
      }
    } catch (e) {
      if (window.console) console.error(e);
    }
    updateBanner();
    state.timer = setTimeout(cycle, FAST_MS);
  }

  // ------------------------------------------------------ banner and auth

  function updateBanner() {
    const fails = Array.from(state.health.values());
    const banner = document.getElementById('banner');
    const net = fails.find((f) => f.kind === 'network');
    const http = fails.find((f) => f.kind === 'http');
    const auth = fails.find((f) => f.kind === 'auth');
    const forbidden = fails.find((f) => f.kind === 'forbidden');
    const since = state.lastOkAt ? ' · showing data from ' + fmtClock(state.lastOkAt) : '';
    if (net) {
      showBanner(banner, 'API unreachable — retrying', since);
    } else if (http) {
      showBanner(banner, 'API error' + (http.code ? ' (' + http.code + ')' : '') + ': ' + http.message + ' — retrying', since);
    } else {
      banner.hidden = true;
      replaceChildren(banner);
    }
    const form = document.getElementById('token-form');
    if (auth) form.hidden = false;
    else if (!forbidden) form.hidden = true;
    const ae = document.getElementById('auth-error');
    if (forbidden) {
      ae.hidden = false;
      const other = h('button', { type: 'button', class: 'link-button', text: 'use another token' });
      other.addEventListener('click', () => {
        form.hidden = false;
        document.getElementById('token-input').focus();
      });
      replaceChildren(ae, h('strong', { text: 'Forbidden: ' }), forbidden.message, ' · ', other);
    } else {
      ae.hidden = true;
      replaceChildren(ae);
    }
    if (!state.report) {
      const ph = document.querySelector('#services .placeholder');
      if (ph) ph.textContent = auth ? 'waiting for a token…' : forbidden ? 'this token may not read the API' : (net || http) ? 'no data yet — the API did not answer' : 'loading services…';
    }
    const refreshed = document.getElementById('refreshed');
    if (state.lastOkAt && Date.now() - state.lastOkAt > 3 * FAST_MS) refreshed.classList.add('late');
  }
  function showBanner(banner, text, since) {
    banner.hidden = false;
    replaceChildren(banner, h('span', { class: 'banner-dot', 'aria-hidden': 'true' }), h('strong', { text }), since);
  }

  function setupTokenForm() {
    const form = document.getElementById('token-form');
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const input = document.getElementById('token-input');
      const token = input.value.trim();
      try {
        if (token) sessionStorage.setItem(TOKEN_KEY, token);
        else sessionStorage.removeItem(TOKEN_KEY);
      } catch (e) { /* storage refused: nothing to keep */ }
      input.value = '';
      form.hidden = true;
      state.health.clear();
      state.tick = 0;
      cycle();
    });
  }

  // --------------------------------------------------------------- header

  function renderHeader(report) {
    const services = arrayOf(report.services).filter(isObj);
    const gen = document.getElementById('generated-at');
    gen.textContent = fmtWhen(report.generated_at);
    if (str(report.generated_at)) {
      gen.setAttribute('datetime', report.generated_at);
      gen.setAttribute('title', report.generated_at);
    }

    const summary = obj(report.summary);
    const total = first(num(summary.services), services.length);
    let covered = num(summary.covered_by_fresh_evidence);
    const judged = services.some((s) => isObj(s.compliance));
    if (covered === null && judged) covered = services.filter((s) => obj(obj(s.compliance).evidence).status === 'fresh').length;
    let byStatus = obj(summary.by_status);
    if (!Object.keys(byStatus).length) {
      byStatus = {};
      for (const s of services) {
        const st = complianceOf(s).status;
        byStatus[st] = (byStatus[st] || 0) + 1;
      }
    }
    const order = ['breach', 'at_risk', 'stale', 'unverified', 'unknown', 'compliant'];
    const keys = Object.keys(byStatus).filter((k) => num(byStatus[k]) > 0);
    keys.sort((a, b) => rank(a) - rank(b));
    function rank(k) { const i = order.indexOf(k); return i < 0 ? order.length - 1 : i; }

    const el = document.getElementById('summary');
    const allCovered = covered !== null && total > 0 && covered >= total;
    replaceChildren(el,
      covered === null
        ? h('div', { class: 'summary-line' }, h('strong', { text: String(total) }), ' service' + (total === 1 ? '' : 's') + ' · evidence coverage not reported by this API')
        : h('div', { class: ['summary-line', allCovered ? 'covered' : 'not-covered'] },
          h('strong', { text: covered + ' of ' + total }),
          ' service' + (total === 1 ? '' : 's') + ' covered by fresh evidence'),
      h('div', { class: 'summary-counts' },
        keys.map((k) => h('span', { class: ['count', 'tone-' + tone(k), 'count-' + k] },
          h('strong', { text: String(byStatus[k]) }), ' ' + label(k)))));
    const breaches = num(byStatus.breach) || 0;
    document.body.classList.toggle('has-breach', breaches > 0);
    document.title = (breaches > 0 ? breaches + ' breach' + (breaches > 1 ? 'es' : '') + ' · ' : '') + 'drctl';
  }

  // -------------------------------------------------------------- services

  // The compliance block, or what can honestly be said without it.
  function complianceOf(svc) {
    const c = obj(svc.compliance);
    const has = isObj(svc.compliance);
    return {
      present: has,
      status: str(c.status) || (has ? 'unknown' : str(svc.status) || 'unknown'),
      reasons: arrayOf(c.reasons).filter(isString),
      rpo: obj(c.rpo),
      rto: obj(c.rto),
      evidence: obj(c.evidence),
    };
  }

  function renderReport() {
    const report = state.report;
    renderHeader(report);
    const container = document.getElementById('services');
    const services = arrayOf(report.services).filter((s) => isObj(s) && str(s.service));
    const seen = new Set();
    const placeholder = container.querySelector('.placeholder');
    if (placeholder) placeholder.remove();
    services.forEach((svc, i) => {
      const name = svc.service;
      seen.add(name);
      const card = ensureCard(name);
      updateCard(card, svc);
      if (container.children[i] !== card.el) container.insertBefore(card.el, container.children[i] || null);
    });
    for (const [name, card] of cards) {
      if (!seen.has(name)) { card.el.remove(); cards.delete(name); }
    }
    if (!services.length && !container.querySelector('.placeholder')) {
      container.appendChild(h('p', { class: 'placeholder', text: 'no services configured' }));
    }
  }

  function ensureCard(name) {
    let card = cards.get(name);
    if (card) return card;
    const buttons = Object.keys(LAG_WINDOWS).map((w) =>
      h('button', { type: 'button', class: 'seg', 'data-window': w, 'aria-pressed': 'false', text: LAG_WINDOWS[w].label }));
    const toggle = h('div', { class: 'seg-group', role: 'group', 'aria-label': 'lag history window' }, buttons);
    toggle.addEventListener('click', (ev) => {
      const b = ev.target.closest('button[data-window]');
      if (b) setLagWindow(name, b.getAttribute('data-window'));
    });
    const head = h('div', { class: 'svc-head' });
    const metrics = h('div', { class: 'svc-metrics' });
    const lagTitle = h('span', { class: 'lag-title', text: 'Replication lag' });
    const lagHead = h('div', { class: 'lag-head' }, lagTitle, toggle);
    const chartWrap = h('div', { class: 'chart-wrap' });
    const legend = h('div', { class: 'legend' });
    const standbys = h('div', { class: 'standbys' });
    const lag = h('div', { class: 'svc-lag' }, lagHead, chartWrap, legend, standbys);
    const el = h('article', { class: 'service', 'data-service': name }, head, h('div', { class: 'svc-body' }, metrics, lag));
    card = { name, el, head, metrics, lag, lagTitle, toggle, buttons, chartWrap, legend, standbys, chartKey: null, svc: null };
    cards.set(name, card);
    return card;
  }

  function updateCard(card, svc) {
    card.svc = svc;
    const c = complianceOf(svc);
    const el = card.el;
    el.setAttribute('data-status', c.status);
    el.setAttribute('data-rpo-status', str(c.rpo.status) || 'unknown');
    el.setAttribute('data-rto-status', str(c.rto.status) || 'unknown');
    el.setAttribute('data-evidence-status', str(c.evidence.status) || 'unknown');
    el.setAttribute('class', 'service tone-' + tone(c.status) + ' service-' + c.status);
    renderHead(card, svc, c);
    renderMetrics(card, svc, c);
    renderStandbys(card, svc);
    renderLag(card.name);
  }

  // A chart that cannot be drawn must not take the figures down with it.
  function renderLag(name) {
    try {
      drawLag(name);
    } catch (e) {
      if (window.console) console.error(e && e.stack ? e.stack : e);
      const card = cards.get(name);
      if (card) {
        card.chartKey = null;
        replaceChildren(card.chartWrap, h('p', { class: 'chart-note', text: 'the lag chart could not be drawn: ' + e.message }));
      }
    }
  }

  function renderHead(card, svc, c) {
    const cfg = obj(state.configs.get(card.name));
    const tier = str(svc.tier) || str(cfg.tier);
    const primary = str(cfg.primary);
    const facts = [];
    if (primary) facts.push(h('span', {}, 'primary ', h('strong', { text: primary })));
    const failover = obj(cfg.failover);
    if (failover.automatic === true) facts.push(h('span', { text: 'automatic failover' }));
    if (str(svc.sampled_at)) facts.push(h('span', {}, 'sampled ', timeEl(svc.sampled_at)));

    const reasons = c.reasons.length
      ? h('ul', { class: 'reasons' }, c.reasons.map((r) => h('li', { text: r })))
      : null;
    const notes = [];
    if (str(svc.error)) notes.push(h('p', { class: 'svc-note note-error', title: svc.error }, h('strong', { text: 'probe: ' }), svc.error));
    if (str(svc.note)) notes.push(h('p', { class: 'svc-note' }, svc.note));
    if (!c.present) notes.push(h('p', { class: 'svc-note' }, 'no compliance verdict in this API version; showing the monitor status'));

    replaceChildren(card.head,
      h('div', { class: 'svc-title' },
        h('h3', { class: 'svc-name', text: card.name }),
        tier ? h('span', { class: ['tier', 'tier-' + tier], text: tier }) : null,
        h('span', { class: ['badge', 'status-' + c.status, 'tone-' + tone(c.status)], text: label(c.status) }),
        h('span', { class: 'svc-facts' }, facts)),
      reasons, notes);
  }

  function metricBlock(kind, title, status, value, valueTone, sub, rows, extra) {
    return h('div', { class: ['metric', 'metric-' + kind] },
      h('div', { class: 'metric-head' }, h('span', { class: 'metric-title', text: title }), status ? pill(status) : null),
      h('div', { class: 'metric-value' },
        h('span', { class: ['big', 'text-' + valueTone], text: value }),
        sub ? h('span', { class: 'big-sub', text: sub }) : null),
      extra || null,
      h('dl', { class: 'kv' }, rows.filter(Boolean).map(([k, v, cls]) =>
        h('div', { class: ['kv-row', cls] }, h('dt', { text: k }), h('dd', {}, v)))));
  }

  function meter(value, target, status) {
    const v = num(value), t = num(target);
    if (v === null || t === null || t <= 0) return null;
    const ratio = Math.max(0, Math.min(1, v / t));
    return svg('svg', { class: 'meter', viewBox: '0 0 100 4', preserveAspectRatio: 'none', 'aria-hidden': 'true' },
      svg('rect', { class: 'meter-track', x: 0, y: 0, width: 100, height: 4, rx: 1 }),
      svg('rect', { class: ['meter-fill', 'tone-' + tone(status)], x: 0, y: 0, width: Math.max(ratio * 100, v > 0 ? 1 : 0).toFixed(2), height: 4, rx: 1 }));
  }

  // The WAL archive: its lag (what a restore to a point would lose now)
  // and its receiver; served by the leading daemon only.
  function walArchiveRow(w) {
    const receiver = str(w.receiver);
    if (!receiver) return null;
    const lag = num(w.archive_lag_s);
    const problem = str(w.last_error) || str(w.receiver_error);
    return ['WAL archive', h('span', { title: problem || null },
      lag === null ? '—' : (w.lag_is_lower_bound === true ? '≥ ' : '') + fmtSeconds(lag), ' ',
      h('span', { class: ['wal', 'text-' + tone(receiver === 'running' ? 'streaming' : receiver)], text: receiver })),
      receiver === 'running' && !problem ? null : 'row-warn'];
  }

  // The restorable window: from the oldest backup the archive replays from
  // to the newest archived commit.
  function restorableRow(w) {
    const from = str(w.restorable_from), to = str(w.restorable_to);
    if (!from || !to) return null;
    return ['restorable', h('span', { title: (str(w.restorable_from_backup) || '') + ' · ' + from + ' → ' + to },
      timeEl(from), ' → ', timeEl(to))];
  }

  function renderMetrics(card, svc, c) {
    const rpo = obj(svc.rpo), rto = obj(svc.rto), backup = obj(svc.backup);
    // RPO
    const rpoStatus = str(c.rpo.status) || 'unknown';
    const lower = c.rpo.exposure_is_lower_bound === true || rpo.exposure_is_lower_bound === true;
    const exposure = first(num(c.rpo.exposure_s), num(rpo.exposure_s));
    const target = first(num(c.rpo.target_s), num(rpo.target_s));
    const win = str(c.rpo.window) || '1h';
    const p99 = first(num(c.rpo.p99_s), num(obj(rpo['window_' + win]).p99_s), num(obj(rpo.window_1h).p99_s));
    const w24 = obj(rpo.window_24h);
    const aboveSince = str(rpo.above_target_since);
    const best = str(rpo.best_standby);
    const cold = !replicated(svc);
    const newestVerified = obj(backup.newest_verified_backup);
    const rpoRows = [
      ['target', fmtSeconds(target)],
      ['p99 ' + win.replace(/(\d)([a-z])/, '$1 $2'), p99 === null ? '—' : fmtSeconds(p99)],
      num(w24.max_s) !== null ? ['max 24 h', fmtSeconds(w24.max_s)] : null,
      aboveSince ? ['above target', h('span', {}, 'since ', timeEl(aboveSince), ' (' + fmtAge(ageOf(aboveSince)).replace(' ago', '') + ')'), 'row-bad'] : null,
      !cold && best ? ['best standby', best] : null,
      cold ? ['basis', best === 'wal-archive' ? 'WAL archive from a verified backup' : (str(newestVerified.id) ? 'newest verified backup' : 'no verified backup')] : null,
      walArchiveRow(obj(svc.wal_archive)),
      restorableRow(obj(svc.wal_archive)),
    ];
    const rpoBlock = metricBlock('rpo', 'RPO', rpoStatus,
      exposure === null ? '—' : (lower ? '≥ ' : '') + fmtSeconds(exposure), tone(rpoStatus),
      'exposure now', rpoRows, meter(exposure, target, rpoStatus));

    // RTO
    const rtoStatus = str(c.rto.status) || 'unknown';
    const measured = first(num(c.rto.measured_s), num(rto.measured_s));
    const rtoTarget = first(num(c.rto.target_s), num(rto.target_s));
    const source = first(str(c.rto.source), str(rto.source));
    const measuredAt = first(str(c.rto.measured_at), str(rto.measured_at));
    let age = ageOf(measuredAt);
    if (age === null) age = num(rto.evidence_age_s);
    const rtoRows = [
      ['target', fmtSeconds(rtoTarget)],
      ['source', source ? h('span', { class: 'mono', title: source, text: shortSource(source) }) : 'no measurement yet'],
      ['measured', measuredAt ? h('time', { datetime: measuredAt, title: fmtWhen(measuredAt) + ' · ' + measuredAt, text: fmtAge(age) }) : '—'],
      str(rto.note) ? ['note', rto.note] : null,
    ];
    const rtoBlock = metricBlock('rto', 'RTO', rtoStatus, fmtSeconds(measured), tone(rtoStatus),
      measured === null ? 'not measured' : 'last measured', rtoRows, meter(measured, rtoTarget, rtoStatus));
    if (str(rto.reason)) rtoBlock.setAttribute('title', rto.reason);

    // Evidence
    const ev = c.evidence;
    const evStatus = str(ev.status) || 'unknown';
    const required = str(ev.required);
    const every = num(ev.required_every_s);
    let evAge = ageOf(ev.last_at);
    if (evAge === null) evAge = num(ev.age_s);
    const dueT = parseTime(ev.due_at);
    let due = '—', dueCls = null;
    if (dueT !== null) {
      const inS = (dueT - serverNow()) / 1000;
      if (inS >= 0) due = h('span', { title: ev.due_at }, 'in ' + fmtSeconds(inS).replace(/ \d+ s$/, ''), ' ', h('span', { class: 'muted', text: '(' + fmtAhead(ev.due_at) + ')' }));
      else { due = h('span', { title: ev.due_at }, 'overdue by ' + fmtSeconds(-inS).replace(/ \d+ s$/, '')); dueCls = 'row-warn'; }
    }
    const lastText = str(ev.last_kind) || str(ev.last_id)
      ? [str(ev.last_kind) ? label(ev.last_kind) : '', str(ev.last_id) ? ' ' + shortId(ev.last_id) : ''].join('').trim()
      : null;
    const evRows = [
      ['required', required ? h('span', {}, label(required), every !== null ? ' every ' + fmtSeconds(every) : '') : '—'],
      ['last', lastText ? h('span', { class: 'mono', title: [str(ev.last_id), str(ev.last_at)].filter(Boolean).join(' · ') || null, text: lastText }) : '—'],
      ['due', due, dueCls],
      str(ev.config_changed_at) ? ['config', h('time', { datetime: ev.config_changed_at, title: fmtWhen(ev.config_changed_at) + ' · ' + ev.config_changed_at, text: 'changed ' + fmtAge(ageOf(ev.config_changed_at)) }), evStatus === 'unverified' ? 'row-warn' : null] : null,
    ];
    const evValue = evAge !== null ? fmtAge(evAge).replace(' ago', '') : (c.present ? 'none' : '—');
    const evBlock = metricBlock('evidence', 'Evidence', c.present ? evStatus : null, evValue, tone(evStatus),
      evAge !== null ? 'old' : (c.present ? 'on record' : ''), evRows);

    replaceChildren(card.metrics, rpoBlock, rtoBlock, evBlock);
  }

  function renderStandbys(card, svc) {
    const standbys = arrayOf(svc.standbys).filter(isObj);
    if (!standbys.length) { replaceChildren(card.standbys); return; }
    const rows = [];
    for (const sb of standbys) {
      const lower = sb.exposure_is_lower_bound === true;
      const wal = str(sb.wal_receiver);
      rows.push(h('tr', { class: 'standby', 'data-region': str(sb.region) },
        h('td', { class: 'mono', text: str(sb.region) || '—' }),
        h('td', {}, pill(str(sb.status) || 'unknown')),
        h('td', {}, wal ? h('span', { class: ['wal', 'text-' + tone(wal)], text: wal }) : h('span', { class: 'muted', text: 'no receiver' })),
        h('td', { class: 'num', title: num(sb.replay_byte_lag) !== null ? 'replay byte lag ' + fmtBytes(sb.replay_byte_lag) : null, text: fmtBytes(sb.byte_lag) }),
        h('td', { class: 'num', text: num(sb.exposure_s) === null ? '—' : (lower ? '≥ ' : '') + fmtSeconds(sb.exposure_s) }),
        h('td', { class: 'num', text: fmtSeconds(sb.replay_lag_s) })));
      if (str(sb.error)) {
        rows.push(h('tr', { class: 'standby-error' }, h('td', { colspan: 6, title: sb.error, text: sb.error })));
      }
    }
    replaceChildren(card.standbys, h('table', { class: 'mini-table' },
      h('thead', {}, h('tr', {},
        h('th', { text: 'Standby' }), h('th', { text: 'State' }), h('th', { text: 'WAL receiver' }),
        h('th', { class: 'num', text: 'Byte lag' }), h('th', { class: 'num', text: 'Exposure' }), h('th', { class: 'num', text: 'Replay lag' }))),
      h('tbody', {}, rows)));
  }

  // ------------------------------------------------------------ lag chart

  function setLagWindow(name, win) {
    if (!LAG_WINDOWS[win] || lagWindowOf(name) === win) return;
    state.ui.lagWindow = Object.assign({}, obj(state.ui.lagWindow), { [name]: win });
    saveUi();
    renderLag(name);
    refreshLag(name).then(updateBanner);
  }

  function drawLag(name) {
    const card = cards.get(name);
    if (!card || !card.svc) return;
    const svc = card.svc;
    const win = lagWindowOf(name);
    for (const b of card.buttons) {
      const on = b.getAttribute('data-window') === win;
      b.classList.toggle('active', on);
      b.setAttribute('aria-pressed', on ? 'true' : 'false');
    }
    if (!replicated(svc)) {
      card.lag.classList.add('cold');
      card.lagTitle.textContent = 'Backup exposure';
      if (card.chartKey === 'cold') return;
      card.chartKey = 'cold';
      const b = obj(svc.backup);
      const nv = obj(b.newest_verified_backup);
      const rt = obj(b.latest_restore_test);
      replaceChildren(card.chartWrap, h('div', { class: 'no-repl' },
        h('p', { class: 'no-repl-title', text: str(obj(svc.rpo).best_standby) === 'wal-archive'
          ? 'no replication — exposure follows the WAL archive, replayed from the newest verified backup'
          : 'no replication — exposure follows the newest verified backup' }),
        h('dl', { class: 'kv' },
          h('div', { class: 'kv-row' }, h('dt', { text: 'newest verified' }),
            h('dd', {}, str(nv.id) ? [mono(nv.id), ' · ended ', timeEl(nv.ended_at)] : 'none')),
          h('div', { class: 'kv-row' }, h('dt', { text: 'restore test' }),
            h('dd', {}, str(rt.id) ? [pill(str(rt.status) || 'unknown'), ' ', mono(shortId(rt.id), rt.id), ' · ready in ', fmtSeconds(rt.time_to_ready_s), ' · ', timeEl(rt.ended_at)] : 'none')))));
      replaceChildren(card.legend);
      return;
    }
    card.lag.classList.remove('cold');
    card.lagTitle.textContent = 'Replication lag';
    const entry = state.lag.get(name);
    const target = first(num(obj(obj(svc.compliance).rpo).target_s), num(obj(svc.rpo).target_s));
    const width = Math.max(280, Math.round(card.chartWrap.clientWidth || 520));
    const ready = entry && entry.data && entry.window === win;
    const failed = entry && entry.failed ? entry.failed : null;
    const key = [win, ready ? entry.fetchedAt : 'none', target, width, failed].join('|');
    if (card.chartKey === key) return;
    card.chartKey = key;
    const data = ready ? entry.data : null;
    const chart = buildLagChart(name, data, win, target, width, !ready && !failed);
    const failNote = failed ? h('p', { class: 'chart-note text-warn', text: (ready ? 'could not refresh the history (' : 'could not load the history (') + failed + ') — retrying' }) : null;
    replaceChildren(card.chartWrap, chart.svg, chart.note, failNote);
    replaceChildren(card.legend, chart.legend);
  }

  // Max per bucket keeps every spike; nulls stay null only if the whole bucket is.
  function downsample(points, t0, t1, buckets) {
    if (points.length <= buckets * 2) return points;
    const out = [];
    const step = (t1 - t0) / buckets;
    let cur = null, idx = -1;
    for (const p of points) {
      if (p.t < t0) continue;
      const b = Math.floor((p.t - t0) / step);
      if (cur === null || b !== idx) { if (cur) out.push(cur); cur = { t: p.t, v: p.v, lb: p.lb }; idx = b; continue; }
      if (p.v !== null && (cur.v === null || p.v > cur.v)) { cur.v = p.v; cur.lb = p.lb; }
    }
    if (cur) out.push(cur);
    return out;
  }

  const TIME_STEPS = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
  const VALUE_STEPS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];

  function axisSeconds(v) {
    if (v === 0) return '0';
    if (v < 120) return trimZeros(v.toFixed(2)) + ' s';
    return fmtSeconds(v);
  }

  function buildLagChart(name, data, win, target, W, loading) {
    const samples = arrayOf(obj(data).samples).filter(isObj);
    const H = 184, ml = 52, mr = 14, mt = 12, mb = 24;
    const pw = W - ml - mr, ph = H - mt - mb;

    // Series per standby region.
    const byRegion = new Map();
    let tMin = Infinity, tMax = -Infinity, vMax = 0;
    for (const s of samples) {
      const t = parseTime(s.sampled_at);
      if (t === null) continue;
      const region = str(s.standby_region) || str(s.region) || 'standby';
      if (!byRegion.has(region)) byRegion.set(region, []);
      const v = num(s.exposure_s);
      byRegion.get(region).push({ t, v, lb: s.exposure_is_lower_bound === true });
      if (t < tMin) tMin = t;
      if (t > tMax) tMax = t;
      if (v !== null && v > vMax) vMax = v;
    }
    const windowMs = LAG_WINDOWS[win].seconds * 1000;
    const end = Math.max(serverNow(), isFinite(tMax) ? tMax : -Infinity);
    let start = end - windowMs;
    let partial = false;
    if (isFinite(tMin) && tMin > start + windowMs * 0.05) { start = tMin; partial = true; }
    if (end - start < 60000) start = end - 60000;

    // Y scale covers the target so the headroom shows.
    let yTop = Math.max(vMax * 1.1, target !== null ? target * 1.25 : 0, 0.05);
    let yStep = VALUE_STEPS[VALUE_STEPS.length - 1];
    for (const st of VALUE_STEPS) { if (yTop / st <= 5) { yStep = st; break; } }
    yTop = Math.ceil(yTop / yStep - 1e-9) * yStep;
    const x = (t) => ml + ((t - start) / (end - start)) * pw;
    const y = (v) => mt + ph - (Math.min(v, yTop) / yTop) * ph;

    const chart = svg('svg', {
      class: ['lag-chart', loading ? 'loading' : null], 'data-service': name, 'data-points': samples.length, 'data-window': win,
      viewBox: '0 0 ' + W + ' ' + H, width: W, height: H, role: 'img',
      'aria-label': 'RPO exposure of ' + name + ' over the last ' + LAG_WINDOWS[win].label,
    });

    // Grid and y labels.
    const grid = svg('g', { class: 'grid' });
    for (let v = 0; v <= yTop + 1e-9; v += yStep) {
      const yy = y(v).toFixed(1);
      grid.appendChild(svg('line', { x1: ml, x2: ml + pw, y1: yy, y2: yy, class: v === 0 ? 'axis-line' : 'grid-line' }));
      grid.appendChild(svg('text', { x: ml - 6, y: yy, class: 'tick-label', 'text-anchor': 'end', 'dominant-baseline': 'middle', text: axisSeconds(v) }));
    }
    // X ticks aligned to the local clock.
    const spanS = (end - start) / 1000;
    let tStep = TIME_STEPS[TIME_STEPS.length - 1];
    const maxTicks = Math.max(2, Math.floor(pw / 80));
    for (const st of TIME_STEPS) { if (spanS / st <= maxTicks) { tStep = st; break; } }
    const tz = new Date(start).getTimezoneOffset() * 60000;
    const stepMs = tStep * 1000;
    for (let t = Math.ceil((start - tz) / stepMs) * stepMs + tz; t <= end; t += stepMs) {
      const xx = x(t).toFixed(1);
      grid.appendChild(svg('line', { x1: xx, x2: xx, y1: mt, y2: mt + ph, class: 'grid-line grid-line-v' }));
      grid.appendChild(svg('text', { x: xx, y: H - 6, class: 'tick-label', 'text-anchor': 'middle', text: fmtClock(t, tStep < 60) }));
    }
    chart.appendChild(grid);

    // The zone above the target, faintly.
    if (target !== null && target < yTop) {
      chart.appendChild(svg('rect', { class: 'above-target', x: ml, y: mt, width: pw, height: Math.max(0, y(target) - mt).toFixed(1) }));
    }

    // Lines, broken where a sample is unknown or samples stop coming.
    const regions = Array.from(byRegion.keys()).sort();
    const series = [];
    regions.forEach((region, i) => {
      const pts = byRegion.get(region).sort((a, b) => a.t - b.t);
      const shown = downsample(pts, start, end, Math.max(50, Math.floor(pw)));
      // A line breaks where samples stop coming: several usual intervals.
      const dts = [];
      for (let k = 1; k < shown.length; k++) dts.push(shown[k].t - shown[k - 1].t);
      dts.sort((a, b) => a - b);
      const median = dts.length ? dts[Math.floor(dts.length / 2)] : 1000;
      const gapMs = Math.max(median * 3.5, 5000);
      let d = '', pen = false, prevT = null;
      const unknownRuns = [];
      let runStart = null;
      for (const p of shown) {
        if (p.t < start) continue;
        if (p.v === null) {
          if (runStart === null) runStart = p.t;
          pen = false;
          prevT = p.t;
          continue;
        }
        if (runStart !== null) { unknownRuns.push([runStart, p.t]); runStart = null; }
        if (prevT !== null && p.t - prevT > gapMs) pen = false;
        d += (pen ? 'L' : 'M') + x(p.t).toFixed(1) + ' ' + y(p.v).toFixed(1);
        pen = true;
        prevT = p.t;
      }
      if (runStart !== null) unknownRuns.push([runStart, prevT]);
      const cls = 'series-' + (i % 6);
      for (const [a, b] of unknownRuns) {
        chart.appendChild(svg('rect', { class: 'unknown-band', x: x(a).toFixed(1), y: mt + ph - 3, width: Math.max(2, x(b) - x(a)).toFixed(1), height: 3 }));
      }
      if (d) chart.appendChild(svg('path', { class: ['series', cls], d }));
      // A lone point draws no line; mark it.
      if (shown.filter((p) => p.v !== null).length === 1) {
        const p = shown.find((q) => q.v !== null);
        chart.appendChild(svg('circle', { class: ['series-dot', cls], cx: x(p.t).toFixed(1), cy: y(p.v).toFixed(1), r: 2.5 }));
      }
      series.push({ region, cls, pts });
    });

    if (target !== null) {
      const ty = y(target).toFixed(1);
      chart.appendChild(svg('line', { class: 'target-line', x1: ml, x2: ml + pw, y1: ty, y2: ty }));
      chart.appendChild(svg('text', { class: 'target-label', x: ml + pw - 4, y: (Number(ty) - 4).toFixed(1), 'text-anchor': 'end', text: 'target ' + fmtSeconds(target) }));
    }
    if (!samples.length) {
      chart.appendChild(svg('text', { class: 'empty-label', x: ml + pw / 2, y: mt + ph / 2, 'text-anchor': 'middle',
        text: loading ? 'loading…' : data ? 'no samples in the last ' + LAG_WINDOWS[win].label : 'no history' }));
    }
    attachHover(chart, series, { x, start, end, ml, mt, pw, ph, W });

    const legend = series.map((s) => h('span', { class: 'legend-item' },
      svg('svg', { class: 'swatch', viewBox: '0 0 14 4', width: 14, height: 4, 'aria-hidden': 'true' },
        svg('line', { class: ['series', s.cls], x1: 0, x2: 14, y1: 2, y2: 2 })), s.region));
    if (target !== null) {
      legend.push(h('span', { class: 'legend-item' },
        svg('svg', { class: 'swatch', viewBox: '0 0 14 4', width: 14, height: 4, 'aria-hidden': 'true' },
          svg('line', { class: 'target-line', x1: 0, x2: 14, y1: 2, y2: 2 })), 'RPO target'));
    }
    const notes = [];
    if (partial) notes.push('history starts ' + fmtWhen(new Date(start).toISOString()));
    if (obj(data).truncated === true) notes.push('truncated by the API: some samples are not shown');
    if (win === '24h' && samples.length) notes.push('max per 5 min');
    const note = notes.length ? h('p', { class: 'chart-note', text: notes.join(' · ') }) : null;
    return { svg: chart, legend, note };
  }

  // A crosshair with the nearest sample of each standby.
  function attachHover(chart, series, g) {
    if (!series.length) return;
    const layer = svg('g', { class: 'hover', visibility: 'hidden' });
    const guide = svg('line', { class: 'hover-line', x1: 0, x2: 0, y1: g.mt, y2: g.mt + g.ph });
    const box = svg('rect', { class: 'hover-box', rx: 3, x: 0, y: 0, width: 10, height: 10 });
    const text = svg('text', { class: 'hover-text', x: 0, y: 0 });
    layer.append(guide, box, text);
    chart.appendChild(layer);
    function nearest(pts, t) {
      let lo = 0, hi = pts.length - 1;
      if (hi < 0) return null;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (pts[mid].t < t) lo = mid + 1; else hi = mid; }
      if (lo > 0 && Math.abs(pts[lo - 1].t - t) < Math.abs(pts[lo].t - t)) lo -= 1;
      return pts[lo];
    }
    chart.addEventListener('mousemove', (ev) => {
      const m = chart.getScreenCTM();
      if (!m) return;
      const pt = chart.createSVGPoint();
      pt.x = ev.clientX; pt.y = ev.clientY;
      const p = pt.matrixTransform(m.inverse());
      if (p.x < g.ml || p.x > g.ml + g.pw) { layer.setAttribute('visibility', 'hidden'); return; }
      const t = g.start + ((p.x - g.ml) / g.pw) * (g.end - g.start);
      const lines = [fmtWhen(new Date(t).toISOString())];
      let tx = null;
      for (const s of series) {
        const q = nearest(s.pts, t);
        if (!q) continue;
        if (tx === null) tx = q.t;
        lines.push(s.region + '  ' + (q.v === null ? 'unknown' : (q.lb ? '≥ ' : '') + fmtSeconds(q.v)));
      }
      if (tx !== null) lines[0] = fmtWhen(new Date(tx).toISOString());
      const gx = g.x(tx === null ? t : tx);
      guide.setAttribute('x1', gx.toFixed(1));
      guide.setAttribute('x2', gx.toFixed(1));
      while (text.firstChild) text.removeChild(text.firstChild);
      lines.forEach((l, i) => text.appendChild(svg('tspan', { x: 0, dy: i === 0 ? '1.1em' : '1.3em', class: i === 0 ? 'hover-time' : null, text: l })));
      layer.setAttribute('visibility', 'visible');
      let bw = 120;
      try { bw = text.getBBox().width + 14; } catch (e) { /* not laid out */ }
      const bh = lines.length * 15 + 8;
      let bx = gx + 8;
      if (bx + bw > g.ml + g.pw) bx = gx - 8 - bw;
      const by = g.mt + 4;
      box.setAttribute('x', bx.toFixed(1)); box.setAttribute('y', by); box.setAttribute('width', bw.toFixed(1)); box.setAttribute('height', bh);
      text.setAttribute('transform', 'translate(' + (bx + 7).toFixed(1) + ',' + (by + 2) + ')');
      for (const ts of text.childNodes) ts.setAttribute('x', 0);
    });
    chart.addEventListener('mouseleave', () => layer.setAttribute('visibility', 'hidden'));
  }

  // ------------------------------------------------------------ operations

  function opFigures(op) {
    const r = obj(op.result);
    const rpoUs = num(r.rpo_us), rpoTargetUs = num(r.rpo_target_us);
    const rtoMs = num(r.rto_ms), rtoTargetMs = num(r.rto_target_ms);
    return {
      rpo: rpoUs === null ? null : rpoUs / 1e6,
      rpoUpper: num(r.rpo_upper_us) === null ? null : r.rpo_upper_us / 1e6,
      rpoTarget: rpoTargetUs === null ? null : rpoTargetUs / 1e6,
      rpoLower: r.rpo_lower_bound === true,
      rpoMet: typeof r.rpo_met === 'boolean' ? r.rpo_met : null,
      rpoBasis: str(r.rpo_basis),
      rto: rtoMs === null ? null : rtoMs / 1000,
      rtoTarget: rtoTargetMs === null ? null : rtoTargetMs / 1000,
      rtoMet: typeof r.rto_met === 'boolean' ? r.rto_met : null,
      rtoFrom: str(r.rto_from),
      outage: num(r.write_outage_ms),
    };
  }
  function metCell(value, target, met, lower, title) {
    if (value === null && target === null) return h('td', { class: 'muted', text: '—' });
    return h('td', { class: 'figure', title: title || null },
      h('span', { class: 'fig-value', text: value === null ? '—' : (lower ? '≥ ' : '') + fmtSeconds(value) }),
      h('span', { class: 'fig-target', text: ' / ' + fmtSeconds(target) }),
      met === null ? null : ' ', met === null ? null : pill(met ? 'met' : 'missed'));
  }
  function opDurationMs(op) {
    const s = parseTime(op.started_at);
    if (s === null) return null;
    const e = parseTime(op.ended_at);
    if (e !== null) return e - s;
    return op.status === 'running' ? Math.max(0, serverNow() - s) : null;
  }

  function renderOperations() {
    const tbody = document.getElementById('operations-body');
    const ops = arrayOf(state.operations);
    const rows = [];
    if (!ops.length) {
      rows.push(h('tr', { class: 'empty-row' }, h('td', { colspan: 9, text: state.operations ? 'no operations on record' : 'loading…' })));
    }
    for (const op of ops) {
      const id = str(op.id) || '';
      const open = expanded.has(id);
      const f = opFigures(op);
      const status = str(op.status) || 'unknown';
      const dur = opDurationMs(op);
      const detailId = 'op-detail-' + id.replace(/[^a-zA-Z0-9_-]/g, '_');
      const button = h('button', { type: 'button', class: 'expander', 'aria-expanded': open ? 'true' : 'false', 'aria-controls': detailId, title: open ? 'hide steps' : 'show steps' },
        h('span', { class: 'chev', 'aria-hidden': 'true', text: open ? '▾' : '▸' }), h('span', { class: 'sr-only', text: 'steps of ' + id }));
      const tr = h('tr', { class: ['operation', 'tone-' + tone(status), open ? 'open' : null], 'data-operation-id': id, 'data-status': status },
        h('td', { class: 'col-expander' }, button),
        h('td', {}, timeEl(op.started_at)),
        h('td', { class: 'op-kind', text: str(op.kind) || '—' }),
        h('td', { text: str(op.service) || str(op.target) || '—' }),
        h('td', {}, pill(status)),
        h('td', { class: 'num', text: dur === null ? '—' : fmtDurationMs(dur) + (op.status === 'running' ? ' …' : '') }),
        metCell(f.rpo, f.rpoTarget, f.rpoMet, f.rpoLower, f.rpoBasis),
        metCell(f.rto, f.rtoTarget, f.rtoMet, false, f.rtoFrom ? 'RTO from ' + f.rtoFrom : null),
        h('td', {}, mono(shortId(id), id)));
      tr.addEventListener('click', (ev) => {
        if (ev.target.closest('a, pre, .link-button')) return;
        toggleOperation(id);
      });
      rows.push(tr);
      if (str(op.error) && !open) {
        rows.push(h('tr', { class: 'op-error-row' }, h('td', {}), h('td', { colspan: 8, class: 'op-error', title: op.error, text: op.error })));
      }
      if (open) {
        rows.push(h('tr', { class: 'operation-detail', id: detailId }, h('td', { colspan: 9 }, timeline(op))));
      }
    }
    replaceChildren(tbody, rows);
  }

  function toggleOperation(id) {
    if (expanded.has(id)) expanded.delete(id);
    else expanded.add(id);
    saveUi();
    renderOperations();
    if (expanded.has(id)) {
      const d = state.opDetails.get(id);
      if (!d || (!d.data && !d.loading) || d.error) refreshOpDetail(id).then(updateBanner);
    }
  }

  function timeline(op) {
    const id = str(op.id) || '';
    const d = state.opDetails.get(id);
    const detail = d && d.data ? d.data : null;
    const opFull = Object.assign({}, op, obj(detail && detail.operation));
    const f = opFigures(opFull);
    const parts = [];

    const summary = [];
    summary.push(h('span', {}, h('strong', { text: str(opFull.kind) || 'operation' }), ' of ', h('strong', { text: str(opFull.service) || '—' })));
    summary.push(h('span', {}, 'started ', timeEl(opFull.started_at)));
    const dur = opDurationMs(opFull);
    if (dur !== null) summary.push(h('span', { text: (opFull.status === 'running' ? 'running for ' : 'took ') + fmtDurationMs(dur) }));
    if (f.rto !== null) summary.push(h('span', { text: 'RTO ' + fmtSeconds(f.rto) + (f.rtoFrom ? ' from ' + f.rtoFrom : '') }));
    if (f.rpo !== null) summary.push(h('span', { text: 'RPO ' + (f.rpoLower ? '≥ ' : '') + fmtSeconds(f.rpo) + (f.rpoUpper !== null ? ' (≤ ' + fmtSeconds(f.rpoUpper) + ')' : '') }));
    if (f.outage !== null) summary.push(h('span', { text: 'write outage ' + fmtDurationMs(f.outage) }));
    parts.push(h('div', { class: 'tl-summary' }, summary));
    if (f.rpoBasis) parts.push(h('p', { class: 'tl-basis', text: 'RPO basis: ' + f.rpoBasis }));
    if (str(opFull.error)) parts.push(h('p', { class: 'tl-error', text: opFull.error }));

    if (!detail) {
      if (d && d.error) parts.push(h('p', { class: 'tl-error', text: 'could not load the steps: ' + d.error.message }));
      else parts.push(h('p', { class: 'muted', text: 'loading steps…' }));
      return h('div', { class: 'timeline' }, parts);
    }
    if (d.error) parts.push(h('p', { class: 'tl-warn', text: 'refresh failed (' + d.error.message + '); showing the steps as last read' }));

    const steps = arrayOf(detail.steps).filter(isObj);
    const t0 = parseTime(opFull.started_at);
    if (steps.length && t0 !== null) {
      parts.push(stepBars(id, steps, t0, opFull));
    } else if (steps.length) {
      parts.push(h('p', { class: 'muted', text: 'the operation has no start time; steps cannot be placed' }));
    } else {
      const ms = obj(obj(opFull.result).steps_ms);
      const names = Object.keys(ms).filter((k) => num(ms[k]) !== null);
      if (names.length) parts.push(durationBars(names.map((k) => [k, ms[k]])));
      else parts.push(h('p', { class: 'muted', text: 'no step journal for this operation' }));
    }
    return h('div', { class: 'timeline' }, parts);
  }

  const TICKS = 5;
  function axisRow(totalMs) {
    const ticks = [];
    for (let i = 0; i < TICKS; i++) {
      ticks.push(h('span', { class: 'tl-tick tick-' + i, text: fmtDurationMs((totalMs * i) / (TICKS - 1)) }));
    }
    return h('div', { class: 'tl-row tl-axis-row' },
      h('span', { class: 'tl-name muted', text: 'step' }),
      h('div', { class: 'tl-axis' }, ticks),
      h('span', { class: 'tl-dur muted', text: 'took' }),
      h('span', { class: 'tl-att muted', text: 'tries' }),
      h('span', { class: 'tl-status muted', text: 'status' }),
      h('span', { class: 'tl-more' }));
  }
  function bar(offsetMs, durMs, totalMs, status) {
    const x = Math.max(0, Math.min(1000, (offsetMs / totalMs) * 1000));
    const w = Math.max(3, Math.min(1000 - x, (durMs / totalMs) * 1000));
    return svg('svg', { class: 'tl-bar', viewBox: '0 0 1000 10', preserveAspectRatio: 'none', 'aria-hidden': 'true' },
      svg('rect', { class: 'tl-track', x: 0, y: 0, width: 1000, height: 10 }),
      svg('rect', { class: ['tl-fill', 'tone-' + tone(status)], x: x.toFixed(1), y: 0, width: w.toFixed(1), height: 10 }));
  }

  function stepBars(opId, steps, t0, op) {
    const now = serverNow();
    const rows = steps.map((s) => {
      const st = parseTime(s.started_at);
      let en = parseTime(s.ended_at);
      const running = en === null && (s.status === 'started' || s.status === 'running' || op.status === 'running');
      if (en === null && st !== null && running) en = now;
      return { s, st, en, running };
    });
    const opEnd = parseTime(op.ended_at);
    let total = (opEnd !== null ? opEnd : now) - t0;
    for (const r of rows) if (r.en !== null) total = Math.max(total, r.en - t0);
    total = Math.max(total, 1);
    const out = [axisRow(total)];
    for (const r of rows) {
      const s = r.s;
      const status = str(s.status) || 'unknown';
      const dur = r.st !== null && r.en !== null ? r.en - r.st : null;
      const stepName = str(s.step) || '—';
      const attempts = num(s.attempts);
      const key = opId + '/' + stepName;
      const hasOutput = s.output !== null && s.output !== undefined;
      const showOutput = hasOutput && openOutputs.has(key);
      let outputButton = null;
      if (hasOutput) {
        outputButton = h('button', { type: 'button', class: ['link-button', showOutput ? 'active' : null], 'aria-expanded': showOutput ? 'true' : 'false', text: showOutput ? 'hide output' : 'output' });
        outputButton.addEventListener('click', (ev) => {
          ev.stopPropagation();
          if (openOutputs.has(key)) openOutputs.delete(key); else openOutputs.add(key);
          saveUi();
          renderOperations();
        });
      }
      out.push(h('div', { class: ['tl-row', 'tl-step', 'tone-' + tone(status)], 'data-step': stepName, 'data-status': status },
        h('span', { class: 'tl-name mono', title: str(s.driver) ? 'driver ' + s.driver : null, text: stepName }),
        r.st !== null ? bar(r.st - t0, dur === null ? 0 : dur, total, r.running ? 'running' : status) : h('span', { class: 'tl-axis muted', text: 'not started' }),
        h('span', { class: 'tl-dur num', title: r.st !== null ? 'starts at +' + fmtDurationMs(r.st - t0) : null, text: dur === null ? '—' : fmtDurationMs(dur) + (r.running ? ' …' : '') }),
        h('span', { class: ['tl-att', 'num', attempts !== null && attempts > 1 ? 'text-warn' : null], text: attempts === null ? '—' : String(attempts) }),
        h('span', { class: 'tl-status' }, pill(status)),
        h('span', { class: 'tl-more' }, outputButton)));
      if (str(s.error) || showOutput) {
        out.push(h('div', { class: 'tl-row tl-extra' },
          h('span', {}),
          h('div', { class: 'tl-extra-body' },
            str(s.error) ? h('p', { class: 'tl-error', text: s.error }) : null,
            showOutput ? h('pre', { class: 'tl-output', text: JSON.stringify(s.output, null, 2) }) : null)));
      }
    }
    return h('div', { class: 'tl-grid' }, out);
  }

  // Operations without a journal report step durations only (no order).
  function durationBars(pairs) {
    const total = Math.max(1, ...pairs.map((p) => p[1]));
    const out = [h('p', { class: 'muted tl-basis', text: 'step durations from the result (no step journal: order and start offsets are not recorded)' })];
    const grid = [];
    pairs.sort((a, b) => b[1] - a[1]);
    for (const [name, ms] of pairs) {
      grid.push(h('div', { class: 'tl-row tl-step', 'data-step': name },
        h('span', { class: 'tl-name mono', text: name }),
        bar(0, ms, total, 'done'),
        h('span', { class: 'tl-dur num', text: fmtDurationMs(ms) }),
        h('span', { class: 'tl-att' }),
        h('span', { class: 'tl-status' }),
        h('span', { class: 'tl-more' })));
    }
    out.push(h('div', { class: 'tl-grid' }, grid));
    return h('div', {}, out);
  }

  // --------------------------------------------------------------- backups

  function serviceOrder() {
    return arrayOf(obj(state.report).services).filter(isObj).map((s) => str(s.service)).filter(Boolean);
  }

  function renderBackups() {
    const tbody = document.getElementById('backups-body');
    const list = arrayOf(state.backups);
    const newest = new Map();
    const stamp = (b) => first(parseTime(b.ended_at), parseTime(b.started_at), 0);
    for (const b of list) {
      const svc = str(b.service);
      if (!svc) continue;
      const cur = newest.get(svc);
      if (!cur || stamp(b) > stamp(cur)) newest.set(svc, b);
    }
    const order = serviceOrder();
    const names = order.concat(Array.from(newest.keys()).filter((n) => order.indexOf(n) < 0));
    const rows = [];
    for (const name of names) {
      const b = newest.get(name);
      if (!b) {
        rows.push(h('tr', { class: 'backup missing', 'data-service': name },
          h('td', { text: name }), h('td', { colspan: 6, class: 'muted', text: 'no backup on record' })));
        continue;
      }
      const status = str(b.status) || 'unknown';
      const ver = str(b.verification);
      const err = str(b.error) || str(b.verification_error);
      rows.push(h('tr', { class: 'backup', 'data-service': name, 'data-backup-id': str(b.id), 'data-status': status },
        h('td', { text: name }),
        h('td', {}, mono(str(b.id) || '—', str(b.store) ? 'store ' + b.store : null)),
        h('td', { class: 'mono', text: str(b.region) || '—' }),
        h('td', {}, pill(status)),
        h('td', { title: str(b.verified_at) ? 'verified at ' + b.verified_at : null }, ver ? pill(ver) : h('span', { class: 'muted', text: 'not verified' })),
        h('td', { class: 'num', title: num(b.uncompressed_bytes) !== null ? fmtBytes(b.uncompressed_bytes) + ' uncompressed' : null, text: fmtBytes(b.stored_bytes) }),
        h('td', {}, str(b.ended_at) ? [timeEl(b.ended_at), h('span', { class: 'muted sub', text: ' ' + fmtAge(ageOf(b.ended_at)) })] : h('span', { class: 'muted', text: '—' }))));
      if (err) rows.push(h('tr', { class: 'row-error' }, h('td', {}), h('td', { colspan: 6, text: err, title: err })));
    }
    if (!rows.length) rows.push(h('tr', { class: 'empty-row' }, h('td', { colspan: 7, text: state.backups ? 'no backups on record' : 'loading…' })));
    replaceChildren(tbody, rows);
  }

  function checksOf(t) {
    let results = t.results;
    if (isString(results)) { try { results = JSON.parse(results); } catch (e) { results = null; } }
    const list = arrayOf(results).filter(isObj);
    if (!list.length) return null;
    const passed = list.filter((r) => r.passed === true).length;
    const title = list.map((r) => (r.passed === true ? '✓ ' : '✗ ') + (str(r.query) || '?') + (str(r.error) ? ' — ' + r.error : '')).join('\n');
    return { passed, total: list.length, title };
  }

  function renderRestoreTests() {
    const tbody = document.getElementById('restore-tests-body');
    const list = arrayOf(state.restoreTests);
    const rows = [];
    for (const t of list) {
      const status = str(t.status) || 'unknown';
      const ready = first(num(t.time_to_ready_s), num(t.time_to_ready_us) === null ? null : t.time_to_ready_us / 1e6);
      const checks = checksOf(t);
      rows.push(h('tr', { class: 'restore-test', 'data-restore-test-id': str(t.id), 'data-status': status },
        h('td', { text: str(t.service) || '—' }),
        h('td', {}, mono(shortId(t.id), str(t.id))),
        h('td', {}, mono(str(t.backup_id) || '—')),
        h('td', {}, pill(status)),
        h('td', { class: 'num', text: fmtSeconds(ready) }),
        h('td', { title: checks ? checks.title : null },
          checks ? h('span', { class: checks.passed === checks.total ? 'text-ok' : 'text-bad', text: checks.passed + ' of ' + checks.total + ' passed' }) : h('span', { class: 'muted', text: '—' })),
        h('td', {}, str(t.ended_at) ? [timeEl(t.ended_at), h('span', { class: 'muted sub', text: ' ' + fmtAge(ageOf(t.ended_at)) })] : h('span', { class: 'muted', text: status === 'running' ? 'running' : '—' }))));
      if (str(t.error)) rows.push(h('tr', { class: 'row-error' }, h('td', {}), h('td', { colspan: 6, text: t.error, title: t.error })));
    }
    if (!rows.length) rows.push(h('tr', { class: 'empty-row' }, h('td', { colspan: 7, text: state.restoreTests ? 'no restore tests on record' : 'loading…' })));
    replaceChildren(tbody, rows);
  }

  // ----------------------------------------------------------------- start

  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { for (const name of cards.keys()) renderLag(name); }, 150);
  });

  function start() {
    setupTokenForm();
    cycle();
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
}());
