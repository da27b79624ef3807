// An Autobahn|JS (npm `autobahn`) client for tests/e2e/test_wamp_e2e.py (not shipped).
//
//   node --experimental-websocket wamp_e2e_client.mjs URL REALM COIN L4COIN...
//
// Joins, subscribes to orderbook.l2book/trades/bbo.<COIN> and orderbook.l4book.<L4COIN>
// for each L4COIN, THEN calls orderbook.l4book.snapshot for each L4COIN and every other
// procedure. It keeps an L4 book per L4COIN as docs/client-api.rst ("Keeping an L4 book") says: updates
// at or below the snapshot height are dropped, the rest applied in height order; an event
// with kwargs {"part": "Snapshot"} replaces the book. Updates are HELD, not applied, until
// the test asks for a height, so that every book stops at exactly that height.
//
// stdout, one JSON object per line:
//   {"ready": {"snapshots": {coin: height}, "calls": {...}}}   joined, subscribed, called
//   {"first": {"topic", "args", "kwargs"}}                      first event of each topic
//   {"at": H, "books": {coin: levels}, "l2": data|null, "counts": {topic: n}}
//                    answer to the stdin line {"at": H}: every book at height H exactly;
//                    l2 is COIN's l2book view at H (its latest event at or below H)
//   {"ahead": {coin: height}, "at": H}   a book was already past H (ask again, higher)
//   {"resync": {"coin", "height"}}         the server resynchronised: a Snapshot event
// stdin: {"at": H} lines; end of stdin closes the session and exits 0.
// Failures (gap in heights, WAMP error, connect deadline of 20 s, overall deadline of
// 120 s) exit 1 with the reason on stderr.
import autobahn from 'autobahn';
import readline from 'node:readline';

const [url, realm, coin, ...l4coins] = process.argv.slice(2);
const out = (value) => process.stdout.write(JSON.stringify(value) + '\n');
const fail = (why) => { process.stderr.write(`wamp_e2e_client: ${why}\n`); process.exit(1); };
const enc = (name) => name.replace(/[^A-Za-z0-9_-]/g, (c) => [...new TextEncoder().encode(c)]
  .map((b) => '%' + b.toString(16).toUpperCase().padStart(2, '0')).join(''));

const connectDeadline = setTimeout(() => fail('not joined within 20 s'), 20000);
setTimeout(() => fail('overall deadline of 120 s passed'), 120000).unref();

// -- the L4 book ------------------------------------------------------------------------

const L4_FIELDS = ['user', 'coin', 'side', 'limitPx', 'sz', 'oid', 'timestamp', 'triggerCondition',
  'isTrigger', 'triggerPx', 'isPositionTpsl', 'reduceOnly', 'orderType', 'tif', 'cloid'];

// Exact decimal string -> BigInt in 1e-12 units, for sorting prices without floats.
const units = (text) => {
  const negative = text.startsWith('-');
  const [whole, frac = ''] = (negative ? text.slice(1) : text).split('.');
  const value = BigInt(whole + frac.padEnd(12, '0'));
  return negative ? -value : value;
};

// Naive UTC ISO-8601 with up to 9 fractional digits -> epoch milliseconds.
const isoMs = (text) => {
  const [whole, frac = ''] = text.split('.');
  return Date.parse(whole + 'Z') + Number((frac + '000').slice(0, 3));
};

class L4Book {
  constructor(snapshot) {
    this.coin = snapshot.coin;
    this.height = snapshot.height;
    this.orders = new Map();
    this.queue = [];
    for (const side of snapshot.levels) {
      for (const order of side) {
        this.orders.set(order.oid, { ...order });
        this.queue.push(order.oid);
      }
    }
  }

  apply(updates) {
    if (updates.height !== this.height + 1) {
      fail(`${this.coin}: height gap ${this.height} -> ${updates.height}`);
    }
    this.height = updates.height;
    const statuses = new Map(updates.order_statuses.map((s) => [s.order.oid, s]));
    for (const diff of updates.book_diffs) this.applyDiff(diff, statuses, updates.time);
  }

  applyDiff(diff, statuses, timeMs) {
    const { oid } = diff;
    const raw = diff.raw_book_diff;
    if (raw === 'remove') {
      if (!this.orders.delete(oid)) fail(`${this.coin}: remove of unknown oid ${oid}`);
      this.queue.splice(this.queue.indexOf(oid), 1);
    } else if (raw.update) {
      const order = this.orders.get(oid);
      if (!order) fail(`${this.coin}: update of unknown oid ${oid}`);
      order.sz = raw.update.newSz;
    } else {
      this.orders.set(oid, this.newOrder(diff, statuses.get(oid), timeMs));
      const before = raw.new.insertBefore;
      if (before === undefined || before === null) this.queue.push(oid);
      else this.queue.splice(this.queue.indexOf(before), 0, oid);
    }
  }

  newOrder(diff, status, timeMs) {
    let order;
    if (status === undefined) {
      order = { coin: diff.coin, side: diff.side, timestamp: timeMs, triggerCondition: 'N/A',
        isTrigger: false, triggerPx: '0.0', isPositionTpsl: false, reduceOnly: false,
        orderType: 'Limit', tif: 'Alo', cloid: null };
    } else {
      order = Object.fromEntries(L4_FIELDS.filter((k) => k in status.order).map((k) => [k, status.order[k]]));
      if (status.status === 'triggered') {
        Object.assign(order, { timestamp: isoMs(status.time), tif: 'Gtc',
          triggerCondition: 'Triggered', isTrigger: false, triggerPx: '0.0' });
      }
    }
    return Object.assign(order, { user: diff.user, oid: diff.oid, limitPx: diff.px,
      sz: diff.raw_book_diff.new.sz });
  }

  levels() {
    const bySide = (side) => this.queue.map((oid) => this.orders.get(oid)).filter((o) => o.side === side);
    const bids = bySide('B');
    const asks = bySide('A');
    const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
    bids.sort((a, b) => cmp(units(b.limitPx), units(a.limitPx))); // stable: queue order kept
    asks.sort((a, b) => cmp(units(a.limitPx), units(b.limitPx)));
    return [bids, asks];
  }
}

// -- state --------------------------------------------------------------------------------

const books = new Map(); // coin -> L4Book (after the snapshot call)
const pending = new Map(l4coins.map((c) => [c, []])); // coin -> held updates, ascending
const l2ByHeight = new Map(); // height -> l2book data of COIN (recent ones)
const counts = {};
const requests = []; // heights asked for on stdin, answered in order

function onL4Event(l4coin, args, kwargs) {
  const data = args[0];
  if (kwargs && kwargs.part === 'Snapshot') {
    if (data.coin !== l4coin) fail(`l4book.${l4coin} Snapshot for coin ${data.coin}`);
    books.set(l4coin, new L4Book(data));
    pending.set(l4coin, pending.get(l4coin).filter((u) => u.height > data.height));
    out({ resync: { coin: l4coin, height: data.height } });
  } else {
    if (data.coin !== l4coin) fail(`l4book.${l4coin} event for coin ${data.coin}`);
    pending.get(l4coin).push(data);
  }
  answer();
}

function onL2Event(data) {
  l2ByHeight.set(data.height, data);
  for (const height of l2ByHeight.keys()) {
    if (l2ByHeight.size <= 400) break;
    l2ByHeight.delete(height);
  }
}

// Apply held updates of every book up to `height`; true once all books are exactly there.
function advance(height) {
  for (const [l4coin, book] of books) {
    const queue = pending.get(l4coin);
    while (queue.length && queue[0].height <= height) {
      const update = queue.shift();
      if (update.height > book.height) book.apply(update);
    }
  }
  return l4coins.every((c) => books.has(c) && books.get(c).height === height);
}

// The l2book view of COIN at `height`: its latest event at or below it (events come on change).
function latestL2(height) {
  const heights = [...l2ByHeight.keys()].filter((h) => h <= height);
  return heights.length ? l2ByHeight.get(Math.max(...heights)) : null;
}

function answer() {
  while (requests.length && books.size === l4coins.length) {
    const height = requests[0];
    const ahead = Object.fromEntries([...books].filter(([, b]) => b.height > height).map(([c, b]) => [c, b.height]));
    if (Object.keys(ahead).length) {
      out({ ahead, at: height });
    } else if (advance(height)) {
      const levels = Object.fromEntries([...books].map(([c, b]) => [c, b.levels()]));
      out({ at: height, books: levels, l2: latestL2(height), counts });
    } else {
      return; // wait for more updates
    }
    requests.shift();
  }
}

// -- the session ----------------------------------------------------------------------------

const connection = new autobahn.Connection({ url, realm, max_retries: 0 });
let closing = false;
connection.onclose = (reason, details) => {
  if (!closing) fail(`connection closed: ${reason} ${JSON.stringify(details)}`);
  return true;
};

connection.onopen = async (session) => {
  clearTimeout(connectDeadline);
  try {
    const first = new Set();
    const subscribe = (topic, handler, options) => session.subscribe(topic, (args, kwargs) => {
      counts[topic] = (counts[topic] || 0) + 1;
      if (!first.has(topic)) {
        first.add(topic);
        out({ first: { topic, args, kwargs: kwargs || {} } });
      }
      handler(args, kwargs || {});
    }, options);
    // get_retained: the current view at once, so the l2 cross-check always has one
    await subscribe(`orderbook.l2book.${enc(coin)}`, (args) => onL2Event(args[0]), { get_retained: true });
    await subscribe(`orderbook.trades.${enc(coin)}`, () => {});
    await subscribe(`orderbook.bbo.${enc(coin)}`, () => {});
    for (const l4coin of l4coins) {
      await subscribe(`orderbook.l4book.${enc(l4coin)}`, (args, kwargs) => onL4Event(l4coin, args, kwargs));
    }
    const snapshots = {};
    for (const l4coin of l4coins) {
      const snapshot = await session.call('orderbook.l4book.snapshot', [l4coin]);
      books.set(l4coin, new L4Book(snapshot));
      snapshots[l4coin] = snapshot.height;
    }
    const calls = {
      coins: await session.call('orderbook.coins'),
      status: await session.call('orderbook.status'),
      l2: await session.call('orderbook.l2book.get', [coin]),
      l2kw: await session.call('orderbook.l2book.get', [], { coin, nSigFigs: 3, nLevels: 5 }),
      bbo: await session.call('orderbook.bbo.get', [coin]),
    };
    try { await session.call('orderbook.l2book.get', ['NO-SUCH-COIN']); } catch (e) { calls.badCoin = e.error; }
    out({ ready: { snapshots, calls } });
    answer();
  } catch (e) {
    fail(`error: ${e && (e.error || e.message || e)} ${JSON.stringify(e && e.args)}`);
  }
};

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (!line.trim()) return;
  requests.push(JSON.parse(line).at);
  answer();
}).on('close', () => {
  closing = true;
  connection.close();
  setTimeout(() => process.exit(0), 50);
});

connection.open();
