"""Client tokens: who a client is, and which rooms it may join and publish into.

A client passes a JWT in Socket.IO's connect ``auth``, as ``{"token": "..."}``.
PyJWT checks it; wsk writes no cryptography of its own. Each key of the key file
says which one algorithm it accepts, so that a token cannot pick its own:

- a PEM public key: RS256 for an RSA key, ES256 for an EC P-256 key;
- each other line: an HS256 shared secret (at least 32 bytes).

A token is checked against the keys of its algorithm only, one by one: ``alg:
none`` matches no key, and an HS256 token is never checked against a public key,
which is the algorithm confusion where a token signed with the public key as an
HMAC secret would pass. Several keys let a key rotate without refusing the tokens
signed with the one before (docs/security.md); the first is the one wsk-token
signs with. A token must carry ``sub`` (the user, shown in
the log and in ``whoami``) and ``exp``. Its ``rooms`` and ``publish`` claims are
lists of shell-style patterns (``chat.*``); publishing to every client, without a
room, needs the pattern ``"*"`` itself in ``publish``.
"""

from __future__ import annotations

import re
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


_PEM = re.compile(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.S)


def load_keys(path: str | Path) -> tuple[Key, ...]:
    """The keys of a key file, for the nodes: PEM public keys and HS256 secrets, in order."""
    return tuple(_key(kind, data, private=False) for kind, data in _entries(path))


def load_key(path: str | Path, private: bool = False) -> Key:
    """The first key of a key file: the one wsk-token signs with (``private``)."""
    kind, data = _entries(path)[0]
    return _key(kind, data, private)


def _entries(path: str | Path) -> list[tuple[str, bytes]]:
    """The file's PEM blocks and secret lines, in the order they come."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BadKey(f"cannot read {path} ({exc.strerror})") from None
    entries: list[tuple[str, bytes]] = []
    done = 0
    for block in [*_PEM.finditer(data), None]:
        between = data[done : block.start() if block else len(data)]
        entries += [("secret", line.strip()) for line in between.splitlines() if line.strip()]
        if block:
            entries.append(("pem", block[0]))
            done = block.end()
    if not entries:
        raise BadKey(f"{path} holds no key")
    return entries


def _key(kind: str, data: bytes, private: bool) -> Key:
    if kind == "pem":
        return _pem_key(data, private)
    if data.startswith(b"-----"):
        raise BadKey("a PEM block in it does not end")
    if len(data) < MIN_SECRET_BYTES:
        raise BadKey(
            f"an HS256 secret needs at least {MIN_SECRET_BYTES} bytes, one has {len(data)}"
        )
    return Key("HS256", data, data)


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

    def __init__(
        self, mode: str, keys: Sequence[Key] = (), anonymous_rooms: Sequence[str] = ()
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"auth mode {mode!r}")
        if mode != "off" and not keys:
            raise ValueError("a key is needed unless auth is off")
        self.mode = mode
        self.keys = tuple(keys)
        self.algorithms = sorted({key.algorithm for key in self.keys})
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
        """The grant of a token that one of the keys of its algorithm signed."""
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.DecodeError:
            raise Unauthorized("malformed", "malformed token") from None
        candidates = [key for key in self.keys if key.algorithm == algorithm]
        if not candidates:
            raise Unauthorized("algorithm", "algorithm not allowed")
        for key in candidates:
            try:
                claims = self._decode(token, key)
            except jwt.InvalidSignatureError:
                continue  # perhaps the next key's, during a rotation
            return Grant(
                user=_claim_text(claims, "sub"),
                rooms=_claim_patterns(claims, "rooms"),
                publish=_claim_patterns(claims, "publish"),
            )
        raise Unauthorized("bad_signature", "bad signature")

    @staticmethod
    def _decode(token: str, key: Key) -> dict[str, Any]:
        """The claims if ``key`` signed ``token`` and they hold; InvalidSignatureError if not."""
        try:
            return jwt.decode(
                token,
                key.verifying,
                algorithms=[key.algorithm],
                options={"require": ["exp", "sub"]},
                leeway=LEEWAY,
            )
        except jwt.InvalidSignatureError:
            raise
        except jwt.ExpiredSignatureError:
            raise Unauthorized("expired", "token expired") from None
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
