// The account side of the trader page: login (client credentials, kept in sessionStorage
// only), the account summary, open orders with edit and cancel, positions, and order entry.
// Orders arrive by user.orders.*; positions and the summary are read again when the
// account's trades or portfolio change (never on a timer).
import { el, fmt, login, saveCredentials, savedCredentials } from "/ui/rpc.js";
import { orderParams, showTypeFields, triggerText } from "/ui/order_form.js";

export const CREDENTIALS = "derivex.credentials";

export function savedSession() {
  return savedCredentials(CREDENTIALS);
}

// ``state``: the page's (``account``, ``openOrders``, ``spec``, ``editing``);
// ``changed``: redraw the ladder (own orders are shown on it).
export function createAccount(rpc, state, changed) {
  const $ = (id) => document.getElementById(id);
  const scheduleRender = changed;

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
      // an untriggered trigger order is cancelled, not amended (edit takes a resting order)
      const editable = order.order_state === "open";
      return el(
        "tr",
        { "data-order-id": order.order_id, "data-state": order.order_state },
        el("td", {}, order.instrument_name),
        el("td", { class: order.direction }, order.direction),
        el("td", {}, order.order_type),
        el("td", {}, order.price ? String(order.price) : "–"),
        el("td", {}, String(order.amount)),
        el("td", {}, String(order.filled_amount)),
        el("td", { class: "trigger" }, triggerText(order, fmt)),
        el("td", { class: `state ${order.order_state}` }, stateText(order)),
        el("td", {}, flags.join(" ")),
        el(
          "td",
          {},
          editable ? el("button", { class: "edit", type: "button", onclick: () => startEdit(order) }, "edit") : "",
          " ",
          el("button", { class: "cancel", type: "button", onclick: () => cancel(order.order_id) }, "cancel"),
        ),
      );
    });
    $("open-orders").replaceChildren(...rows);
  }

  // a resting order a trigger placed reads "triggered" (its trigger fields stay on it)
  function stateText(order) {
    return order.order_state === "open" && order.triggered ? "triggered" : order.order_state;
  }

  // Editing: the form takes the order's price and amount and "Send" amends it (private/edit)
  // until it is sent or the edit is dropped.
  function startEdit(order) {
    state.editing = order.order_id;
    $("order-type").value = "limit";
    showTypeFields();
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
      ["Δ", summary.options_delta, 4],
      ["Γ", summary.options_gamma, 6],
      ["vega", summary.options_vega, 2],
      ["θ", summary.options_theta, 2],
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
    const params = orderParams(state.spec.instrument_name);
    try {
      const reply = await rpc.call(`private/${side}`, params);
      const order = reply.order;
      result.textContent = `${order.order_id} ${order.order_state} (filled ${order.filled_amount})`;
      if (order.order_state === "open" || order.order_state === "untriggered") onOrders([order]);
      refreshAccount();
    } catch (error) {
      result.textContent = `refused: ${error.message}`;
    }
  }

  return { startSession, endSession, dropEdit, sendOrder };
}
