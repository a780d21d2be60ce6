"""TLS channel bindings for SCRAM -PLUS: tls-exporter (RFC 9266), tls-server-end-point (RFC 5929).

Python's ssl module cannot export keying material, so tls-exporter reaches the OpenSSL ``SSL*``
behind an ``ssl.SSLObject``/``ssl.SSLSocket`` through ctypes. The pointer is checked before use
(object type, then ``SSL_get_version`` against ``version()``); on any doubt the binding is simply
unavailable (None) and the server does not offer it.
"""

from __future__ import annotations

import _ssl
import ctypes
import functools
import ssl
import sys

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

__all__ = [
    "channel_bindings",
    "limit_asyncio_tls_buffers",
    "tls_exporter",
    "tls_server_end_point",
]

_EXPORTER_LABEL = b"EXPORTER-Channel-Binding"
_PTR_SIZE = ctypes.sizeof(ctypes.c_void_p)
# CPython Modules/_ssl.c: PySSLSocket { PyObject_HEAD; PyObject *Socket; SSL *ssl; ... }.
# ob_type is the last word of PyObject_HEAD, whose size is object.__basicsize__.
_TYPE_OFFSET = object.__basicsize__ - _PTR_SIZE
_SSL_OFFSET = object.__basicsize__ + _PTR_SIZE

_SSL_SOCKET_TYPE: type | None = getattr(_ssl, "_SSLSocket", None)

SSLLike = ssl.SSLObject | ssl.SSLSocket


@functools.cache
def _libssl() -> ctypes.CDLL | None:
    """The libssl that _ssl is linked against (dlsym on _ssl's handle reaches it)."""
    if sys.implementation.name != "cpython":
        return None
    try:
        lib = ctypes.CDLL(getattr(_ssl, "__file__", None))  # None: _ssl is built in
        lib.SSL_get_version.argtypes = [ctypes.c_void_p]
        lib.SSL_get_version.restype = ctypes.c_char_p
        lib.SSL_export_keying_material.argtypes = [
            ctypes.c_void_p,  # SSL *s
            ctypes.c_char_p,  # unsigned char *out
            ctypes.c_size_t,
            ctypes.c_char_p,  # const char *label
            ctypes.c_size_t,
            ctypes.c_char_p,  # const unsigned char *context
            ctypes.c_size_t,
            ctypes.c_int,  # use_context
        ]
        lib.SSL_export_keying_material.restype = ctypes.c_int
        lib.SSL_get_certificate.argtypes = [ctypes.c_void_p]
        lib.SSL_get_certificate.restype = ctypes.c_void_p
        lib.i2d_X509.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
        lib.i2d_X509.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return lib


def _ssl_pointer(ssl_object: SSLLike, lib: ctypes.CDLL) -> int | None:
    """The ``SSL*`` behind ``ssl_object``, or None if it cannot be trusted."""
    inner = getattr(ssl_object, "_sslobj", None)
    version = ssl_object.version()
    if _SSL_SOCKET_TYPE is None or type(inner) is not _SSL_SOCKET_TYPE or version is None:
        return None
    base = id(inner)  # CPython: the object's address
    if ctypes.c_void_p.from_address(base + _TYPE_OFFSET).value != id(_SSL_SOCKET_TYPE):
        return None
    ptr = ctypes.c_void_p.from_address(base + _SSL_OFFSET).value
    if not ptr:
        return None
    seen = lib.SSL_get_version(ptr)
    return ptr if seen is not None and seen.decode("ascii", "replace") == version else None


def limit_asyncio_tls_buffers(size: int = 16 * 1024) -> None:
    """Shrink the read buffer asyncio allocates for every TLS connection.

    COMPAT: CPython's ``asyncio.sslproto.SSLProtocol`` zero-fills a 256 KiB ``bytearray``
    per connection (``max_size``), which is most of an idle TLS session's memory. A TLS record
    carries at most 16 KiB, so a 16 KiB buffer costs only a few more read calls for bulk
    data. uvloop allocates its buffer lazily and is not affected.
    """
    import asyncio.sslproto

    proto = asyncio.sslproto.SSLProtocol
    if getattr(proto, "max_size", size) > size:
        proto.max_size = size


def tls_exporter(ssl_object: SSLLike, length: int = 32) -> bytes | None:
    """RFC 9266 tls-exporter: 32 bytes, label EXPORTER-Channel-Binding, no context.

    Only for TLS 1.3 (RFC 9266 §3); None when unavailable.
    """
    lib = _libssl()
    if lib is None or ssl_object.version() != "TLSv1.3":
        return None
    ptr = _ssl_pointer(ssl_object, lib)
    if ptr is None:
        return None
    out = ctypes.create_string_buffer(length)
    label = _EXPORTER_LABEL
    ok = lib.SSL_export_keying_material(ptr, out, length, label, len(label), None, 0, 0)
    return out.raw if ok == 1 else None


def _local_certificate_der(ssl_object: SSLLike) -> bytes | None:
    """Our own certificate as sent in this handshake (Python's ssl does not expose it)."""
    lib = _libssl()
    ptr = None if lib is None else _ssl_pointer(ssl_object, lib)
    if lib is None or ptr is None:
        return None
    cert = lib.SSL_get_certificate(ptr)
    if not cert:
        return None
    size = lib.i2d_X509(cert, None)
    if size <= 0:
        return None
    buf = ctypes.create_string_buffer(size)
    cursor = ctypes.c_void_p(ctypes.addressof(buf))
    return buf.raw if lib.i2d_X509(cert, ctypes.byref(cursor)) == size else None


def tls_server_end_point(
    ssl_object: SSLLike, *, server_side: bool, local_cert_der: bytes | None = None
) -> bytes | None:
    """RFC 5929 §4.1 tls-server-end-point: hash of the server certificate.

    The server passes its certificate as ``local_cert_der`` (else it is read via OpenSSL);
    the client uses the peer certificate.
    """
    if ssl_object.version() is None:
        return None  # handshake not done
    if server_side:
        der = local_cert_der or _local_certificate_der(ssl_object)
    else:
        der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    try:
        algorithm = x509.load_der_x509_certificate(der).signature_hash_algorithm
    except (ValueError, UnsupportedAlgorithm):
        return None
    if algorithm is None:
        return None  # RFC 5929 §4.1: undefined without a single hash (e.g. Ed25519)
    if isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        algorithm = hashes.SHA256()  # RFC 5929 §4.1: MD5 and SHA-1 are replaced by SHA-256
    digest = hashes.Hash(algorithm)
    digest.update(der)
    return digest.finalize()


def channel_bindings(
    ssl_object: SSLLike, *, server_side: bool, local_cert_der: bytes | None = None
) -> dict[str, bytes]:
    """The channel-binding types available on this connection, by RFC 5056 name."""
    found = {
        "tls-exporter": tls_exporter(ssl_object),
        "tls-server-end-point": tls_server_end_point(
            ssl_object, server_side=server_side, local_cert_der=local_cert_der
        ),
    }
    return {name: data for name, data in found.items() if data is not None}
