// Candles with volume (lightweight-charts): history from public/get_tradingview_chart_data,
// then the last candle kept up to date from the trades.* channel the page already receives
// (the same bucketing as the server's: start = time - time % width). Mark and index are
// price lines, moved by the ticker.* channel.
import {
  CandlestickSeries,
  ColorType,
  HistogramSeries,
  createChart,
} from "/ui/vendor/lightweight-charts/lightweight-charts.standalone.production.mjs";

const RESOLUTIONS = [
  ["1", 60_000],
  ["5", 300_000],
  ["15", 900_000],
  ["60", 3_600_000],
  ["1D", 86_400_000],
];
const HISTORY_CANDLES = 300;

export class PriceChart {
  constructor(container, buttons) {
    this.chart = createChart(container, {
      autoSize: true,
      layout: {
        background: { type: ColorType.Solid, color: "#131722" },
        textColor: "#b2b5be",
        attributionLogo: true,
      },
      grid: { vertLines: { color: "#1e2230" }, horzLines: { color: "#1e2230" } },
      timeScale: { timeVisible: true, secondsVisible: false, barSpacing: 8, rightOffset: 4 },
    });
    this.candles = this.chart.addSeries(CandlestickSeries, {
      upColor: "#26a69a",
      downColor: "#ef5350",
      borderVisible: false,
      wickUpColor: "#26a69a",
      wickDownColor: "#ef5350",
    });
    this.volume = this.chart.addSeries(HistogramSeries, {
      priceScaleId: "volume",
      priceFormat: { type: "volume" },
      color: "rgba(120,123,134,0.5)",
      lastValueVisible: false,
      priceLineVisible: false,
    });
    this.chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    this.candles.priceScale().applyOptions({ scaleMargins: { top: 0.05, bottom: 0.25 } });
    this.markLine = null;
    this.indexLine = null;
    this.resolution = RESOLUTIONS[0];
    this.instrument = null;
    this.last = null;
    this.rpc = null;
    for (const resolution of RESOLUTIONS) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = resolution[0] === "1D" ? "1D" : `${resolution[0]}m`;
      button.dataset.resolution = resolution[0];
      button.addEventListener("click", () => {
        this.resolution = resolution;
        for (const other of buttons.children) other.classList.toggle("on", other === button);
        if (this.rpc) this.load(this.rpc);
      });
      if (resolution === this.resolution) button.classList.add("on");
      buttons.append(button);
    }
  }

  show(instrument, decimals) {
    this.instrument = instrument;
    this.last = null;
    const format = { type: "price", precision: decimals, minMove: 10 ** -decimals };
    this.candles.applyOptions({ priceFormat: format });
    this.candles.setData([]);
    this.volume.setData([]);
    for (const line of [this.markLine, this.indexLine]) if (line) this.candles.removePriceLine(line);
    this.markLine = this.indexLine = null;
  }

  async load(rpc) {
    this.rpc = rpc;
    const instrument = this.instrument;
    const [name, width] = this.resolution;
    const end = Date.now();
    const reply = await rpc.call("public/get_tradingview_chart_data", {
      instrument_name: instrument,
      start_timestamp: end - width * HISTORY_CANDLES,
      end_timestamp: end,
      resolution: name,
    });
    if (instrument !== this.instrument || name !== this.resolution[0]) return;
    const bars = reply.ticks.map((tick, k) => ({
      time: tick / 1000,
      open: reply.open[k],
      high: reply.high[k],
      low: reply.low[k],
      close: reply.close[k],
      volume: reply.volume[k],
    }));
    this.candles.setData(bars.map(({ volume, ...bar }) => bar));
    this.volume.setData(bars.map((bar) => this._volumeBar(bar)));
    this.last = bars.length ? { ...bars[bars.length - 1] } : null;
    this.chart.timeScale().scrollToRealTime();
  }

  _volumeBar(bar) {
    const color = bar.close >= bar.open ? "rgba(38,166,154,0.5)" : "rgba(239,83,80,0.5)";
    return { time: bar.time, value: bar.volume, color };
  }

  addTrade(trade) {
    if (trade.instrument_name !== this.instrument) return;
    const width = this.resolution[1];
    const time = (trade.timestamp - (trade.timestamp % width)) / 1000;
    const last = this.last;
    if (last && time < last.time) return; // older than the candle on screen
    if (!last || time > last.time) {
      this.last = { time, open: trade.price, high: trade.price, low: trade.price, close: trade.price, volume: 0 };
    }
    const bar = this.last;
    bar.high = Math.max(bar.high, trade.price);
    bar.low = Math.min(bar.low, trade.price);
    bar.close = trade.price;
    bar.volume += trade.amount;
    const { volume, ...candle } = bar;
    this.candles.update(candle);
    this.volume.update(this._volumeBar(bar));
  }

  setMark(mark, index) {
    const line = (existing, price, title, color) => {
      if (!price) return existing;
      if (existing) {
        existing.applyOptions({ price });
        return existing;
      }
      return this.candles.createPriceLine({ price, title, color, lineWidth: 1, lineStyle: 2 });
    };
    this.markLine = line(this.markLine, mark, "mark", "#f0b90b");
    this.indexLine = line(this.indexLine, index, "index", "#2962ff");
  }
}
