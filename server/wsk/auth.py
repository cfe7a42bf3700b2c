"""Client tokens: who a client is, and which rooms it may join and publish into.

A client passes a JWT in Socket.IO's connect ``auth``, as ``{"token": "..."}``.
PyJWT checks it; wsk writes no cryptography of its own. The key file says which
one algorithm is accepted, so that a token cannot pick its own:

- a PEM public key: RS256 for an RSA key, ES256 for an EC P-256 key;
- anything else: an HS256 shared secret (at least 32 bytes).

``alg: none`` is never in that one-element list, and neither is HS256 beside a
public key, which is the algorithm confusion where a token signed with the public
key as an HMAC secret would pass. A token must carry ``sub`` (the user, shown in
the log and in ``whoami``) and ``exp``. Its ``rooms`` and ``publish`` claims are
lists of shell-style patterns (``chat.*``); publishing to every client, without a
room, needs the pattern ``"*"`` itself in ``publish``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

MODES = ("off", "optional", "required")
# the shortest HS256 secret taken: as long as the hash (RFC 7518, 3.2)
MIN_SECRET_BYTES = 32
# seconds of clock difference forgiven between who mints a token and the node
LEEWAY = 10
# publishing to every client (no room) needs this pattern itself in `publish`
EVERYONE = "*"
# the reasons a connect is refused, each a label of wsk_auth_refused_total
REASONS = (
    "no_token",
    "expired",
    "bad_signature",
    "algorithm",
    "malformed",
    "missing_claim",
    "not_yet_valid",
    "bad_claims",
    "invalid",
)


class BadKey(ValueError):
    """A key file that cannot serve."""


class Unauthorized(Exception):
    """A connect refused; ``reason`` is one of REASONS, ``message`` what the client is told."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"unauthorized: {detail}")
        self.reason = reason
        self.message = f"unauthorized: {detail}"


@dataclass(frozen=True)
class Grant:
    """What one connected client may do."""

    user: str | None
    rooms: tuple[str, ...]
    publish: tuple[str, ...]
    unlimited: bool = False

    def may_join(self, room: str) -> bool:
        return self.unlimited or _matches(room, self.rooms)

    def may_publish(self, room: str | None) -> bool:
        if self.unlimited:
            return True
        if room is None:
            return EVERYONE in self.publish
        return _matches(room, self.publish)


# auth off: every client may do everything, as before tokens
OPEN = Grant(user=None, rooms=(), publish=(), unlimited=True)


def _matches(room: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(room, pattern) for pattern in patterns)


@dataclass(frozen=True)
class Key:
    """The key of a key file and the one algorithm it accepts."""

    algorithm: str
    verifying: Any
    signing: Any = None


def load_key(path: str | Path, private: bool = False) -> Key:
    """Read a key file: a PEM key (public for the nodes, private to mint) or an HS256 secret."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BadKey(f"cannot read {path} ({exc.strerror})") from None
    if b"-----BEGIN" in data:
        return _pem_key(data, private)
    secret = data.strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise BadKey(
            f"an HS256 secret needs at least {MIN_SECRET_BYTES} bytes, this one has {len(secret)}"
        )
    return Key("HS256", secret, secret)


def _pem_key(data: bytes, private: bool) -> Key:
    if b"PRIVATE KEY-----" in data:
        if not private:
            raise BadKey(
                "it holds a private key: give the nodes the public key "
                "(openssl pkey -in KEY -pubout), keep the private key where tokens are minted"
            )
        try:
            signing = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise BadKey(f"not a usable PEM private key ({exc})") from None
        return Key(_algorithm(signing.public_key()), signing.public_key(), signing)
    if private:
        raise BadKey("minting an RS256 or ES256 token needs the PEM private key")
    try:
        verifying = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise BadKey(f"not a usable PEM public key ({exc})") from None
    return Key(_algorithm(verifying), verifying)


def _algorithm(public: Any) -> str:
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < 2048:
            raise BadKey(f"an RSA key needs at least 2048 bits, this one has {public.key_size}")
        return "RS256"
    if isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1):
        return "ES256"
    raise BadKey("the key is neither RSA nor EC P-256 (RS256, ES256)")


class Authenticator:
    """Turns a connect's ``auth`` into a Grant, or refuses it."""

    def __init__(self, mode: str, key: Key | None, anonymous_rooms: Sequence[str] = ()) -> None:
        if mode not in MODES:
            raise ValueError(f"auth mode {mode!r}")
        if mode != "off" and key is None:
            raise ValueError("a key is needed unless auth is off")
        self.mode = mode
        self.key = key
        self.anonymous = Grant(None, tuple(anonymous_rooms), tuple(anonymous_rooms))

    def grant(self, auth: Any) -> Grant:
        """What the client that connected with ``auth`` may do; Unauthorized if nothing."""
        if self.mode == "off":
            return OPEN
        token = auth.get("token") if isinstance(auth, Mapping) else None
        if not isinstance(token, str) or not token:
            if self.mode == "optional":
                return self.anonymous
            raise Unauthorized("no_token", "no token")
        return self.verify(token)

    def verify(self, token: str) -> Grant:
        assert self.key is not None
        try:
            claims = jwt.decode(
                token,
                self.key.verifying,
                algorithms=[self.key.algorithm],
                options={"require": ["exp", "sub"]},
                leeway=LEEWAY,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("expired", "token expired") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("bad_signature", "bad signature") from None
        except jwt.InvalidAlgorithmError:
            raise Unauthorized("algorithm", "algorithm not allowed") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized("missing_claim", f"token has no {exc.claim!r} claim") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("not_yet_valid", "token not yet valid") from None
        except jwt.DecodeError:
            raise Unauthorized("malformed", "malformed token") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("invalid", f"invalid token ({str(exc)[:80]})") from None
        return Grant(
            user=_claim_text(claims, "sub"),
            rooms=_claim_patterns(claims, "rooms"),
            publish=_claim_patterns(claims, "publish"),
        )


def _claim_text(claims: Mapping[str, Any], name: str) -> str:
    value = claims[name]
    if not isinstance(value, str) or not value:
        raise Unauthorized("bad_claims", f"the {name!r} claim must be a string")
    return value


def _claim_patterns(claims: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = claims.get(name, [])
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise Unauthorized("bad_claims", f"the {name!r} claim must be a list of patterns")
    return tuple(value)


def mint(
    key: Key,
    sub: str,
    rooms: Sequence[str] = (),
    publish: Sequence[str] = (),
    ttl: float = 3600,
    now: float | None = None,
) -> str:
    """A token for ``sub`` that expires in ``ttl`` seconds, signed with ``key``."""
    if key.signing is None:
        raise BadKey("this key cannot sign")
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": sub,
        "iat": issued,
        "exp": issued + int(ttl),
        "rooms": list(rooms),
        "publish": list(publish),
    }
    return jwt.encode(claims, key.signing, algorithm=key.algorithm)
