"""The world a recorded agent talks to: DNS, "remote" HTTPS hosts, an LLM provider, AWS,
the Kubernetes API server — all on loopback (127.77.0.0/16), never the network.

- **DNS** (UDP 127.77.0.53:53, dnspython): every name resolves to a loopback address of
  its own, allocated on first query; an agent's pod resolves through it (the agent's
  ``sitecustomize`` replaces ``socket.getaddrinfo``, like a pod's resolv.conf pointing
  at CoreDNS), so the kernel collector sees real DNS questions and answers.
- **HTTPS** on port 443 of each host's address, with a certificate for its name issued
  on the fly (SNI) by a CA the pods trust. The agents' real SDKs (openai, anthropic,
  boto3, httpx) talk to ``api.openai.com`` and ``s3.us-west-2.amazonaws.com`` unchanged.
- **Handlers** by host: the LLM providers answer from a per-agent script (OpenAI chat
  completions, Anthropic messages); ``*.amazonaws.com`` answers STS, S3, IAM and Secrets
  Manager in their wire formats and logs each call (the CloudTrail of the recording is
  made from this log); ``kubernetes.default.svc`` answers API-server reads; a PEP 503
  index serves small wheels; every other host answers like a web site or a collector.

Everything runs in one asyncio loop on a thread of the recording process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import io
import ipaddress
import json
import ssl
import threading
import time
import zipfile
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["DNS_ADDR", "Request", "Response", "World"]

DNS_ADDR = ("127.77.0.53", 53)
_NET = "127.77"


@dataclass
class Request:
    ts_ns: int
    host: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client: str
    server: str

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, doc: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(doc).encode())


Handler = Callable[[Request], Awaitable[Response] | Response]


# -- certificates ---------------------------------------------------------------------
class Authority:
    """A CA the pods trust and a leaf per host name, made when first asked for."""

    def __init__(self, folder: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._x509, self._hashes, self._ser, self._ec, self._oid = (
            x509, hashes, serialization, ec, NameOID)
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentstory recording CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = folder / "ca.pem"
        self.ca_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def context_for(self, host: str) -> ssl.SSLContext:
        with self._lock:
            ctx = self._contexts.get(host)
            if ctx is None:
                ctx = self._contexts[host] = self._leaf_context(host)
            return ctx

    def _leaf_context(self, host: str) -> ssl.SSLContext:
        x509, ser = self._x509, self._ser
        key = self._ec.generate_private_key(self._ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        try:
            alt: Any = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            alt = x509.DNSName(host)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(self._oid.COMMON_NAME, host[:64])]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, self._hashes.SHA256())
        )
        safe = hashlib.sha1(host.encode()).hexdigest()[:12]
        cert_path, key_path = self.folder / f"{safe}.crt", self.folder / f"{safe}.key"
        cert_path.write_bytes(cert.public_bytes(ser.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8,
                                               ser.NoEncryption()))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_path, key_path)
        return ctx


# -- the scripted LLM ------------------------------------------------------------------
class ScriptedModel:
    """Per-agent queues of model turns. A turn is ``{"text": …}`` or
    ``{"tool_calls": [{"name": …, "args": {…}}, …]}``; an empty queue answers "Done."

    The agent is keyed by its API key (``sk-rec-<agent>``), which the L7 collector
    removes on the node, so the key leaves no trace in the recording."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.calls = 0

    def push(self, agent: str, turns: list[dict[str, Any]]) -> None:
        with self._lock:
            self._queues.setdefault(agent, deque()).extend(turns)

    def pending(self, agent: str) -> int:
        with self._lock:
            return len(self._queues.get(agent, ()))

    def clear(self, agent: str) -> None:
        with self._lock:
            self._queues.pop(agent, None)

    def _next(self, req: Request) -> dict[str, Any]:
        auth = req.headers.get("authorization", "") or req.headers.get("x-api-key", "")
        agent = auth.rsplit("sk-rec-", 1)[-1] if "sk-rec-" in auth else ""
        with self._lock:
            self.calls += 1
            queue = self._queues.get(agent)
            return queue.popleft() if queue else {"text": "Done."}

    def handle(self, req: Request) -> Response:
        if req.method != "POST":
            return Response.json({"error": "method"}, 405)
        try:
            body = json.loads(req.body or b"{}")
        except ValueError:
            return Response.json({"error": {"message": "bad json"}}, 400)
        turn = self._next(req)
        model = str(body.get("model", "model"))
        n = self.calls
        if req.path.endswith("/messages"):
            return Response.json(_anthropic(turn, model, n))
        return Response.json(_openai(turn, model, n))


def _openai(turn: dict[str, Any], model: str, n: int) -> dict[str, Any]:
    calls = turn.get("tool_calls") or []
    message: dict[str, Any] = {"role": "assistant", "content": turn.get("text")}
    if calls:
        message["tool_calls"] = [
            {"id": f"call_{n}_{i}", "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c.get("args", {}))}}
            for i, c in enumerate(calls)]
    return {"id": f"chatcmpl-rec{n}", "object": "chat.completion", "created": 1763700000 + n,
            "model": model, "choices": [{"index": 0, "message": message,
                                         "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": {"prompt_tokens": 200, "completion_tokens": 30, "total_tokens": 230}}


def _anthropic(turn: dict[str, Any], model: str, n: int) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if turn.get("text"):
        content.append({"type": "text", "text": turn["text"]})
    for i, c in enumerate(turn.get("tool_calls") or []):
        content.append({"type": "tool_use", "id": f"toolu_{n:04d}{i}", "name": c["name"],
                        "input": c.get("args", {})})
    stop = "tool_use" if turn.get("tool_calls") else "end_turn"
    return {"id": f"msg_rec{n}", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": 200, "output_tokens": 30}}


# -- AWS -------------------------------------------------------------------------------
@dataclass
class AwsCall:
    """One request as AWS received it: what the recording's CloudTrail is made from."""

    ts_ns: int
    service: str
    operation: str
    params: dict[str, Any]
    access_key_id: str
    client: str
    user_agent: str
    host: str
    response: dict[str, Any] = field(default_factory=dict)
    bytes_out: int = 0


class FakeAws:
    """STS, S3, IAM and Secrets Manager, enough of each wire format for boto3."""

    def __init__(self, account: str = "111122223333", region: str = "us-west-2") -> None:
        self.account = account
        self.region = region
        self.calls: list[AwsCall] = []
        self.objects: dict[str, dict[str, bytes]] = {}
        self.secrets: dict[str, str] = {}
        self.roles: list[str] = []
        self.outside = False  # set while an actor outside the cluster makes calls
        self._n = 0
        self._lock = threading.Lock()

    def _key_id(self, seed: str) -> str:
        with self._lock:
            self._n += 1
            n = self._n
        digest = hashlib.sha256(f"{seed}:{n}".encode()).hexdigest().upper()
        return "ASIA" + "".join(c for c in digest if c.isalnum())[:16]

    def handle(self, req: Request) -> Response:
        auth = req.headers.get("authorization", "")
        akid, service = "", ""
        if "Credential=" in auth:
            scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
            akid, service = scope[0], scope[3] if len(scope) > 3 else ""
        form = parse_qs(req.body.decode(errors="replace")) if req.method == "POST" else {}
        target = req.headers.get("x-amz-target", "")
        if not service:
            service = "sts" if "Action" in form else req.host.split(".")[0]
        call = AwsCall(req.ts_ns, service, "", {}, akid,
                       "outside" if self.outside else req.client,
                       req.headers.get("user-agent", ""), req.host)
        if target:
            call.operation = target.split(".")[-1]
            try:
                call.params = json.loads(req.body or b"{}")
            except ValueError:
                call.params = {}
            resp = self._json_api(call)
        elif "Action" in form:
            call.operation = form["Action"][0]
            call.params = {k: v[0] for k, v in form.items() if k not in ("Action", "Version")}
            resp = self._query_api(call)
        else:
            resp = self._s3(call, req)
        call.bytes_out = len(resp.body)
        with self._lock:
            self.calls.append(call)
        return resp

    # -- protocols
    def _query_api(self, call: AwsCall) -> Response:
        rid = hashlib.md5(f"{call.ts_ns}".encode()).hexdigest()
        if call.operation == "AssumeRoleWithWebIdentity":
            token = call.params.get("WebIdentityToken", "")
            subject = _jwt_sub(token)
            key = self._key_id(subject + call.client)
            role = call.params.get("RoleArn", "")
            session = call.params.get("RoleSessionName", "session")
            exp = datetime.datetime.fromtimestamp(call.ts_ns / 1e9 + 3600, datetime.UTC)
            call.response = {"accessKeyId": key, "subject": subject,
                             "expiration": exp.strftime("%Y-%m-%dT%H:%M:%SZ"),
                             "assumedRoleArn": role.replace(":iam::", ":sts::").replace(
                                 ":role/", ":assumed-role/") + f"/{session}",
                             "sessionName": session}
            body = (
                '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/'
                '2011-06-15/"><AssumeRoleWithWebIdentityResult>'
                f"<SubjectFromWebIdentityToken>{subject}</SubjectFromWebIdentityToken>"
                "<Audience>sts.amazonaws.com</Audience><AssumedRoleUser>"
                f"<Arn>{call.response['assumedRoleArn']}</Arn>"
                f"<AssumedRoleId>AROAEXAMPLEROLEID1234:{session}</AssumedRoleId>"
                "</AssumedRoleUser><Credentials>"
                f"<SessionToken>FwoGZXIvYXdzE{key}</SessionToken>"
                f"<SecretAccessKey>{hashlib.sha1(key.encode()).hexdigest()}</SecretAccessKey>"
                f"<Expiration>{call.response['expiration']}</Expiration>"
                f"<AccessKeyId>{key}</AccessKeyId></Credentials>"
                f"<Provider>arn:aws:iam::{self.account}:oidc-provider/oidc.eks.{self.region}"
                ".amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE</Provider>"
                "</AssumeRoleWithWebIdentityResult>"
                f"<ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata>"
                "</AssumeRoleWithWebIdentityResponse>")
        elif call.operation == "GetCallerIdentity":
            body = (
                '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                f"<GetCallerIdentityResult><Arn>arn:aws:sts::{self.account}:assumed-role/"
                f"agent/session</Arn><UserId>AROAEXAMPLE:session</UserId><Account>"
                f"{self.account}</Account></GetCallerIdentityResult><ResponseMetadata>"
                f"<RequestId>{rid}</RequestId></ResponseMetadata></GetCallerIdentityResponse>")
        elif call.operation == "ListRoles":
            members = "".join(
                f"<member><Path>/</Path><RoleName>{r}</RoleName><RoleId>AROA{i:016d}</RoleId>"
                f"<Arn>arn:aws:iam::{self.account}:role/{r}</Arn>"
                "<CreateDate>2025-01-01T00:00:00Z</CreateDate></member>"
                for i, r in enumerate(self.roles))
            body = (
                '<ListRolesResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
                f"<ListRolesResult><IsTruncated>false</IsTruncated><Roles>{members}</Roles>"
                f"</ListRolesResult><ResponseMetadata><RequestId>{rid}</RequestId>"
                "</ResponseMetadata></ListRolesResponse>")
        else:
            return Response(400, b"<ErrorResponse><Error><Code>InvalidAction</Code>"
                                 b"</Error></ErrorResponse>", "text/xml")
        return Response(200, body.encode(), "text/xml")

    def _json_api(self, call: AwsCall) -> Response:
        if call.operation == "ListSecrets":
            return Response(200, json.dumps({"SecretList": [
                {"ARN": f"arn:aws:secretsmanager:{self.region}:{self.account}:secret:{n}",
                 "Name": n} for n in self.secrets]}).encode(), "application/x-amz-json-1.1")
        if call.operation == "GetSecretValue":
            name = str(call.params.get("SecretId", ""))
            if name not in self.secrets:
                return Response(400, json.dumps({
                    "__type": "ResourceNotFoundException", "message": "not found"}).encode(),
                    "application/x-amz-json-1.1")
            return Response(200, json.dumps({
                "ARN": f"arn:aws:secretsmanager:{self.region}:{self.account}:secret:{name}",
                "Name": name, "SecretString": self.secrets[name], "VersionId": "v1",
                "CreatedDate": 1763700000}).encode(), "application/x-amz-json-1.1")
        return Response(400, b'{"__type": "UnknownOperationException"}',
                        "application/x-amz-json-1.1")

    def _s3(self, call: AwsCall, req: Request) -> Response:
        parts = urlsplit(req.path)
        host_bucket = req.host.split(".s3.", 1)[0] if ".s3." in req.host else ""
        path = parts.path.lstrip("/")
        bucket, _, key = (path.partition("/") if not host_bucket else (host_bucket, "/", path))
        query = parse_qs(parts.query)
        call.service = "s3"
        if not bucket:
            call.operation = "ListBuckets"
            items = "".join(f"<Bucket><Name>{b}</Name><CreationDate>2025-01-01T00:00:00.000Z"
                            "</CreationDate></Bucket>" for b in self.objects)
            return Response(200, (
                '<ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<Owner><ID>owner</ID></Owner><Buckets>{items}</Buckets>"
                "</ListAllMyBucketsResult>").encode(), "application/xml")
        call.params = {"bucketName": bucket}
        objects = self.objects.get(bucket, {})
        if not key and req.method == "GET":
            call.operation = "ListObjects" if "list-type" not in query else "ListObjectsV2"
            prefix = query.get("prefix", [""])[0]
            call.params["prefix"] = prefix
            keys = [k for k in sorted(objects) if k.startswith(prefix)][:1000]
            items = "".join(f"<Contents><Key>{k}</Key><Size>{len(objects[k])}</Size>"
                            "<LastModified>2025-01-01T00:00:00.000Z</LastModified>"
                            f'<ETag>"{hashlib.md5(objects[k]).hexdigest()}"</ETag>'
                            "<StorageClass>STANDARD</StorageClass></Contents>" for k in keys)
            return Response(200, (
                '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<Name>{bucket}</Name><Prefix>{prefix}</Prefix><KeyCount>{len(keys)}</KeyCount>"
                f"<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>{items}"
                "</ListBucketResult>").encode(), "application/xml")
        call.params["key"] = key
        if req.method == "GET" and key in objects:
            call.operation = "GetObject"
            data = objects[key]
            return Response(200, data, "application/octet-stream", {
                "ETag": f'"{hashlib.md5(data).hexdigest()}"',
                "Last-Modified": "Wed, 01 Jan 2025 00:00:00 GMT"})
        if req.method == "PUT":
            call.operation = "PutObject"
            self.objects.setdefault(bucket, {})[key] = req.body
            return Response(200, b"", "application/xml",
                            {"ETag": f'"{hashlib.md5(req.body).hexdigest()}"'})
        call.operation = "GetObject" if req.method == "GET" else req.method
        return Response(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")


def _jwt_sub(token: str) -> str:
    try:
        payload = token.split(".")[1]
        return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
                   ["sub"])
    except (IndexError, ValueError, KeyError):
        return "unknown"


def projected_token(subject: str, audience: str, seed: str) -> str:
    """A JWT shaped like a projected service-account token (not signed for real)."""
    def b64(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
    head = b64({"alg": "RS256", "kid": "rec"})
    body = b64({"aud": [audience], "iss": "https://oidc.eks.us-west-2.amazonaws.com/id/"
                "EXAMPLED539D4633E53DE1B71EXAMPLE", "sub": subject, "exp": 1900000000,
                "iat": 1763700000})
    return f"{head}.{body}.{hashlib.sha256(seed.encode()).hexdigest()}"


# -- PyPI simple index ----------------------------------------------------------------
def tiny_wheel(name: str, version: str) -> bytes:
    """A valid pure-Python wheel with one module (for pip installs in recordings)."""
    mod = name.replace("-", "_")
    dist = f"{mod}-{version}.dist-info"
    files = {
        f"{mod}/__init__.py": f'__version__ = "{version}"\n'.encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: agentstory\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
    }
    record = "".join(
        f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()}"
        f",{len(d)}\n" for p, d in files.items()) + f"{dist}/RECORD,,\n"
    files[f"{dist}/RECORD"] = record.encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files.items():
            zf.writestr(zipfile.ZipInfo(path, (2025, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


class FakeIndex:
    def __init__(self) -> None:
        self.wheels: dict[str, bytes] = {}

    def handle(self, req: Request) -> Response:
        parts = [p for p in urlsplit(req.path).path.split("/") if p]
        if len(parts) >= 2 and parts[0] == "simple":
            name = parts[1].lower()
            fname = f"{name.replace('-', '_')}-1.0.0-py3-none-any.whl"
            if fname not in self.wheels:
                self.wheels[fname] = tiny_wheel(name, "1.0.0")
            digest = hashlib.sha256(self.wheels[fname]).hexdigest()
            html = (f'<!DOCTYPE html><html><body><a href="https://files.pythonhosted.org/'
                    f'packages/{fname}#sha256={digest}">{fname}</a></body></html>')
            return Response(200, html.encode(), "text/html")
        if parts and parts[-1] in self.wheels:
            return Response(200, self.wheels[parts[-1]], "application/octet-stream")
        return Response(404, b"not found", "text/plain")


# -- the world --------------------------------------------------------------------------
class World:
    """DNS, hosts and handlers on loopback, served from one asyncio loop on a thread."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.authority = Authority(folder)
        self.model = ScriptedModel()
        self.aws = FakeAws()
        self.index = FakeIndex()
        self.addresses: dict[str, str] = {}
        self.handlers: dict[str, Handler] = {}
        self.requests: list[Request] = []
        self.kube: Callable[[Request], Response] | None = None
        self._n = 10
        self._servers: dict[tuple[str, int], asyncio.base_events.Server] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="world",
                                        daemon=True)
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: set[asyncio.Future[None]] = set()
        self.raw_listeners: dict[tuple[str, int], Callable[..., Awaitable[None]]] = {}

    # -- lifecycle
    def start(self) -> World:
        self._thread.start()
        self._call(self._start_dns())
        return self

    def stop(self) -> None:
        async def close() -> None:
            for server in self._servers.values():
                server.close()
            if self._transport is not None:
                self._transport.close()
        try:
            self._call(close(), timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            if not self._thread.is_alive():
                self._loop.close()

    def _call(self, coro: Awaitable[Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    # -- names
    def address_of(self, name: str) -> str:
        name = name.lower().rstrip(".")
        addr = self.addresses.get(name)
        if addr is None:
            self._n += 1
            addr = self.addresses[name] = f"{_NET}.{self._n // 250}.{self._n % 250 + 2}"
        return addr

    def host(self, name: str, handler: Handler | None = None) -> str:
        """Register a host (its handler, if special) and serve HTTPS on :443 for it."""
        if handler is not None:
            self.handlers[name] = handler
        addr = self.address_of(name)
        self._call(self._ensure_https(addr))
        return addr

    def listen_raw(self, name: str, port: int,
                   on_connect: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                        Awaitable[None]]) -> str:
        """A plain TCP listener (a reverse-shell catcher) on ``name``'s address."""
        addr = self.address_of(name)

        async def start() -> None:
            if (addr, port) not in self._servers:
                self._servers[(addr, port)] = await asyncio.start_server(on_connect, addr, port)
        self._call(start())
        return addr

    def run(self, coro: Awaitable[Any], timeout: float = 60) -> Any:
        return self._call(coro, timeout)

    async def _start_dns(self) -> None:
        world = self

        class Dns(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                world._transport = transport  # type: ignore[assignment]

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                task = asyncio.ensure_future(world._answer(data, addr))
                world._pending.add(task)
                task.add_done_callback(world._pending.discard)

        await self._loop.create_datagram_endpoint(Dns, local_addr=DNS_ADDR)

    async def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        import dns.message
        import dns.rcode
        import dns.rdatatype
        import dns.rrset

        try:
            query = dns.message.from_wire(data)
        except Exception:
            return
        reply = dns.message.make_response(query)
        for question in query.question:
            name = question.name.to_text().rstrip(".").lower()
            if question.rdtype == dns.rdatatype.A:
                ip = self.address_of(name)
                with contextlib.suppress(OSError, ValueError):  # still answer: it resolves
                    await self._ensure_https(ip)
                reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", ip))
        if self._transport is not None:
            self._transport.sendto(reply.to_wire(), addr)

    async def _ensure_https(self, addr: str) -> None:
        if (addr, 443) in self._servers:
            return
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        default = next((n for n, a in self.addresses.items() if a == addr), addr)
        ctx.load_cert_chain(*self._leaf_files(default))

        def sni(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            if name:
                sock.context = self.authority.context_for(name)
        ctx.sni_callback = sni  # type: ignore[assignment]
        self._servers[(addr, 443)] = await asyncio.start_server(
            lambda r, w: self._serve(r, w, addr), addr, 443, ssl=ctx)

    def _leaf_files(self, host: str) -> tuple[Path, Path]:
        self.authority.context_for(host)
        safe = hashlib.sha1(host.encode()).hexdigest()[:12]
        return self.folder / f"{safe}.crt", self.folder / f"{safe}.key"

    # -- HTTP/1.1
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     addr: str) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        sslobj = writer.get_extra_info("ssl_object")
        sni = getattr(sslobj, "server_hostname", None)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = [*lines[0].split(" ", 2), "", ""][:3]
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = b""
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                        chunk = await reader.readexactly(size + 2)
                        if size == 0:
                            break
                        body += chunk[:-2]
                elif headers.get("content-length"):
                    body = await reader.readexactly(int(headers["content-length"]))
                if headers.get("expect", "").lower() == "100-continue" and not body:
                    pass
                host = headers.get("host", sni or addr).split(":")[0].lower()
                req = Request(time.time_ns(), host, method, target, headers, body, peer[0], addr)
                self.requests.append(req)
                resp = await self._dispatch(req)
                out = (f"HTTP/1.1 {resp.status} {'OK' if resp.status < 400 else 'Error'}\r\n"
                       f"Content-Type: {resp.content_type}\r\nContent-Length: {len(resp.body)}"
                       "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in resp.headers.items())
                       + "\r\n").encode() + resp.body
                writer.write(out)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, ValueError,
                asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _dispatch(self, req: Request) -> Response:
        if req.host.startswith(_NET + "."):  # addressed by IP: the name it was given
            req.host = next((n for n, a in self.addresses.items() if a == req.host), req.host)
        handler = self.handlers.get(req.host)
        if handler is None:
            if req.host.endswith(".amazonaws.com"):
                handler = self.aws.handle
            elif req.host in ("api.openai.com", "api.anthropic.com"):
                handler = self.model.handle
            elif req.host in ("pypi.org", "files.pythonhosted.org"):
                handler = self.index.handle
            elif req.host.startswith("kubernetes.default") and self.kube is not None:
                handler = self.kube
            else:
                handler = _website
        try:
            result = handler(req)
            if asyncio.iscoroutine(result):
                result = await result
            return result  # type: ignore[return-value]
        except Exception as exc:  # a handler bug answers 500, it does not stop the world
            return Response.json({"error": repr(exc)}, 500)


def _website(req: Request) -> Response:
    """Any other host: JSON for API-looking paths, a small page otherwise; POSTs are
    accepted (a webhook, a metrics collector, or an attacker's drop)."""
    if req.method in ("POST", "PUT"):
        return Response.json({"ok": True, "received": len(req.body)})
    path = urlsplit(req.path).path
    if "/api/" in path or path.endswith(".json"):
        seed = int(hashlib.sha1((req.host + path).encode()).hexdigest()[:8], 16)
        return Response.json({"host": req.host, "path": path, "items": [
            {"id": seed % 1000 + i, "value": (seed >> i) % 97} for i in range(3)]})
    title = req.host.split(".")[0].replace("-", " ").title()
    return Response(200, (f"<html><head><title>{title}</title></head><body><h1>{title}</h1>"
                          f"<p>Article at {path}.</p></body></html>").encode(), "text/html")
