// The order form's types: limit and market, and Deribit's trigger orders (stop / take,
// market or limit, and the trailing stop) with their trigger source (last, mark or index
// price) and trigger price, or the trailing stop's offset. Which fields a type uses is shown
// and the others are hidden; ``orderParams`` builds the private/buy or private/sell params the
// form describes (the venue checks them: a bad trigger is refused with its reason).

export const TRIGGER_TYPES = ["stop_market", "stop_limit", "take_market", "take_limit", "trailing_stop"];

const $ = (id) => document.getElementById(id);

// the order a type places once triggered is priced (a limit) or not (market, trailing stop)
export function hasLimitPrice(type) {
  return type === "limit" || type.endsWith("_limit");
}

// priced at the mark for the margin preview: what fills at once (or does once triggered)
export function isMarketLike(type) {
  return !hasLimitPrice(type);
}

// Show the fields of the chosen type; call on every change of the type select.
export function showTypeFields() {
  const type = $("order-type").value;
  const trigger = TRIGGER_TYPES.includes(type);
  const trailing = type === "trailing_stop";
  $("order-price").disabled = !hasLimitPrice(type);
  $("order-price").closest("label").hidden = !hasLimitPrice(type);
  $("post-only").disabled = !hasLimitPrice(type);
  $("trigger-fields").hidden = !trigger;
  $("trigger-price").closest("label").hidden = !trigger || trailing;
  $("trigger-offset").closest("label").hidden = !trailing;
}

// The params of the form's new order on ``instrument``.
export function orderParams(instrument) {
  const type = $("order-type").value;
  const params = { instrument_name: instrument, amount: $("order-amount").value, type };
  if (hasLimitPrice(type)) {
    params.price = $("order-price").value;
    if ($("post-only").checked) params.post_only = true;
  }
  if ($("reduce-only").checked) params.reduce_only = true;
  if (TRIGGER_TYPES.includes(type)) {
    params.trigger = $("trigger-source").value;
    if (type === "trailing_stop") params.trigger_offset = $("trigger-offset").value;
    else params.trigger_price = $("trigger-price").value;
  }
  return params;
}

const SOURCE_NAMES = { last_price: "last", mark_price: "mark", index_price: "index" };

// "mark 61,200.00" (or "mark ±50.00 → 61,150.00" for a trailing stop): the trigger column of
// the open-orders panel; "" for an order without a trigger.
export function triggerText(order, fmt) {
  if (!order.trigger) return "";
  const source = SOURCE_NAMES[order.trigger] || order.trigger;
  if (order.trigger_offset) return `${source} ±${fmt(order.trigger_offset)} → ${fmt(order.trigger_price)}`;
  return `${source} ${fmt(order.trigger_price)}`;
}
