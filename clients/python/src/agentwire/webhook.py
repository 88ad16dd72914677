"""Serverless agents woken by webhook: verify the wake's signature, then ack it.

A webhook subscription POSTs each wake with `Webhook-Signature: t=<unix s>,kid=<key id>,
ed25519=<base64url signature>`, an Ed25519 signature over `<t>.<raw body>` by a key the
server publishes at `/v1/stream/__ds/jwks.json`. Needs the `webhook` extra (`cryptography`).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Union

from ._client import Client, refuse_unless_ok
from ._errors import AgentwireError

# Five minutes either side: a replay of an old wake is refused.
WINDOW_SECONDS = 300


class InvalidSignature(AgentwireError):
    """The wake's signature, key or time does not check out; answer it with a 401."""


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_signature(
    header: str,
    body: bytes,
    jwks: Mapping[str, Any],
    *,
    now: Optional[float] = None,
    window: int = WINDOW_SECONDS,
) -> None:
    """Raises `InvalidSignature` unless `header` signs `body` with a key of `jwks` at a time
    within `window` seconds of `now`."""
    from cryptography.exceptions import InvalidSignature as BadSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    parts: Dict[str, str] = {}
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            parts[name] = value
    try:
        t = int(parts["t"])
        kid = parts["kid"]
        signature = _b64url(parts["ed25519"])
    except (KeyError, ValueError) as e:
        raise InvalidSignature(f"a malformed Webhook-Signature header ({e})") from e
    if abs((time.time() if now is None else now) - t) > window:
        raise InvalidSignature("the wake's time is outside the window")
    keys = [k for k in jwks.get("keys", []) if isinstance(k, dict) and k.get("kid") == kid]
    if not keys or keys[0].get("kty") != "OKP" or keys[0].get("crv") != "Ed25519":
        raise InvalidSignature(f"no Ed25519 key {kid!r} in the key set")
    try:
        key = Ed25519PublicKey.from_public_bytes(_b64url(str(keys[0]["x"])))
        key.verify(signature, f"{t}.".encode() + body)
    except (BadSignature, ValueError, KeyError) as e:
        raise InvalidSignature("the signature does not verify") from e


@dataclass(frozen=True)
class WakeStream:
    path: str
    acked_offset: str
    """Where this agent's last ack left the stream: read after it."""
    tail_offset: str


@dataclass(frozen=True)
class Wake:
    """A verified wake: which streams have work, and how to ack it."""

    subscription_id: str
    wake_id: str
    generation: int
    streams: List[WakeStream]
    callback_url: str
    callback_token: str

    async def ack(self, client: Client, stream: str, offset: str, *, done: bool = True) -> Any:
        """Acks `stream` up to `offset` (past the agent's own reply, so it does not wake the
        agent again) through the wake's callback; `done` ends the lease."""
        body = {
            "wake_id": self.wake_id,
            "generation": self.generation,
            "acks": [{"stream": stream, "offset": offset}],
            "done": done,
        }
        response = await client.http.post(
            self.callback_url,
            json=body,
            headers={"authorization": f"Bearer {self.callback_token}"},
        )
        refuse_unless_ok(response)
        return response.json() if response.content else None


class WebhookVerifier:
    """Verifies wakes against the server's key set, fetched once and again when a wake
    names a key it does not hold (the key changed)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._jwks: Optional[Dict[str, Any]] = None

    async def _keys(self, refresh: bool = False) -> Dict[str, Any]:
        if self._jwks is None or refresh:
            response = await self.client.http.get(self.client.stream_url("__ds/jwks.json"))
            keys = refuse_unless_ok(response).json()
            if not isinstance(keys, dict):
                raise InvalidSignature("the key set is not a JWK Set")
            self._jwks = keys
        return self._jwks

    async def verify(self, headers: Mapping[str, str], body: Union[bytes, str]) -> Wake:
        """The wake in `body`, if its signature checks out; else `InvalidSignature`."""
        raw = body.encode() if isinstance(body, str) else body
        header = next((v for k, v in headers.items() if k.lower() == "webhook-signature"), None)
        if header is None:
            raise InvalidSignature("no Webhook-Signature header")
        try:
            verify_signature(header, raw, await self._keys())
        except InvalidSignature:
            verify_signature(header, raw, await self._keys(refresh=True))
        return parse_wake(raw)


def parse_wake(body: bytes) -> Wake:
    try:
        wake = json.loads(body)
        return Wake(
            subscription_id=str(wake["subscription_id"]),
            wake_id=str(wake["wake_id"]),
            generation=int(wake["generation"]),
            streams=[
                WakeStream(str(s["path"]), str(s["acked_offset"]), str(s["tail_offset"]))
                for s in wake["streams"]
            ],
            callback_url=str(wake["callback_url"]),
            callback_token=str(wake["callback_token"]),
        )
    except (ValueError, KeyError, TypeError) as e:
        raise AgentwireError(f"not a wake: {e}") from e
