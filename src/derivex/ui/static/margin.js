// The margin an order would use, shown in the order form before it is sent: the venue's
// private/get_margins (the engine's own pre-trade figure) for the form's instrument, amount
// and price (a market order: priced at the mark). Asked again when the form changes, at most
// one call in flight; a refused or incomplete form shows why instead of a figure.
import { fmt } from "/ui/rpc.js";
import { isMarketLike } from "/ui/order_form.js";

export function createMarginPreview(rpc, state, output) {
  const $ = (id) => document.getElementById(id);
  let asking = false;
  let again = false;

  async function preview() {
    if (asking) {
      again = true;
      return;
    }
    const side = new FormData($("order")).get("side");
    const market = isMarketLike($("order-type").value);
    const price = market ? state.markPrice : $("order-price").value;
    const amount = $("order-amount").value;
    if (!state.account || !state.spec || !amount || !price || state.editing) {
      output.textContent = "";
      delete output.dataset.margin;
      return;
    }
    asking = true;
    try {
      const params = { instrument_name: state.spec.instrument_name, amount, price };
      const margins = await rpc.call("private/get_margins", params);
      const used = side === "sell" ? margins.sell : margins.buy;
      output.dataset.margin = String(used);
      output.textContent = `initial margin ${used >= 0 ? "+" : ""}${fmt(used)} USDC (now ${fmt(margins.initial_margin)})`;
    } catch (error) {
      delete output.dataset.margin;
      output.textContent = `margin: ${error.message}`;
    } finally {
      asking = false;
      if (again) {
        again = false;
        preview();
      }
    }
  }

  for (const id of ["order-price", "order-amount", "order-type"]) $(id).addEventListener("input", preview);
  for (const input of document.querySelectorAll("#order input[name=side]")) input.addEventListener("change", preview);
  return preview;
}
