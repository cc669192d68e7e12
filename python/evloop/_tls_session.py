"""What a TLS stream of the library agreed on, in the shape of
``ssl.SSLObject`` (``TLSSession``), and its failures as the ``ssl``
module's exceptions (``tls_error``). Used by ``evloop.Transport``
(``get_extra_info('ssl_object')``) and the asyncio loop's TLS transports.

The library says what rustls knows: the version, the cipher suite, the ALPN
protocol, the server name, the peer's certificates (DER). The rest of an
``ssl.SSLObject`` answers as OpenSSL would where it can (``compression()``
is None: TLS 1.3 has none, and rustls never compresses) and None where
rustls has nothing to say (``shared_ciphers()``, channel bindings).
"""

from __future__ import annotations

import ctypes
import os
import ssl
import tempfile
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import _lib

#: The cipher suites rustls speaks: IANA number -> (OpenSSL's name, secret bits).
CIPHER_SUITES: Dict[int, Tuple[str, int]] = {
    0x1301: ("TLS_AES_128_GCM_SHA256", 128),
    0x1302: ("TLS_AES_256_GCM_SHA384", 256),
    0x1303: ("TLS_CHACHA20_POLY1305_SHA256", 256),
    0xC02B: ("ECDHE-ECDSA-AES128-GCM-SHA256", 128),
    0xC02C: ("ECDHE-ECDSA-AES256-GCM-SHA384", 256),
    0xC02F: ("ECDHE-RSA-AES128-GCM-SHA256", 128),
    0xC030: ("ECDHE-RSA-AES256-GCM-SHA384", 256),
    0xCCA8: ("ECDHE-RSA-CHACHA20-POLY1305", 256),
    0xCCA9: ("ECDHE-ECDSA-CHACHA20-POLY1305", 256),
}
VERSIONS = {_lib.EVL_TLS_1_2: "TLSv1.2", _lib.EVL_TLS_1_3: "TLSv1.3"}

#: What a stream's queries take: a library function and its arguments after
#: the loop and stream (returns the C function's result, raises if negative).
Query = Callable[..., int]


class TLSSession:
    """An ``ssl.SSLObject`` look-alike over a library TLS stream: what its
    handshake agreed on, read from the library when first asked (or at once
    with ``load()``) and kept, so it still answers once the stream is gone."""

    def __init__(
        self,
        query: Optional[Query],
        *,
        server_side: bool,
        server_hostname: Optional[str] = None,
        context: Optional[ssl.SSLContext] = None,
        verified: bool = True,
        loaded: Optional[Dict[str, Any]] = None,
    ) -> None:
        self._query = query
        self.server_side = server_side
        self.server_hostname = None if server_side else server_hostname
        self.context = context
        self._verified = verified  # the peer's certificate was checked (not CERT_NONE)
        # What the handshake agreed on, if the caller has it already.
        self._loaded: Optional[Dict[str, Any]] = loaded

    def __repr__(self) -> str:
        return f"<evloop TLSSession server_side={self.server_side} version={self.version()!r}>"

    def load(self) -> Dict[str, Any]:
        """Reads what the handshake agreed on (once): the queries fail once
        the library's stream has ended, so call this while it is open."""
        if self._loaded is None:
            query = self._query
            if query is None:
                raise OSError("evloop: the TLS stream is gone")
            version = query(_lib.evl_tls_version)
            if version == 0:  # still handshaking: nothing to keep yet
                return {"version": 0, "suite": 0, "alpn": None, "sni": None, "certs": []}
            self._loaded = {
                "version": version,
                "suite": query(_lib.evl_tls_cipher_suite),
                "alpn": _text(query, _lib.evl_tls_alpn),
                "sni": _text(query, _lib.evl_tls_server_name),
                "certs": _certificates(query),
            }
        return self._loaded

    def _get(self, key: str) -> Any:
        try:
            return self.load()[key]
        except OSError:  # the stream is gone and nothing was kept
            return None

    # ---- ssl.SSLObject's methods -------------------------------------------------

    def version(self) -> Optional[str]:
        """'TLSv1.3' or 'TLSv1.2'; None before the handshake is done."""
        return VERSIONS.get(self._get("version") or 0)

    def cipher(self) -> Optional[Tuple[str, str, int]]:
        """(name, version, secret bits), as ssl.SSLObject.cipher()."""
        suite = self._get("suite")
        if not suite:
            return None
        name, bits = CIPHER_SUITES.get(suite, (f"0x{suite:04X}", 0))
        return name, self.version() or "", bits

    def selected_alpn_protocol(self) -> Optional[str]:
        return self._get("alpn")

    def selected_npn_protocol(self) -> None:
        return None

    def compression(self) -> None:
        return None

    def shared_ciphers(self) -> None:
        return None

    def pending(self) -> int:
        return 0  # the library hands out plaintext as soon as it is decrypted

    def get_channel_binding(self, cb_type: str = "tls-unique") -> None:
        return None

    @property
    def session_reused(self) -> bool:
        return False

    @property
    def sni(self) -> Optional[str]:
        """The server name of the handshake: the one a client asked for, or
        the one the client sent a server (SNI), None if none."""
        return self._get("sni")

    def peer_certificates(self) -> list:
        """The peer's certificate chain as it sent it (DER, its own first)."""
        return list(self._get("certs") or [])

    def getpeercert(self, binary_form: bool = False) -> Any:
        """The peer's certificate: DER bytes with ``binary_form``; else the
        dict ssl.SSLObject.getpeercert() gives ({} when it was not
        verified); None if the peer sent none."""
        certs = self._get("certs")
        if not certs:
            return None
        if binary_form:
            return certs[0]
        if not self._verified:
            return {}
        return decode_certificate(certs[0])


def session_info(info: Tuple[int, int, Optional[bytes], Optional[bytes], Tuple[bytes, ...]]) -> Dict[str, Any]:
    """TLSSession's `loaded` from the native loop's `(version, suite, alpn,
    sni, certificates)` (names as bytes)."""
    version, suite, alpn, sni, certs = info
    return {"version": version, "suite": suite, "alpn": _ascii(alpn), "sni": _ascii(sni), "certs": list(certs)}


def _ascii(name: Optional[bytes]) -> Optional[str]:
    return None if not name else name.decode("ascii", errors="replace")


def _text(query: Query, function: Any) -> Optional[str]:
    buf = ctypes.create_string_buffer(256)
    size = query(function, buf, len(buf))
    if size <= 0:
        return None
    if size >= len(buf):
        buf = ctypes.create_string_buffer(size + 1)
        size = query(function, buf, len(buf))
    return buf.raw[:size].decode("ascii", errors="replace")


def _certificates(query: Query) -> List[bytes]:
    certs: List[bytes] = []
    buf = ctypes.create_string_buffer(4096)
    while True:
        size = query(_lib.evl_tls_peer_certificate, len(certs), buf, len(buf))
        if size == 0:
            return certs
        if size > len(buf):
            buf = ctypes.create_string_buffer(size)
            size = query(_lib.evl_tls_peer_certificate, len(certs), buf, len(buf))
        certs.append(buf.raw[:size])


def decode_certificate(der: bytes) -> dict:
    """The dict ssl.SSLSocket.getpeercert() gives for a DER certificate,
    decoded by the ssl module's own decoder (which reads a PEM file)."""
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:
        return {}
    fd, name = tempfile.mkstemp(prefix="evloop-cert-", suffix=".pem")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(ssl.DER_cert_to_PEM_cert(der))
        return dict(decode(name))
    finally:
        os.unlink(name)


# ---- failures ------------------------------------------------------------------------

# rustls's words for a certificate failure -> OpenSSL's verify code and message.
_VERIFY = (
    ("NotValidForName", 62, "Hostname mismatch, certificate is not valid for {name!r}."),
    ("not valid for name", 62, "Hostname mismatch, certificate is not valid for {name!r}."),
    ("Expired", 10, "certificate has expired"),
    ("NotValidYet", 9, "certificate is not yet valid"),
    ("UnknownIssuer", 20, "unable to get local issuer certificate"),
    ("Revoked", 23, "certificate revoked"),
    ("BadSignature", 7, "certificate signature failure"),
)


def tls_error(status: int, reason: str, server_hostname: Optional[str] = None) -> Exception:
    """The exception for a TLS stream's failure `status` (EVL_ETLS_*) with
    the library's `reason`: ssl.SSLCertVerificationError for the peer's
    certificate (verify_code and verify_message as OpenSSL's where rustls
    says the same thing), ssl.SSLError for the handshake or the protocol;
    other statuses as the library's errors."""
    if status == _lib.EVL_ETLS_CERT:
        code, message = 1, reason or "certificate verify failed"
        for words, verify_code, text in _VERIFY:
            if words in reason:
                code, message = verify_code, text.format(name=server_hostname or "")
                break
        detail = message if message == reason or not reason else f"{message} ({reason})"
        exc: Exception = ssl.SSLCertVerificationError(
            1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {detail}"
        )
        exc.verify_code = code  # type: ignore[attr-defined]
        exc.verify_message = message  # type: ignore[attr-defined]
        _name(exc, "CERTIFICATE_VERIFY_FAILED")
        return exc
    if status == _lib.EVL_ETLS_HANDSHAKE:
        exc = ssl.SSLError(1, f"[SSL: HANDSHAKE_FAILURE] TLS handshake failed: {reason or 'handshake failure'}")
        _name(exc, "HANDSHAKE_FAILURE")
        return exc
    if status == _lib.EVL_ETLS_PROTOCOL:
        exc = ssl.SSLError(1, f"[SSL: PROTOCOL_ERROR] TLS protocol error: {reason or 'protocol error'}")
        _name(exc, "PROTOCOL_ERROR")
        return exc
    return _lib.error(status)


def _name(exc: Exception, reason: str) -> None:
    exc.library = "SSL"  # type: ignore[attr-defined]
    exc.reason = reason  # type: ignore[attr-defined]


def is_tls_status(status: int) -> bool:
    return status in (_lib.EVL_ETLS_CERT, _lib.EVL_ETLS_HANDSHAKE, _lib.EVL_ETLS_PROTOCOL)


def error_reason(query: Query) -> str:
    """Why the library's TLS stream failed (its words)."""
    try:
        return _text(query, _lib.evl_tls_error_reason) or ""
    except OSError:
        return ""
