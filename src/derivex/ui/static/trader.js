// The trader page: one client of the public JSON-RPC WebSocket. Market data arrives by
// subscription (book.*, trades.*, ticker.* at 100 ms), the account's by the private user.*
// channels; positions are re-read when the account's trades or portfolio change (never on a
// timer). A dropped socket shows "disconnected, reconnecting" and, once back, the page logs
// in again and resubscribes, so every book starts again from a fresh snapshot.
import { Rpc, el, fmt, login, saveCredentials, savedCredentials, showStatus } from "/ui/rpc.js";
import { Book, drawDepth } from "/ui/book.js";
import { PriceChart } from "/ui/candles.js";
import { OptionsChain } from "/ui/options.js";

const $ = (id) => document.getElementById(id);
const rpc = new Rpc();
const CREDENTIALS = "derivex.credentials";
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

// ---------- account ----------

async function startSession(credentials) {
  const reply = await login(rpc, credentials);
  saveCredentials(CREDENTIALS, credentials);
  state.account = credentials.client_id;
  $("login").hidden = true;
  $("session").hidden = false;
  $("whoami").textContent = `key ${credentials.client_id.slice(0, 8)}… (${reply.scope.includes("read_write") ? "trade" : "read"})`;
  await rpc.subscribe("user.orders.any.any.100ms", onOrders);
  await rpc.subscribe("user.trades.any.any.100ms", () => refreshAccount());
  await rpc.subscribe("user.portfolio.usdc", showSummary);
  const orders = await rpc.call("private/get_open_orders", {});
  state.openOrders = new Map(orders.map((order) => [order.order_id, order]));
  renderOrders();
  await refreshAccount();
}

function endSession() {
  saveCredentials(CREDENTIALS, null);
  state.account = null;
  state.openOrders.clear();
  $("login").hidden = false;
  $("session").hidden = true;
  $("summary").replaceChildren();
  renderOrders();
  $("positions").replaceChildren();
  // the venue closes the socket after logout: the page reconnects and resubscribes
  rpc.call("private/logout", {}).catch(() => {});
}

function onOrders(orders) {
  for (const order of orders) {
    if (order.order_state === "open" || order.order_state === "untriggered") {
      state.openOrders.set(order.order_id, order);
    } else {
      state.openOrders.delete(order.order_id);
    }
  }
  renderOrders();
  scheduleRender();
}

function renderOrders() {
  const rows = [...state.openOrders.values()].map((order) => {
    const flags = [order.post_only && "post-only", order.reduce_only && "reduce-only"].filter(Boolean);
    return el(
      "tr",
      { "data-order-id": order.order_id },
      el("td", {}, order.instrument_name),
      el("td", { class: order.direction }, order.direction),
      el("td", {}, order.order_type),
      el("td", {}, String(order.price)),
      el("td", {}, String(order.amount)),
      el("td", {}, String(order.filled_amount)),
      el("td", {}, flags.join(" ")),
      el(
        "td",
        {},
        el("button", { class: "edit", type: "button", onclick: () => startEdit(order) }, "edit"),
        " ",
        el("button", { class: "cancel", type: "button", onclick: () => cancel(order.order_id) }, "cancel"),
      ),
    );
  });
  $("open-orders").replaceChildren(...rows);
}

// Editing: the form takes the order's price and amount and "Send" amends it (private/edit)
// until it is sent or the edit is dropped.
function startEdit(order) {
  state.editing = order.order_id;
  $("order-type").value = "limit";
  $("order-price").disabled = false;
  $("order-price").value = order.price;
  $("order-amount").value = order.amount;
  $("send-order").textContent = `Amend ${order.order_id}`;
  $("drop-edit").hidden = false;
}

function dropEdit() {
  state.editing = null;
  $("send-order").textContent = "Send";
  $("drop-edit").hidden = true;
}

async function cancel(orderId) {
  try {
    await rpc.call("private/cancel", { order_id: orderId });
    state.openOrders.delete(orderId);
    renderOrders();
    scheduleRender();
  } catch (error) {
    $("order-result").textContent = `cancel: ${error.message}`;
  }
}

let refreshing = null;
async function refreshAccount() {
  if (!state.account || refreshing) return refreshing;
  refreshing = (async () => {
    try {
      const positions = await rpc.call("private/get_positions", {});
      $("positions").replaceChildren(
        ...positions
          .filter((p) => p.size !== 0)
          .map((p) =>
            el(
              "tr",
              { "data-instrument": p.instrument_name },
              el("td", {}, p.instrument_name),
              el("td", { class: p.direction }, String(p.size)),
              el("td", {}, fmt(p.average_price)),
              el("td", {}, fmt(p.mark_price)),
              el("td", {}, fmt(p.floating_profit_loss)),
              el("td", {}, p.estimated_liquidation_price ? fmt(p.estimated_liquidation_price) : "–"),
              el("td", {}, distance(p)),
            ),
          ),
      );
      showSummary(await rpc.call("private/get_account_summary", { currency: "USDC" }));
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

// how far the mark may move before the position is liquidated, as a share of the mark
function distance(position) {
  const liquidation = position.estimated_liquidation_price;
  if (!liquidation || !position.mark_price) return "–";
  return `${fmt((100 * Math.abs(position.mark_price - liquidation)) / position.mark_price, 1)}%`;
}

function showSummary(summary) {
  const items = [
    ["equity", summary.equity],
    ["balance", summary.balance],
    ["initial margin", summary.initial_margin],
    ["maintenance margin", summary.maintenance_margin],
    ["available", summary.available_funds],
  ];
  const greeks = [
    ["delta", summary.options_delta, 4],
    ["gamma", summary.options_gamma, 6],
    ["vega", summary.options_vega, 2],
    ["theta", summary.options_theta, 2],
  ];
  $("summary").replaceChildren(
    ...items.flatMap(([name, value]) => [
      el("dt", {}, name),
      el("dd", { "data-field": name.replace(" ", "_") }, `${fmt(value)} USDC`),
    ]),
    el("dd", { class: "greeks" }, `Greeks: ${greeks.map(([name, value, d]) => `${name} ${fmt(value, d)}`).join(" · ")}`),
  );
}

async function sendOrder(event) {
  event.preventDefault();
  const result = $("order-result");
  if (!state.account) {
    result.textContent = "log in first";
    return;
  }
  if (state.editing) {
    const params = { order_id: state.editing, amount: $("order-amount").value, price: $("order-price").value };
    try {
      const reply = await rpc.call("private/edit", params);
      result.textContent = `${reply.order.order_id} amended: ${reply.order.amount} at ${reply.order.price}`;
      onOrders([reply.order]);
      dropEdit();
    } catch (error) {
      result.textContent = `refused: ${error.message}`;
    }
    return;
  }
  const side = new FormData($("order")).get("side");
  const type = $("order-type").value;
  const params = {
    instrument_name: state.spec.instrument_name,
    amount: $("order-amount").value,
    type,
  };
  if (type === "limit") {
    params.price = $("order-price").value;
    if ($("post-only").checked) params.post_only = true;
  }
  if ($("reduce-only").checked) params.reduce_only = true;
  try {
    const reply = await rpc.call(`private/${side}`, params);
    const order = reply.order;
    result.textContent = `${order.order_id} ${order.order_state} (filled ${order.filled_amount})`;
    if (order.order_state === "open") onOrders([order]);
    refreshAccount();
  } catch (error) {
    result.textContent = `refused: ${error.message}`;
  }
}

// ---------- wiring ----------

rpc.addEventListener("status", (event) => showStatus($("status"), event.detail));
rpc.addEventListener("open", async () => {
  try {
    await loadInstruments();
    const credentials = savedCredentials(CREDENTIALS);
    if (credentials) await startSession(credentials).catch(() => endSession());
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
$("order-type").addEventListener("change", (event) => {
  $("order-price").disabled = event.target.value === "market";
  $("post-only").disabled = event.target.value === "market";
});
$("ladder").addEventListener("click", (event) => {
  const row = event.target.closest("tr[data-price]");
  if (row) $("order-price").value = row.dataset.price;
});
$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const credentials = { client_id: $("client-id").value.trim(), client_secret: $("client-secret").value.trim() };
  try {
    await startSession(credentials);
    $("client-secret").value = "";
  } catch (error) {
    $("order-result").textContent = `login: ${error.message}`;
  }
});
$("logout").addEventListener("click", endSession);
$("order").addEventListener("submit", sendOrder);
$("drop-edit").addEventListener("click", dropEdit);
state.chart = new PriceChart($("chart"), $("resolutions"));
state.chain = new OptionsChain(rpc, {
  select: $("expiry"),
  table: $("chain"),
  smile: $("smile"),
  onPick: (name) => {
    $("instrument").value = name;
    $("instrument").dispatchEvent(new Event("change"));
    window.scrollTo({ top: 0 });
  },
});
rpc.connect();
