// The trader page: one client of the public JSON-RPC WebSocket. Market data arrives by
// subscription (book.*, trades.*, ticker.* at 100 ms), the account's by the private user.*
// channels; positions are re-read when the account's trades or portfolio change (never on a
// timer). A dropped socket shows "disconnected, reconnecting" and, once back, the page logs
// in again and resubscribes, so every book starts again from a fresh snapshot.
import { Rpc, el, fmt, showStatus } from "/ui/rpc.js";
import { createAccount, savedSession } from "/ui/account.js";
import { createMarginPreview } from "/ui/margin.js";
import { showTypeFields } from "/ui/order_form.js";
import { Book, drawDepth } from "/ui/book.js";
import { PriceChart } from "/ui/candles.js";
import { OptionsChain } from "/ui/options.js";

const $ = (id) => document.getElementById(id);
const rpc = new Rpc();
const state = {
  instruments: new Map(),
  spec: null,
  book: null,
  channels: [],
  account: null,
  openOrders: new Map(),
  chart: null,
  drawPending: false,
};

// ---------- market data ----------

async function loadInstruments() {
  const list = await rpc.call("public/get_instruments", {});
  const select = $("instrument");
  if (state.instruments.size) return;
  const groups = new Map();
  for (const spec of list) {
    state.instruments.set(spec.instrument_name, spec);
    const group = spec.kind === "option" ? `options ${spec.base_currency}` : "perpetuals";
    if (!groups.has(group)) groups.set(group, el("optgroup", { label: group }));
    groups.get(group).append(el("option", { value: spec.instrument_name }, spec.instrument_name));
  }
  for (const group of groups.values()) select.append(group);
  state.chain.setInstruments(list);
  const wanted = new URLSearchParams(location.search).get("instrument");
  select.value = state.instruments.has(wanted) ? wanted : list[0].instrument_name;
}

async function selectInstrument(name) {
  for (const channel of state.channels) await rpc.unsubscribe(channel).catch(() => {});
  state.channels = [];
  state.spec = state.instruments.get(name);
  state.book = new Book(state.spec.tick_size);
  $("tape").replaceChildren();
  const decimals = decimalsOf(state.spec.tick_size);
  state.chart.show(name, decimals);
  const book = `book.${name}.100ms`;
  const trades = `trades.${name}.100ms`;
  const ticker = `ticker.${name}.100ms`;
  state.channels = [book, trades, ticker];
  await rpc.subscribe(book, onBook);
  await rpc.subscribe(trades, onTrades);
  // the tape starts with the latest trades (once; the channel brings the rest)
  const recent = await rpc.call("public/get_last_trades_by_instrument", { instrument_name: name, count: 40 });
  if (state.spec.instrument_name === name) onTrades(recent.trades.slice().reverse(), false);
  await rpc.subscribe(ticker, onTicker);
  const amount = $("order-amount");
  if (!amount.value) amount.value = state.spec.min_trade_amount;
  state.chart.load(rpc).catch((error) => console.warn("candles:", error.message));
  render();
}

function onBook(data) {
  if (!state.book || data.instrument_name !== state.spec.instrument_name) return;
  if (!state.book.apply(data)) {
    // a change that does not follow the last one: start again from a fresh snapshot
    const channel = `book.${state.spec.instrument_name}.100ms`;
    state.book = new Book(state.spec.tick_size);
    rpc.unsubscribe(channel).then(() => rpc.subscribe(channel, onBook));
    return;
  }
  // counted for the responsiveness test and the benchmark (notifications applied)
  state.bookUpdates = (state.bookUpdates || 0) + 1;
  $("ladder").dataset.updates = String(state.bookUpdates);
  scheduleRender();
}

function onTrades(trades, live = true) {
  const tape = $("tape");
  for (const trade of trades) {
    if (trade.instrument_name !== state.spec.instrument_name) continue;
    const time = new Date(trade.timestamp).toISOString().slice(11, 19);
    tape.prepend(
      el(
        "tr",
        { class: trade.direction },
        el("td", {}, time),
        el("td", {}, fmt(trade.price, decimalsOf(state.spec.tick_size))),
        el("td", {}, String(trade.amount)),
      ),
    );
    if (live) state.chart.addTrade(trade);
  }
  while (tape.children.length > 40) tape.lastChild.remove();
}

function onTicker(tick) {
  const d = decimalsOf(state.spec.tick_size);
  const funding = tick.funding_8h !== undefined ? ` · funding 8h ${(tick.funding_8h * 100).toFixed(4)}%` : "";
  $("ticker").textContent =
    `mark ${fmt(tick.mark_price, d)} · index ${fmt(tick.index_price, d)} · ` +
    `OI ${fmt(tick.open_interest, 3)}${funding}`;
  state.chart.setMark(tick.mark_price, tick.index_price);
  state.markPrice = tick.mark_price;
}

function scheduleRender() {
  if (state.drawPending) return;
  state.drawPending = true;
  requestAnimationFrame(() => {
    state.drawPending = false;
    render();
  });
}

function render() {
  const book = state.book;
  if (!book) return;
  const d = decimalsOf(state.spec.tick_size);
  const mine = new Map();
  for (const order of state.openOrders.values()) {
    if (order.instrument_name !== state.spec.instrument_name) continue;
    const key = `${order.direction === "buy" ? "bid" : "ask"}:${order.price}`;
    mine.set(key, (mine.get(key) || 0) + order.amount - order.filled_amount);
  }
  const bids = book.levels("bids", 12);
  const asks = book.levels("asks", 12);
  const largest = Math.max(1e-12, ...bids.map((l) => l[1]), ...asks.map((l) => l[1]));
  const row = (side, [price, amount]) => {
    const own = mine.get(`${side}:${price}`);
    const width = Math.round((100 * amount) / largest);
    return el(
      "tr",
      { class: side, "data-side": side, "data-price": String(price), style: `--fill:${width}%` },
      el("td", {}, fmt(price, d)),
      el("td", {}, String(amount)),
      el("td", { class: "own" }, own ? String(own) : ""),
    );
  };
  $("asks").replaceChildren(...asks.slice().reverse().map((level) => row("ask", level)));
  $("bids").replaceChildren(...bids.map((level) => row("bid", level)));
  const spread = bids.length && asks.length ? fmt(asks[0][0] - bids[0][0], d) : "–";
  $("spread").textContent = `spread ${spread}`;
  $("book-info").textContent = `#${book.changeId}`;
  $("ladder").dataset.changeId = String(book.changeId);
  drawDepth($("depth"), book);
  if (!performance.getEntriesByName("first-book").length && bids.length + asks.length) {
    performance.mark("first-book"); // (page load to first rendered book: docs/dashboard.md)
  }
}

function decimalsOf(step) {
  const text = String(step);
  return text.includes("e-") ? Number(text.split("e-")[1]) : (text.split(".")[1] || "").length;
}

// ---------- wiring ----------

const account = createAccount(rpc, state, scheduleRender);

rpc.addEventListener("status", (event) => showStatus($("status"), event.detail));
rpc.addEventListener("open", async () => {
  try {
    await loadInstruments();
    const credentials = savedSession();
    if (credentials) await account.startSession(credentials).catch(() => account.endSession());
    await selectInstrument($("instrument").value);
    await state.chain.show($("expiry").value);
  } catch (error) {
    console.warn("resync:", error.message);
  }
});
$("instrument").addEventListener("change", (event) => {
  selectInstrument(event.target.value);
  const url = new URL(location.href);
  url.searchParams.set("instrument", event.target.value);
  history.replaceState(null, "", url);
});
$("order-type").addEventListener("change", showTypeFields);
const previewMargin = createMarginPreview(rpc, state, $("order-margin"));
$("ladder").addEventListener("click", (event) => {
  const row = event.target.closest("tr[data-price]");
  if (row) $("order-price").value = row.dataset.price;
  previewMargin();
});
$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const credentials = { client_id: $("client-id").value.trim(), client_secret: $("client-secret").value.trim() };
  try {
    await account.startSession(credentials);
    $("client-secret").value = "";
  } catch (error) {
    $("order-result").textContent = `login: ${error.message}`;
  }
});
$("logout").addEventListener("click", () => account.endSession());
$("order").addEventListener("submit", (event) => account.sendOrder(event));
$("drop-edit").addEventListener("click", () => account.dropEdit());
state.chart = new PriceChart($("chart"), $("resolutions"));
state.chain = new OptionsChain(rpc, {
  select: $("expiry"),
  table: $("chain"),
  smile: $("smile"),
  term: $("term"),
  termTable: $("term-table"),
  onPick: (name) => {
    $("instrument").value = name;
    $("instrument").dispatchEvent(new Event("change"));
    window.scrollTo({ top: 0 });
  },
});
rpc.connect();
