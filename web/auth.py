"""Credentials: API keys and HMAC-signed JWTs (HS256), for private channels and admin endpoints.

A request carries ``X-API-Key: KEY`` or ``Authorization: Bearer TOKEN``; a websocket (browsers
cannot set headers on one) may instead send ``{"op":"auth","api_key":...}`` or
``{"op":"auth","token":...}``. Keys are compared by their SHA-256 digests in constant time and
are never logged: errors name what is wrong, never the value. A key is compared as the bytes the
client sent: aiohttp decodes header bytes that are not UTF-8 as lone surrogates, which encode back
to those bytes, so a key that is not text is merely unknown (``AuthError``), never a crash.

The JWT check is small enough to write here rather than add a dependency: the header must say
``"alg": "HS256"`` (anything else, ``none`` included, is refused), the signature is HMAC-SHA256
of ``header.payload`` with ``jwt_secret``, and ``exp``/``nbf`` (seconds) are checked against
the time passed in. Pure functions: no clock, no I/O.

``identify`` also says until when credentials hold: a token's ``exp`` plus the leeway (an API key
does not expire), so a connection that outlives its token can be told apart from one that may
go on (``Identity.expired``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

import orjson
from aiohttp import web

SCHEME = "Bearer"


class AuthError(ValueError):
    """Missing or invalid credentials; the message says which, never the credential."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthConfig:
    """The ``[auth]`` settings section."""

    api_keys: tuple[str, ...] = ()
    jwt_secret: str = ""
    private_symbols: frozenset[str] = frozenset()
    leeway_s: int = 30  # clock skew allowed on exp and nbf

    @property
    def enabled(self) -> bool:
        return bool(self.api_keys or self.jwt_secret)

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        secret = "set" if self.jwt_secret else "unset"
        private = sorted(self.private_symbols)
        return (
            f"AuthConfig(api_keys=<{len(self.api_keys)} keys>, jwt_secret=<{secret}>, "
            f"private_symbols={private})"
        )


@dataclass(frozen=True, slots=True)
class Identity:
    """Who presented credentials, and until when they are accepted."""

    name: str
    #: seconds since the epoch past which the token is refused (its ``exp`` plus the leeway);
    #: None for an API key or a token without ``exp``
    expires_s: float | None = None

    def expired(self, now_s: float) -> bool:
        return self.expires_s is not None and now_s > self.expires_s


class Authenticator:
    """Checks an API key or a JWT; ``who`` returns a name for the principal, ``identify`` also
    when its credentials expire."""

    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self._digests = [_key_digest(k) for k in config.api_keys]
        self._secret = config.jwt_secret.encode()

    def is_private(self, symbol: str) -> bool:
        return symbol in self.config.private_symbols

    def who(self, *, api_key: str | None, token: str | None, now_s: float) -> str:
        """The principal's name, or ``AuthError`` saying why not."""
        return self.identify(api_key=api_key, token=token, now_s=now_s).name

    def identify(self, *, api_key: str | None, token: str | None, now_s: float) -> Identity:
        """The principal and when its credentials expire, or ``AuthError`` saying why not."""
        if not self.config.enabled:
            raise AuthError("this server accepts no credentials: set [auth] api_keys or jwt_secret")
        if api_key:
            digest = _key_digest(api_key)
            # compare with every key, so the time taken does not tell which one nearly matched
            found = False
            for known in self._digests:
                found |= hmac.compare_digest(digest, known)
            if not found:
                raise AuthError("unknown API key")
            return Identity("api-key")
        if token:
            leeway_s = self.config.leeway_s
            claims = verify_hs256(token, self._secret, now_s=now_s, leeway_s=leeway_s)
            sub, exp = claims.get("sub"), claims.get("exp")
            name = f"jwt:{sub}" if isinstance(sub, str) else "jwt"
            # verify_hs256 let only a number (or nothing) through as exp
            return Identity(name, float(exp) + leeway_s if isinstance(exp, int | float) else None)
        raise AuthError(
            f"credentials required: send 'X-API-Key: KEY' or 'Authorization: {SCHEME} TOKEN'"
        )

    def from_headers(self, headers: Mapping[str, str], *, now_s: float) -> str | None:
        """The principal named by a request's headers; None when it carries no credentials."""
        identity = self.identify_headers(headers, now_s=now_s)
        return None if identity is None else identity.name

    def identify_headers(self, headers: Mapping[str, str], *, now_s: float) -> Identity | None:
        """``identify`` for a request's headers; None when it carries no credentials."""
        api_key = headers.get("X-API-Key")
        token = bearer(headers.get("Authorization"))
        if not api_key and not token:
            return None
        return self.identify(api_key=api_key, token=token, now_s=now_s)


def _key_digest(key: str) -> bytes:
    """The SHA-256 of a key's bytes; the undecodable bytes of a header (surrogate escapes) are
    put back as they came, and a key no bytes could have given is refused."""
    try:
        raw = key.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise AuthError("the API key is not text") from None
    return hashlib.sha256(raw).digest()


def unauthorized(message: str) -> web.HTTPUnauthorized:
    """A 401 that names what is wrong and the scheme to use."""
    return web.HTTPUnauthorized(text=message, headers={"WWW-Authenticate": SCHEME})


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != SCHEME.lower() or not token.strip():
        raise AuthError(f"the Authorization header must be '{SCHEME} TOKEN'")
    return token.strip()


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sign_hs256(claims: dict[str, object], secret: bytes) -> str:
    """A compact HS256 JWT of ``claims`` (for tests and for operators minting tokens)."""
    head = b64encode(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
    body = b64encode(orjson.dumps(claims))
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64encode(sig)}"


def verify_hs256(
    token: str, secret: bytes, *, now_s: float, leeway_s: int = 30
) -> dict[str, object]:
    """The claims of a valid HS256 JWT; ``AuthError`` otherwise."""
    if not secret:
        raise AuthError("tokens are not accepted: [auth] jwt_secret is not set")
    parts = token.split(".")
    if len(parts) != 3 or not token.isascii():  # three base64url parts: ASCII only
        raise AuthError("the token is not a JWT (header.payload.signature)")
    try:
        header = orjson.loads(_b64decode(parts[0]))
        claims = orjson.loads(_b64decode(parts[1]))
        signature = _b64decode(parts[2])
    except (binascii.Error, ValueError):
        raise AuthError("the token is not valid base64url JSON") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise AuthError("the token must be signed with HS256")
    expected = hmac.new(secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise AuthError("the token's signature is not valid")
    if not isinstance(claims, dict):
        raise AuthError("the token's payload is not a JSON object")
    exp, nbf = claims.get("exp"), claims.get("nbf")
    for name, value in (("exp", exp), ("nbf", nbf)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise AuthError(f"the token's {name} claim must be a number of seconds")
    if isinstance(exp, int | float) and now_s > exp + leeway_s:
        raise AuthError("the token has expired")
    if isinstance(nbf, int | float) and now_s < nbf - leeway_s:
        raise AuthError("the token is not valid yet")
    return claims
