// Keep one coin's L4 book over WAMP, whatever its size (Autobahn|JS in Node).
// npm install autobahn; node l4_wamp.mjs [URL] [COIN]   (Node 20: --experimental-websocket)
import autobahn from "autobahn";

const url = process.argv[2] ?? "wss://book.example.com:8000/ws";
const coin = process.argv[3] ?? "BTC";
// In topic names every character outside A-Za-z0-9_- is %XX (UTF-8): @107 -> %40107
const escape = (name) => name.replace(/[^A-Za-z0-9_-]/g, (c) =>
  [...new TextEncoder().encode(c)].map((b) => "%" + b.toString(16).toUpperCase().padStart(2, "0")).join(""));
const connection = new autobahn.Connection({ url, realm: "orderbook" });
let book = null;  // {height, orders: Map oid -> order}; queue order: see "Keeping an L4 book"
let pending = [];  // updates that arrive while the snapshot loads

function load(snapshot) {
  const orders = new Map();
  for (const side of snapshot.levels) for (const order of side) orders.set(order.oid, order);
  book = { height: snapshot.height, orders };
}

function apply(updates) {
  if (updates.height <= book.height) return true;  // already in the snapshot
  if (updates.height !== book.height + 1) return false;  // a lost message
  for (const { oid, user, side, px, raw_book_diff: diff } of updates.book_diffs) {
    if (diff === "remove") book.orders.delete(oid);
    else if (diff.update) book.orders.get(oid).sz = diff.update.newSz;
    else book.orders.set(oid, { oid, user, side, limitPx: px, sz: diff.new.sz });
  }
  book.height = updates.height;
  return true;
}

async function takeSnapshot(session) {
  book = null;
  // receive_progress: the snapshot comes in parts of at most 1 MiB, all of one
  // block; each part (progress results, then the final result) holds the next
  // run of bids and asks in queue order.
  const bids = [];
  const asks = [];
  const take = (part) => { bids.push(...part.levels[0]); asks.push(...part.levels[1]); return part; };
  const last = await session
    .call("orderbook.l4book.snapshot", [coin], {}, { receive_progress: true })
    .then(take, (error) => { throw error; }, take);
  load({ height: last.height, levels: [bids, asks] });
  const held = pending;
  pending = [];
  if (!held.every(apply)) return takeSnapshot(session);
  console.log(coin, "L4 book at height", book.height, "with", book.orders.size, "orders");
}

connection.onopen = async (session) => {
  try {
    // Subscribe first, then take the snapshot.
    await session.subscribe(`orderbook.l4book.${escape(coin)}`, ([data], kwargs) => {
      if (kwargs?.part === "Snapshot") load(data);  // the server resynchronised its book
      else if (!book) pending.push(data);
      else if (!apply(data)) takeSnapshot(session);
    });
    await takeSnapshot(session);
  } catch (error) {
    console.error(error.error ?? error, error.args ?? "");  // e.g. wamp.error.invalid_argument
    connection.close();
  }
};
connection.open();
