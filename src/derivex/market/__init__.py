"""Market inputs and demo participants: what feeds a venue from outside, through the same
sequencer as every client (docs/architecture.md).

- ``inputs``: :class:`Market`, the index feed (``derivex.oracle``) and the pricing service
  (``derivex.pricing``) sequenced as INDEX and RISK_ARRAY commands;
- ``agents``: the demo market makers and noise trader that keep ``derivex serve --demo``
  books alive.

Both act through a ``derivex.gateway.venue.Venue``; the gateway (the network API) does not
contain them, ``derivex.gateway.serve`` schedules them.
"""

from derivex.market.agents import INNER, OUTER, MakerStyle, MarketMaker, NoiseTrader
from derivex.market.inputs import Market

__all__ = ["INNER", "OUTER", "MakerStyle", "Market", "MarketMaker", "NoiseTrader"]
