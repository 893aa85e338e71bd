// The options chain of one underlying and expiry (strike rows, calls left, puts right: bid,
// ask, mark, mark IV, delta) and its smile (mark IV by strike, uPlot). Every option of the
// expiry is one ticker.NAME.100ms subscription: the venue sends a ticker at once, then when
// the option's book, trades or mark change; choosing another expiry unsubscribes them.
import { el, fmt } from "/ui/rpc.js";
import { TermStructure, fitSmile } from "/ui/surface.js";

const EXPIRY = /-(\d{1,2}[A-Z]{3}\d{2})-/;

export class OptionsChain {
  constructor(rpc, { select, table, smile, onPick, term, termTable }) {
    this.rpc = rpc;
    this.select = select;
    this.table = table;
    this.smile = smile;
    this.onPick = onPick;
    this.byExpiry = new Map(); // "BTC 11DEC26" -> [spec]
    this.tickers = new Map(); // instrument name -> ticker
    this.channels = [];
    this.plot = null;
    this.pending = false;
    this.term = term ? new TermStructure(rpc, term, termTable, (name) => this.keyOf(name)) : null;
    select.addEventListener("change", () => this.show(select.value));
  }

  keyOf(name) {
    const found = EXPIRY.exec(name);
    return found ? `${name.split("_")[0]} ${found[1]}` : null;
  }

  setInstruments(specs) {
    this.byExpiry.clear();
    for (const spec of specs) {
      if (spec.kind !== "option") continue;
      const found = EXPIRY.exec(spec.instrument_name);
      const key = `${spec.base_currency} ${found ? found[1] : spec.expiration_timestamp}`;
      if (!this.byExpiry.has(key)) this.byExpiry.set(key, []);
      this.byExpiry.get(key).push(spec);
    }
    const keys = [...this.byExpiry.keys()].sort((a, b) => this._expiry(a) - this._expiry(b));
    const current = this.select.value;
    this.select.replaceChildren(...keys.map((key) => el("option", { value: key }, key)));
    if (keys.includes(current)) this.select.value = current;
    if (this.term && keys.length) this.term.start(keys[0].split(" ")[0]);
  }

  _expiry(key) {
    return this.byExpiry.get(key)[0].expiration_timestamp;
  }

  async show(key) {
    const old = this.channels;
    this.channels = [];
    if (old.length) await this.rpc.call("public/unsubscribe", { channels: old }).catch(() => {});
    for (const channel of old) this.rpc.handlers.delete(channel);
    this.tickers.clear();
    const specs = this.byExpiry.get(key) || [];
    const channels = specs.map((spec) => `ticker.${spec.instrument_name}.100ms`);
    for (const channel of channels) {
      this.rpc.handlers.set(channel, (tick) => {
        this.tickers.set(tick.instrument_name, tick);
        this._schedule();
      });
    }
    this.channels = channels;
    if (channels.length) await this.rpc.call("public/subscribe", { channels });
    this.specs = specs;
    this._schedule();
  }

  _schedule() {
    if (this.pending) return;
    this.pending = true;
    setTimeout(() => {
      this.pending = false;
      this.render();
    }, 250); // a chain of dozens of tickers redrawn at most 4 times a second
  }

  render() {
    const strikes = new Map();
    for (const spec of this.specs || []) {
      const row = strikes.get(spec.strike) || {};
      row[spec.option_type] = spec;
      strikes.set(spec.strike, row);
    }
    const sorted = [...strikes.keys()].sort((a, b) => a - b);
    const cells = (spec) => {
      const tick = spec && this.tickers.get(spec.instrument_name);
      if (!tick) return [0, 1, 2, 3, 4].map(() => el("td", {}, "–"));
      const pick = () => this.onPick(spec.instrument_name);
      const price = (value) => el("td", { class: "pick", onclick: pick }, value ? fmt(value) : "–");
      return [
        price(tick.best_bid_price),
        price(tick.best_ask_price),
        price(tick.mark_price),
        el("td", {}, tick.mark_iv ? `${fmt(tick.mark_iv, 1)}%` : "–"),
        el("td", {}, tick.greeks ? fmt(tick.greeks.delta, 3) : "–"),
      ];
    };
    this.table.replaceChildren(
      ...sorted.map((strike) => {
        const row = strikes.get(strike);
        return el(
          "tr",
          { "data-strike": String(strike) },
          ...cells(row.call),
          el("td", { class: "strike" }, fmt(strike, 0)),
          ...cells(row.put),
        );
      }),
    );
    this._drawSmile(sorted, strikes);
  }

  _drawSmile(sorted, strikes) {
    const iv = (spec) => {
      const tick = spec && this.tickers.get(spec.instrument_name);
      return tick && tick.mark_iv ? tick.mark_iv : null;
    };
    const calls = sorted.map((s) => iv(strikes.get(s).call));
    const puts = sorted.map((s) => iv(strikes.get(s).put));
    const points = sorted.flatMap((s, i) => [[s, calls[i]], [s, puts[i]]]);
    const anyTick = [...this.tickers.values()][0];
    const fit = fitSmile(points, anyTick ? anyTick.underlying_price || anyTick.index_price : 0);
    const data = [sorted, sorted.map((s) => (fit ? fit(s) : null)), calls, puts]; // fit drawn first, under the marks
    if (!this.plot) {
      this.plot = new uPlot(
        {
          width: this.smile.clientWidth || 400,
          height: 200,
          scales: { x: { time: false } },
          legend: { show: true },
          axes: [
            { stroke: "#8a94a6", grid: { stroke: "#262b3a" }, label: "strike" },
            { stroke: "#8a94a6", grid: { stroke: "#262b3a" }, label: "mark IV %", size: 55 },
          ],
          series: [
            { label: "strike" },
            // the fit as the one line, the marks as points over it
            { label: "quadratic fit", stroke: "#f0b90b", width: 1.5, points: { show: false } },
            { label: "calls", stroke: "#26a69a", paths: () => null, points: { show: true, size: 9, fill: "#26a69a" } },
            { label: "puts", stroke: "#ef5350", paths: () => null, points: { show: true, size: 5, fill: "#ef5350" } },
          ],
        },
        data,
        this.smile,
      );
    } else {
      this.plot.setData(data);
    }
  }
}
