// An order book kept from a book.* channel: a snapshot, then changes that must each follow
// the last one (prev_change_id == the change_id seen); ``apply`` says false on a gap, and
// the page resubscribes for a fresh snapshot.

export class Book {
  constructor(tickSize) {
    this.tickSize = tickSize;
    this.bids = new Map();
    this.asks = new Map();
    this.changeId = null;
  }

  apply(data) {
    if (data.type === "snapshot") {
      this.bids.clear();
      this.asks.clear();
    } else if (this.changeId === null || data.prev_change_id !== this.changeId) {
      return false;
    }
    for (const [side, changes] of [
      [this.bids, data.bids],
      [this.asks, data.asks],
    ]) {
      for (const [action, price, amount] of changes) {
        if (action === "delete") side.delete(price);
        else side.set(price, amount);
      }
    }
    this.changeId = data.change_id;
    return true;
  }

  // The best ``count`` levels of "bids" or "asks" as [price, amount], best first.
  levels(name, count) {
    const side = name === "bids" ? this.bids : this.asks;
    const prices = [...side.keys()].sort((a, b) => (name === "bids" ? b - a : a - b));
    return prices.slice(0, count).map((price) => [price, side.get(price)]);
  }
}

const DEPTH_RANGE = 0.015;

// Cumulative depth of both sides within 1.5% of the mid, as two step areas (a plain canvas:
// a hundred points need no chart library).
export function drawDepth(canvas, book) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== width * ratio) {
    canvas.width = width * ratio;
    canvas.height = height * ratio;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const allBids = book.levels("bids", 50);
  const allAsks = book.levels("asks", 50);
  if (!allBids.length || !allAsks.length) return;
  // levels within 1.5% of the mid: one far order must not squeeze the rest into a line
  const mid = (allBids[0][0] + allAsks[0][0]) / 2;
  const bids = allBids.filter(([price]) => price >= mid * (1 - DEPTH_RANGE));
  const asks = allAsks.filter(([price]) => price <= mid * (1 + DEPTH_RANGE));
  if (!bids.length || !asks.length) return;
  const cumulate = (levels) => {
    let total = 0;
    return levels.map(([price, amount]) => [price, (total += amount)]);
  };
  const bidSteps = cumulate(bids);
  const askSteps = cumulate(asks);
  const low = bids[bids.length - 1][0];
  const high = asks[asks.length - 1][0];
  const most = Math.max(bidSteps[bidSteps.length - 1][1], askSteps[askSteps.length - 1][1]);
  const x = (price) => ((price - low) / Math.max(high - low, 1e-12)) * (width - 2) + 1;
  const y = (amount) => height - 14 - (amount / most) * (height - 20);
  for (const [steps, fill, stroke] of [
    [bidSteps, "rgba(38,166,154,0.25)", "#26a69a"],
    [askSteps, "rgba(239,83,80,0.25)", "#ef5350"],
  ]) {
    ctx.beginPath();
    ctx.moveTo(x(steps[0][0]), y(0));
    let previous = 0;
    for (const [price, total] of steps) {
      ctx.lineTo(x(price), y(previous));
      ctx.lineTo(x(price), y(total));
      previous = total;
    }
    ctx.lineTo(x(steps[steps.length - 1][0]), y(0));
    ctx.closePath();
    ctx.fillStyle = fill;
    ctx.fill();
    ctx.strokeStyle = stroke;
    ctx.stroke();
  }
  ctx.fillStyle = "#8a94a6";
  ctx.font = "10px sans-serif";
  ctx.fillText(String(low), 2, height - 2);
  const label = String(high);
  ctx.fillText(label, width - ctx.measureText(label).width - 2, height - 2);
}
