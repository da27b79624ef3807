// npm install autobahn; Node 22+: node autobahn_client.mjs [URL]
// (Node 20: node --experimental-websocket ...)
import autobahn from "autobahn";

const url = process.argv[2] ?? "wss://book.example.com:8000/ws";
const connection = new autobahn.Connection({ url, realm: "orderbook" });

connection.onopen = async (session) => {
  // get_retained: the current bbo at once, then every change
  await session.subscribe("orderbook.bbo.BTC", ([bbo]) => {
    const [bid, ask] = bbo.bbo;
    console.log(bbo.height, "BTC", bid?.px, ask?.px);
  }, { get_retained: true });
  await session.subscribe("orderbook.trades.BTC", ([trades]) => {
    for (const t of trades) console.log("trade", t.side, t.px, t.sz);
  });
  const coins = await session.call("orderbook.coins");
  const book = await session.call("orderbook.l2book.get", ["ETH"], { nSigFigs: 4, nLevels: 5 });
  console.log(coins.length, "coins; ETH best bid", book.levels[0][0]?.px);
};
connection.onclose = (reason, details) => {
  console.log("connection", reason, details.reason ?? "");
  return false;  // false: autobahn retries with backoff
};
connection.open();
