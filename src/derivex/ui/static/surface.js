// The volatility surface views of the options panel, from mark IVs the venue publishes:
// - fitSmile: a least-squares quadratic in log-moneyness ln(K/F) through one expiry's mark
//   IVs (labelled "quadratic fit" on the page: a smooth summary of the points, not a model
//   of the venue's pricing);
// - TermStructure: at-the-money mark IV by expiry (the strike nearest the index, the mean
//   of its call and put IVs), read with one public/get_book_summary_by_currency call when
//   the panel opens and every 30 s after (the only timer of the page: the term structure
//   spans every expiry, which the chain does not subscribe to).
import { el } from "/ui/rpc.js";

export function fitSmile(points, forward) {
  // points: [[strike, iv]], iv in %, forward > 0; returns strike -> fitted iv, or null
  const rows = points.filter(([k, v]) => k > 0 && v !== null && Number.isFinite(v));
  if (rows.length < 3 || !(forward > 0)) return null;
  const s = [0, 0, 0, 0, 0];
  const t = [0, 0, 0];
  for (const [strike, iv] of rows) {
    const x = Math.log(strike / forward);
    let p = 1;
    for (let i = 0; i < 5; i++) {
      s[i] += p;
      if (i < 3) t[i] += p * iv;
      p *= x;
    }
  }
  // normal equations of a + b x + c x^2, solved by Cramer's rule
  const m = [
    [s[0], s[1], s[2]],
    [s[1], s[2], s[3]],
    [s[2], s[3], s[4]],
  ];
  const det = (a) =>
    a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) -
    a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
    a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
  const d = det(m);
  if (Math.abs(d) < 1e-18) return null;
  const coef = [0, 1, 2].map((j) => det(m.map((row, i) => row.map((v, k) => (k === j ? t[i] : v)))) / d);
  return (strike) => {
    const x = Math.log(strike / forward);
    return coef[0] + coef[1] * x + coef[2] * x * x;
  };
}

export class TermStructure {
  constructor(rpc, box, table, expiryOf) {
    this.rpc = rpc;
    this.box = box;
    this.table = table;
    this.expiryOf = expiryOf; // instrument name -> "BTC 11DEC26" (the chain's key)
    this.plot = null;
    this.timer = null;
  }

  start(currency) {
    clearInterval(this.timer);
    this.currency = currency;
    this.refresh();
    this.timer = setInterval(() => this.refresh(), 30_000);
  }

  async refresh() {
    let summaries;
    try {
      summaries = await this.rpc.call("public/get_book_summary_by_currency", { currency: this.currency, kind: "option" });
    } catch {
      return; // disconnected: the next refresh (or reconnection) reads again
    }
    const byExpiry = new Map();
    for (const s of summaries) {
      const key = this.expiryOf(s.instrument_name);
      if (!key || !s.mark_iv) continue;
      const strike = Number(s.instrument_name.split("-")[2]);
      if (!byExpiry.has(key)) byExpiry.set(key, { index: s.estimated_delivery_price, strikes: new Map() });
      const row = byExpiry.get(key).strikes.get(strike) || [];
      row.push(s.mark_iv);
      byExpiry.get(key).strikes.set(strike, row);
    }
    const points = [];
    for (const [key, { index, strikes }] of byExpiry) {
      let best = null;
      for (const strike of strikes.keys()) if (best === null || Math.abs(strike - index) < Math.abs(best - index)) best = strike;
      const ivs = strikes.get(best);
      points.push({ key, days: this.days(key), strike: best, iv: ivs.reduce((a, b) => a + b, 0) / ivs.length });
    }
    points.sort((a, b) => a.days - b.days);
    this.draw(points);
  }

  days(key) {
    const date = key.split(" ")[1];
    const months = "JANFEBMARAPRMAYJUNJULAUGSEPOCTNOVDEC";
    const found = /^(\d{1,2})([A-Z]{3})(\d{2})$/.exec(date || "");
    if (!found) return 0;
    const expiry = Date.UTC(2000 + Number(found[3]), months.indexOf(found[2]) / 3, Number(found[1]), 8);
    return Math.max(0, (expiry - Date.now()) / 86_400_000);
  }

  draw(points) {
    this.table.replaceChildren(
      ...points.map((p) =>
        el("tr", { "data-expiry": p.key }, el("td", {}, p.key), el("td", {}, p.days.toFixed(1)), el("td", {}, String(p.strike)), el("td", {}, `${p.iv.toFixed(1)}%`)),
      ),
    );
    const data = [points.map((p) => p.days), points.map((p) => p.iv)];
    if (!this.plot) {
      this.plot = new uPlot(
        {
          width: this.box.clientWidth || 300,
          height: 160,
          scales: { x: { time: false } },
          legend: { show: false },
          axes: [
            { stroke: "#8a94a6", grid: { stroke: "#262b3a" }, label: "days to expiry" },
            { stroke: "#8a94a6", grid: { stroke: "#262b3a" }, label: "ATM IV %", size: 55 },
          ],
          series: [{}, { stroke: "#f0b90b", width: 1.5, points: { show: true } }],
        },
        data,
        this.box,
      );
    } else {
      this.plot.setData(data);
    }
  }
}
