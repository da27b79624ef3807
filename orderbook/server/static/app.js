/*
 * orderbook page: one coin's live book, depth and trades from this server's
 * WebSocket (the Hyperliquid-compatible JSON API), and the feed's health.
 *
 * Also the reference browser client: it subscribes to allMids (the coin
 * universe), status (the health document), l2Book with nLevels and trades,
 * resubscribes after every reconnect (exponential backoff with jitter) and
 * pings every 30 s. Prices and sizes are shown exactly as received; totals,
 * spread and mid are exact decimal arithmetic on BigInt. Numbers are parsed
 * to floats only for bar widths and the depth chart.
 *
 * Elements carry data-test attributes; the ladder carries data-height,
 * data-coin and data-agg of the l2Book message it shows.
 *
 * The header's Height and Lag follow the newest block the page has heard of
 * (every l2Book message carries its height and block time; the status
 * document only comes on a state change). Lag is the server's wall clock
 * minus that block's time when it arrived: the server's clock is estimated
 * from the status document (block_time + lag_ms), so a browser clock that
 * is off does not show up as lag.
 */
(function () {
  "use strict";

  const LEVELS = 20;
  const MAX_TRADES = 60;
  const MAX_ERRORS = 4;
  const PING_INTERVAL_MS = 30000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 30000;
  const DEFAULT_COIN = "BTC";

  const $ = (id) => document.getElementById(id);
  const el = {
    coin: $("coin"), agg: $("agg"), bars: $("bars"),
    status: $("status"), stSocket: $("st-socket"), stState: $("st-state"),
    stHeight: $("st-height"), stLag: $("st-lag"),
    banner: $("banner"), errors: $("errors"),
    ladder: $("ladder"), asks: $("asks"), bids: $("bids"), bookCoin: $("book-coin"),
    mid: $("mid"), spread: $("spread"), spreadBps: $("spread-bps"),
    depth: $("depth"), trades: $("trades"),
  };

  const state = {
    coin: null,          // selected coin, null until the universe is known
    agg: "full",         // value of the aggregation select
    bars: "cumulative",  // "cumulative" | "level"
    coinsKey: "",        // the universe as one string, to rebuild the select only on change
    book: null,          // {coin, height, time, bids, asks} of the l2Book message shown
    trades: [],          // newest first
    status: null,        // the last health document
    live: null,          // {height, lagMs} of the newest block heard of (l2Book or status)
    clockOffset: 0,      // browser clock minus the server's (ms), from the status document
    socket: "connecting",  // "connecting" | "open" | "closed"
    socketDetail: "",      // why it closed, for the banner
    retryAt: 0,          // when the next connection attempt starts (ms epoch)
    attempt: 0,          // failed attempts since the last good connection
  };

  // ---------------------------------------------------------------- decimals

  /** Digits after the point of a decimal string. */
  function scaleOf(text) {
    const dot = text.indexOf(".");
    return dot < 0 ? 0 : text.length - dot - 1;
  }

  /** A decimal string as a BigInt of units of 10^-scale (scale >= its own). */
  function toScaled(text, scale) {
    const negative = text.startsWith("-");
    const body = negative ? text.slice(1) : text;
    const [whole, frac = ""] = body.split(".");
    const value = BigInt((whole || "0") + frac.padEnd(scale, "0"));
    return negative ? -value : value;
  }

  /** BigInt units of 10^-scale as the canonical string: one decimal at least, no trailing zeros. */
  function fromScaled(value, scale) {
    const negative = value < 0n;
    let digits = (negative ? -value : value).toString().padStart(scale + 1, "0");
    let whole = digits.slice(0, digits.length - scale);
    let frac = digits.slice(digits.length - scale).replace(/0+$/, "");
    return (negative ? "-" : "") + whole + "." + (frac || "0");
  }

  /** Running exact sums of the sizes of levels, as strings. */
  function cumulative(levels) {
    const scale = levels.reduce((s, level) => Math.max(s, scaleOf(level.sz)), 0);
    let sum = 0n;
    return levels.map((level) => {
      sum += toScaled(level.sz, scale);
      return fromScaled(sum, scale);
    });
  }

  function decSub(a, b) {
    const scale = Math.max(scaleOf(a), scaleOf(b));
    return fromScaled(toScaled(a, scale) - toScaled(b, scale), scale);
  }

  function decMid(a, b) {
    const scale = Math.max(scaleOf(a), scaleOf(b)) + 1;
    return fromScaled((toScaled(a, scale) + toScaled(b, scale)) / 2n, scale);
  }

  // ------------------------------------------------------------- the socket

  let ws = null;
  let pingTimer = null;
  let reconnectTimer = null;
  let subs = { l2: null, trades: null };
  let l2Pending = null;  // key of the l2Book subscription being replaced, until acknowledged
  let pending = [];      // (un)subscribe requests awaiting their answer, oldest first

  /** Same origin; wss under https. ?ws=/path or <meta name="ws-path"> override the path;
   *  the page's ?token= (access control) is passed on to the WebSocket. */
  function socketUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const meta = document.querySelector('meta[name="ws-path"]');
    const query = new URLSearchParams(location.search);
    const path = query.get("ws") || (meta && meta.content) || "/ws";
    const token = query.get("token");
    return scheme + "//" + location.host + path +
      (token ? "?token=" + encodeURIComponent(token) : "");
  }

  /** Subscription objects compare by content, whatever order the server echoes keys in. */
  function subKey(sub) {
    if (!sub) return "";
    return JSON.stringify(Object.keys(sub).sort().map((k) => [k, sub[k]]));
  }

  function send(message) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(message));
    return true;
  }

  /** The server answers each (un)subscribe in order, with its echo or one error. */
  function request(method, sub) {
    if (send({ method: method, subscription: sub })) pending.push({ method: method, sub: sub });
  }

  function subscribe(sub) { request("subscribe", sub); }
  function unsubscribe(sub) { request("unsubscribe", sub); }

  function connect() {
    reconnectTimer = null;
    setSocket("connecting");
    let sock;
    try {
      sock = new WebSocket(socketUrl());
    } catch (err) {
      showError("cannot open WebSocket: " + err.message);
      scheduleReconnect();
      return;
    }
    ws = sock;
    sock.onopen = () => onOpen(sock);
    sock.onmessage = (event) => onMessage(sock, event.data);
    sock.onclose = (event) => onClose(sock, event);
  }

  function onOpen(sock) {
    if (sock !== ws) return;
    state.live = null;  // perhaps another server: forget its heights
    setSocket("open");
    l2Pending = null;
    pending = [];
    subscribe({ type: "allMids" });
    subscribe({ type: "status" });
    if (state.coin) subscribeCoin();
    pingTimer = setInterval(() => send({ method: "ping" }), PING_INTERVAL_MS);
  }

  function onClose(sock, event) {
    if (sock !== ws) return;
    ws = null;
    clearInterval(pingTimer);
    subs = { l2: null, trades: null };
    const why = event.code === 1000 || event.code === 1001 ? "" :
      " (code " + event.code + (event.reason ? ": " + event.reason : "") + ")";
    setSocket("closed", why);
    scheduleReconnect();
  }

  function scheduleReconnect() {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** state.attempt);
    const delay = ceiling / 2 + Math.random() * ceiling / 2;
    state.attempt += 1;
    state.retryAt = Date.now() + delay;
    reconnectTimer = setTimeout(connect, delay);
    renderStatus();
  }

  function setSocket(value, detail) {
    state.socket = value;
    state.socketDetail = detail || "";
    renderStatus();
  }

  // ------------------------------------------------------- subscriptions

  function aggParams(agg) {
    const match = /^(\d)(?:m(\d))?$/.exec(agg);
    if (!match) return {};
    const params = { nSigFigs: Number(match[1]) };
    if (match[2]) params.mantissa = Number(match[2]);
    return params;
  }

  function l2Subscription() {
    return Object.assign({ type: "l2Book", coin: state.coin }, aggParams(state.agg),
      { nLevels: LEVELS });
  }

  /** (Re)subscribe l2Book and trades for the selected coin, dropping the previous ones. */
  function subscribeCoin() {
    const nextL2 = l2Subscription();
    if (subs.l2) {
      unsubscribe(subs.l2);
      l2Pending = subKey(subs.l2);
    }
    subs.l2 = nextL2;
    subscribe(nextL2);
    if (!subs.trades || subs.trades.coin !== state.coin) {
      if (subs.trades) unsubscribe(subs.trades);
      subs.trades = { type: "trades", coin: state.coin };
      subscribe(subs.trades);
    }
  }

  function onAck(data) {
    pending.shift();
    if (!data || !l2Pending) return;
    const key = subKey(data.subscription);
    // Everything of the old view was sent before its unsubscribe echo.
    if ((data.method === "unsubscribe" && key === l2Pending) ||
        (data.method === "subscribe" && key === subKey(subs.l2))) {
      l2Pending = null;
    }
  }

  // ------------------------------------------------------------ messages

  function onMessage(sock, text) {
    if (sock !== ws) return;
    state.attempt = 0;
    let message;
    try {
      message = JSON.parse(text);
    } catch (err) {
      showError("unreadable message from the server");
      return;
    }
    const data = message.data;
    switch (message.channel) {
      case "l2Book": onBook(data); break;
      case "trades": onTrades(data); break;
      case "allMids": onMids(data && data.mids); break;
      case "status": onStatus(data); break;
      case "subscriptionResponse": onAck(data); break;
      case "error": onError(String(data)); break;
      default: break;  // pong, and channels of other clients' extensions
    }
  }

  /** Show the error; a refused subscription is forgotten so it is never unsubscribed. */
  function onError(text) {
    const req = pending.shift();
    if (req && req.method === "subscribe") {
      if (req.sub === subs.l2) {
        subs.l2 = null;
        l2Pending = null;
      } else if (req.sub === subs.trades) {
        subs.trades = null;
      }
    }
    const about = req ? req.method + " " + [req.sub.type, req.sub.coin].filter(Boolean).join(" ") + ": " : "";
    showError(about + text);
  }

  function onBook(data) {
    if (data) noteBlock(data.height, data.time);
    if (!data || data.coin !== state.coin || l2Pending) return;
    const levels = data.levels || [[], []];
    state.book = {
      coin: data.coin, height: data.height, time: data.time,
      bids: levels[0] || [], asks: levels[1] || [],
    };
    scheduleRender();
  }

  function onTrades(list) {
    if (!Array.isArray(list)) return;
    const mine = list.filter((trade) => trade.coin === state.coin);
    if (!mine.length) return;
    mine.forEach((trade) => { trade.fresh = true; });
    state.trades = mine.reverse().concat(state.trades).slice(0, MAX_TRADES);
    scheduleRender();
  }

  function onMids(mids) {
    if (!mids) return;
    const coins = Object.keys(mids).sort(coinOrder);
    const key = coins.join("\n");
    if (key !== state.coinsKey) {
      state.coinsKey = key;
      fillCoins(coins);
    }
    if (!state.coin && coins.length) {
      const wanted = readHash().coin;
      const coin = coins.includes(wanted) ? wanted :
        coins.includes(DEFAULT_COIN) ? DEFAULT_COIN : coins[0];
      selectCoin(coin);
    }
    if (state.coin && mids[state.coin]) {
      document.title = mids[state.coin] + " " + state.coin + " · orderbook";
    }
  }

  function onStatus(doc) {
    if (!doc || typeof doc !== "object") return;
    state.status = doc;
    if (doc.block_time != null && doc.lag_ms != null) {
      state.clockOffset = Date.now() - (doc.block_time + doc.lag_ms);
    }
    if (doc.height == null) {
      state.live = null;  // not synced: no height to show
    } else if (!state.live || doc.height >= state.live.height) {
      state.live = { height: doc.height, lagMs: doc.lag_ms };
    }
    renderStatus();
  }

  /** A message of block `height` (block time `time`, ms) arrived: the header follows it. */
  function noteBlock(height, time) {
    if (height == null || (state.live && height <= state.live.height)) return;
    const lagMs = time != null ? Math.max(0, Date.now() - state.clockOffset - time) : null;
    state.live = { height: height, lagMs: lagMs };
    renderStatus();
  }

  function showError(text) {
    const item = document.createElement("li");
    item.dataset.test = "error";
    const when = new Date().toLocaleTimeString([], { hour12: false });
    item.textContent = when + "  " + text;
    el.errors.prepend(item);
    while (el.errors.children.length > MAX_ERRORS) el.errors.lastChild.remove();
    el.errors.hidden = false;
  }

  // ----------------------------------------------------- coins and controls

  const COIN_GROUPS = ["Perps", "HIP-3", "Spot", "Outcomes"];

  /** Perps, then HIP-3 dex coins, spot pairs and outcomes; alphabetical or numeric inside. */
  function coinGroup(coin) {
    if (coin.startsWith("#")) return 3;
    if (coin.startsWith("@") || coin.includes("/")) return 2;
    return coin.includes(":") ? 1 : 0;
  }

  function coinOrder(a, b) {
    return coinGroup(a) - coinGroup(b) ||
      a.localeCompare(b, "en", { numeric: true, sensitivity: "base" });
  }

  function fillCoins(coins) {
    const groups = COIN_GROUPS.map((label) => {
      const group = document.createElement("optgroup");
      group.label = label;
      return group;
    });
    coins.forEach((coin) => {
      const option = document.createElement("option");
      option.value = option.textContent = coin;
      groups[coinGroup(coin)].append(option);
    });
    el.coin.replaceChildren(...groups.filter((group) => group.children.length));
    el.coin.disabled = false;
    if (state.coin) el.coin.value = state.coin;
  }

  function selectCoin(coin) {
    if (coin === state.coin) return;
    state.coin = coin;
    el.coin.value = coin;
    state.book = null;
    state.trades = [];
    el.trades.replaceChildren();
    writeHash();
    subscribeCoin();
    scheduleRender();
  }

  function selectAgg(agg) {
    if (agg === state.agg) return;
    state.agg = agg;
    state.book = null;
    writeHash();
    if (state.coin) subscribeCoin();
    scheduleRender();
  }

  function readHash() {
    return Object.fromEntries(new URLSearchParams(location.hash.slice(1)));
  }

  function writeHash() {
    const params = new URLSearchParams({ coin: state.coin || "", agg: state.agg, bars: state.bars });
    history.replaceState(null, "", "#" + params.toString());
  }

  function initControls() {
    const saved = readHash();
    if ([...el.agg.options].some((option) => option.value === saved.agg)) state.agg = saved.agg;
    if (saved.bars === "level") state.bars = "level";
    el.agg.value = state.agg;
    el.bars.value = state.bars;
    el.coin.addEventListener("change", () => selectCoin(el.coin.value));
    el.agg.addEventListener("change", () => selectAgg(el.agg.value));
    el.bars.addEventListener("change", () => {
      state.bars = el.bars.value;
      writeHash();
      scheduleRender();
    });
  }

  // ------------------------------------------------------------- rendering

  let renderQueued = false;

  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      renderBook();
      renderDepth();
      renderTrades();
    });
  }

  /** Keep exactly `count` rows of `cells` cells in a tbody; return them. */
  function rows(body, count, cells) {
    while (body.children.length < count) {
      const row = document.createElement("tr");
      for (let i = 0; i < cells; i += 1) row.append(document.createElement("td"));
      body.append(row);
    }
    while (body.children.length > count) body.lastChild.remove();
    return [...body.children];
  }

  function renderSide(body, levels, totals, scaleMax, side) {
    const shown = rows(body, levels.length, 4);
    // Asks are listed worst first so that the best ask sits next to the spread.
    const order = side === "ask" ? levels.map((_, i) => levels.length - 1 - i) : levels.map((_, i) => i);
    order.forEach((index, position) => {
      const level = levels[index];
      const row = shown[position];
      const basis = state.bars === "cumulative" ? totals[index] : level.sz;
      const width = scaleMax > 0 ? Math.min(100, (100 * Number(basis)) / scaleMax) : 0;
      row.dataset.test = side + "-row";
      row.dataset.index = index;
      row.dataset.px = level.px;
      row.dataset.sz = level.sz;
      row.dataset.n = level.n;
      row.style.setProperty("--w", width.toFixed(2) + "%");
      const cells = row.children;
      cells[0].textContent = level.px;
      cells[1].textContent = level.sz;
      cells[2].textContent = totals[index];
      cells[3].textContent = level.n;
    });
  }

  function renderBook() {
    const book = state.book;
    const bids = book ? book.bids : [];
    const asks = book ? book.asks : [];
    const bidTotals = cumulative(bids);
    const askTotals = cumulative(asks);
    const scaleMax = state.bars === "cumulative"
      ? Math.max(Number(bidTotals[bidTotals.length - 1] || 0), Number(askTotals[askTotals.length - 1] || 0))
      : Math.max(0, ...bids.map((l) => Number(l.sz)), ...asks.map((l) => Number(l.sz)));
    renderSide(el.asks, asks, askTotals, scaleMax, "ask");
    renderSide(el.bids, bids, bidTotals, scaleMax, "bid");
    el.ladder.dataset.height = book && book.height != null ? book.height : "";
    el.ladder.dataset.coin = book ? book.coin : "";
    el.ladder.dataset.agg = book ? state.agg : "";
    el.ladder.dataset.bars = state.bars;
    el.ladder.classList.toggle("empty", !book);
    el.bookCoin.textContent = state.coin || "";
    if (bids.length && asks.length) {
      const spread = decSub(asks[0].px, bids[0].px);
      const mid = decMid(asks[0].px, bids[0].px);
      el.mid.textContent = mid;
      el.spread.textContent = spread;
      el.spreadBps.textContent = ((1e4 * Number(spread)) / Number(mid)).toFixed(2) + " bps";
    } else {
      el.mid.textContent = el.spread.textContent = "–";
      el.spreadBps.textContent = "";
    }
  }

  function formatTime(ms) {
    const date = new Date(ms);
    const pad = (n, w) => String(n).padStart(w || 2, "0");
    return pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds()) +
      "." + pad(date.getMilliseconds(), 3);
  }

  /** New trades are inserted on top (and flash once); older rows stay as they are. */
  function renderTrades() {
    const fresh = state.trades.filter((trade) => trade.fresh);
    const rowsNew = fresh.map((trade) => {
      trade.fresh = false;
      const buy = trade.side === "B";
      const row = document.createElement("tr");
      row.dataset.test = "trade-row";
      row.dataset.side = trade.side;
      row.dataset.tid = trade.tid;
      row.className = (buy ? "buy" : "sell") + " fresh";
      row.title = "taker " + (buy ? "bought" : "sold");
      [formatTime(trade.time), trade.px, trade.sz].forEach((text) => {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.append(cell);
      });
      row.addEventListener("animationend", () => row.classList.remove("fresh"));
      return row;
    });
    el.trades.prepend(...rowsNew);
    while (el.trades.children.length > state.trades.length) el.trades.lastChild.remove();
  }

  function renderStatus() {
    const doc = state.status || {};
    const feedState = state.socket === "open" ? (doc.state || "unknown") : "unknown";
    el.status.dataset.state = state.socket === "open" ? feedState : state.socket;
    const live = state.live;
    el.status.dataset.height = live ? live.height : "";
    el.stSocket.textContent = state.socket;
    el.stSocket.className = "s-" + state.socket;
    el.stState.textContent = doc.state || "–";
    el.stState.className = "s-" + (doc.state || "none");
    el.stHeight.textContent = live ? live.height : "–";
    el.stLag.textContent = live && live.lagMs != null ? formatLag(live.lagMs) : "–";
    renderBanner(feedState);
  }

  function formatLag(ms) {
    return ms < 10000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(1) + " s";
  }

  function renderBanner(feedState) {
    let kind = "";
    let text = "";
    if (state.socket !== "open") {
      kind = "disconnected";
      if (state.socket === "connecting") {
        text = state.attempt ? "Reconnecting to the server (attempt " + (state.attempt + 1) + ")…"
          : "Connecting to the server…";
      } else {
        const seconds = Math.max(0, (state.retryAt - Date.now()) / 1000).toFixed(1);
        text = "Connection to the server lost" + state.socketDetail +
          ". Reconnecting in " + seconds + " s; the data shown is frozen.";
      }
    } else if (feedState === "stale") {
      kind = "stale";
      const lag = state.status && state.status.lag_ms != null ? " for " + formatLag(state.status.lag_ms) : "";
      text = "Feed is stale: no new block from the node" + lag + ". The book shown may be outdated.";
    } else if (feedState === "resyncing") {
      kind = "resyncing";
      text = "Feed is resynchronising its book with the node; updates resume when it is done.";
    } else if (feedState === "initializing") {
      kind = "initializing";
      text = "Server is loading the order book snapshot…";
    }
    el.banner.hidden = !kind;
    el.banner.dataset.kind = kind;
    el.banner.textContent = text;
  }

  // ----------------------------------------------------------- depth chart

  const COLORS = {
    bid: "#26a269", bidFill: "rgba(38, 162, 105, 0.22)",
    ask: "#e5484d", askFill: "rgba(229, 72, 77, 0.22)",
    grid: "#232a33", text: "#8b96a5", mid: "#5b6675",
  };

  /** Step curve points [x, y] from the best level outwards, in float for drawing only. */
  function depthSteps(levels, totals) {
    const points = [];
    levels.forEach((level, i) => {
      const px = Number(level.px);
      points.push([px, i ? Number(totals[i - 1]) : 0], [px, Number(totals[i])]);
    });
    return points;
  }

  function renderDepth() {
    const canvas = el.depth;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const book = state.book;
    if (!book || !book.bids.length || !book.asks.length) {
      ctx.fillStyle = COLORS.text;
      ctx.font = "12px system-ui, sans-serif";
      ctx.textAlign = "center";
      ctx.fillText(state.coin ? "waiting for the book…" : "", width / 2, height / 2);
      return;
    }
    drawDepth(ctx, width, height, book);
  }

  function drawDepth(ctx, width, height, book) {
    const bidTotals = cumulative(book.bids);
    const askTotals = cumulative(book.asks);
    const bids = depthSteps(book.bids, bidTotals);
    const asks = depthSteps(book.asks, askTotals);
    const mid = (Number(book.bids[0].px) + Number(book.asks[0].px)) / 2;
    const half = Math.max(mid - bids[bids.length - 1][0], asks[asks.length - 1][0] - mid) || 1;
    const yMaxText = Number(bidTotals[bidTotals.length - 1]) > Number(askTotals[askTotals.length - 1])
      ? bidTotals[bidTotals.length - 1] : askTotals[askTotals.length - 1];
    const yMax = Number(yMaxText) * 1.08 || 1;
    const pad = { left: 8, right: 8, top: 22, bottom: 22 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const x = (px) => pad.left + ((px - (mid - half)) / (2 * half)) * plotW;
    const y = (sz) => pad.top + plotH - (sz / yMax) * plotH;

    ctx.strokeStyle = COLORS.grid;
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i += 1) {
      const gy = Math.round(pad.top + (plotH * i) / 4) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.left, gy);
      ctx.lineTo(width - pad.right, gy);
      ctx.stroke();
    }
    drawSide(ctx, bids, x, y, pad.left, pad.top + plotH, COLORS.bid, COLORS.bidFill);
    drawSide(ctx, asks, x, y, width - pad.right, pad.top + plotH, COLORS.ask, COLORS.askFill);

    ctx.strokeStyle = COLORS.mid;
    ctx.setLineDash([3, 3]);
    ctx.beginPath();
    ctx.moveTo(Math.round(x(mid)) + 0.5, pad.top);
    ctx.lineTo(Math.round(x(mid)) + 0.5, pad.top + plotH);
    ctx.stroke();
    ctx.setLineDash([]);

    ctx.fillStyle = COLORS.text;
    ctx.font = "11px ui-monospace, Menlo, Consolas, 'DejaVu Sans Mono', monospace";
    ctx.textBaseline = "alphabetic";
    const base = height - 6;
    ctx.textAlign = "left";
    ctx.fillText(book.bids[book.bids.length - 1].px, pad.left, base);
    ctx.textAlign = "right";
    ctx.fillText(book.asks[book.asks.length - 1].px, width - pad.right, base);
    ctx.textAlign = "center";
    ctx.fillText(decMid(book.asks[0].px, book.bids[0].px), x(mid), base);
    ctx.textAlign = "left";
    ctx.fillText("Σ " + yMaxText + " " + book.coin, pad.left, 14);
  }

  function drawSide(ctx, points, x, y, edgeX, baseY, stroke, fill) {
    const last = points[points.length - 1];
    ctx.beginPath();
    ctx.moveTo(x(points[0][0]), baseY);
    points.forEach(([px, sz]) => ctx.lineTo(x(px), y(sz)));
    ctx.lineTo(edgeX, y(last[1]));
    ctx.lineTo(edgeX, baseY);
    ctx.closePath();
    ctx.fillStyle = fill;
    ctx.fill();
    ctx.beginPath();
    ctx.moveTo(x(points[0][0]), baseY);
    points.forEach(([px, sz]) => ctx.lineTo(x(px), y(sz)));
    ctx.lineTo(edgeX, y(last[1]));
    ctx.strokeStyle = stroke;
    ctx.lineWidth = 1.5;
    ctx.stroke();
  }

  // ----------------------------------------------------------------- start

  initControls();
  renderStatus();
  scheduleRender();
  new ResizeObserver(() => renderDepth()).observe(el.depth);
  // The banner's countdown, while disconnected.
  setInterval(() => { if (state.socket === "closed") renderStatus(); }, 250);
  // Back online: retry now rather than at the end of a long backoff.
  window.addEventListener("online", () => {
    if (state.socket !== "closed") return;
    clearTimeout(reconnectTimer);
    connect();
  });
  window.addEventListener("hashchange", () => {
    const wanted = readHash();
    if (wanted.coin && wanted.coin !== state.coin && state.coinsKey.split("\n").includes(wanted.coin)) {
      selectCoin(wanted.coin);
    }
    if (wanted.agg && wanted.agg !== state.agg && [...el.agg.options].some((o) => o.value === wanted.agg)) {
      el.agg.value = wanted.agg;
      selectAgg(wanted.agg);
    }
  });
  connect();
})();
