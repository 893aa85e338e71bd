// The operator page: one subscription (private/admin_subscribe, a key with the admin
// scope) to admin.overview, which the venue pushes once a second; a trading key is refused
// by the venue and the page says so. On reconnection the page logs in and subscribes again.
// uPlot (a classic script: the global ``uPlot``) draws the fund's history.
import { Rpc, el, fmt, login, saveCredentials, savedCredentials, showStatus } from "/ui/rpc.js";

const $ = (id) => document.getElementById(id);
const rpc = new Rpc();
const CREDENTIALS = "derivex.admin";
let plot = null;

function table(id, rows, empty = "none") {
  const body = $(id);
  if (!rows.length) {
    const columns = body.closest("table").querySelectorAll("th").length;
    body.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: String(columns) }, empty)));
    return;
  }
  body.replaceChildren(...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c)))));
}

function definitions(id, items) {
  $(id).replaceChildren(
    ...items.flatMap(([name, value]) => [el("dt", {}, name), el("dd", { "data-field": name.replaceAll(" ", "_") }, value)]),
  );
}

function renderControls(controls, markets) {
  const halted = controls.instruments.map((i) => `${i.instrument_name} (${i.state})`);
  definitions("controls", [
    ["not trading", halted.length ? halted.join(", ") : "none"],
    ["blocked accounts", controls.blocked_accounts.length ? controls.blocked_accounts.join(", ") : "none"],
  ]);
  const names = markets.map((m) => m.instrument_name);
  const list = $("control-instruments");
  if (list.children.length !== names.length) list.replaceChildren(...names.map((n) => el("option", { value: n })));
  const indexes = [...new Set(markets.map((m) => `${m.instrument_name.split("_")[0].toLowerCase()}_usdc`))];
  const select = $("control-index");
  if (select.options.length !== indexes.length) select.replaceChildren(...indexes.map((n) => el("option", { value: n }, n)));
}

// halt / resume / block / unblock: one admin call each; the venue answers once the command
// is sequenced (and durable), and the next overview shows it
async function control(action) {
  if (action === "private/admin_set_index") return setIndex();
  const account = action.includes("account");
  const value = (account ? $("control-account") : $("control-instrument")).value.trim();
  if (!value) return;
  const params = account ? { account: Number(value) } : { instrument_name: value };
  $("control-result").textContent = "…";
  try {
    const result = await rpc.call(action, params);
    $("control-result").textContent = account
      ? `account ${result.account} ${result.blocked ? `blocked, ${result.cancelled} orders cancelled` : "unblocked"}`
      : `${result.instrument_name} ${result.state}`;
    $("control-result").dataset.ok = "true";
  } catch (error) {
    $("control-result").textContent = `refused: ${error.message}`;
    $("control-result").dataset.ok = "false";
  }
}

// the index override (an emergency or a drill): sequenced as the feed's INDEX command with a
// TIME command after it, so marks, funding and the liquidation sweep follow at once
async function setIndex() {
  const price = $("control-index-price").value.trim();
  if (!price) return;
  $("control-result").textContent = "…";
  delete $("control-result").dataset.ok;
  try {
    const result = await rpc.call("private/admin_set_index", { index_name: $("control-index").value, price });
    const events = result.liquidations.reduce((total, row) => total + row.count, 0);
    $("control-result").textContent = `${result.index_name} index ${fmt(result.price)}: ${events} liquidation events`;
    $("control-result").dataset.liquidations = String(events);
    $("control-result").dataset.ok = "true";
  } catch (error) {
    $("control-result").textContent = `refused: ${error.message}`;
    $("control-result").dataset.ok = "false";
  }
}

function render({ fund, liquidations, markets, ranking, health, controls }) {
  renderControls(controls, markets);
  $("fund-balance").textContent = `${fmt(fund.balance)} USDC`;
  $("fund-balance").dataset.value = String(fund.balance);
  definitions("fund-flows", [
    ["inflows", `${fmt(fund.inflows)} USDC`],
    ["draws", `${fmt(fund.draws)} USDC`],
  ]);
  drawFund(fund.history, fund.balance);
  $("liq-since").textContent = `since ${new Date(liquidations.since).toISOString().slice(11, 19)} UTC`;
  table(
    "liq-totals",
    liquidations.totals.map((t) => [t.instrument_name || "(account)", t.stage, String(t.count), String(t.lots)]),
    "no liquidation yet",
  );
  table(
    "liq-feed",
    liquidations.latest.map((e) => [String(e.seq), String(e.account), e.instrument_name || "–", e.stage, String(e.amount)]),
    "no liquidation yet",
  );
  table(
    "markets",
    markets.map((m) => [
      m.instrument_name,
      fmt(m.open_interest, 3),
      `${(m.funding_8h * 100).toFixed(4)}%`,
      fmt(m.mark_price),
      fmt(m.index_price),
      m.mark_index_deviation === null ? "–" : percent(m.mark_index_deviation, 3),
      m.index_status,
      m.index_age_ms === null ? "–" : `${(m.index_age_ms / 1000).toFixed(1)} s`,
      String(m.index_sources),
    ]),
  );
  table(
    "sources",
    markets.flatMap((m) =>
      m.sources.map((s) => [
        m.instrument_name.split("-")[0],
        s.name,
        fmt(s.price),
        `${(s.staleness_ms / 1000).toFixed(1)} s`,
        s.deviation === null ? "–" : percent(s.deviation, 3),
      ]),
    ),
    "no index update walked by this process yet",
  );
  table(
    "adl",
    ranking.adl.map((a) => [a.instrument_name, a.side, String(a.rank), String(a.account), fmt(a.size, 4), fmt(a.score, 4)]),
    "no open perpetual position",
  );
  table(
    "ranking",
    ranking.top.map((a) => [
      String(a.account),
      a.state,
      fmt(a.equity),
      fmt(a.initial_margin),
      fmt(a.maintenance_margin),
      a.margin_usage === null ? "no equity" : `${(a.margin_usage * 100).toFixed(1)}%`,
      // fills the controls' account field (blocking stays one more, deliberate click)
      el("button", { type: "button", class: "pick-account", onclick: () => ($("control-account").value = String(a.account)) }, "select"),
    ]),
    "no account uses margin",
  );
  const latency = health.batch_latency;
  definitions("engine", [
    ["last seq", String(health.last_seq)],
    ["commands/s", health.commands_per_second === null ? "–" : fmt(health.commands_per_second, 1)],
    ["batch latency", latency.p50_ms === null ? "–" : `p50 ${latency.p50_ms.toFixed(2)} ms · p99 ${latency.p99_ms.toFixed(2)} ms`],
    [
      "journal lag",
      health.journal_lag === null
        ? "n/a"
        : `${health.journal_lag} commands${health.journal_fsync === "none" ? " (fsync none: never durable)" : ""}`,
    ],
    ["state root", health.state_root === null ? "–" : `${health.state_root.slice(0, 16)}…`],
    ["replica agreement", agreement(health.replica_agreement)],
    ["open orders", String(health.open_orders)],
    ["served by", `process ${health.process}`],
  ]);
  $("engine").querySelector("[data-field='state_root']").title = health.state_root || "";
  definitions("accounts", [
    ["accounts", String(ranking.accounts)],
    ["in liquidation", String(ranking.in_liquidation)],
  ]);
}

function drawFund(history, balance) {
  const points = history.length ? history : [[Date.now(), balance]];
  const xs = points.map((p) => p[0] / 1000);
  const ys = points.map((p) => p[1]);
  xs.push(Date.now() / 1000);
  ys.push(balance);
  const box = $("fund-plot");
  if (!plot) {
    plot = new uPlot(
      {
        width: box.clientWidth || 300,
        height: 170,
        legend: { show: false },
        axes: [
          {
            stroke: "#8a94a6",
            grid: { stroke: "#262b3a" },
            space: 70,
            values: (u, splits) => splits.map((s) => new Date(s * 1000).toISOString().slice(11, 19)),
          }, { stroke: "#8a94a6", grid: { stroke: "#262b3a" }, size: 70 }],
        series: [{}, { stroke: "#f0b90b", fill: "rgba(240,185,11,0.1)", width: 1.5 }],
      },
      [xs, ys],
      box,
    );
  } else {
    plot.setData([xs, ys]);
  }
}

// cluster mode: each follower's latest state root against the leader's at the same stream seq
function agreement(replicas) {
  if (replicas === null) return "n/a (no cluster)";
  if (!replicas.replicas) return "no replica root yet";
  const last = Math.max(...replicas.nodes.map((n) => n.seq));
  const differ = replicas.nodes.filter((n) => !n.agree).map((n) => n.node);
  return differ.length
    ? `DIFFERS: ${differ.join(", ")}`
    : `${replicas.replicas} agree (seq ${last})`;
}

// a signed percentage; one that rounds to zero shows without a sign
function percent(fraction, decimals) {
  const text = (fraction * 100).toFixed(decimals);
  return `${Number(text) === 0 ? (0).toFixed(decimals) : text}%`;
}

async function start(credentials) {
  await login(rpc, credentials);
  saveCredentials(CREDENTIALS, credentials);
  $("login").hidden = true;
  $("session").hidden = false;
  $("whoami").textContent = `key ${credentials.client_id.slice(0, 8)}…`;
  rpc.handlers.set("admin.overview", render);
  try {
    await rpc.call("private/admin_subscribe", {});
    $("message").textContent = "";
  } catch (error) {
    if (error.code !== 13021) throw error;
    $("message").textContent = "refused: this key has no admin scope";
    $("message").dataset.refused = "true";
  }
}

rpc.addEventListener("status", (event) => showStatus($("status"), event.detail));
rpc.addEventListener("open", () => {
  const credentials = savedCredentials(CREDENTIALS);
  if (credentials) start(credentials).catch((error) => ($("message").textContent = `login: ${error.message}`));
});
$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const credentials = { client_id: $("client-id").value.trim(), client_secret: $("client-secret").value.trim() };
  try {
    await start(credentials);
    $("client-secret").value = "";
  } catch (error) {
    $("message").textContent = `login: ${error.message}`;
  }
});
for (const button of document.querySelectorAll("button[data-action]")) {
  button.addEventListener("click", () => control(button.dataset.action));
}
$("logout").addEventListener("click", () => {
  saveCredentials(CREDENTIALS, null);
  location.reload();
});
rpc.connect();
