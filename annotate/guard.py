"""Who may use the server: the access token, the Host header, and same-origin writes.

Checked on every request by the web layer (:mod:`.server`), before any route runs:

* **Host** must be a name this server answers to (:func:`served_hosts`): a page on another site whose
  DNS name was re-pointed at this machine (DNS rebinding) sends its own name and is refused (400).
* **Token**, when one is set (always when serving a network): the page's cookie, set from the access
  link ``/?token=...``; or the ``Authorization`` header as ``Token <t>``, ``Bearer <t>`` or HTTP Basic
  with the token as the password (Label Studio's "basic auth" for ML backends); or a ``Token: <t>``
  header (X-AnyLabeling's remote server). Missing or wrong: 401. Only the page shell ``/`` is open.
* **Writes** (POST, PUT, PATCH, DELETE) from a browser must come from this server's own page: a
  ``Sec-Fetch-Site`` other than ``same-origin``/``none`` or an ``Origin`` of another host is refused
  (403), and a POST must be ``application/json`` (415), which no page on another origin can send
  without a CORS preflight this server never grants. Tools that call from their servers send neither
  header and pass.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil

from .errors import RequestError

TOKEN_COOKIE = "interformer_token"
TOKEN_QUERY = "token"  # the access link: /?token=<token>
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
ANY_HOST = "*"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SAME_ORIGIN_FETCH = frozenset({"same-origin", "none"})  # "none": typed in the address bar, a bookmark


class UnauthorizedError(RequestError):
    status = 401


class ForbiddenError(RequestError):
    status = 403


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> tuple[str, int | None]:
    """``"name:8000"`` / ``"[::1]:8000"`` / ``"name"`` → (lower-case name without brackets, port or None).

    Raises:
        RequestError: a value that is not a host[:port].
    """
    try:
        parts = urlsplit("//" + value.strip())
        name, port = parts.hostname, parts.port
    except ValueError:
        name, port = None, None
    if not name:
        raise RequestError(f"the Host header {value[:80]!r} is not a host name")
    return name.lower(), port


def served_hosts(bind: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The host names a server listening on ``bind`` answers to: the loopback names, ``extra``
    (``--allowed-host``: a reverse proxy's public name, or ``*`` for any), and when serving a network
    this machine's own names and addresses (a wildcard bind: those of every interface)."""
    names = set(LOOPBACK_HOSTS) | {h.strip().lower().strip("[]") for h in extra if h.strip()}
    if not is_loopback(bind):
        names.add(bind.lower().strip("[]"))
        hostname = socket.gethostname()
        names |= {hostname.lower(), f"{hostname.lower()}.local", socket.getfqdn().lower()}
        if bind in ("0.0.0.0", "::", ""):
            inet = (socket.AF_INET, socket.AF_INET6)
            for addresses in psutil.net_if_addrs().values():
                names |= {a.address.split("%")[0].lower() for a in addresses if a.family in inet}
    return frozenset(names)


@dataclass(frozen=True)
class AccessPolicy:
    """The server's rules.

    Args:
        hosts: names the ``Host`` header may carry (:func:`served_hosts`; ``"*"`` among them: any).
        token: the access token every request but the page shell must carry; None: no token (loopback only).
    """

    hosts: frozenset[str] = frozenset(LOOPBACK_HOSTS)
    token: str | None = None

    def check_host(self, headers: Mapping[str, str]) -> str:
        """The request's host name, if this server answers to it (else a 400)."""
        name, _ = split_host(headers.get("host", ""))
        if ANY_HOST not in self.hosts and name not in self.hosts:
            raise RequestError(
                f"this server does not answer to the host name {name[:80]!r} (start it with --allowed-host {name} "
                "if that name is meant to reach it)"
            )
        return name

    def token_matches(self, candidate: str | None) -> bool:
        return self.token is None or (
            candidate is not None and hmac.compare_digest(candidate.encode("utf-8"), self.token.encode("utf-8"))
        )

    def check_token(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> None:
        """A 401 unless the request carries the token (cookie, Authorization or Token header)."""
        if self.token is None:
            return
        if any(self.token_matches(t) for t in presented_tokens(headers, cookies)):
            return
        raise UnauthorizedError(
            "this server needs its access token: open the link interformer-annotate printed (…/?token=…), "
            "or send 'Authorization: Token <token>'"
        )

    def check_write(self, method: str, headers: Mapping[str, str], host: str) -> None:
        """Refuse a state change a page on another origin could have sent (see the module docstring)."""
        if method not in WRITE_METHODS:
            return
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site.lower() not in _SAME_ORIGIN_FETCH:
            raise ForbiddenError(f"a {fetch_site} request cannot change anything here (only this server's page can)")
        origin = headers.get("origin")
        if origin is not None:
            request_host, request_port = split_host(headers.get("host", ""))
            try:
                parts = urlsplit(origin)
                origin_host, origin_port = (parts.hostname or "").lower(), parts.port
            except ValueError:
                origin_host, origin_port = "", None
            same_port = origin_port is None or request_port is None or origin_port == request_port
            if origin_host != request_host or not same_port:
                raise ForbiddenError(f"requests from {origin[:80]} cannot change anything here")
        if method == "POST":
            media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media != "application/json":
                raise RequestError(f"the body must be application/json, not {media or 'untyped'}", status=415)


def presented_tokens(headers: Mapping[str, str], cookies: Mapping[str, str]) -> list[str]:
    """Every token the request offers: cookie, ``Authorization`` (Token, Bearer, Basic password), ``Token``."""
    found = [cookies[TOKEN_COOKIE]] if TOKEN_COOKIE in cookies else []
    scheme, _, value = headers.get("authorization", "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() in ("token", "bearer") and value:
        found.append(value)
    elif scheme.lower() == "basic" and value:
        try:
            _, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, ValueError):
            password = ""
        if password:
            found.append(password)
    if headers.get("token"):
        found.append(headers["token"].strip())
    return found
