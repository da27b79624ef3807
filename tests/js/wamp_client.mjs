// An Autobahn|JS (npm `autobahn`) client for the WAMP tests (not shipped).
//
//   node --experimental-websocket wamp_client.mjs URL REALM COIN L4COIN EVENTS [direct|router]
//
// Joins, subscribes to the l2book, trades, bbo and l4book topics of COIN /
// L4COIN, prints {"subscribed": true} (the test then publishes blocks), calls
// every procedure, and prints one JSON line per event ({"topic", "args",
// "kwargs"}) until EVENTS events arrived; then {"calls": {...}} and exits 0.
// Any failure or the 30 s deadline exits 1 with the reason on stderr.
import autobahn from 'autobahn';

const [url, realm, coin, l4coin, wanted, mode = 'direct'] = process.argv.slice(2);
const enc = (name) => name.replace(/[^A-Za-z0-9_-]/g,
  (c) => [...new TextEncoder().encode(c)].map((b) => '%' + b.toString(16).toUpperCase().padStart(2, '0')).join(''));
const out = (value) => process.stdout.write(JSON.stringify(value) + '\n');
const fail = (why) => { process.stderr.write(`wamp_client: ${why}\n`); process.exit(1); };
setTimeout(() => fail('deadline of 30 s passed'), 30000);

const connection = new autobahn.Connection({ url, realm, max_retries: 0 });
connection.onclose = (reason, details) => { if (!done) fail(`connection closed: ${reason} ${JSON.stringify(details)}`); return true; };
let done = false;
let events = 0;

connection.onopen = async (session) => {
  try {
    const topics = [
      `orderbook.l2book.${enc(coin)}`, `orderbook.trades.${enc(coin)}`,
      `orderbook.bbo.${enc(coin)}`, `orderbook.l4book.${enc(l4coin)}`,
    ];
    for (const topic of topics) {
      await session.subscribe(topic, (args, kwargs) => {
        out({ topic, args, kwargs: kwargs || {} });
        events += 1;
        if (events >= Number(wanted)) finish(session);
      });
    }
    const calls = {};
    calls.snapshot = await session.call('orderbook.l4book.snapshot', [l4coin]);
    out({ subscribed: true, snapshot: calls.snapshot });
    calls.coins = await session.call('orderbook.coins');
    calls.l2 = await session.call('orderbook.l2book.get', [coin], { nLevels: 2 });
    calls.l2kw = await session.call('orderbook.l2book.get', [], { coin, nSigFigs: 2 });
    calls.bbo = await session.call('orderbook.bbo.get', [], { coin });
    calls.status = await session.call('orderbook.status');
    try { await session.call('orderbook.l2book.get', [coin, 9]); } catch (e) { calls.bad = e.error; }
    try { await session.call('orderbook.nope'); } catch (e) { calls.nope = e.error; }
    if (mode === 'direct') {
      try { await session.publish('orderbook.trades.x', [1], {}, { acknowledge: true }); } catch (e) { calls.publish = e.error; }
      try { await session.register('com.example.x', () => 1); } catch (e) { calls.register = e.error; }
    }
    globalThis.calls = calls;
    if (events >= Number(wanted)) finish(session);
  } catch (e) {
    fail(`error: ${e && (e.error || e.message || e)} ${JSON.stringify(e && e.args)}`);
  }
};

function finish(session) {
  if (done || !globalThis.calls) return;
  done = true;
  out({ calls: globalThis.calls });
  connection.close();
  setTimeout(() => process.exit(0), 100);
}

connection.open();
