"""Deribit-compatible gateway: JSON-RPC 2.0 over HTTP and WebSocket on one port, API keys,
subscriptions, metrics, and the ``derivex serve`` orchestration.

- ``catalog``/``listing``: instruments, units and Deribit's instrument objects;
- ``venue``: order records, trades, marks around an ``Exchange``, fed by its events;
- ``keys``/``auth``: API keys, request signatures, ``public/auth`` and tokens;
- ``public_api``/``private_api`` (registered in ``methods``), ``rpc``: the methods and the
  JSON-RPC dispatch; ``errors``: the engine reason -> Deribit code table;
- ``channels``: subscriptions; ``server``: the aiohttp server; ``telemetry``: metrics, logs;
- ``serve``: the venue ``derivex serve`` runs (journal, snapshots; it schedules the market
  inputs and demo agents of ``derivex.market``).
"""

from derivex.gateway.catalog import Catalog, InstrumentSpec
from derivex.gateway.keys import ApiKey, KeyStore
from derivex.gateway.server import Gateway, GatewayThread
from derivex.gateway.venue import Venue

__all__ = ["ApiKey", "Catalog", "Gateway", "GatewayThread", "InstrumentSpec", "KeyStore", "Venue"]
