/* Pricestream live chart.
 *
 * Plain ES2020, no build step, CSP-friendly (no eval, no inline handlers).
 * Data flow: websocket messages only mutate in-memory state and mark things dirty; a single
 * frame loop (requestAnimationFrame, with a timer fallback) paints tiles, panel and tape, and
 * redraws the plotly chart at an adaptive, throttled rate. Hundreds of ticks per second cost a
 * JSON.parse and a few assignments each.
 */
'use strict';

(() => {
  // ------------------------------------------------------------------ constants

  const RESOLUTIONS = { '1s': 1000, '1m': 60000, '5m': 300000, '15m': 900000, '1h': 3600000, '4h': 14400000, '1d': 86400000 };
  const TYPES = ['candles', 'area'];
  const TYPE_ALIASES = { candles: 'candles', candle: 'candles', candlestick: 'candles', ohlc: 'candles', area: 'area', line: 'area' };
  const DEFAULTS = { symbol: 'XAU-USD', res: '1m', type: 'candles' };
  const DEFAULT_SYMBOLS = ['XAG-USD', 'XAU-USD', 'XPD-USD', 'XPT-USD'];
  const SYMBOL_RE = /^[A-Z0-9]{2,12}(-[A-Z0-9]{2,12})+$/;
  const METALS = {
    XAU: { name: 'Gold', color: '#e2b54a', order: 0 },
    XAG: { name: 'Silver', color: '#c3cad4', order: 1 },
    XPT: { name: 'Platinum', color: '#8fb3cf', order: 2 },
    XPD: { name: 'Palladium', color: '#b7a3d9', order: 3 },
  };
  const C = {
    up: '#1fc77e',
    down: '#f0465a',
    upFill: 'rgba(31,199,126,0.85)',
    downFill: 'rgba(240,70,90,0.85)',
    upVol: 'rgba(31,199,126,0.24)',
    downVol: 'rgba(240,70,90,0.24)',
    accent: '#e2b54a',
    bg: '#11161d',
    grid: 'rgba(42,52,64,0.45)',
    line: '#2a3440',
    text: '#a3adba',
    muted: '#6f7b89',
  };
  const MONO = '"JetBrains Mono", "SF Mono", "Cascadia Mono", Menlo, Consolas, "Liberation Mono", "DejaVu Sans Mono", monospace';
  const HISTORY_LIMIT = 500;
  const MAX_CANDLES = 2000;
  const MAX_TICK_SYMBOLS = 24;     // live tiles; more symbols still get a tile but no tick stream
  const TAPE_ROWS = 16;
  const RIGHT_PAD = 4;             // empty bars right of the last candle when following
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_CAP_MS = 30000;
  const CONNECT_TIMEOUT_MS = 10000;
  const STABLE_AFTER_MS = 5000;    // a connection that lived this long resets the backoff
  const RESUME_TIMEOUT_MS = 15000; // a channel not answered by then (an error) stops "resuming"
  const DAILY_REFRESH_MS = 60000;
  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

  const $ = (id) => document.getElementById(id);
  const body = document.body;

  // ------------------------------------------------------------------ state

  const state = {
    symbols: [],          // symbol names in display order
    quotes: new Map(),    // symbol -> Quote
    symbol: DEFAULTS.symbol,
    res: DEFAULTS.res,
    type: DEFAULTS.type,
    candles: [],          // active series, oldest first
    seriesGen: 0,         // bumps whenever symbol/res change (drops stale REST answers)
    historyLoaded: false,
    view: { follow: true, width: 0, a: 0, b: 0 },
    hoverIndex: -1,
    tape: [],             // newest last
    tapeDirty: false,
    panelDirty: true,
    chartDirty: true,
    tilesDirty: new Set(),
    updates: 0,
    renders: 0,
    ticksReceived: 0,
    msgCount: 0,
    resyncs: 0,
    latencyMs: null,
    lastSeq: null,
  };

  function quoteFor(symbol) {
    let q = state.quotes.get(symbol);
    if (!q) {
      q = {
        symbol,
        tick: null, price: null, prevPrice: null, dir: 'flat',
        dayOpen: null, dayHigh: null, dayLow: null, dayStart: null,
        spark: [], sparkLive: [], sparkDirty: true, sparkAt: 0,
        decimals: null, flashAt: 0, shownPrice: null, stale: true,
      };
      state.quotes.set(symbol, q);
    }
    return q;
  }

  // ------------------------------------------------------------------ formatting

  const nfCache = new Map();
  function nf(decimals) {
    let f = nfCache.get(decimals);
    if (!f) {
      f = new Intl.NumberFormat('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
      nfCache.set(decimals, f);
    }
    return f;
  }

  function decimalsFor(price) {
    const p = Math.abs(price);
    if (p >= 100) return 2;
    if (p >= 10) return 3;
    if (p >= 1) return 4;
    return 5;
  }

  function symDecimals(symbol) {
    const q = state.quotes.get(symbol);
    if (q && q.decimals != null) return q.decimals;
    if (q && q.price != null) { q.decimals = decimalsFor(q.price); return q.decimals; }
    if (symbol === state.symbol && state.candles.length) return decimalsFor(state.candles[state.candles.length - 1].close);
    return 2;
  }

  function fmtPrice(v, d) { return Number.isFinite(v) ? nf(d).format(v) : '—'; }
  function fmtSigned(v, d) {
    if (!Number.isFinite(v)) return '—';
    const s = nf(d).format(Math.abs(v));
    return (v > 0 ? '+' : v < 0 ? '-' : '') + s;
  }
  function fmtPct(v) {
    if (!Number.isFinite(v)) return '—';
    return (v > 0 ? '+' : v < 0 ? '-' : '') + Math.abs(v).toFixed(2) + '%';
  }
  function dirOf(v) { return !Number.isFinite(v) || v === 0 ? 'flat' : v > 0 ? 'up' : 'down'; }
  function fmtInt(v) { return Number.isFinite(v) ? nf(0).format(v) : '—'; }

  const pad2 = (n) => (n < 10 ? '0' : '') + n;
  function fmtHMS(ms) { const d = new Date(ms); return pad2(d.getUTCHours()) + ':' + pad2(d.getUTCMinutes()) + ':' + pad2(d.getUTCSeconds()); }
  function fmtHM(ms) { const d = new Date(ms); return pad2(d.getUTCHours()) + ':' + pad2(d.getUTCMinutes()); }
  function fmtHMSms(ms) { const d = new Date(ms); return fmtHMS(ms) + '.' + String(d.getUTCMilliseconds()).padStart(3, '0'); }
  function fmtDay(ms) { const d = new Date(ms); return pad2(d.getUTCDate()) + ' ' + MONTHS[d.getUTCMonth()]; }
  function fmtDuration(ms) {
    if (!(ms > 0)) return '';
    const s = Math.round(ms / 1000);
    if (s < 60) return s + 's';
    const m = Math.round(s / 60);
    if (m < 60) return m + 'm';
    const h = Math.floor(m / 60);
    if (h < 48) return h + 'h' + (m % 60 ? ' ' + (m % 60) + 'm' : '');
    const d = Math.round(h / 24);
    if (d < 120) return d + 'd';
    return (d / 30.44).toFixed(0) + 'mo';
  }
  function fmtCountdown(ms) {
    const s = Math.max(0, Math.ceil(ms / 1000));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h ? pad2(h) + ':' : '') + pad2(m) + ':' + pad2(sec);
  }
  function candleTimeLabel(ms, res) {
    const d = new Date(ms);
    if (res === '1d') return DAYS[d.getUTCDay()] + ' ' + fmtDay(ms) + ' ' + d.getUTCFullYear();
    if (res === '1s') return fmtDay(ms) + ' ' + fmtHMS(ms);
    return fmtDay(ms) + ' ' + fmtHM(ms);
  }

  function metalOf(symbol) {
    const base = symbol.split('-')[0];
    return METALS[base] || null;
  }
  function displaySymbol(symbol) { return symbol.replace('-', '/'); }
  /** A resolution as its button writes it ("1m" is a minute, "1D" a day), never upper-cased. */
  function resLabel(res) {
    const b = el.resPicker.querySelector('button[data-res="' + res + '"]');
    return b ? b.textContent.trim() : res;
  }
  function displayName(symbol) { const m = metalOf(symbol); return m ? m.name : symbol.split('-')[0]; }
  function unitOf(symbol) {
    const parts = symbol.split('-');
    const quote = parts[parts.length - 1];
    return metalOf(symbol) ? quote + ' / oz t' : quote;
  }

  function num(v) { return typeof v === 'number' && Number.isFinite(v) ? v : null; }

  function validCandle(c) {
    return c && Number.isFinite(c.start_ms) && Number.isFinite(c.open) && Number.isFinite(c.high) &&
      Number.isFinite(c.low) && Number.isFinite(c.close);
  }

  function cleanCandle(c) {
    return {
      start_ms: c.start_ms, open: c.open, high: c.high, low: c.low, close: c.close,
      ticks: Number.isFinite(c.ticks) ? c.ticks : 0, closed: !!c.closed,
    };
  }

  // ------------------------------------------------------------------ URL hash state

  /** The page state lives in the hash as `#SYMBOL/RES/TYPE`, e.g. `#XAU-USD/1m/candles`.
   *  Any part may be missing or in any order; `#symbol=..&res=..&type=..` is read as well. */
  function readHash() {
    const raw = decodeURIComponent(location.hash.replace(/^#/, '')).trim();
    let parts;
    if (raw.includes('=')) {
      const p = new URLSearchParams(raw);
      parts = [p.get('symbol'), p.get('res'), p.get('type')];
    } else {
      parts = raw.split('/');
    }
    const out = { symbol: null, res: null, type: null };
    for (const part of parts) {
      if (!part) continue;
      const up = part.toUpperCase(), low = part.toLowerCase();
      if (!out.symbol && SYMBOL_RE.test(up)) out.symbol = up;
      else if (!out.res && Object.prototype.hasOwnProperty.call(RESOLUTIONS, low)) out.res = low;
      else if (!out.type && Object.prototype.hasOwnProperty.call(TYPE_ALIASES, low)) out.type = TYPE_ALIASES[low];
    }
    return out;
  }

  function writeHash() {
    const h = '#' + state.symbol + '/' + state.res + '/' + state.type;
    if (location.hash !== h) history.replaceState(null, '', h);
  }

  // ------------------------------------------------------------------ DOM refs

  const el = {
    status: $('status'), statusPill: $('status-pill'), clock: $('clock'),
    tiles: $('symbols'), resPicker: $('res-picker'), typePicker: $('type-picker'),
    chart: $('chart'), overlay: $('chart-overlay'), overlayText: $('chart-overlay-text'), follow: $('follow-btn'),
    instName: $('instrument-name'), instSym: $('instrument-symbol'), headPrice: $('headline-price'), headChange: $('headline-change'),
    lastPrice: $('last-price'), change: $('change'), changePct: $('change-pct'), unit: $('quote-unit'),
    bid: $('bid'), ask: $('ask'), spread: $('spread'),
    dayLow: $('day-low'), dayHigh: $('day-high'), dayOpen: $('day-open'), dayFill: $('day-range-fill'), dayMarker: $('day-range-marker'),
    rangeLabel: $('range-label'), rangeChange: $('range-change'), rangeChangePct: $('range-change-pct'),
    high: $('high'), low: $('low'), rangeOpen: $('range-open'), tickCount: $('tick-count'),
    lastUpdate: $('last-update'), vendor: $('vendor'), tape: $('tape'),
    ohlc: $('ohlc'), ohlcTime: $('ohlc-time'), ohlcO: $('ohlc-o'), ohlcH: $('ohlc-h'), ohlcL: $('ohlc-l'), ohlcC: $('ohlc-c'), ohlcT: $('ohlc-t'),
    msgRate: $('msg-rate'), ticksRecv: $('ticks-received'), latency: $('latency'), seq: $('seq'), resyncs: $('resyncs'),
    resume: $('resume'),
    notice: $('notice'), xhairY: $('xhair-y'), xhairX: $('xhair-x'), simBadge: $('sim-badge'),
  };
  const tileEls = new Map();   // symbol -> {root, price, change, spark parts}
  const tapeRows = [];

  // ------------------------------------------------------------------ notices

  let noticeTimer = 0;
  function notice(text, kind = 'info', ms = 4500) {
    el.notice.textContent = text;
    el.notice.dataset.kind = kind;
    el.notice.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { el.notice.hidden = true; }, ms);
  }

  // ------------------------------------------------------------------ tiles

  const SVG_NS = 'http://www.w3.org/2000/svg';

  function buildTiles() {
    const frag = document.createDocumentFragment();
    const keep = new Set(state.symbols);
    for (const [sym, t] of tileEls) if (!keep.has(sym)) { t.root.remove(); tileEls.delete(sym); }
    for (const sym of state.symbols) {
      let t = tileEls.get(sym);
      if (!t) t = makeTile(sym);
      frag.appendChild(t.root);
    }
    el.tiles.appendChild(frag);
    markTileSelection();
    for (const sym of state.symbols) state.tilesDirty.add(sym);
    schedule();
  }

  function makeTile(sym) {
    const root = document.createElement('button');
    root.type = 'button';
    root.className = 'tile';
    root.id = 'tile-' + sym;
    root.dataset.symbol = sym;
    root.dataset.dir = 'flat';
    root.setAttribute('role', 'tab');
    root.setAttribute('aria-selected', 'false');

    const head = document.createElement('div');
    head.className = 'tile-head';
    const metal = document.createElement('span');
    metal.className = 'tile-metal';
    const sw = document.createElement('span');
    sw.className = 'tile-swatch';
    const m = metalOf(sym);
    sw.style.background = m ? m.color : C.muted;
    metal.append(sw, document.createTextNode(displayName(sym)));
    const code = document.createElement('span');
    code.className = 'tile-symbol';
    code.textContent = displaySymbol(sym);
    head.append(metal, code);

    const price = document.createElement('div');
    price.className = 'tile-price';
    price.id = 'tile-price-' + sym;
    price.textContent = '—';

    const change = document.createElement('div');
    change.className = 'tile-change';
    change.id = 'tile-change-' + sym;
    change.textContent = '—';

    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('class', 'tile-spark');
    svg.setAttribute('viewBox', '0 0 100 40');
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('aria-hidden', 'true');
    const fill = document.createElementNS(SVG_NS, 'path');
    fill.setAttribute('class', 'spark-fill');
    const open = document.createElementNS(SVG_NS, 'line');
    open.setAttribute('class', 'spark-open');
    open.setAttribute('x1', '0');
    open.setAttribute('x2', '100');
    open.setAttribute('y1', '-10');
    open.setAttribute('y2', '-10');
    const line = document.createElementNS(SVG_NS, 'path');
    line.setAttribute('class', 'spark-line');
    svg.append(fill, open, line);

    root.append(head, price, change, svg);
    root.addEventListener('click', () => selectSymbol(sym));
    const t = { root, price, change, fill, open, line };
    tileEls.set(sym, t);
    return t;
  }

  function markTileSelection() {
    for (const [sym, t] of tileEls) {
      const on = sym === state.symbol;
      t.root.setAttribute('aria-selected', on ? 'true' : 'false');
      t.root.tabIndex = on ? 0 : -1;
    }
  }

  const reducedMotion = window.matchMedia('(prefers-reduced-motion: reduce)');

  function flash(node, dir) {
    if (!node.animate || dir === 'flat' || reducedMotion.matches) return;
    const c = dir === 'up' ? '31,199,126' : '240,70,90';
    node.animate(
      [{ backgroundColor: `rgba(${c},0.24)` }, { backgroundColor: `rgba(${c},0)` }],
      { duration: 550, easing: 'ease-out' },
    );
  }

  function renderTile(sym, now) {
    const t = tileEls.get(sym);
    if (!t) return;
    const q = quoteFor(sym);
    const d = symDecimals(sym);
    if (q.price != null) {
      const txt = fmtPrice(q.price, d);
      if (t.price.textContent !== txt) t.price.textContent = txt;
      if (q.shownPrice != null && q.price !== q.shownPrice && now - q.flashAt > 900) {
        flash(t.price, q.price > q.shownPrice ? 'up' : 'down');
        q.flashAt = now;
      }
      q.shownPrice = q.price;
    }
    let ch = null;
    if (q.price != null && q.dayOpen != null) {
      ch = q.price - q.dayOpen;
      t.change.textContent = fmtSigned(ch, d) + '  ' + fmtPct((ch / q.dayOpen) * 100);
    }
    const dir = dirOf(ch);
    t.change.dataset.dir = dir;
    t.root.dataset.dir = dir;
    t.root.dataset.stale = q.stale ? 'true' : 'false';
    if (q.sparkDirty && now - q.sparkAt > 1000) {
      renderSpark(t, q);
      q.sparkDirty = false;
      q.sparkAt = now;
    }
  }

  function renderSpark(t, q) {
    // 24h of 15m closes; while the store holds too little of that, fall back to sampled live prices
    if (q.price != null) {
      q.sparkLive.push(q.price);
      if (q.sparkLive.length > 96) q.sparkLive.shift();
    }
    let pts;
    if (q.spark.length >= 12) {
      pts = q.spark.slice();
      if (q.price != null) pts[pts.length - 1] = q.price;
    } else {
      pts = q.sparkLive.slice();
    }
    if (pts.length < 2) {
      t.line.setAttribute('d', '');
      t.fill.setAttribute('d', '');
      t.open.setAttribute('visibility', 'hidden');
      return;
    }
    t.open.setAttribute('visibility', q.dayOpen != null ? 'visible' : 'hidden');
    let lo = Infinity, hi = -Infinity;
    for (const v of pts) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (q.dayOpen != null) { lo = Math.min(lo, q.dayOpen); hi = Math.max(hi, q.dayOpen); }
    const span = hi - lo || Math.abs(hi) * 1e-4 || 1;
    const y = (v) => (36 - ((v - lo) / span) * 32).toFixed(2);
    const stepX = 100 / (pts.length - 1);
    let d = '';
    for (let i = 0; i < pts.length; i++) d += (i ? 'L' : 'M') + (i * stepX).toFixed(2) + ' ' + y(pts[i]);
    t.line.setAttribute('d', d);
    t.fill.setAttribute('d', d + 'L100 40L0 40Z');
    const oy = q.dayOpen != null ? y(q.dayOpen) : '-10';
    t.open.setAttribute('y1', oy);
    t.open.setAttribute('y2', oy);
  }

  // ------------------------------------------------------------------ pickers

  function markPickers() {
    for (const b of el.resPicker.querySelectorAll('button[data-res]')) {
      b.setAttribute('aria-checked', b.dataset.res === state.res ? 'true' : 'false');
    }
    for (const b of el.typePicker.querySelectorAll('button[data-type]')) {
      b.setAttribute('aria-checked', b.dataset.type === state.type ? 'true' : 'false');
    }
    body.dataset.symbol = state.symbol;
    body.dataset.res = state.res;
    body.dataset.type = state.type;
    el.chart.dataset.type = state.type;
  }

  function selectSymbol(sym) {
    if (!SYMBOL_RE.test(sym) || sym === state.symbol) return;
    state.symbol = sym;
    if (!state.symbols.includes(sym)) { state.symbols.push(sym); buildTiles(); }
    onSeriesChange();
  }

  function selectRes(res) {
    if (!RESOLUTIONS[res] || res === state.res) return;
    state.res = res;
    onSeriesChange();
  }

  function selectType(type) {
    if (!TYPES.includes(type) || type === state.type) return;
    state.type = type;
    markPickers();
    writeHash();
    state.chartDirty = true;
    schedule();
  }

  function onSeriesChange() {
    state.seriesGen++;
    state.candles = [];
    state.historyLoaded = false;
    state.view = { follow: true, width: 0, a: 0, b: 0 };
    state.hoverIndex = -1;
    state.tape = [];
    state.tapeDirty = true;
    state.panelDirty = true;
    state.chartDirty = true;
    state.lastSeq = null;
    hideCrosshair();
    markPickers();
    markTileSelection();
    writeHash();
    setOverlay('loading', 'Loading ' + displaySymbol(state.symbol) + ' · ' + resLabel(state.res) + '…');
    const q = state.quotes.get(state.symbol);
    if (q && q.tick) pushTape(q.tick);
    conn.sync();
    loadHistory();
    schedule();
  }

  // ------------------------------------------------------------------ overlay

  function setOverlay(kind, text) {
    el.overlay.dataset.state = kind;
    if (text) el.overlayText.textContent = text;
  }

  // ------------------------------------------------------------------ data: ticks & candles

  function onTick(sym, t, fromSnapshot) {
    if (!t || num(t.price) == null) return;
    const q = quoteFor(sym);
    // updates arrive in sequence order (authoritative); a snapshot must not roll back a newer tick
    if (fromSnapshot && q.tick && num(t.ts_ms) != null && num(q.tick.ts_ms) != null && t.ts_ms < q.tick.ts_ms) return;
    if (q.decimals == null) q.decimals = decimalsFor(t.price);
    if (q.price != null && t.price !== q.price) q.dir = t.price > q.price ? 'up' : 'down';
    q.prevPrice = q.price;
    q.price = t.price;
    q.tick = t;
    q.stale = false;
    if (q.dayOpen != null) {
      if (q.dayHigh == null || t.price > q.dayHigh) q.dayHigh = t.price;
      if (q.dayLow == null || t.price < q.dayLow) q.dayLow = t.price;
    }
    q.sparkDirty = true;
    state.tilesDirty.add(sym);
    if (!fromSnapshot) state.ticksReceived++;
    if (sym === state.symbol) {
      if (num(t.recv_ms) != null) {
        const lag = Date.now() - t.recv_ms;
        state.latencyMs = state.latencyMs == null ? lag : state.latencyMs * 0.9 + lag * 0.1;
      }
      pushTape(t);
      state.panelDirty = true;
    }
  }

  function pushTape(t) {
    const last = state.tape[state.tape.length - 1];
    if (last && last.ts_ms === t.ts_ms && last.price === t.price && last.bid === t.bid) return;
    state.tape.push(t);
    if (state.tape.length > TAPE_ROWS * 3) state.tape.splice(0, state.tape.length - TAPE_ROWS);
    state.tapeDirty = true;
  }

  /** Replace or append one candle of the active series (same start_ms replaces). */
  function upsertCandle(raw) {
    if (!validCandle(raw)) return;
    const c = cleanCandle(raw);
    const cs = state.candles;
    const n = cs.length;
    if (!n || c.start_ms > cs[n - 1].start_ms) {
      cs.push(c);
      trimCandles();
    } else if (c.start_ms === cs[n - 1].start_ms) {
      cs[n - 1] = c;
    } else {
      // an earlier candle changed (late tick): find it, replace or insert
      let lo = 0, hi = n - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (cs[mid].start_ms < c.start_ms) lo = mid + 1; else hi = mid - 1;
      }
      if (lo < n && cs[lo].start_ms === c.start_ms) cs[lo] = c;
      else { cs.splice(lo, 0, c); shiftView(1); }
    }
    state.chartDirty = true;
    state.panelDirty = true;
  }

  /** Merge a batch of candles into the active series.
   *  authoritative=true (websocket snapshot): it owns every bucket from its first candle on.
   *  authoritative=false (REST history): only fills buckets we do not have, unless the
   *  candles channel is not in sync, in which case it is the freshest data we have. */
  function mergeCandles(list, authoritative) {
    const incoming = (Array.isArray(list) ? list : []).filter(validCandle).map(cleanCandle);
    if (!incoming.length) return;
    incoming.sort((a, b) => a.start_ms - b.start_ms);
    const cur = state.candles;
    const oldFirst = cur.length ? cur[0].start_ms : null;
    let out;
    if (!cur.length) {
      out = incoming;
    } else if (authoritative) {
      const first = incoming[0].start_ms;
      out = cur.filter((c) => c.start_ms < first).concat(incoming);
    } else {
      const synced = conn.isSynced(candleChannel());
      const byStart = new Map();
      if (synced) {
        for (const c of incoming) byStart.set(c.start_ms, c);
        for (const c of cur) byStart.set(c.start_ms, c);
      } else {
        for (const c of cur) byStart.set(c.start_ms, c);
        for (const c of incoming) byStart.set(c.start_ms, c);
      }
      out = Array.from(byStart.values()).sort((a, b) => a.start_ms - b.start_ms);
    }
    state.candles = out;
    if (oldFirst != null) {
      let k = 0;
      while (k < out.length && out[k].start_ms < oldFirst) k++;
      shiftView(k);
    }
    trimCandles();
    state.chartDirty = true;
    state.panelDirty = true;
  }

  function trimCandles() {
    const extra = state.candles.length - MAX_CANDLES;
    if (extra > 0) {
      state.candles.splice(0, extra);
      shiftView(-extra);
    }
  }

  function shiftView(k) {
    if (!k) return;
    const v = state.view;
    if (!v.follow) { v.a += k; v.b += k; }
    if (state.hoverIndex >= 0) state.hoverIndex += k;
  }

  function candleChannel() { return 'candles:' + state.symbol + ':' + state.res; }

  // ------------------------------------------------------------------ REST

  async function getJSON(url, timeoutMs = 10000) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeoutMs);
    try {
      const r = await fetch(url, { signal: ctl.signal, headers: { Accept: 'application/json' }, cache: 'no-store' });
      if (!r.ok) {
        const err = new Error('HTTP ' + r.status);
        err.status = r.status;
        throw err;
      }
      return await r.json();
    } finally {
      clearTimeout(timer);
    }
  }

  const enc = encodeURIComponent;

  let symbolsRetry = 0;
  async function loadSymbols() {
    try {
      const list = await getJSON('/api/v1/symbols');
      if (!Array.isArray(list)) throw new Error('bad symbols payload');
      const names = [];
      for (const s of list) {
        if (!s || typeof s.symbol !== 'string' || !SYMBOL_RE.test(s.symbol)) continue;
        names.push(s.symbol);
        const q = quoteFor(s.symbol);
        if (q.tick == null && num(s.price) != null) {
          q.price = s.price;
          q.decimals = q.decimals ?? decimalsFor(s.price);
          q.tick = { symbol: s.symbol, price: s.price, bid: num(s.bid), ask: num(s.ask), ts_ms: num(s.ts_ms), vendor: s.vendor };
          if (s.symbol === state.symbol) { pushTape(q.tick); state.panelDirty = true; }
        }
      }
      setSymbols(names);
      symbolsRetry = 0;
    } catch (err) {
      console.warn('symbols:', err);
      symbolsRetry++;
      setTimeout(loadSymbols, Math.min(30000, 2000 * symbolsRetry));
    }
  }

  function setSymbols(names) {
    const set = new Set(names);
    if (!set.size) DEFAULT_SYMBOLS.forEach((s) => set.add(s));
    set.add(state.symbol);
    state.symbols = Array.from(set).sort((a, b) => {
      const ma = metalOf(a), mb = metalOf(b);
      const oa = ma && a.endsWith('-USD') ? ma.order : 99, ob = mb && b.endsWith('-USD') ? mb.order : 99;
      return oa - ob || (a < b ? -1 : a > b ? 1 : 0);
    });
    buildTiles();
    conn.sync();
    refreshDaily();
  }

  /** The "Simulated data" badge: shown while any vendor feed is the built-in simulator. */
  let vendorsTimer = 0;
  async function loadVendors() {
    clearTimeout(vendorsTimer);
    let next = DAILY_REFRESH_MS;
    try {
      const list = await getJSON('/api/v1/vendors');
      const feeds = Array.isArray(list) ? list.filter((v) => v && typeof v.name === 'string') : [];
      const sims = feeds.filter((v) => v.kind === 'simulator').map((v) => v.name);
      el.simBadge.hidden = !sims.length;
      body.dataset.simulated = sims.length ? 'true' : 'false';
      el.simBadge.title = !sims.length ? ''
        : (sims.length === feeds.length ? 'Every price' : 'Some prices') + ' on this page come from the built-in ' +
          'simulator (vendor feed ' + sims.join(', ') + '), not from a market.';
      if (!feeds.length) next = 2000;   // ingest reports its vendors a second or so after it starts
    } catch (err) {
      if ([401, 403, 404].includes(err.status)) return;   // not offered here: no badge, no retries
      console.warn('vendors:', err);
      next = 10000;
    }
    vendorsTimer = setTimeout(loadVendors, next);
  }

  async function loadHistory() {
    const gen = state.seriesGen;
    const sym = state.symbol, res = state.res;
    try {
      const data = await getJSON(`/api/v1/symbols/${enc(sym)}/candles?res=${enc(res)}&limit=${HISTORY_LIMIT}`);
      if (gen !== state.seriesGen) return;
      mergeCandles(data && data.candles, false);
      state.historyLoaded = true;
      if (!state.candles.length) setOverlay('loading', 'Waiting for the first ' + displaySymbol(sym) + ' price…');
      schedule();
    } catch (err) {
      if (gen !== state.seriesGen) return;
      console.warn('history:', err);
      const missing = err.status === 404 || err.status === 400;
      if (!state.candles.length) {
        setOverlay('error', missing
          ? 'No market data for ' + displaySymbol(sym) + ' at ' + resLabel(res) + '.'
          : 'Could not load ' + displaySymbol(sym) + ' history (' + err.message + '). Retrying…');
      }
      setTimeout(() => { if (gen === state.seriesGen && !state.historyLoaded) loadHistory(); }, missing ? 30000 : 3000);
    }
  }

  let dailyTimer = 0;
  async function refreshDaily() {
    clearTimeout(dailyTimer);
    dailyTimer = setTimeout(refreshDaily, DAILY_REFRESH_MS);
    await Promise.all(state.symbols.map(loadDaily));
  }

  async function loadDaily(sym) {
    const q = quoteFor(sym);
    try {
      const [day, intraday] = await Promise.all([
        getJSON(`/api/v1/symbols/${enc(sym)}/candles?res=1d&limit=1`),
        getJSON(`/api/v1/symbols/${enc(sym)}/candles?res=15m&limit=96`),
      ]);
      const d = day && Array.isArray(day.candles) && day.candles[day.candles.length - 1];
      if (validCandle(d)) {
        q.dayOpen = d.open;
        q.dayStart = d.start_ms;
        q.dayHigh = q.price != null ? Math.max(d.high, q.price) : d.high;
        q.dayLow = q.price != null ? Math.min(d.low, q.price) : d.low;
        if (q.price == null) { q.price = d.close; q.decimals = q.decimals ?? decimalsFor(d.close); }
      }
      const cs = intraday && Array.isArray(intraday.candles) ? intraday.candles.filter(validCandle) : [];
      q.spark = cs.map((c) => c.close);
      q.sparkDirty = true;
      q.sparkAt = 0;
      state.tilesDirty.add(sym);
      if (sym === state.symbol) state.panelDirty = true;
      schedule();
    } catch (err) {
      console.warn('daily ' + sym + ':', err);
    }
  }

  // ------------------------------------------------------------------ websocket

  const conn = {
    ws: null,
    state: 'connecting',        // connecting | syncing | resuming | live | reconnecting | offline
    attempt: 0,
    retryAt: 0,
    retryTimer: 0,
    connectTimer: 0,
    stableTimer: 0,
    resumeTimer: 0,
    channels: new Map(),        // channel -> { seq: number|null, synced: bool, early, resume }
    everOpened: false,
    opens: 0,
    lastSeqs: new Map(),        // channel -> last seq applied before the connection dropped
    resuming: new Set(),        // channels subscribed with `since` whose catch-up is not done
    round: null,                // the catch-up after the latest reconnect: counts for the notice
    resumes: [],                // the latest catch-ups per channel, newest last (window.pricestream)
    lastRound: null,            // the latest finished catch-up

    desired() {
      const want = new Set();
      for (const sym of state.symbols.slice(0, MAX_TICK_SYMBOLS)) want.add('ticks:' + sym);
      want.add('ticks:' + state.symbol);
      want.add(candleChannel());
      return want;
    },

    isSynced(ch) {
      const s = this.channels.get(ch);
      return !!(s && s.synced);
    },

    send(obj) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(JSON.stringify(obj));
        return true;
      }
      return false;
    },

    /** Bring the server's subscriptions in line with what the page shows. A channel with a
     *  seq from before a dropped connection asks for what it missed (`since`). */
    sync(lastSeqs = null) {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      const want = this.desired();
      const add = [], drop = [];
      for (const ch of want) if (!this.channels.has(ch)) add.push(ch);
      for (const ch of this.channels.keys()) if (!want.has(ch)) drop.push(ch);
      if (drop.length) {
        for (const ch of drop) { this.channels.delete(ch); this.resumeDone(ch, null); }
        this.send({ op: 'unsubscribe', channels: drop });
      }
      if (add.length) {
        const since = {};
        for (const ch of add) {
          const last = lastSeqs ? lastSeqs.get(ch) : undefined;
          const resume = last == null ? null
            : { channel: ch, since: last, recovered: null, missed: null, replayed: 0, contiguous: true, at_ms: Date.now() };
          this.channels.set(ch, { seq: null, synced: false, early: null, resume });
          if (resume) { since[ch] = last; this.resuming.add(ch); }
        }
        const msg = { op: 'subscribe', channels: add };
        if (Object.keys(since).length) msg.since = since;
        this.send(msg);
      }
      this.updateStatus();
    },

    /** A channel's catch-up after a reconnect is over (`sub.resume` says how; null: dropped). */
    resumeDone(ch, resume) {
      if (!this.resuming.delete(ch)) return;
      const round = this.round;
      if (resume && round) {
        if (resume.recovered) { round.recovered++; round.replayed += resume.replayed; }
        else round.fresh++;
        this.resumes.push(resume);
        if (this.resumes.length > 32) this.resumes.shift();
      }
      if (this.resuming.size || !round) return;
      this.round = null;
      clearTimeout(this.resumeTimer);
      if (round.fresh) {
        notice('Reconnected — ' + round.fresh + ' of ' + (round.fresh + round.recovered) +
          ' streams were too far behind to catch up; reloaded from a fresh snapshot', 'warn', 4000);
      } else if (round.recovered) {
        notice('Reconnected — caught up ' + fmtInt(round.replayed) + ' missed update' + (round.replayed === 1 ? '' : 's'), 'info', 2500);
      }
      this.lastRound = { ...round, done_ms: Date.now() };
      renderResume();
      this.updateStatus();
    },

    /** A sequence gap: drop the channel and subscribe again for a fresh snapshot. */
    resync(ch, expected, got) {
      state.resyncs++;
      console.warn(`pricestream: gap on ${ch} (expected seq ${expected}, got ${got}); resubscribing`);
      const old = this.channels.get(ch);
      if (old && old.resume) { old.resume.contiguous = false; this.resumeDone(ch, old.resume); }
      this.channels.set(ch, { seq: null, synced: false, early: null, resume: null });
      this.send({ op: 'unsubscribe', channels: [ch] });
      this.send({ op: 'subscribe', channels: [ch] });
      if (ch === candleChannel()) {
        notice('Missed an update on ' + displaySymbol(state.symbol) + ' ' + state.res + ' — resynchronising…', 'warn', 2500);
      }
      this.updateStatus();
      state.panelDirty = true;
      schedule();
    },

    connect() {
      clearTimeout(this.retryTimer);
      this.retryTimer = 0;
      if (this.ws) return;
      const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
      let ws;
      try {
        ws = new WebSocket(proto + '//' + location.host + '/ws');
      } catch (err) {
        console.warn('ws:', err);
        this.scheduleReconnect(null);
        return;
      }
      this.ws = ws;
      this.setState(this.everOpened ? 'reconnecting' : 'connecting');
      clearTimeout(this.connectTimer);
      this.connectTimer = setTimeout(() => {
        if (ws.readyState === WebSocket.CONNECTING) ws.close();
      }, CONNECT_TIMEOUT_MS);
      ws.addEventListener('open', () => this.onOpen(ws));
      ws.addEventListener('message', (ev) => this.onMessage(ws, ev));
      ws.addEventListener('close', (ev) => this.onClose(ws, ev));
      ws.addEventListener('error', () => { /* a close event follows */ });
    },

    onOpen(ws) {
      if (ws !== this.ws) return;
      clearTimeout(this.connectTimer);
      const wasReconnect = this.everOpened;
      this.everOpened = true;
      this.opens++;
      this.channels.clear();
      clearTimeout(this.stableTimer);
      this.stableTimer = setTimeout(() => { this.attempt = 0; }, STABLE_AFTER_MS);
      const lastSeqs = this.lastSeqs;
      this.lastSeqs = new Map();
      this.resuming.clear();
      this.round = lastSeqs.size ? { recovered: 0, fresh: 0, replayed: 0, started_ms: Date.now() } : null;
      this.setState('syncing');
      this.sync(lastSeqs);
      if (!this.resuming.size) this.round = null;   // nothing shown then had a seq to resume from
      clearTimeout(this.resumeTimer);
      if (this.round) {
        this.resumeTimer = setTimeout(() => {
          for (const ch of [...this.resuming]) this.resumeDone(ch, null);
        }, RESUME_TIMEOUT_MS);
      }
      renderResume();
      if (wasReconnect) {
        // A channel that resumes gets exactly the updates it missed; without a seq to resume
        // from, or when the server no longer has them (a snapshot marked "recovered": false),
        // REST fills the hole the outage left in the chart.
        if (!this.resuming.has(candleChannel())) loadHistory();
        refreshDaily();
        if (!this.round) notice('Reconnected — stream restarted', 'info', 2000);
      }
    },

    onMessage(ws, ev) {
      if (ws !== this.ws) return;
      state.msgCount++;
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (!msg || typeof msg !== 'object') return;
      switch (msg.type) {
        case 'snapshot': this.onSnapshot(msg); break;
        case 'subscribed': this.onSubscribed(msg); break;
        case 'update': this.onUpdate(msg); break;
        case 'error': this.onServerError(msg); break;
        default: break;
      }
    },

    onSnapshot(msg) {
      const sub = this.channels.get(msg.channel);
      if (!sub) return;                   // no longer wanted
      sub.seq = Number.isFinite(msg.seq) ? msg.seq : null;
      sub.synced = true;
      apply(msg.channel, msg.data, true);
      if (sub.resume) {
        // the server no longer holds what was missed: this snapshot replaces it
        sub.resume.recovered = false;
        this.resumeDone(msg.channel, sub.resume);
        sub.resume = null;
        if (msg.channel === candleChannel()) loadHistory();
      }
      this.takeEarly(sub);
    },

    /** The answer to a subscribe with `since`: exactly `missed` updates follow, in order. */
    onSubscribed(msg) {
      const sub = this.channels.get(msg.channel);
      if (!sub || !sub.resume || !Number.isFinite(msg.seq)) return;
      sub.seq = msg.seq;
      sub.synced = true;
      sub.resume.recovered = msg.recovered === true;
      sub.resume.missed = Number.isFinite(msg.missed) ? msg.missed : 0;
      if (sub.resume.missed === 0) { this.resumeDone(msg.channel, sub.resume); sub.resume = null; }
      this.takeEarly(sub);
    },

    /** Apply updates that overtook the snapshot (or the resume answer) and are not covered. */
    takeEarly(sub) {
      const early = sub.early;
      sub.early = null;
      if (early) for (const u of early) if (!this.onUpdate(u)) break;
      this.updateStatus();
      schedule();
    },

    /** Apply one update in sequence; returns false when it triggered a resync. */
    onUpdate(msg) {
      const sub = this.channels.get(msg.channel);
      if (!sub) return true;              // not subscribed (any more)
      if (!sub.synced) {
        // waiting for the snapshot: hold on to a bounded number of early updates
        if (!sub.early) sub.early = [];
        if (sub.early.length < 2000) sub.early.push(msg);
        return true;
      }
      if (Number.isFinite(msg.seq) && sub.seq != null) {
        if (msg.seq <= sub.seq) return true;   // duplicate, or already in the snapshot
        if (msg.seq !== sub.seq + 1 && !msg.conflated) { this.resync(msg.channel, sub.seq + 1, msg.seq); return false; }
      }
      if (Number.isFinite(msg.seq)) sub.seq = msg.seq;
      apply(msg.channel, msg.data, false);
      state.updates++;
      const resume = sub.resume;
      if (resume && resume.missed != null) {
        // one of the missed updates the server replays after "subscribed"
        if (msg.conflated) resume.contiguous = false;
        if (++resume.replayed >= resume.missed) {
          this.resumeDone(msg.channel, resume);
          sub.resume = null;
        }
      }
      schedule();
      return true;
    },

    onServerError(msg) {
      const code = String(msg.code || 'error');
      const text = String(msg.message || '');
      console.warn('pricestream server error:', code, text);
      notice('Server: ' + text + (text ? ' ' : '') + '(' + code + ')', 'error', 6000);
      if (!state.candles.length && state.historyLoaded) setOverlay('error', 'No data for ' + displaySymbol(state.symbol) + ': ' + (text || code));
    },

    onClose(ws, ev) {
      if (ws !== this.ws) return;
      clearTimeout(this.connectTimer);
      clearTimeout(this.stableTimer);
      clearTimeout(this.resumeTimer);
      this.ws = null;
      // what the page has applied, to resume from on the next connection (a connection that
      // never opened had no channels: the seqs from before it are kept)
      for (const [ch, sub] of this.channels) {
        if (sub.resume) this.lastSeqs.set(ch, sub.seq ?? sub.resume.since);
        else if (sub.synced && sub.seq != null) this.lastSeqs.set(ch, sub.seq);
      }
      this.resuming.clear();
      this.round = null;
      this.channels.clear();
      for (const q of state.quotes.values()) q.stale = true;
      for (const sym of state.symbols) state.tilesDirty.add(sym);
      state.panelDirty = true;
      this.scheduleReconnect(ev);
      schedule();
    },

    scheduleReconnect(ev) {
      const exp = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
      const delay = Math.round(exp / 2 + Math.random() * (exp / 2));   // "equal jitter"
      this.attempt++;
      this.retryAt = Date.now() + delay;
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.connect(), delay);
      this.closeInfo = ev ? { code: ev.code, reason: ev.reason } : null;
      this.setState(navigator.onLine === false ? 'offline' : 'reconnecting');
      if (ev && this.everOpened && ev.code !== 1006) {
        notice('Connection closed by server (' + ev.code + (ev.reason ? ' ' + ev.reason : '') + ') — reconnecting', 'warn', 3500);
      }
    },

    /** Skip the wait (tab shown again, network back). */
    retryNow() {
      if (this.ws || !this.retryTimer) return;
      this.connect();
    },

    updateStatus() {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      if (this.resuming.size) { this.setState('resuming'); return; }
      let any = false;
      for (const s of this.channels.values()) if (s.synced) { any = true; break; }
      this.setState(any ? 'live' : 'syncing');
    },

    /** A plain copy of the connection's state, for window.pricestream.status(). */
    report() {
      const channels = {};
      for (const [ch, sub] of this.channels) channels[ch] = { seq: sub.seq, synced: sub.synced };
      return {
        state: this.state,
        opens: this.opens,
        resyncs: state.resyncs,
        updates: state.updates,
        channels,
        resumeFrom: Object.fromEntries(this.lastSeqs),
        resuming: [...this.resuming],
        resumes: this.resumes.map((r) => ({ ...r })),
        lastRound: this.lastRound ? { ...this.lastRound } : null,
      };
    },

    setState(s) {
      this.state = s;
      renderStatus();
    },
  };

  function apply(channel, data, isSnapshot) {
    const parts = channel.split(':');
    if (parts[0] === 'ticks' && parts.length === 2) {
      onTick(parts[1], data, isSnapshot);
      schedule();
      return;
    }
    if (parts[0] === 'candles' && parts.length === 3) {
      if (parts[1] !== state.symbol || parts[2] !== state.res) return;
      const sub = conn.channels.get(channel);
      if (sub) state.lastSeq = sub.seq;
      if (isSnapshot) mergeCandles(data && data.candles, true);
      else upsertCandle(data);
      schedule();
    }
  }

  function renderStatus() {
    const s = conn.state;
    let text;
    switch (s) {
      case 'live': text = 'live'; break;
      case 'syncing': text = 'syncing'; break;
      case 'resuming': text = 'resuming'; break;
      case 'connecting': text = 'connecting'; break;
      case 'offline': text = 'offline'; break;
      case 'reconnecting': {
        if (conn.ws) { text = 'reconnecting'; break; }
        const secs = Math.max(0, Math.ceil((conn.retryAt - Date.now()) / 1000));
        text = secs > 0 ? 'reconnecting in ' + secs + 's' : 'reconnecting';
        break;
      }
      default: text = s;
    }
    if (el.status.textContent !== text) el.status.textContent = text;
    el.statusPill.dataset.state = s;
    body.dataset.status = s;
    const ci = conn.closeInfo;
    el.statusPill.title = s === 'live' ? 'Streaming live prices'
      : s === 'resuming' ? 'Reconnected: catching up on the updates missed while disconnected'
      : ci ? 'Last close: code ' + ci.code + (ci.reason ? ' (' + ci.reason + ')' : '') + (conn.attempt ? ' · attempt ' + conn.attempt : '')
        : '';
  }

  /** The status bar's account of the latest reconnect: caught up, or reloaded from a snapshot. */
  function renderResume() {
    if (!el.resume) return;
    let text = '—', title = 'No reconnect yet', kind = 'none';
    if (conn.resuming.size) {
      text = 'catching up…'; kind = 'resuming';
      title = 'Asking the server for the updates missed on ' + conn.resuming.size + ' stream' + (conn.resuming.size === 1 ? '' : 's');
    } else if (conn.lastRound) {
      const r = conn.lastRound;
      const streams = (n) => n + ' stream' + (n === 1 ? '' : 's');
      text = 'resumed +' + fmtInt(r.replayed) + (r.fresh ? ' · ' + r.fresh + ' reloaded' : '');
      kind = r.fresh ? 'reloaded' : 'recovered';
      title = 'Reconnected at ' + fmtHMS(r.done_ms) + ' UTC: ' + streams(r.recovered) + ' resumed, ' +
        fmtInt(r.replayed) + ' missed updates replayed in order' +
        (r.fresh ? '; ' + streams(r.fresh) + ' too far behind, reloaded from a fresh snapshot' : '');
    }
    if (el.resume.textContent !== text) el.resume.textContent = text;
    el.resume.title = title;
    el.resume.dataset.state = kind;
  }

  // A read-only view of the live connection for monitoring and tests:
  // window.pricestream.status() returns a fresh copy each call.
  Object.defineProperty(window, 'pricestream', {
    value: Object.freeze({ status: () => conn.report() }),
    enumerable: true,
  });

  // ------------------------------------------------------------------ frame loop

  let frameQueued = false;
  let rafId = 0;
  let fallbackId = 0;
  let chartTimer = 0;
  let lastChartAt = 0;
  let chartCost = 8;

  function schedule() {
    if (frameQueued) return;
    frameQueued = true;
    rafId = requestAnimationFrame(frame);
    fallbackId = setTimeout(frame, 250);   // rAF does not run in background tabs
  }

  function frame() {
    if (!frameQueued) return;
    frameQueued = false;
    cancelAnimationFrame(rafId);
    clearTimeout(fallbackId);
    const now = performance.now();
    for (const sym of state.tilesDirty) renderTile(sym, now);
    state.tilesDirty.clear();
    // spark lines are throttled to 1/s: keep a frame coming while one is pending
    for (const q of state.quotes.values()) if (q.sparkDirty && tileEls.has(q.symbol)) { state.tilesDirty.add(q.symbol); }
    if (state.panelDirty || titlePending) { state.panelDirty = false; renderPanel(now); }
    if (state.tapeDirty) { state.tapeDirty = false; renderTape(); }
    if (state.chartDirty) maybeRenderChart(now);
    body.dataset.updates = String(state.updates);
    renderCounters();
    if (state.tilesDirty.size) scheduleLater(1000);
  }

  /** One pending timer for work that is throttled to about once a second. */
  let laterTimer = 0;
  function scheduleLater(ms) {
    if (laterTimer) return;
    laterTimer = setTimeout(() => { laterTimer = 0; schedule(); }, ms);
  }

  function maybeRenderChart(now) {
    if (dragging) return;                      // never redraw under the user's pointer
    if (document.hidden) return;               // stays dirty; redrawn when the tab is shown
    const minGap = Math.min(500, Math.max(60, chartCost * 4));
    const wait = lastChartAt + minGap - now;
    if (wait > 0) {
      if (!chartTimer) chartTimer = setTimeout(() => { chartTimer = 0; schedule(); }, wait);
      return;
    }
    renderChart();
    state.chartDirty = false;
    lastChartAt = performance.now();
    chartCost = chartCost * 0.7 + (lastChartAt - now) * 0.3;
  }

  // ------------------------------------------------------------------ panel

  let shownLast = null, lastFlashAt = 0, titleAt = 0, titlePending = false;

  function renderPanel(now) {
    const sym = state.symbol;
    const q = quoteFor(sym);
    const d = symDecimals(sym);
    const cs = state.candles;
    const lastC = cs.length ? cs[cs.length - 1] : null;
    const price = q.price != null ? q.price : lastC ? lastC.close : null;

    el.instName.textContent = displayName(sym);
    el.instSym.textContent = displaySymbol(sym);
    el.unit.textContent = unitOf(sym);

    const pTxt = fmtPrice(price, d);
    el.lastPrice.textContent = pTxt;
    el.headPrice.textContent = pTxt;
    el.lastPrice.dataset.value = price != null ? String(price) : '';
    if (shownLast != null && price != null && price !== shownLast && now - lastFlashAt > 700) {
      const dir = price > shownLast ? 'up' : 'down';
      flash(el.lastPrice, dir);
      lastFlashAt = now;
    }
    el.lastPrice.dataset.dir = q.dir;
    shownLast = price;

    // vs open of day
    const ch = price != null && q.dayOpen != null ? price - q.dayOpen : null;
    const chPct = ch != null && q.dayOpen ? (ch / q.dayOpen) * 100 : null;
    const dir = dirOf(ch);
    el.change.textContent = fmtSigned(ch, d);
    el.change.dataset.dir = dir;
    el.changePct.textContent = fmtPct(chPct);
    el.changePct.dataset.dir = dir;
    el.headChange.textContent = ch != null ? fmtSigned(ch, d) + ' (' + fmtPct(chPct) + ')' : '—';
    el.headChange.dataset.dir = dir;

    const t = q.tick;
    const bid = t ? num(t.bid) : null, ask = t ? num(t.ask) : null;
    el.bid.textContent = fmtPrice(bid, d);
    el.ask.textContent = fmtPrice(ask, d);
    el.spread.textContent = bid != null && ask != null ? fmtPrice(ask - bid, d) : '—';
    el.spread.title = bid != null && ask != null && bid > 0 ? (((ask - bid) / ((ask + bid) / 2)) * 1e4).toFixed(1) + ' bp' : '';

    // day range bar
    el.dayOpen.textContent = fmtPrice(q.dayOpen, d);
    el.dayLow.textContent = fmtPrice(q.dayLow, d);
    el.dayHigh.textContent = fmtPrice(q.dayHigh, d);
    if (q.dayLow != null && q.dayHigh != null && price != null) {
      const span = q.dayHigh - q.dayLow;
      const pos = span > 0 ? Math.min(1, Math.max(0, (price - q.dayLow) / span)) : 0.5;
      const openPos = span > 0 && q.dayOpen != null ? Math.min(1, Math.max(0, (q.dayOpen - q.dayLow) / span)) : pos;
      const left = Math.min(pos, openPos), right = Math.max(pos, openPos);
      el.dayFill.style.left = (left * 100).toFixed(2) + '%';
      el.dayFill.style.width = ((right - left) * 100).toFixed(2) + '%';
      el.dayFill.dataset.dir = pos >= openPos ? 'up' : 'down';
      el.dayMarker.style.left = (pos * 100).toFixed(2) + '%';
    }

    // visible range stats
    const vr = visibleRange();
    if (vr) {
      let hi = -Infinity, lo = Infinity, ticks = 0;
      for (let i = vr.i0; i <= vr.i1; i++) {
        const c = cs[i];
        if (c.high > hi) hi = c.high;
        if (c.low < lo) lo = c.low;
        ticks += c.ticks;
      }
      const open = cs[vr.i0].open;
      const close = cs[vr.i1].close;
      const rc = close - open;
      const rdir = dirOf(rc);
      el.rangeOpen.textContent = fmtPrice(open, d);
      el.high.textContent = fmtPrice(hi, d);
      el.low.textContent = fmtPrice(lo, d);
      el.rangeChange.textContent = fmtSigned(rc, d);
      el.rangeChange.dataset.dir = rdir;
      el.rangeChangePct.textContent = fmtPct(open ? (rc / open) * 100 : null);
      el.rangeChangePct.dataset.dir = rdir;
      el.tickCount.textContent = fmtInt(ticks);
      const span = cs[vr.i1].start_ms + RESOLUTIONS[state.res] - cs[vr.i0].start_ms;
      el.rangeLabel.textContent = resLabel(state.res) + ' · ' + fmtDuration(span);
    } else {
      for (const n of [el.rangeOpen, el.high, el.low, el.rangeChange, el.rangeChangePct, el.tickCount]) n.textContent = '—';
      el.rangeLabel.textContent = '';
    }

    el.lastUpdate.textContent = t && num(t.ts_ms) != null ? fmtHMSms(t.ts_ms) + ' UTC' : '—';
    el.vendor.textContent = t && t.vendor ? String(t.vendor) : '—';

    renderOhlc();

    titlePending = false;
    if (now - titleAt > 1000 && price != null) {
      document.title = pTxt + ' ' + displaySymbol(sym) + ' · Pricestream';
      titleAt = now;
    } else if (price != null) {
      titlePending = true;       // the title is throttled; come back for it
      scheduleLater(1000);
    }
  }

  function renderOhlc() {
    const cs = state.candles;
    const i = state.hoverIndex >= 0 && state.hoverIndex < cs.length ? state.hoverIndex : cs.length - 1;
    if (i < 0) {
      for (const n of [el.ohlcO, el.ohlcH, el.ohlcL, el.ohlcC, el.ohlcT]) n.textContent = '—';
      el.ohlcTime.textContent = '';
      return;
    }
    const c = cs[i];
    const d = symDecimals(state.symbol);
    el.ohlcTime.textContent = candleTimeLabel(c.start_ms, state.res);
    el.ohlcO.textContent = fmtPrice(c.open, d);
    el.ohlcH.textContent = fmtPrice(c.high, d);
    el.ohlcL.textContent = fmtPrice(c.low, d);
    el.ohlcC.textContent = fmtPrice(c.close, d);
    el.ohlcT.textContent = fmtInt(c.ticks);
    el.ohlc.dataset.dir = c.close >= c.open ? 'up' : 'down';
  }

  function renderTape() {
    const d = symDecimals(state.symbol);
    const list = state.tape;
    for (let r = 0; r < TAPE_ROWS; r++) {
      const row = tapeRows[r];
      const t = list[list.length - 1 - r];
      if (!t) { row.li.hidden = true; continue; }
      row.li.hidden = false;
      const prev = list[list.length - 2 - r];
      row.li.dataset.dir = prev && t.price !== prev.price ? (t.price > prev.price ? 'up' : 'down') : 'flat';
      row.t.textContent = num(t.ts_ms) != null ? fmtHMSms(t.ts_ms) : '—';
      row.p.textContent = fmtPrice(t.price, d);
      row.b.textContent = fmtPrice(num(t.bid), d);
      row.a.textContent = fmtPrice(num(t.ask), d);
    }
  }

  function buildTape() {
    for (let r = 0; r < TAPE_ROWS; r++) {
      const li = document.createElement('li');
      const t = document.createElement('span'); t.className = 't';
      const p = document.createElement('span'); p.className = 'p';
      const b = document.createElement('span'); b.className = 'b';
      const a = document.createElement('span'); a.className = 'a';
      li.append(t, p, b, a);
      li.hidden = true;
      el.tape.appendChild(li);
      tapeRows.push({ li, t, p, b, a });
    }
  }

  // ------------------------------------------------------------------ chart

  const coarsePointer = window.matchMedia('(pointer: coarse)');
  let plotReady = false;
  let dragging = false;
  let chartRev = 0;

  function chartWidthPx() { return el.chart.clientWidth || 800; }

  function defaultWidth() {
    const w = chartWidthPx();
    return Math.round(Math.min(160, Math.max(36, w / 9)));
  }

  /** The x range shown, in candle-index units, and the indices of the visible candles. */
  function viewRange() {
    const n = state.candles.length;
    const v = state.view;
    if (!v.width) v.width = defaultWidth();
    let a, b;
    if (v.follow) {
      b = n - 1 + RIGHT_PAD;
      a = b - v.width;
      if (n + RIGHT_PAD < v.width) { a = -1; b = a + v.width; }
    } else {
      a = v.a; b = v.b;
    }
    return { a, b };
  }

  function visibleRange() {
    const n = state.candles.length;
    if (!n) return null;
    const { a, b } = viewRange();
    const i0 = Math.max(0, Math.ceil(a));
    const i1 = Math.min(n - 1, Math.floor(b));
    if (i1 < i0) return null;
    return { a, b, i0, i1 };
  }

  // x-axis labels: time-aligned ticks on a gapless candle-index axis
  const NICE = [
    1e3, 2e3, 5e3, 10e3, 15e3, 30e3,
    60e3, 120e3, 300e3, 600e3, 900e3, 1800e3,
    3600e3, 7200e3, 10800e3, 14400e3, 21600e3, 43200e3,
    86400e3, 172800e3, 'w', 'm1', 'm3', 'm6', 'y',
  ];
  const APPROX = { w: 7 * 864e5, m1: 30.44 * 864e5, m3: 91.3 * 864e5, m6: 182.6 * 864e5, y: 365.25 * 864e5 };

  function bucketOf(ms, T) {
    if (typeof T === 'number') return Math.floor(ms / T);
    const d = new Date(ms);
    if (T === 'w') return Math.floor((ms / 864e5 + 3) / 7);
    const mo = d.getUTCFullYear() * 12 + d.getUTCMonth();
    if (T === 'm1') return mo;
    if (T === 'm3') return Math.floor(mo / 3);
    if (T === 'm6') return Math.floor(mo / 6);
    return d.getUTCFullYear();
  }

  function tickLabel(ms, T, prevMs) {
    const d = new Date(ms);
    const pd = prevMs != null ? new Date(prevMs) : null;
    const newYear = pd && pd.getUTCFullYear() !== d.getUTCFullYear();
    if (T === 'y' || (typeof T === 'string' && T.startsWith('m'))) return newYear || T === 'y' ? String(d.getUTCFullYear()) : MONTHS[d.getUTCMonth()];
    if (T === 'w' || T >= 864e5) return newYear ? String(d.getUTCFullYear()) : fmtDay(ms);
    const newDay = pd && Math.floor(prevMs / 864e5) !== Math.floor(ms / 864e5);
    if (newDay) return fmtDay(ms);
    return T < 60e3 ? fmtHMS(ms) : fmtHM(ms);
  }

  function timeTicks(cs, i0, i1, a, b) {
    const vals = [], text = [];
    if (i1 < i0) return { vals, text };
    const step = RESOLUTIONS[state.res];
    // Labels at least 100px apart; on a phone 64px ("00:00", ~35px wide) or 84px ("00:00:00",
    // ~55px), where 100px would leave one or two labels.
    const widthPx = chartWidthPx();
    const gapFor = (len) => (widthPx >= 600 ? 100 : len < 60e3 ? 84 : 64);
    const pxPerBar = Math.max(1, widthPx - 90) / Math.max(1, b - a);
    // the axis is gapless: where candles are sparse (quiet markets, simulated history) a bar
    // stands for more time than one resolution step
    const msPerBar = i1 > i0 ? Math.max(step, (cs[i1].start_ms - cs[i0].start_ms) / (i1 - i0)) : step;
    // the smallest nice interval whose labels land that far apart
    let T = NICE[NICE.length - 1];
    for (const cand of NICE) {
      const len = typeof cand === 'number' ? cand : APPROX[cand];
      if (len >= step && (len / msPerBar) * pxPerBar >= gapFor(len)) { T = cand; break; }
    }
    // and where the density changes within the view, a label too close to the last is left out
    const minBars = gapFor(typeof T === 'number' ? T : APPROX[T]) / pxPerBar;
    let prevBucket = i0 > 0 ? bucketOf(cs[i0 - 1].start_ms, T) : null;
    let prevMs = null, prevI = -Infinity;
    for (let i = i0; i <= i1; i++) {
      const ms = cs[i].start_ms;
      const bk = bucketOf(ms, T);
      if (prevBucket !== null && bk !== prevBucket && i - prevI >= minBars) {
        vals.push(i);
        text.push(tickLabel(ms, T, prevMs));
        prevMs = ms;
        prevI = i;
      }
      prevBucket = bk;
    }
    return { vals, text };
  }

  /** Price-axis labels: round steps about 56px apart, minus those the last-price tag would
   *  cover (plotly would draw them half hidden behind it). */
  function priceTicks(yr, d, tagAt, tagLines) {
    const fl = el.chart._fullLayout;
    const plotPx = fl && fl.yaxis && fl.yaxis._length > 0 ? fl.yaxis._length
      : Math.max(100, (el.chart.clientHeight - 62) * 0.8);
    const span = yr[1] - yr[0];
    const raw = Math.max(span / Math.min(10, Math.max(3, Math.round(plotPx / 56))), Math.pow(10, -d));
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    let step = 10 * mag;
    for (const f of [1, 2, 2.5, 5]) if (f * mag >= raw) { step = f * mag; break; }
    const pxPerUnit = plotPx / span;
    const clearPx = tagLines ? (tagLines * 15 + 6) / 2 + 8 : 0;   // half the tag, half a label
    const tickvals = [], ticktext = [];
    for (let k = Math.ceil(yr[0] / step); k * step <= yr[1]; k++) {
      const v = k * step;
      if (tagAt != null && Math.abs(v - tagAt) * pxPerUnit < clearPx) continue;
      tickvals.push(v);
      ticktext.push(fmtPrice(v, d));
    }
    return { tickvals, ticktext };
  }

  /** Labels of the tick-count pane: 0, s and 2s, the largest round step that keeps them in the
   *  lower 80% of the pane (its top label stays clear of the price axis's lowest one). */
  function countTicks(top) {
    const lim = top * 0.8;
    let step = 1;
    if (lim >= 2) {
      const half = lim / 2;
      const mag = Math.pow(10, Math.floor(Math.log10(half)));
      for (const f of [1, 2, 2.5, 3, 4, 5, 6, 8, 10]) {
        const s = f * mag;
        if (s > half) break;
        if (Number.isInteger(s)) step = s;      // counts are whole numbers
      }
    }
    const vals = [], text = [];
    for (let k = 0; k <= 2 && k * step <= Math.max(lim, step); k++) { vals.push(k * step); text.push(fmtCount(k * step)); }
    return { vals, text };
  }

  function fmtCount(v) {
    if (v >= 1e6) return parseFloat((v / 1e6).toFixed(1)) + 'M';
    if (v >= 1e3) return parseFloat((v / 1e3).toFixed(1)) + 'k';
    return String(v);
  }

  function renderChart() {
    if (!window.Plotly) return;
    const cs = state.candles;
    const n = cs.length;
    const sym = state.symbol;
    const d = symDecimals(sym);
    const { a, b } = viewRange();

    if (n) setOverlay('hidden');

    // only hand plotly the visible window plus one screen either side (bounded cost)
    const w = Math.max(1, b - a);
    const j0 = Math.max(0, Math.floor(a - w));
    const j1 = Math.min(n - 1, Math.ceil(b + w));
    const m = Math.max(0, j1 - j0 + 1);
    const x = new Array(m), o = new Array(m), h = new Array(m), l = new Array(m), c = new Array(m), v = new Array(m), vc = new Array(m);
    for (let k = 0; k < m; k++) {
      const cd = cs[j0 + k];
      x[k] = j0 + k; o[k] = cd.open; h[k] = cd.high; l[k] = cd.low; c[k] = cd.close; v[k] = cd.ticks;
      vc[k] = cd.close >= cd.open ? C.upVol : C.downVol;
    }

    // y range fitted to the visible candles
    const i0 = Math.max(0, Math.ceil(a)), i1 = Math.min(n - 1, Math.floor(b));
    let lo = Infinity, hi = -Infinity, vmax = 0;
    for (let i = i0; i <= i1; i++) {
      const cd = cs[i];
      const l0 = state.type === 'area' ? cd.close : cd.low;
      const h0 = state.type === 'area' ? cd.close : cd.high;
      if (l0 < lo) lo = l0;
      if (h0 > hi) hi = h0;
      if (cd.ticks > vmax) vmax = cd.ticks;
    }
    const last = n ? cs[n - 1] : null;
    if (last && state.view.follow) { lo = Math.min(lo, last.close); hi = Math.max(hi, last.close); }
    if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
    let pad = (hi - lo) * 0.08;
    if (!(pad > 0)) pad = Math.max(Math.abs(hi) * 0.0005, Math.pow(10, -d));
    const yr = [lo - pad, hi + pad];

    const upDir = last ? last.close >= last.open : true;
    const lastColor = upDir ? C.up : C.down;
    const areaColor = C.accent;

    const traces = [];
    if (state.type === 'candles') {
      traces.push({
        type: 'candlestick', name: sym, x, open: o, high: h, low: l, close: c,
        increasing: { line: { color: C.up, width: 1 }, fillcolor: C.upFill },
        decreasing: { line: { color: C.down, width: 1 }, fillcolor: C.downFill },
        whiskerwidth: 0, hoverinfo: 'none', yaxis: 'y', xaxis: 'x',
      });
    } else {
      traces.push({
        type: 'scatter', mode: 'lines', name: sym, x, y: c,
        line: { color: areaColor, width: 1.8, shape: 'linear' },
        fill: 'tozeroy',
        fillgradient: {
          type: 'vertical', start: yr[0], stop: yr[1],
          colorscale: [[0, 'rgba(226,181,74,0)'], [1, 'rgba(226,181,74,0.28)']],
        },
        hoverinfo: 'none', yaxis: 'y', xaxis: 'x',
      });
      if (last) {
        traces.push({
          type: 'scatter', mode: 'markers', x: [n - 1], y: [last.close],
          marker: { size: 7, color: areaColor, line: { color: 'rgba(226,181,74,0.30)', width: 7 } },
          hoverinfo: 'skip', yaxis: 'y', xaxis: 'x',
        });
      }
    }
    traces.push({
      type: 'bar', name: 'ticks', x, y: v, marker: { color: vc, line: { width: 0 } },
      hoverinfo: 'none', yaxis: 'y2', xaxis: 'x',
    });

    const ticks = timeTicks(cs, i0, i1, a, b);
    let tagLines = 0;                 // lines of the last-price tag on the price axis (0: none)
    const countTop = Math.max(1, vmax) * 1.15;
    const counts = countTicks(countTop);
    const shapes = [], annotations = [];
    shapes.push({
      type: 'line', xref: 'paper', x0: 0, x1: 1, yref: 'paper', y0: 0.185, y1: 0.185,
      line: { color: C.line, width: 1 }, layer: 'below',
    });
    if (last) {
      const lc = state.type === 'area' ? areaColor : lastColor;
      shapes.push({
        type: 'line', xref: 'paper', x0: 0, x1: 1, yref: 'y', y0: last.close, y1: last.close,
        line: { color: lc, width: 1, dash: 'dot' }, layer: 'above',
      });
      let label = fmtPrice(last.close, d);
      tagLines = 1;
      const stepMs = RESOLUTIONS[state.res];
      if (stepMs >= 60000 && stepMs < 864e5 && state.view.follow) {
        const left = last.start_ms + stepMs - Date.now();
        if (left > 0 && left <= stepMs) { label += '<br>' + fmtCountdown(left); tagLines = 2; }
      }
      annotations.push({
        xref: 'paper', x: 1, xanchor: 'left', yref: 'y', y: last.close, yanchor: 'middle',
        text: label, showarrow: false, align: 'left',
        font: { family: MONO, size: 11, color: state.type === 'area' ? '#161107' : '#ffffff' },
        bgcolor: lc, borderpad: 3, xshift: 1,
      });
    }

    annotations.push({
      xref: 'paper', yref: 'paper', x: 0.5, y: 0.6, xanchor: 'center', yanchor: 'middle',
      text: displaySymbol(sym) + ' · ' + resLabel(state.res), showarrow: false,
      font: { family: 'Inter, "Segoe UI", system-ui, "Liberation Sans", "DejaVu Sans", sans-serif', size: Math.round(Math.min(44, Math.max(20, chartWidthPx() / 16))), color: 'rgba(163,173,186,0.04)' },
      captureevents: false,
    });

    annotations.push({
      xref: 'paper', yref: 'paper', x: 0, y: 0.17, xanchor: 'left', yanchor: 'top', xshift: 4,
      text: 'Ticks per candle', showarrow: false,
      font: { family: MONO, size: 10, color: C.muted }, captureevents: false,
    });

    const axisFont = { family: MONO, size: 11, color: C.text };
    // the OHLC strip sits over the top of the chart; on a narrow screen it takes two lines
    const marginTop = Math.max(34, el.ohlc.offsetTop + el.ohlc.offsetHeight + 10);
    const layout = {
      paper_bgcolor: C.bg, plot_bgcolor: C.bg,
      font: { family: MONO, size: 11, color: C.text },
      margin: { l: 10, r: 74, t: marginTop, b: 28, pad: 0 },
      showlegend: false,
      // on touch screens a one-finger swipe must scroll the page, so the chart does not pan
      dragmode: coarsePointer.matches ? false : 'pan',
      hovermode: 'x',
      hoverdistance: 30,
      spikedistance: -1,
      autosize: true,
      uirevision: sym + '|' + state.res,
      datarevision: ++chartRev,
      bargap: 0.25,
      xaxis: {
        type: 'linear', range: [a, b], autorange: false, anchor: 'y2',
        tickmode: 'array', tickvals: ticks.vals, ticktext: ticks.text, tickangle: 0,
        showgrid: true, gridcolor: C.grid, gridwidth: 1,
        zeroline: false, showline: true, linecolor: C.line,
        ticks: 'outside', ticklen: 4, tickcolor: C.line, tickfont: axisFont,
        rangeslider: { visible: false },
        showspikes: true, spikemode: 'across', spikesnap: 'data', spikecolor: '#6f7b89', spikethickness: 1, spikedash: 'dot',
        fixedrange: false,
      },
      yaxis: {
        side: 'right', domain: [0.2, 1], range: yr, autorange: false, fixedrange: true,
        tickmode: 'array', ...priceTicks(yr, d, last ? last.close : null, tagLines),
        showgrid: true, gridcolor: C.grid, zeroline: false,
        showline: false, ticks: 'outside', ticklen: 4, tickcolor: C.bg, tickfont: axisFont,
        showspikes: true, spikemode: 'across', spikesnap: 'cursor', spikecolor: '#6f7b89', spikethickness: 1, spikedash: 'dot',
      },
      yaxis2: {
        side: 'right', domain: [0, 0.17], range: [0, countTop], autorange: false, fixedrange: true,
        tickmode: 'array', tickvals: counts.vals, ticktext: counts.text,
        showgrid: true, gridcolor: C.grid, zeroline: false,
        showline: false, ticks: 'outside', ticklen: 4, tickcolor: C.bg, tickfont: axisFont,
      },
      shapes, annotations,
    };
    const config = {
      displayModeBar: false, displaylogo: false, scrollZoom: !coarsePointer.matches, responsive: false,
      doubleClick: 'autosize', showTips: false, staticPlot: false,
    };

    const p = window.Plotly.react(el.chart, traces, layout, config);
    if (!plotReady) {
      plotReady = true;
      Promise.resolve(p).then(() => { el.chart.dataset.ready = 'true'; hookChartEvents(); });
    }
    state.renders++;
    body.dataset.renders = String(state.renders);
    el.chart.dataset.candles = String(n);
    el.follow.hidden = state.view.follow || !n;
  }

  function hookChartEvents() {
    const gd = el.chart;
    gd.on('plotly_relayout', (ev) => {
      if (!ev) return;
      const n = state.candles.length;
      if (ev['xaxis.autorange'] === true) {        // double click: back to the live edge
        state.view.follow = true;
        state.view.width = defaultWidth();
        state.chartDirty = true; state.panelDirty = true; schedule();
        return;
      }
      let a = ev['xaxis.range[0]'], b = ev['xaxis.range[1]'];
      if (Array.isArray(ev['xaxis.range'])) [a, b] = ev['xaxis.range'];
      if (!Number.isFinite(a) || !Number.isFinite(b)) return;
      const width = Math.min(MAX_CANDLES, Math.max(8, b - a));
      state.view.width = width;
      if (b >= n - 1 + 0.5) {
        state.view.follow = true;
      } else {
        state.view.follow = false;
        state.view.a = b - width;
        state.view.b = b;
      }
      state.chartDirty = true; state.panelDirty = true;
      schedule();
    });
    gd.on('plotly_hover', (ev) => {
      const pt = ev && ev.points && ev.points[0];
      if (!pt) return;
      const i = Math.round(Number(pt.x));
      if (i !== state.hoverIndex) { state.hoverIndex = i; renderOhlc(); }
    });
    gd.on('plotly_unhover', () => { state.hoverIndex = -1; renderOhlc(); el.xhairX.hidden = true; });
    gd.addEventListener('mousemove', onChartMouseMove);
    gd.addEventListener('mouseleave', hideCrosshair);
    gd.addEventListener('pointerdown', () => { dragging = true; });
    window.addEventListener('pointerup', endDrag);
    window.addEventListener('pointercancel', endDrag);
  }

  /** Price and time labels on the axes under the crosshair (plotly spikes carry no labels). */
  function onChartMouseMove(ev) {
    const fl = el.chart._fullLayout;
    if (!fl || !fl.xaxis || !fl.yaxis || !fl.yaxis2) return;
    const xa = fl.xaxis, ya = fl.yaxis, y2 = fl.yaxis2;
    const rect = el.chart.getBoundingClientRect();
    const px = ev.clientX - rect.left, py = ev.clientY - rect.top;
    const inX = px >= xa._offset && px <= xa._offset + xa._length;
    const inY = py >= ya._offset && py <= ya._offset + ya._length;
    if (inX && inY && typeof ya.p2l === 'function') {
      const price = ya.p2l(py - ya._offset);
      el.xhairY.textContent = fmtPrice(price, symDecimals(state.symbol));
      el.xhairY.style.top = py + 'px';
      el.xhairY.style.left = (xa._offset + xa._length + 1) + 'px';
      el.xhairY.hidden = false;
    } else {
      el.xhairY.hidden = true;
    }
    const i = state.hoverIndex;
    const cs = state.candles;
    if (inX && i >= 0 && i < cs.length && typeof xa.l2p === 'function') {
      el.xhairX.textContent = candleTimeLabel(cs[i].start_ms, state.res);
      el.xhairX.style.left = (xa._offset + xa.l2p(i)) + 'px';
      el.xhairX.style.top = (y2._offset + y2._length + 3) + 'px';
      el.xhairX.hidden = false;
    } else {
      el.xhairX.hidden = true;
    }
  }

  function hideCrosshair() {
    el.xhairX.hidden = true;
    el.xhairY.hidden = true;
  }

  function endDrag() {
    if (!dragging) return;
    dragging = false;
    if (state.chartDirty) schedule();
  }

  let resizeQueued = false;
  function onChartResize() {
    if (resizeQueued) return;
    resizeQueued = true;
    requestAnimationFrame(() => {
      resizeQueued = false;
      if (plotReady && window.Plotly) window.Plotly.Plots.resize(el.chart);
      state.chartDirty = true;
      schedule();
    });
  }

  // ------------------------------------------------------------------ clock & housekeeping

  /** The status bar's counters, at once on every frame (the message rate waits for its second). */
  function renderCounters() {
    const set = (node, text) => { if (node.textContent !== text) node.textContent = text; };
    set(el.ticksRecv, fmtInt(state.ticksReceived));
    set(el.latency, state.latencyMs == null ? '—' : Math.max(0, Math.round(state.latencyMs)) + ' ms');
    set(el.seq, state.lastSeq == null ? '—' : String(state.lastSeq));
    set(el.resyncs, String(state.resyncs));
  }

  let lastMsgCount = 0, lastRateAt = performance.now();
  function everySecond() {
    const now = Date.now();
    el.clock.textContent = fmtHMS(now) + ' UTC';
    const pnow = performance.now();
    const rate = ((state.msgCount - lastMsgCount) * 1000) / Math.max(1, pnow - lastRateAt);
    lastMsgCount = state.msgCount;
    lastRateAt = pnow;
    // no rate before the first message (a 0.0 there would read as a dead feed)
    el.msgRate.textContent = !lastMsgCount && !state.msgCount ? '—'
      : rate >= 10 ? String(Math.round(rate)) : rate.toFixed(1);
    renderCounters();
    if (conn.state === 'reconnecting' || conn.state === 'offline') renderStatus();
    // countdown label on the last candle
    const stepMs = RESOLUTIONS[state.res];
    if (stepMs >= 60000 && stepMs < 864e5 && state.candles.length) { state.chartDirty = true; schedule(); }
  }

  // ------------------------------------------------------------------ wiring

  function applyHash() {
    const h = readHash();
    const sym = h.symbol || state.symbol;
    const res = h.res || state.res;
    const type = h.type || state.type;
    const seriesChanged = sym !== state.symbol || res !== state.res;
    state.symbol = sym; state.res = res; state.type = type;
    if (seriesChanged) {
      if (!state.symbols.includes(sym)) { state.symbols.push(sym); buildTiles(); }
      onSeriesChange();
    } else {
      markPickers();
      writeHash();
      state.chartDirty = true;
      schedule();
    }
  }

  function onKey(ev) {
    if (ev.target && /^(INPUT|TEXTAREA|SELECT)$/.test(ev.target.tagName)) return;
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const resKeys = Object.keys(RESOLUTIONS);
    if (ev.target && ev.target.classList && ev.target.classList.contains('tile') && (ev.key === 'ArrowRight' || ev.key === 'ArrowLeft')) {
      const i = state.symbols.indexOf(state.symbol);
      const j = (i + (ev.key === 'ArrowRight' ? 1 : -1) + state.symbols.length) % state.symbols.length;
      selectSymbol(state.symbols[j]);
      const t = tileEls.get(state.symbols[j]);
      if (t) t.root.focus();
      ev.preventDefault();
      return;
    }
    if (ev.key >= '1' && ev.key <= String(resKeys.length)) { selectRes(resKeys[Number(ev.key) - 1]); return; }
    if (ev.key === 'c') selectType('candles');
    else if (ev.key === 'a') selectType('area');
    else if (ev.key === 'End') { state.view.follow = true; state.chartDirty = true; schedule(); }
  }

  function init() {
    const h = readHash();
    state.symbol = h.symbol || DEFAULTS.symbol;
    state.res = h.res || DEFAULTS.res;
    state.type = h.type || DEFAULTS.type;
    writeHash();
    markPickers();
    buildTape();
    setSymbols(DEFAULT_SYMBOLS.slice());   // show tiles at once; the API list replaces them

    el.resPicker.addEventListener('click', (ev) => {
      const b = ev.target.closest('button[data-res]');
      if (b) selectRes(b.dataset.res);
    });
    el.typePicker.addEventListener('click', (ev) => {
      const b = ev.target.closest('button[data-type]');
      if (b) selectType(b.dataset.type);
    });
    el.follow.addEventListener('click', () => {
      state.view.follow = true;
      state.chartDirty = true; state.panelDirty = true;
      schedule();
    });
    $('brand').addEventListener('click', (ev) => { ev.preventDefault(); });
    window.addEventListener('hashchange', applyHash);
    document.addEventListener('keydown', onKey);
    window.addEventListener('online', () => conn.retryNow());
    window.addEventListener('offline', () => { if (!conn.ws) conn.setState('offline'); });
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') {
        conn.retryNow();
        state.chartDirty = true; state.panelDirty = true;
        schedule();
      }
    });
    if ('ResizeObserver' in window) new ResizeObserver(onChartResize).observe(el.chart);
    else window.addEventListener('resize', onChartResize);

    // plotly.js (4 MB) loads async: prices, tiles and history do not wait for it to parse. The
    // window's load event comes once it has run or failed, and the chart is drawn then.
    setOverlay('loading', 'Loading ' + displaySymbol(state.symbol) + ' · ' + resLabel(state.res) + '…');
    window.addEventListener('load', () => {
      if (!window.Plotly) setOverlay('error', 'The chart library failed to load. Prices still stream above.');
      state.chartDirty = true;
      schedule();
    });

    loadSymbols();
    loadVendors();
    loadHistory();
    conn.connect();
    everySecond();
    setInterval(everySecond, 1000);
    state.panelDirty = true;
    schedule();
  }

  init();
})();
