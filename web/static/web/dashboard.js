// The live dashboard: one /ws connection (contract section 4), the tables, the header.
"use strict";

(function () {
  const F = window.DashboardFormat;
  const { DashboardState, feedProblems } = window.DashboardProtocol;
  const config = JSON.parse(document.getElementById("dashboard-config").textContent);

  const FORMAT_KEY = "dashboard.format";
  const BACKOFF_FIRST_MS = 250; // reconnect: 250 ms doubling to 10 s, each delay jittered
  const BACKOFF_MAX_MS = 10000;
  const PING_EVERY_MS = 5000; // a ping round trip proves the link while the market is quiet
  const PONG_TIMEOUT_MS = 10000; // no frame at all for this long after a ping: the link is dead
  const STALE_AFTER_MS = 3 * config.cadenceMs; // three web cadences without an update
  const CHANGE_24H_REFRESH_MS = 10 * 60 * 1000;
  const CLOSE_KICKED = 4000;

  const $ = (id) => document.getElementById(id);
  const el = {
    state: $("conn-state"), seq: $("seq"), latency: $("latency"), stale: $("stale"),
    format: $("format-select"), reconnect: $("reconnect"),
    market: document.querySelector("#market tbody"), marketCount: $("market-count"),
    positions: document.querySelector("#positions tbody"), positionsCount: $("positions-count"),
    positionsEmpty: $("positions-empty"),
    orders: document.querySelector("#orders tbody"), ordersCount: $("orders-count"),
    strategies: document.querySelector("#strategies tbody"),
    account: $("account"), balances: document.querySelector("#balances tbody"),
    notice: $("notice"), noticeLabel: $("notice-label"), noticeText: $("notice-text"),
    noticeDismiss: $("notice-dismiss"),
    continuity: $("continuity"), feed: $("feed-banner"), feedLabel: $("feed-label"),
    feedText: $("feed-text"),
  };

  // Aborted when the user logs out, so that no history request fails half-way (a 401 after the
  // session is gone) while the page is leaving.
  const requests = new AbortController();
  const state = new DashboardState();
  const chart = new window.SymbolChart($("chart"), $("chart-note"), $("chart-symbol"),
    config.historyPath, requests.signal);
  const open24h = new Map(); // symbol -> price 24 h ago (from hourly candles)

  // --- the connection ------------------------------------------------------------------------

  let socket = null;
  let attempt = 0;
  let retryTimer = null;
  let lastFrameAt = 0;
  let lastUpdateAt = 0;
  let pingSentAt = 0;
  let stopped = false; // kicked by an admin: wait for the user
  let goingAwayMs = null; // a shutdown frame came: reconnect after this long, no backoff

  function wsFormat() {
    const stored = window.localStorage.getItem(FORMAT_KEY);
    return stored === "msgpack" ? "msgpack" : "json";
  }

  function wsUrl() {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const query = new URLSearchParams({ type: "web", format: wsFormat() });
    const resume = state.resumeQuery(); // contract 4.1: bring what we hold up to date
    if (resume) {
      query.set("since", resume.since);
      query.set("epoch", resume.epoch);
    }
    return `${scheme}://${window.location.host}${config.wsPath}?${query}`;
  }

  function setConnection(name, text) {
    el.state.textContent = text || name;
    el.state.dataset.state = name;
    el.state.className = `pill pill-${name}`;
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    stopped = false;
    el.reconnect.hidden = true;
    setConnection(attempt === 0 && state.data === null ? "connecting" : "reconnecting");
    const url = wsUrl();
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    socket = ws;
    goingAwayMs = null;
    state.reset(url.includes("&since="));
    ws.onopen = () => {
      lastFrameAt = Date.now();
      pingSentAt = 0;
    };
    ws.onmessage = (event) => {
      if (socket === ws) receive(event.data);
    };
    ws.onclose = (event) => {
      if (socket !== ws) return; // a connection we replaced (format switch)
      socket = null;
      closed(event.code);
    };
    ws.onerror = () => {}; // onclose follows and says what to do
  }

  function closed(code) {
    if (goingAwayMs !== null) { // the server said it is going away, and when to come back
      attempt = 0;
      setConnection("reconnecting", "reconnecting (server restarting)");
      retryTimer = setTimeout(connect, goingAwayMs);
      goingAwayMs = null;
      return;
    }
    if (code === CLOSE_KICKED) {
      stopped = true;
      setConnection("offline", "disconnected by an admin");
      el.reconnect.hidden = false;
      return;
    }
    const reason = { 4401: "not authorised", 4403: "forbidden", 4429: "too many connections" };
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempt);
    const delay = base / 2 + Math.random() * (base / 2); // jitter: reconnects spread out
    attempt += 1;
    setConnection("reconnecting",
      reason[code] ? `reconnecting (${reason[code]})` : "reconnecting");
    retryTimer = setTimeout(connect, delay);
  }

  function reconnectNow() {
    attempt = 0;
    if (socket) {
      const old = socket;
      socket = null;
      old.close(1000);
    }
    connect();
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function decode(data) {
    if (typeof data === "string") return JSON.parse(data);
    return window.MessagePack.decode(new Uint8Array(data));
  }

  function receive(data) {
    const now = Date.now();
    lastFrameAt = now;
    pingSentAt = 0;
    const frame = decode(data);
    if (frame.type === "pong") return;
    if (frame.type === "error") {
      console.warn(`server error ${frame.code}: ${frame.message}`);
      return;
    }
    if (frame.type === "notice") {
      showNotice(frame);
      return;
    }
    const result = state.receive(frame);
    if (result.action === "status") {
      showFeed(state.feed);
      return;
    }
    if (result.action === "reconnect") {
      goingAwayMs = result.afterMs;
      if (socket) socket.close(1000); // onclose reconnects after goingAwayMs
      return;
    }
    if (result.action === "recovered") {
      attempt = 0;
      setConnection("live");
      showContinuity();
      return;
    }
    if (result.action === "refresh") {
      console.warn(`update did not apply (${result.reason}); asking for a snapshot`);
      send({ type: "refresh" });
      return;
    }
    if (result.action !== "render") return;
    if (result.snapshot) {
      attempt = 0;
      setConnection("live");
      showContinuity();
      if (!opensLoaded) load24hOpens();
    }
    lastUpdateAt = now;
    const latency = now - Date.parse(frame.timestamp);
    el.latency.textContent = Number.isFinite(latency) ? `${Math.max(0, latency)} ms` : "–";
    el.seq.textContent = String(state.seq);
    schedule(result.dirty);
  }

  // After a reconnect: whether the missed updates were replayed (recovered) or a snapshot
  // replaced everything (resynced, with the server's reason).
  function showContinuity() {
    const outcome = state.outcome;
    const shown = outcome === "recovered" || outcome === "resynced";
    el.continuity.hidden = !shown;
    el.continuity.dataset.outcome = shown ? outcome : "";
    el.continuity.textContent = outcome === "resynced" && state.reason
      ? `resynced (${state.reason})` : outcome;
  }

  // The feed's status (contract 4.1): a banner while the worker or a backend is down.
  function showFeed(status) {
    const down = feedProblems(status);
    el.feed.hidden = down.length === 0;
    if (!down.length) return;
    const worker = down[0] === "worker";
    el.feed.dataset.down = worker ? "worker" : "backends";
    el.feedLabel.textContent = worker ? "Feed down" : "Backend down";
    el.feedText.textContent = worker
      ? "The aggregation worker is not running: no updates are coming; the data shown are the last received."
      : `Not answering: ${down.join(", ")}. Their data may be out of date.`;
  }

  // A staff notice: shown until dismissed or replaced by the next one. The text is set as text
  // (textContent), never parsed as HTML: it is whatever a staff member typed.
  function showNotice(frame) {
    const level = frame.level === "warning" ? "warning" : "info";
    el.notice.dataset.level = level;
    el.notice.setAttribute("role", level === "warning" ? "alert" : "status");
    el.noticeLabel.textContent = level === "warning" ? "Warning" : "Notice";
    el.noticeText.textContent = String(frame.text);
    el.notice.hidden = false;
  }

  // Ping for liveness, and the stale warning: checked four times a second.
  setInterval(() => {
    const now = Date.now();
    if (socket && socket.readyState === WebSocket.OPEN) {
      if (pingSentAt && now - pingSentAt > PONG_TIMEOUT_MS) {
        socket.close(4000 + 8); // our own code: the link is dead, start again
        return;
      }
      if (!pingSentAt && now - lastFrameAt > PING_EVERY_MS) {
        pingSentAt = now;
        send({ type: "ping" });
      }
    }
    const live = el.state.dataset.state === "live";
    const quiet = now - lastUpdateAt;
    if (live && lastUpdateAt && quiet > STALE_AFTER_MS) {
      el.stale.hidden = false;
      el.stale.textContent = `no update for ${(quiet / 1000).toFixed(1)} s`;
    } else if (!live && state.data !== null) {
      el.stale.hidden = false;
      el.stale.textContent = "showing the last data received";
    } else {
      el.stale.hidden = true;
    }
  }, 250);

  // --- rendering: at most once per animation frame, only what changed -----------------------

  let pending = null; // null: nothing; "all"; or Map channel -> Set|null
  function schedule(dirty) {
    if (pending === null) window.requestAnimationFrame(render);
    if (dirty === null || pending === "all") {
      pending = "all";
    } else {
      pending = pending || new Map();
      for (const [channel, keys] of dirty) {
        const had = pending.get(channel);
        if (keys === null || had === null) pending.set(channel, null);
        else pending.set(channel, new Set([...(had || []), ...keys]));
      }
    }
  }

  function render() {
    const dirty = pending;
    pending = null;
    const data = state.data || {};
    const touched = (channel) => dirty === "all" || dirty.has(channel);
    if (touched("market_data")) {
      renderMarket(data.market_data || {}, dirty === "all" ? null : dirty.get("market_data"));
    }
    if (touched("positions")) renderPositions(data.positions || {});
    if (touched("orders")) renderOrders(data.orders || []);
    if (touched("strategies")) renderStrategies(data.strategies || {});
    if (touched("account")) renderAccount(data.account || {});
  }

  function cell(row, index, text, className) {
    const td = row.cells[index];
    if (td.textContent !== text) td.textContent = text;
    if (className !== undefined && td.className !== className) td.className = className;
    return td;
  }

  function rowFor(tbody, rows, key, columns) {
    let row = rows.get(key);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.key = key;
      for (let i = 0; i < columns; i += 1) row.appendChild(document.createElement("td"));
      rows.set(key, row);
      tbody.appendChild(row);
    }
    return row;
  }

  function prune(rows, keep) {
    for (const [key, row] of rows) {
      if (!keep.has(key)) {
        row.remove();
        rows.delete(key);
      }
    }
  }

  const marketRows = new Map();
  const lastPrices = new Map();

  function flash(td, direction) {
    td.animate(
      [{ backgroundColor: direction === "up" ? "rgba(38,166,154,0.45)" : "rgba(239,83,80,0.45)" },
        { backgroundColor: "rgba(0,0,0,0)" }],
      { duration: 600, easing: "ease-out" });
  }

  function renderMarket(market, only) {
    const symbols = Object.keys(market).sort();
    const keys = only ? [...only].filter((s) => s in market) : symbols;
    let added = false;
    for (const symbol of keys) {
      const m = market[symbol];
      added = added || !marketRows.has(symbol);
      const row = rowFor(el.market, marketRows, symbol, 8);
      row.dataset.symbol = symbol;
      row.classList.toggle("selected", chart.symbol === symbol);
      cell(row, 0, symbol, "sym");
      const before = lastPrices.get(symbol);
      const last = m.last_price;
      let direction = null;
      if (typeof before === "number" && typeof last === "number" && last !== before) {
        direction = last > before ? "up" : "down";
      }
      const lastCell = row.cells[1];
      cell(row, 1, F.price(last), `num ${direction || lastCell.dataset.dir || "flat"}`);
      if (direction) {
        lastCell.dataset.dir = direction;
        flash(lastCell, direction);
      }
      lastPrices.set(symbol, last);
      cell(row, 2, F.price(m.bid_price), "num");
      cell(row, 3, F.price(m.ask_price), "num");
      const change = change24h(symbol, m);
      cell(row, 4, F.percent(change), `num ${F.signClass(change)}`);
      cell(row, 5, F.price(m.high_24h), "num hide-narrow");
      cell(row, 6, F.price(m.low_24h), "num hide-narrow");
      cell(row, 7, F.volume(m.volume_24h), "num");
      if (chart.symbol === symbol) chart.tick(m);
    }
    if (!only || keys.length !== only.size) { // a symbol was deleted
      const present = new Set(symbols);
      prune(marketRows, present);
      for (const symbol of lastPrices.keys()) if (!present.has(symbol)) lastPrices.delete(symbol);
    }
    if (!only || added) {
      symbols.forEach((symbol) => el.market.appendChild(marketRows.get(symbol))); // sorted
    }
    el.marketCount.textContent = `${symbols.length}`;
  }

  function change24h(symbol, m) {
    // A producer's own 24 h open wins; else the open of the hourly candle 24 h ago.
    const open = typeof m.open_24h === "number" ? m.open_24h : open24h.get(symbol);
    if (typeof open !== "number" || open === 0 || typeof m.last_price !== "number") return null;
    return m.last_price / open - 1;
  }

  const positionRows = new Map();
  function renderPositions(positions) {
    const symbols = Object.keys(positions).sort();
    for (const symbol of symbols) {
      const p = positions[symbol];
      const row = rowFor(el.positions, positionRows, symbol, 8);
      row.dataset.symbol = symbol;
      cell(row, 0, symbol, "sym");
      cell(row, 1, p.side || "–", `side ${sideClass(p.side)}`);
      cell(row, 2, F.qty(p.quantity), "num");
      cell(row, 3, F.price(p.entry_price), "num");
      cell(row, 4, F.price(p.mark_price), "num");
      cell(row, 5, F.signed(p.unrealized_pnl), `num ${F.signClass(p.unrealized_pnl)}`);
      cell(row, 6, F.signed(p.realized_pnl), `num ${F.signClass(p.realized_pnl)}`);
      cell(row, 7, F.price(p.liquidation_price), "num hide-narrow");
    }
    prune(positionRows, new Set(symbols));
    symbols.forEach((symbol) => el.positions.appendChild(positionRows.get(symbol)));
    el.positionsCount.textContent = `${symbols.length}`;
    el.positionsEmpty.hidden = symbols.length > 0;
  }

  function sideClass(side) {
    if (side === "BUY" || side === "LONG") return "up";
    if (side === "SELL" || side === "SHORT") return "down";
    return "flat";
  }

  const orderRows = new Map();
  function renderOrders(orders) {
    const ids = new Set();
    for (const o of orders) {
      const id = String(o.id);
      ids.add(id);
      const row = rowFor(el.orders, orderRows, id, 8);
      cell(row, 0, F.clock(o.updated_at || o.created_at), "time");
      cell(row, 1, o.symbol, "sym");
      cell(row, 2, o.side, `side ${sideClass(o.side)}`);
      cell(row, 3, o.type || "–", "hide-narrow");
      cell(row, 4, F.price(o.price), "num");
      cell(row, 5, F.qty(o.quantity), "num");
      cell(row, 6, F.qty(o.filled), "num");
      cell(row, 7, o.status, `status status-${String(o.status).toLowerCase()}`);
    }
    prune(orderRows, ids);
    orders.forEach((o) => el.orders.appendChild(orderRows.get(String(o.id)))); // newest first
    const open = orders.filter((o) => o.status === "NEW" || o.status === "PARTIALLY_FILLED");
    el.ordersCount.textContent = `${open.length} open · ${orders.length} shown`;
  }

  const strategyRows = new Map();
  function renderStrategies(strategies) {
    const ids = Object.keys(strategies).sort();
    for (const id of ids) {
      const s = strategies[id];
      const row = rowFor(el.strategies, strategyRows, id, 5);
      cell(row, 0, s.name || id, "name");
      cell(row, 1, s.status, `status status-${String(s.status).toLowerCase()}`);
      cell(row, 2, F.signed(s.pnl), `num ${F.signClass(s.pnl)}`);
      cell(row, 3, F.isNumber(s.trades) ? String(s.trades) : "–", "num");
      cell(row, 4, F.isNumber(s.win_rate) ? `${(s.win_rate * 100).toFixed(1)} %` : "–", "num");
    }
    prune(strategyRows, new Set(ids));
    ids.forEach((id) => el.strategies.appendChild(strategyRows.get(id)));
  }

  const accountFields = [
    ["total_balance", "Total balance", F.money],
    ["available_balance", "Available", F.money],
    ["margin_used", "Margin used", F.money],
    ["margin_ratio", "Margin ratio", null],
    ["unrealized_pnl", "Unrealized PnL", F.signed],
    ["realized_pnl", "Realized PnL", F.signed],
  ];
  function renderAccount(account) {
    const parts = [];
    for (const [key, label, format] of accountFields) {
      let text;
      let cls = "";
      if (key === "margin_ratio") {
        const used = account.margin_used;
        const total = account.total_balance;
        text = F.isNumber(used) && F.isNumber(total) && total > 0
          ? `${((used / total) * 100).toFixed(1)} %` : "–";
      } else {
        text = format(account[key]);
        if (format === F.signed) cls = F.signClass(account[key]);
      }
      parts.push([label, text, cls, key]);
    }
    if (el.account.children.length !== parts.length * 2) {
      el.account.replaceChildren();
      for (const [label, , , key] of parts) {
        const dt = document.createElement("dt");
        dt.textContent = label;
        const dd = document.createElement("dd");
        dd.dataset.field = key;
        el.account.append(dt, dd);
      }
    }
    parts.forEach(([, text, cls], i) => {
      const dd = el.account.children[i * 2 + 1];
      if (dd.textContent !== text) dd.textContent = text;
      dd.className = `num ${cls}`;
    });
    const balances = account.balances && typeof account.balances === "object"
      ? account.balances : {};
    const assets = Object.keys(balances).sort();
    el.balances.replaceChildren(...assets.map((asset) => {
      const row = document.createElement("tr");
      const name = document.createElement("td");
      name.textContent = asset;
      const amount = document.createElement("td");
      amount.className = "num";
      amount.textContent = F.money(balances[asset]);
      row.append(name, amount);
      return row;
    }));
  }

  // --- 24 h change: the open of the hourly candle 24 h ago, from the history API -------------

  let opensLoaded = false;
  async function load24hOpens() {
    opensLoaded = true;
    const symbols = Object.keys((state.data && state.data.market_data) || {});
    const queue = [...symbols];
    const worker = async () => {
      while (queue.length) {
        const symbol = queue.shift();
        const query = new URLSearchParams({
          type: "market_data", symbol, interval: "1h", limit: "25",
          from: new Date(Date.now() - 24 * 3600 * 1000).toISOString(),
        });
        try {
          const response = await fetch(`${config.historyPath}?${query}`, {
            credentials: "same-origin", headers: { Accept: "application/json" },
            signal: requests.signal,
          });
          if (!response.ok) continue;
          const candles = (await response.json()).data || [];
          if (candles.length) open24h.set(symbol, candles[candles.length - 1].open);
        } catch (error) {
          if (requests.signal.aborted) return;
          // otherwise history is unavailable: the column shows "–"
        }
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]); // four requests at a time
    if (open24h.size) schedule(new Map([["market_data", null]]));
  }
  setInterval(() => {
    open24h.clear();
    if (state.data) load24hOpens();
  }, CHANGE_24H_REFRESH_MS);

  // --- user input ------------------------------------------------------------------------------

  el.market.addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-symbol]");
    if (!row) return;
    const symbol = row.dataset.symbol;
    const record = state.data && state.data.market_data && state.data.market_data[symbol];
    chart.select(symbol, record ? record.last_price : undefined);
    for (const [key, r] of marketRows) r.classList.toggle("selected", key === symbol);
    if (record) chart.tick(record);
  });

  el.format.value = wsFormat();
  el.format.addEventListener("change", () => {
    window.localStorage.setItem(FORMAT_KEY, el.format.value === "msgpack" ? "msgpack" : "json");
    reconnectNow();
  });
  el.reconnect.addEventListener("click", reconnectNow);
  el.noticeDismiss.addEventListener("click", () => { el.notice.hidden = true; });
  document.getElementById("logout-form").addEventListener("submit", () => requests.abort());

  connect();
})();
