// Autobahn|JS (npm `autobahn`) takes one L4 snapshot (not shipped).
//
//   node --experimental-websocket wamp_snapshot.mjs URL REALM COIN MODE [TICKET]
//
// MODE "progress" calls orderbook.l4book.snapshot with receive_progress and
// prints {"parts": [{"chars", "height", "bids", "asks"}...], "height",
// "oids": [[bid oids], [ask oids]]} from the progress results and the final
// result; MODE "whole" calls it without and prints the same with one part.
// With TICKET the client joins with WAMP-Ticket authentication. Prints
// {"closed": reason, "details": {...}, "socket": {code, reason, error}} and
// exits 2 if the connection closes first; any other failure or the 60 s
// deadline exits 1 (reason on stderr). Autobahn|JS uses Node's built-in
// WebSocket (undici), which this script watches for the close code and error.
import autobahn from 'autobahn';

const socket = { undici: process.versions.undici };
const NativeWebSocket = globalThis.WebSocket;
globalThis.WebSocket = class extends NativeWebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener('error', (e) => { socket.error = String(e.error?.message || e.message || e.type); });
    this.addEventListener('close', (e) => { socket.code = e.code; socket.reason = e.reason; });
  }
};

const [url, realm, coin, mode, ticket] = process.argv.slice(2);
const out = (value) => process.stdout.write(JSON.stringify(value) + '\n');
const fail = (why) => { process.stderr.write(`wamp_snapshot: ${why}\n`); process.exit(1); };
setTimeout(() => fail('deadline of 60 s passed'), 60000);

const auth = ticket ? { authmethods: ['ticket'], authid: 'js-client', onchallenge: () => ticket } : {};
const connection = new autobahn.Connection({ url, realm, max_retries: 0, ...auth });
let done = false;
connection.onclose = (reason, details) => {
  if (!done) { done = true; out({ closed: reason, details, socket }); setTimeout(() => process.exit(2), 50); }
  return true;
};

const parts = [];
const take = (part) => parts.push({
  chars: JSON.stringify(part).length, height: part.height, coin: part.coin,
  bids: part.levels[0].map((o) => o.oid), asks: part.levels[1].map((o) => o.oid),
});

connection.onopen = async (session, details) => {
  try {
    const options = mode === 'progress' ? { receive_progress: true } : {};
    const final = await session.call('orderbook.l4book.snapshot', [coin], {}, options)
      .then((value) => value, (error) => { throw error; }, take);
    take(final);
    done = true;
    out({
      socket,
      authmethod: details.authmethod,
      height: final.height,
      parts: parts.map(({ bids, asks, ...rest }) => ({ ...rest, bids: bids.length, asks: asks.length })),
      oids: [parts.flatMap((p) => p.bids), parts.flatMap((p) => p.asks)],
    });
    connection.close();
    setTimeout(() => process.exit(0), 50);
  } catch (e) {
    fail(`error: ${e && (e.error || e.message || e)} ${JSON.stringify(e && e.args)}`);
  }
};

connection.open();
