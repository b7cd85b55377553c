"""TLS credentials, read and checked once at start so a bad file is one clear line."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import grpc

from trackd.config import Settings, SettingsError

# What the daemon hands from `prepare` to the endpoint, named here so it need not import grpc.
ServerCredentials: TypeAlias = grpc.ServerCredentials


def _read(flag: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise SettingsError([f"{flag} {path}: cannot read: {error.strerror}"]) from error


@dataclass(frozen=True)
class _Checked:
    cert: bytes
    key: bytes
    client_ca: bytes | None
    context: ssl.SSLContext


def _checked(settings: Settings) -> _Checked | None:
    """The TLS files of the settings, read and checked (None for plaintext). The ssl module
    checks what gRPC would only reject at the first handshake: that the files are PEM and
    that the key belongs to the certificate. An empty password makes an encrypted key fail
    here (gRPC cannot use one) instead of prompting on the terminal."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    cert = _read("--tls-cert", settings.tls_cert)
    key = _read("--tls-key", settings.tls_key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key, password=lambda: b"")
    except ssl.SSLError as error:
        raise SettingsError(
            [
                "--tls-cert/--tls-key: not a matching PEM certificate and unencrypted key"
                f" ({error.reason or error.strerror or 'unreadable'})"
            ]
        ) from None
    client_ca = None
    if settings.tls_client_ca is not None:
        client_ca = _read("--tls-client-ca", settings.tls_client_ca)
        try:
            context.load_verify_locations(cadata=client_ca.decode("ascii", "replace"))
        except ssl.SSLError as error:
            raise SettingsError(
                [f"--tls-client-ca {settings.tls_client_ca}: not a PEM CA bundle ({error.reason})"]
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return _Checked(cert, key, client_ca, context)


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """None for plaintext; with --tls-client-ca, clients must present a certificate it signed."""
    checked = _checked(settings)
    if checked is None:
        return None
    return grpc.ssl_server_credentials(
        [(checked.key, checked.cert)],
        root_certificates=checked.client_ca,
        require_client_auth=checked.client_ca is not None,
    )


def http_context(settings: Settings) -> ssl.SSLContext | None:
    """The HTTP port's TLS, from the same files and with the same client CA as gRPC's; None
    for plaintext."""
    checked = _checked(settings)
    return checked.context if checked is not None else None


def channel_credentials(
    ca: Path | None, cert: Path | None = None, key: Path | None = None
) -> grpc.ChannelCredentials:
    """Client side, for `trackd health`: trust `ca` (the system roots when None) and present
    `cert`/`key` to a server that wants mutual TLS."""
    return grpc.ssl_channel_credentials(
        root_certificates=_read("--tls-ca", ca) if ca else None,
        private_key=_read("--tls-key", key) if key else None,
        certificate_chain=_read("--tls-cert", cert) if cert else None,
    )
