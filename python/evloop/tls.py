"""TLS configurations of the library, for Python.

- ``TLSConfig``: the library's TLS configuration (``evl_tls_config``): a
  server's certificate chain and key, or what a client trusts; ALPN,
  verification, versions. Its ``handle`` is what the C functions take
  (``evl_listener_set_tls``, ``evl_tls_connect``, ``evl_tls_start``).
- ``create_default_context()``: ``ssl.create_default_context``'s signature;
  returns ``EvloopSSLContext``, a real ``ssl.SSLContext`` (so it works
  wherever one does) that also records what the program sets on it, and
  turns that into a ``TLSConfig`` (``to_tls_config``) when everything it
  was given is something the library does the same way; otherwise
  ``to_tls_config`` raises ``TLSUnsupported`` saying what, and the caller
  keeps using it as the ``ssl.SSLContext`` it is.

Errors: a file that cannot be read raises the ``OSError`` subclass of its
errno (``FileNotFoundError``...), what the library refuses raises
``ssl.SSLError`` with its reason.
"""

from __future__ import annotations

import ctypes
import os
import re
import ssl
from typing import Any, Iterable, List, Optional, Union

from . import _lib

VERIFY_PEER = _lib.EVL_TLS_VERIFY_PEER
VERIFY_CHAIN_ONLY = _lib.EVL_TLS_VERIFY_CHAIN_ONLY
VERIFY_NONE_DANGEROUS = _lib.EVL_TLS_VERIFY_NONE_DANGEROUS

_VERSIONS = {
    ssl.TLSVersion.TLSv1_2: _lib.EVL_TLS_1_2,
    ssl.TLSVersion.TLSv1_3: _lib.EVL_TLS_1_3,
    ssl.TLSVersion.MAXIMUM_SUPPORTED: _lib.EVL_TLS_1_3,
}


class TLSUnsupported(ValueError):
    """What an ``EvloopSSLContext`` was given has no equivalent in the
    library (a cipher list, a key password...): use it as the
    ``ssl.SSLContext`` it is instead."""


class TLSConfig:
    """The library's TLS configuration: ``TLSConfig(server=True)`` for a
    server, ``TLSConfig(server=False)`` for a client. Fill it in, then give
    ``handle`` to the library; the first use builds and freezes it (its
    setters then raise ``OSError(EBUSY)``). Listeners and streams keep what
    they need of it: ``close()`` (or garbage collection) may come any time.
    """

    def __init__(self, *, server: bool) -> None:
        handle = ctypes.c_void_p()
        new = _lib.evl_tls_config_new_server if server else _lib.evl_tls_config_new_client
        _lib.check(new(ctypes.byref(handle)), "evl_tls_config_new")
        self._handle: Optional[int] = handle.value
        self.server = server

    # ---- the handle ---------------------------------------------------------

    @property
    def handle(self) -> int:
        """The ``evl_tls_config *`` the C functions take."""
        if self._handle is None:
            raise ValueError("TLSConfig is closed")
        return self._handle

    def close(self) -> None:
        if self._handle is not None:
            _lib.evl_tls_config_free(self._handle)
            self._handle = None

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> "TLSConfig":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _check(self, code: int, what: str) -> int:
        if code >= 0:
            return code
        reason = (_lib.evl_tls_config_last_error(self.handle) or b"").decode(errors="replace")
        if code == _lib.EVL_ETLS_CONFIG:
            raise ssl.SSLError(f"{what}: {reason}")
        error = _lib.error(code, what)
        if reason and isinstance(error, OSError):
            error.strerror = f"{error.strerror}: {reason}"
        elif reason:
            error = type(error)(f"{error}: {reason}")
        raise error

    # ---- what it presents -------------------------------------------------

    def load_cert_chain(self, certfile: Union[str, os.PathLike], keyfile: Union[str, os.PathLike, None] = None) -> None:
        """The certificate chain (PEM, the certificate first) and its key
        (PEM; in ``certfile`` too when ``keyfile`` is None)."""
        cert, key = os.fsencode(certfile), os.fsencode(keyfile if keyfile is not None else certfile)
        self._check(_lib.evl_tls_config_set_certificate_files(self.handle, cert, key), "load_cert_chain")

    def load_cert_chain_pem(self, chain: bytes, key: bytes) -> None:
        """As ``load_cert_chain``, from PEM in memory."""
        rc = _lib.evl_tls_config_set_certificate_pem(self.handle, chain, len(chain), key, len(key))
        self._check(rc, "load_cert_chain_pem")

    # ---- what it trusts -----------------------------------------------------

    def load_verify_locations(
        self,
        cafile: Union[str, os.PathLike, None] = None,
        capath: Union[str, os.PathLike, None] = None,
        cadata: Union[str, bytes, None] = None,
    ) -> int:
        """Trusts the CA certificates of ``cafile`` (PEM), of the files of
        ``capath`` (PEM, as OpenSSL's hashed directories hold them), and of
        ``cadata`` (PEM text, or DER bytes); returns how many. A client
        given none trusts the system's roots."""
        if cafile is None and capath is None and cadata is None:
            raise TypeError("cafile, capath and cadata cannot be all omitted")
        added = 0
        if cafile is not None:
            added += self._check(_lib.evl_tls_config_add_ca_file(self.handle, os.fsencode(cafile)), "cafile")
        if capath is not None:
            for name in sorted(os.listdir(capath)):
                path = os.path.join(capath, name)
                if os.path.isfile(path) and _looks_like_ca_file(name):
                    added += self._check(_lib.evl_tls_config_add_ca_file(self.handle, os.fsencode(path)), path)
        if cadata is not None:
            pem = _pem(cadata).encode("ascii")
            added += self._check(_lib.evl_tls_config_add_ca_pem(self.handle, pem, len(pem)), "cadata")
        return added

    def load_default_certs(self) -> int:
        """Trusts the system's roots; returns how many."""
        return self._check(_lib.evl_tls_config_add_system_roots(self.handle), "load_default_certs")

    # ---- the rest -----------------------------------------------------------

    def set_alpn_protocols(self, protocols: Iterable[str]) -> None:
        names = [p.encode("ascii") for p in protocols]
        array = (ctypes.c_char_p * max(len(names), 1))(*names)
        self._check(_lib.evl_tls_config_set_alpn(self.handle, array, len(names)), "set_alpn_protocols")

    def set_verify(self, mode: int) -> None:
        """``VERIFY_PEER`` (the default: the chain and, on a client, the
        name), ``VERIFY_CHAIN_ONLY``, or ``VERIFY_NONE_DANGEROUS``."""
        self._check(_lib.evl_tls_config_set_verify(self.handle, mode), "set_verify")

    def set_versions(self, minimum: int = 0, maximum: int = 0) -> None:
        """``EVL_TLS_1_2`` or ``EVL_TLS_1_3`` (0: 1.2 and 1.3)."""
        self._check(_lib.evl_tls_config_set_versions(self.handle, minimum, maximum), "set_versions")


def _looks_like_ca_file(name: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-f]{8}\.\d+", name)) or name.endswith((".pem", ".crt"))


def _pem(cadata: Union[str, bytes]) -> str:
    """``cadata`` as ssl.SSLContext takes it (PEM text, or DER bytes, one
    or more certificates end to end) as PEM text."""
    if isinstance(cadata, str):
        return cadata
    data, out = bytes(cadata), []
    while data:
        # A DER SEQUENCE: 0x30, then its length (short or long form).
        if len(data) < 2 or data[0] != 0x30:
            raise ssl.SSLError("cadata: not DER certificates")
        size, head = data[1], 2
        if size & 0x80:
            count = size & 0x7F
            size, head = int.from_bytes(data[2 : 2 + count], "big"), 2 + count
        out.append(ssl.DER_cert_to_PEM_cert(data[: head + size]))
        data = data[head + size :]
    return "".join(out)


class EvloopSSLContext(ssl.SSLContext):
    """An ``ssl.SSLContext`` that also records what the library needs to do
    the same with its own TLS: the certificate chain, trust anchors, ALPN,
    and, read from the context itself, ``check_hostname``, ``verify_mode``,
    ``minimum_version`` and ``maximum_version``."""

    _evloop_chain: Optional[tuple]
    _evloop_trust: List[tuple]
    _evloop_default_certs: bool
    _evloop_alpn: Optional[List[str]]
    _evloop_unsupported: List[str]

    def _evloop_init(self) -> None:
        self._evloop_chain = None
        self._evloop_trust = []
        self._evloop_default_certs = False
        self._evloop_alpn = None
        self._evloop_unsupported = []

    def load_cert_chain(self, certfile: Any, keyfile: Any = None, password: Any = None) -> None:
        super().load_cert_chain(certfile, keyfile, password)
        self._evloop_chain = (certfile, keyfile)
        if password is not None:
            self._evloop_unsupported.append("a password-protected key")

    def load_verify_locations(self, cafile: Any = None, capath: Any = None, cadata: Any = None) -> None:
        super().load_verify_locations(cafile, capath, cadata)
        self._evloop_trust.append((cafile, capath, cadata))

    def load_default_certs(self, purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH) -> None:
        super().load_default_certs(purpose)
        self._evloop_default_certs = True

    def set_alpn_protocols(self, alpn_protocols: Iterable[str]) -> None:
        protocols = list(alpn_protocols)
        super().set_alpn_protocols(protocols)
        self._evloop_alpn = protocols

    def set_ciphers(self, ciphers: str) -> None:
        super().set_ciphers(ciphers)
        self._evloop_unsupported.append(f"a cipher list ({ciphers!r})")

    def load_dh_params(self, path: str) -> None:
        super().load_dh_params(path)
        self._evloop_unsupported.append("DH parameters")

    def set_servername_callback(self, callback: Any) -> None:  # type: ignore[override]
        super().set_servername_callback(callback)
        if callback is not None:
            self._evloop_unsupported.append("an SNI callback")

    def unsupported(self) -> List[str]:
        """What this context was given that the library cannot do as
        OpenSSL would (empty: ``to_tls_config`` will work)."""
        found = list(self._evloop_unsupported)
        server = self.protocol == ssl.PROTOCOL_TLS_SERVER
        if server and self.verify_mode == ssl.CERT_OPTIONAL:
            found.append("optional client certificates (CERT_OPTIONAL)")
        if self.maximum_version not in _VERSIONS:
            found.append(f"maximum_version {self.maximum_version!r} (the library speaks TLS 1.2 and 1.3)")
        if server and self._evloop_chain is None:
            found.append("a server context without load_cert_chain")
        if getattr(self, "keylog_filename", None):
            found.append("keylog_filename")
        if getattr(self, "post_handshake_auth", False):
            found.append("post_handshake_auth")
        return found

    def to_tls_config(self) -> TLSConfig:
        """A ``TLSConfig`` that does what this context was told; raises
        ``TLSUnsupported`` when something has no equivalent."""
        missing = self.unsupported()
        if missing:
            raise TLSUnsupported("evloop's TLS cannot do " + ", ".join(missing))
        server = self.protocol == ssl.PROTOCOL_TLS_SERVER
        config = TLSConfig(server=server)
        try:
            if self._evloop_chain is not None:
                config.load_cert_chain(*self._evloop_chain)
            for cafile, capath, cadata in self._evloop_trust:
                config.load_verify_locations(cafile, capath, cadata)
            if self._evloop_default_certs and not server:
                config.load_default_certs()
            if self._evloop_alpn:
                config.set_alpn_protocols(self._evloop_alpn)
            config.set_verify(self._verify())
            minimum = _VERSIONS.get(self.minimum_version, _lib.EVL_TLS_1_2)
            maximum = _VERSIONS[self.maximum_version]
            if self.options & ssl.OP_NO_TLSv1_3:
                maximum = _lib.EVL_TLS_1_2
            config.set_versions(minimum, maximum)
        except BaseException:
            config.close()
            raise
        return config

    def _verify(self) -> int:
        if self.protocol == ssl.PROTOCOL_TLS_SERVER:
            # The library asks clients for certificates when it has CAs to
            # check them with (CERT_REQUIRED), and for none otherwise.
            return VERIFY_PEER if self.verify_mode == ssl.CERT_REQUIRED else VERIFY_NONE_DANGEROUS
        if self.verify_mode == ssl.CERT_NONE:
            return VERIFY_NONE_DANGEROUS
        return VERIFY_PEER if self.check_hostname else VERIFY_CHAIN_ONLY


def create_default_context(
    purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH,
    *,
    cafile: Optional[str] = None,
    capath: Optional[str] = None,
    cadata: Union[str, bytes, None] = None,
) -> EvloopSSLContext:
    """``ssl.create_default_context`` with the same arguments and the same
    settings, as an ``EvloopSSLContext``: a client context
    (``Purpose.SERVER_AUTH``: verifies the server's certificate and name,
    trusts ``cafile``/``capath``/``cadata`` or else the system's roots) or
    a server context (``Purpose.CLIENT_AUTH``: give it ``load_cert_chain``)."""
    if not isinstance(purpose, ssl.Purpose):
        raise TypeError(purpose)
    if purpose == ssl.Purpose.SERVER_AUTH:
        context = EvloopSSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context._evloop_init()
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = True
    else:
        context = EvloopSSLContext(ssl.PROTOCOL_TLS_SERVER)
        context._evloop_init()
    if cafile or capath or cadata:
        context.load_verify_locations(cafile, capath, cadata)
    elif context.verify_mode != ssl.CERT_NONE:
        context.load_default_certs(purpose)
    # As ssl.create_default_context does (3.10+): no TLS below 1.2.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


__all__ = [
    "EvloopSSLContext",
    "TLSConfig",
    "TLSUnsupported",
    "VERIFY_CHAIN_ONLY",
    "VERIFY_NONE_DANGEROUS",
    "VERIFY_PEER",
    "create_default_context",
]
