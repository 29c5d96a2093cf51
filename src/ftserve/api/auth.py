"""API keys: ``Authorization: Bearer KEY`` (OpenAI) or ``api-key: KEY`` (Azure)."""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers

from ..config import ApiKey
from ..errors import AuthenticationFailed

_MISSING = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or in an api-key header. The key "
    "was printed when this ftserve server first started, and is stored in its data dir "
    "(file api_key), unless FTSERVE_API_KEYS sets the keys."
)


def mask(key: str) -> str:
    """Enough of a wrong key to recognise it, never the whole of it (OpenAI's style)."""
    if len(key) <= 8:
        return "*" * len(key)
    return key[:3] + "*" * min(len(key) - 7, 20) + key[-4:]


class KeyChecker:
    def __init__(self, keys: tuple[ApiKey, ...]) -> None:
        self._keys = [(k.key.encode(), k.organization) for k in keys]

    def organization(self, headers: Headers) -> str:
        presented = presented_key(headers.get("api-key"), headers.get("authorization"))
        if not presented:
            raise AuthenticationFailed(_MISSING, code=None)
        found = self.lookup(presented)
        if found is not None:
            return found
        raise AuthenticationFailed(
            f"Incorrect API key provided: {mask(presented)}. You can find the key in this "
            "server's data dir (file api_key) or in FTSERVE_API_KEYS.",
            code="invalid_api_key",
        )

    def lookup(self, presented: str) -> str | None:
        """The organization of a key, or None. compare_digest against every key: timing says
        nothing about near misses."""
        candidate = presented.encode()
        found = None
        for key, org in self._keys:
            if hmac.compare_digest(key, candidate):
                found = org
        return found


def presented_key(api_key: str | None, authorization: str | None) -> str | None:
    """The key a request presents: ``api-key: KEY`` or ``Authorization: Bearer KEY``."""
    if api_key is not None:
        return api_key
    if authorization is None:
        return None
    scheme, _, rest = authorization.partition(" ")
    return rest.strip() if scheme.lower() == "bearer" else None
