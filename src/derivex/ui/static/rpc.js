// One JSON-RPC client of the venue's WebSocket (/ws/api/v2), as any API user would open it.
// It reconnects by itself (0.5 s doubling to 5 s) and tells the page through events:
//   "status"  detail: "connecting" | "open" | "reconnecting"
//   "open"    the socket (re)opened: the page logs in again, resubscribes and resyncs
//   "notification" detail: {channel, data}
// Calls in flight when the socket drops are rejected; nothing is retried behind the page's back.

export class Rpc extends EventTarget {
  constructor(path = "/ws/api/v2") {
    super();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = `${scheme}//${location.host}${path}`;
    this.nextId = 1;
    this.pending = new Map();
    this.delayMs = 500;
    this.ws = null;
    this.status = "connecting";
    this.handlers = new Map(); // channel -> function(data)
  }

  connect() {
    this._setStatus(this.status === "open" ? "reconnecting" : this.status);
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      this.delayMs = 500;
      this._setStatus("open");
      this.dispatchEvent(new Event("open"));
    };
    ws.onmessage = (message) => this._receive(JSON.parse(message.data));
    ws.onclose = () => {
      if (this.ws !== ws) return;
      for (const { reject } of this.pending.values()) reject(new Error("connection lost"));
      this.pending.clear();
      this._setStatus("reconnecting");
      setTimeout(() => this.connect(), this.delayMs);
      this.delayMs = Math.min(this.delayMs * 2, 5000);
    };
    ws.onerror = () => {}; // onclose follows and reconnects
  }

  _setStatus(status) {
    this.status = status;
    this.dispatchEvent(new CustomEvent("status", { detail: status }));
  }

  _receive(message) {
    if (message.method === "subscription") {
      const { channel, data } = message.params;
      const handler = this.handlers.get(channel);
      if (handler) handler(data);
      return;
    }
    if (message.method === "heartbeat") return;
    const waiting = this.pending.get(message.id);
    if (!waiting) return;
    this.pending.delete(message.id);
    if (message.error) {
      const error = new Error(`${message.error.message} (${message.error.code})`);
      error.code = message.error.code;
      error.data = message.error.data;
      waiting.reject(error);
    } else {
      waiting.resolve(message.result);
    }
  }

  call(method, params = {}) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error("not connected"));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    });
  }

  // Subscribe ``handler`` to ``channel`` (public/ or private/subscribe by the name);
  // resolves to whether the venue accepted it.
  async subscribe(channel, handler) {
    this.handlers.set(channel, handler);
    const method = channel.startsWith("user.") ? "private/subscribe" : "public/subscribe";
    const accepted = await this.call(method, { channels: [channel] });
    return accepted.includes(channel);
  }

  async unsubscribe(channel) {
    this.handlers.delete(channel);
    const method = channel.startsWith("user.") ? "private/unsubscribe" : "public/unsubscribe";
    if (this.status === "open") await this.call(method, { channels: [channel] });
  }
}

// Credentials live in sessionStorage only: gone when the tab closes, never sent anywhere
// but this venue's public/auth.
export function savedCredentials(name) {
  const text = sessionStorage.getItem(name);
  return text ? JSON.parse(text) : null;
}

export function saveCredentials(name, credentials) {
  if (credentials) sessionStorage.setItem(name, JSON.stringify(credentials));
  else sessionStorage.removeItem(name);
}

export async function login(rpc, credentials) {
  return rpc.call("public/auth", {
    grant_type: "client_credentials",
    client_id: credentials.client_id,
    client_secret: credentials.client_secret,
  });
}

// The connection state on the page: the badge's text, and ``data-connection`` on <body>,
// which dims every panel while the figures on screen may be stale.
export function showStatus(element, status) {
  document.body.dataset.connection = status;
  element.textContent = status === "open" ? "connected" : status === "reconnecting" ? "disconnected, reconnecting…" : "connecting…";
  element.className = `status ${status}`;
}

export function fmt(value, decimals = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const rounded = Number(Number(value).toFixed(decimals));
  return (rounded === 0 ? 0 : rounded).toLocaleString("en-US", {
    minimumFractionDigits: decimals,
    maximumFractionDigits: decimals,
  });
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}
