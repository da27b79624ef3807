// Node 22+: node node_client.mjs [URL]   (Node 20: node --experimental-websocket ...)
const url = process.argv[2] ?? "wss://book.example.com:8000/ws";
const ws = new WebSocket(url);
const send = (msg) => ws.send(JSON.stringify(msg));
let pinger;

ws.onopen = () => {
  send({ method: "subscribe", subscription: { type: "bbo", coin: "ETH" } });
  send({ method: "post", id: 1, request: { type: "info", payload: { type: "l2Book", coin: "BTC", nSigFigs: null } } });
  pinger = setInterval(() => send({ method: "ping" }), 30_000);
};
ws.onmessage = (event) => {
  const msg = JSON.parse(event.data);
  if (msg.channel === "bbo") {
    const [bid, ask] = msg.data.bbo;
    console.log(msg.data.height, "ETH", bid?.px, ask?.px);
  } else if (msg.channel === "post") {
    const { type, data } = msg.data.response.payload;
    console.log("post", msg.data.id, type, "at height", data.height);
  } else if (msg.channel === "error") {
    console.error("server says:", msg.data);
  }
};
ws.onclose = (event) => {
  clearInterval(pinger);
  console.log("closed", event.code, event.reason);
};
