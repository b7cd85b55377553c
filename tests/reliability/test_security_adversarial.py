"""Adversarial TLS and isolation: an expired client certificate, plaintext to a TLS port, and
no user's data in another user's answers under concurrency. (Tokens, scopes and token-free
logs are tests/integration/test_security.py.)"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.reliability.support import DATAFILE, record
from tests.support.certs import Pair, make_certificates
from tests.support.daemon import client_for, settings_for
from trackd.server import running
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc


def expired_client(
    certs_dir: Path, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=10))
        .not_valid_after(now - datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pair = Pair(certs_dir / "expired.crt", certs_dir / "expired.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pair


async def test_expired_client_certificate_and_plaintext_are_refused(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "certs")
    expired = expired_client(tmp_path / "certs", certs.ca.cert, certs.ca.key)
    settings = settings_for(
        tmp_path / "d",
        datafile=DATAFILE,
        tls_cert=certs.server.cert,
        tls_key=certs.server.key,
        tls_client_ca=certs.ca.cert_path,
    )
    outcomes: dict[str, str] = {}
    async with running(settings) as daemon:
        address = f"127.0.0.1:{daemon.port}"
        request = pb.ActivateRequest(experiment_key="ab_running", user_id="u")
        for name, pair in (("valid_client_cert", certs.client), ("expired_client_cert", expired)):
            credentials = grpc.ssl_channel_credentials(
                certs.ca.cert_path.read_bytes(), pair.key.read_bytes(), pair.cert.read_bytes()
            )
            async with grpc.aio.secure_channel(address, credentials) as channel:
                try:
                    await pb_grpc.TrackingServiceStub(channel).Activate(request, timeout=5)
                    outcomes[name] = "OK"
                except grpc.aio.AioRpcError as error:
                    outcomes[name] = error.code().name
        # Plaintext HTTP/2 to the TLS port, and raw garbage bytes: refused, daemon unharmed.
        async with grpc.aio.insecure_channel(address) as plaintext:
            try:
                await pb_grpc.TrackingServiceStub(plaintext).Activate(request, timeout=5)
                outcomes["plaintext"] = "OK"
            except grpc.aio.AioRpcError as error:
                outcomes["plaintext"] = error.code().name
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 64)
        await writer.drain()
        with pytest.raises((ConnectionError, TimeoutError, asyncio.IncompleteReadError)):
            async with asyncio.timeout(5):
                await reader.readexactly(1 << 20)
        writer.close()
        credentials = grpc.ssl_channel_credentials(
            certs.ca.cert_path.read_bytes(),
            certs.client.key.read_bytes(),
            certs.client.cert.read_bytes(),
        )
        async with grpc.aio.secure_channel(address, credentials) as channel:
            assert (
                await pb_grpc.TrackingServiceStub(channel).Activate(request, timeout=5)
            ).variation_key
    record(
        "security_tls", **outcomes, garbage_bytes_to_tls_port="connection closed; daemon serves on"
    )
    assert outcomes == {
        "valid_client_cert": "OK",
        "expired_client_cert": "UNAVAILABLE",
        "plaintext": "UNAVAILABLE",
    }


USERS = 200


async def test_no_users_data_reaches_another_users_answers(tmp_path: Path) -> None:
    """Half the users are forced into variation_b and activated, the other half are not; all
    at once. Each answer names only its own user's state."""
    async with client_for(settings_for(tmp_path, datafile=DATAFILE)) as client:
        stub = client.stub

        async def user(n: int) -> list[str]:
            problems = []
            uid = f"iso-{n}"
            forced = n % 2 == 0
            if forced:
                await stub.SetForcedVariation(
                    pb.SetForcedVariationRequest(
                        experiment_key="ab_running", user_id=uid, variation_key="variation_b"
                    )
                )
                await stub.Activate(pb.ActivateRequest(experiment_key="ab_running", user_id=uid))
            got = await stub.GetForcedVariation(
                pb.GetForcedVariationRequest(experiment_key="ab_running", user_id=uid)
            )
            if got.variation_key != ("variation_b" if forced else ""):
                problems.append(f"{uid} forced={got.variation_key!r}")
            tracked = await stub.Track(pb.TrackRequest(event_key="my_conversion", user_id=uid))
            keys = [a.experiment_key for a in tracked.attributions]
            if (forced and keys != ["ab_running"]) or (not forced and keys):
                problems.append(f"{uid} attributions={keys}")
            if forced and tracked.attributions[0].variation_key != "variation_b":
                problems.append(f"{uid} variation={tracked.attributions[0].variation_key}")
            return problems

        results = await asyncio.gather(*(user(n) for n in range(USERS)))
    problems = [p for r in results for p in r]
    record("isolation", users=USERS, concurrent=True, leaks=len(problems))
    assert not problems, problems[:10]
