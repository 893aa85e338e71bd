"""Key management through the router: venue-wide, confirmed on every domain.

- ``private/create_api_key`` goes to the first domain (it checks the scope and that the
  account is the caller's or one of its subaccounts, as a gateway does); the router then
  puts the new key into the shared bucket ``dx_keys`` (``cluster.shared_keys``) and its
  own store, and answers once every domain's leader accepts the key (``public/auth``),
  so the key trades everywhere as soon as the client has it.
- ``private/remove_api_key {id}`` (a key of the caller's own account) is answered by the
  router: the key is revoked in the router's store first (refused here at once, its
  router sessions closed), then deleted from the bucket (every leader, standby and router
  revokes it on the watch, closing its sessions), then the router waits until every
  leader refuses it. Partial failure: the bucket unreachable -> 10040 ``not_applied``
  (revoked at this router only; send again); a leader that does not confirm within
  ``confirm_s`` -> 10040 ``unconfirmed`` naming it (the delete is in the bucket: the
  leader revokes it as soon as it hears of it, and a leader cut off from NATS cannot
  acknowledge any command). A key unknown at the router, or of another account, is
  ``-32602`` (``id``): only the key's own account removes it through the router.

Cost: one request to one domain plus one ``public/auth`` per domain (per poll round).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

import orjson
from yarl import URL

from derivex.gateway.errors import RETRY, RpcError
from derivex.gateway.keys import ApiKey

__all__ = ["CREATE", "REMOVE", "created", "remove"]

CREATE = "private/create_api_key"
REMOVE = "private/remove_api_key"


def _key_of(result: Any) -> ApiKey | None:
    """The key a domain's ``create_api_key`` answer describes."""
    if not isinstance(result, dict) or not result.get("client_secret"):
        return None
    scopes = ("read", "trade") if "read_write" in str(result.get("max_scope")) else ("read",)
    return ApiKey(
        str(result["client_id"]),
        str(result["client_secret"]),
        int(result["subaccount_id"]),
        scopes,
        str(result.get("name", "")),
        int(result.get("timestamp", 0)),
    )


async def created(router: Any, result: Any, confirm_s: float = 10.0) -> Any:
    """Make the key of a domain's ``create_api_key`` ``result`` venue-wide; ``result``
    once every leader accepts it (10040 ``unconfirmed`` naming those that do not)."""
    key = _key_of(result)
    if key is None:
        return result
    router.keys.install(key)
    try:
        await router.shared.put(key)
    except Exception as error:
        raise _retry("not_applied", f"keys store unreachable: {type(error).__name__}") from None
    await _confirm(router, key, accepted=True, confirm_s=confirm_s)
    return result


async def remove(
    router: Any, caller: ApiKey, params: dict[str, Any], confirm_s: float = 10.0
) -> str:
    """``private/remove_api_key``: see the module. ``"ok"`` once every leader refuses."""
    client_id = str(params.get("id", params.get("client_id", "")))
    target = router.keys.lookup(client_id) if client_id else None
    if target is None or target.account != caller.account:
        raise RpcError(-32602, "Invalid params", {"param": "id", "reason": "no such key"})
    router.keys.revoke(client_id)
    try:
        await router.shared.delete(client_id)
    except Exception as error:
        raise _retry(
            "not_applied",
            f"revoked at this router only (keys store unreachable: {type(error).__name__})",
        ) from None
    await _confirm(router, target, accepted=False, confirm_s=confirm_s)
    return "ok"


async def _confirm(router: Any, key: ApiKey, *, accepted: bool, confirm_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + confirm_s
    waiting = list(router.table.domains)
    while waiting:
        waiting = [d for d in waiting if await _accepts(router, d, key) != accepted]
        if not waiting or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    if waiting:
        raise _retry("unconfirmed", "not yet applied by every leader", waiting)


async def _accepts(router: Any, domain: str, key: ApiKey) -> bool | None:
    """Whether ``domain``'s leader accepts ``key`` now (None: no answer)."""
    try:
        leader = await router.endpoint(domain)
    except RpcError:
        return None
    grant = {
        "grant_type": "client_credentials",
        "client_id": key.client_id,
        "client_secret": key.client_secret,
    }
    url = URL(f"{leader}/api/v2/public/auth?{urlencode(grant)}", encoded=True)
    try:
        async with router.session.get(url) as response:
            reply = orjson.loads(await response.read())
    except Exception:
        return None
    return isinstance(reply, dict) and "result" in reply


def _retry(reason: str, why: str, domains: list[str] | None = None) -> RpcError:
    data: dict[str, Any] = {"reason": reason, "why": why}
    if domains is not None:
        data["domains"] = domains
    return RpcError(RETRY, reason, data)
