"""A recorded agent: a real process running the official LLM SDKs and real tools.

Started by the recorder *outside* the pod with ``python -m topologies.scenarios.agent_main
CONFIG``. It first mounts its pod's view of ``/run`` (a private mount namespace with the
projected service-account tokens, as the kubelet mounts them), prints ``setup`` and waits
for ``go`` while the recorder moves it into the pod's cgroup. Then it reads tasks, one
JSON line each, and for each runs the usual agent loop: ask the model (``openai`` or
``anthropic`` SDK) with its tools, execute the tool calls the model asks for, send the
results back, until the model answers without a tool call. It prints ``{"done": id}``.

The model is the recording's scripted endpoint; everything the tools do is real: files,
subprocesses, HTTPS to hosts resolved through the pod's DNS, SQL on a SQLite file, MCP
over streamable HTTP, AWS through boto3 with credentials from AssumeRoleWithWebIdentity.
"""

from __future__ import annotations

import ctypes
import json
import os
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["TOOLS", "Agent", "main"]

CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE = 0x4000, 1 << 18


def _mount_pod_run(files: dict[str, str]) -> None:
    """Private mount namespace, a tmpfs on /run, the pod's secret files in it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    if libc.mount(b"tmpfs", b"/run", b"tmpfs", 0, b"mode=755") != 0:
        raise OSError(ctypes.get_errno(), "mount tmpfs /run")
    for path, content in files.items():
        target = Path(path.replace("/var/run/", "/run/", 1))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)


class Agent:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.name = cfg["name"]
        self.ca = cfg["ca"]
        self.workdir = Path(cfg["workdir"])
        self.ctx = ssl.create_default_context(cafile=self.ca)
        self.provider = cfg.get("provider", "openai")
        self.model = cfg.get("model", "gpt-4o-mini")
        self._aws: dict[str, str] | None = None
        self._session: Any = None
        self._clients: dict[str, Any] = {}
        self._llm: Any = None
        self._mcp_tools: list[dict[str, Any]] | None = None

    # -- the model
    def llm(self) -> Any:
        if self._llm is None:
            key = f"sk-rec-{self.name}"
            if self.provider == "anthropic":
                import anthropic

                self._llm = anthropic.Anthropic(
                    api_key=key, http_client=anthropic.DefaultHttpxClient(verify=self.ctx),
                    max_retries=0)
            else:
                import openai

                self._llm = openai.OpenAI(
                    api_key=key, http_client=openai.DefaultHttpxClient(verify=self.ctx),
                    max_retries=0)
        return self._llm

    def tool_specs(self) -> list[dict[str, Any]]:
        specs = [TOOLS[name] for name in self.cfg.get("tools", []) if name in TOOLS]
        specs += self.mcp_tools()
        return specs

    def mcp_tools(self) -> list[dict[str, Any]]:
        if not self.cfg.get("mcp"):
            return []
        if self._mcp_tools is None:
            import asyncio

            from fastmcp import Client

            async def listing() -> list[Any]:
                async with Client(self.cfg["mcp"]) as client:
                    return list(await client.list_tools())
            self._mcp_tools = [{"name": t.name, "description": t.description or "",
                                "parameters": t.inputSchema, "mcp": True}
                               for t in asyncio.run(listing())]
        return self._mcp_tools

    def run_task(self, task: dict[str, Any]) -> None:
        if task.get("refresh_credentials"):
            self._aws = self._session = None
        tools = self.tool_specs()
        if self.provider == "anthropic":
            self._loop_anthropic(task, tools)
        else:
            self._loop_openai(task, tools)

    def _loop_openai(self, task: dict[str, Any], tools: list[dict[str, Any]]) -> None:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": self.cfg.get("system", "You are a helpful agent.")},
            {"role": "user", "content": task["prompt"]}]
        specs = [{"type": "function", "function": {
            "name": t["name"], "description": t.get("description", ""),
            "parameters": t["parameters"]}} for t in tools]
        for _ in range(task.get("max_turns", 16)):
            reply = self.llm().chat.completions.create(
                model=self.model, messages=messages, tools=specs or None)
            msg = reply.choices[0].message
            if not msg.tool_calls:
                return
            messages.append({"role": "assistant", "content": msg.content, "tool_calls": [
                {"id": c.id, "type": "function", "function": {
                    "name": c.function.name, "arguments": c.function.arguments}}
                for c in msg.tool_calls]})
            for call in msg.tool_calls:
                result = self.call_tool(call.function.name, json.loads(call.function.arguments))
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})

    def _loop_anthropic(self, task: dict[str, Any], tools: list[dict[str, Any]]) -> None:
        messages: list[dict[str, Any]] = [{"role": "user", "content": task["prompt"]}]
        specs = [{"name": t["name"], "description": t.get("description", ""),
                  "input_schema": t["parameters"]} for t in tools]
        for _ in range(task.get("max_turns", 16)):
            kwargs: dict[str, Any] = {"tools": specs} if specs else {}
            reply = self.llm().messages.create(
                model=self.model, max_tokens=1024, messages=messages,
                system=self.cfg.get("system", "You are a helpful agent."), **kwargs)
            uses = [b for b in reply.content if b.type == "tool_use"]
            if not uses:
                return
            messages.append({"role": "assistant", "content": [b.model_dump() for b in
                                                              reply.content]})
            results = [{"type": "tool_result", "tool_use_id": b.id,
                        "content": self.call_tool(b.name, dict(b.input))} for b in uses]
            messages.append({"role": "user", "content": results})

    # -- tools
    def call_tool(self, name: str, args: dict[str, Any]) -> str:
        try:
            if any(t["name"] == name for t in self.mcp_tools()):
                return self._mcp_call(name, args)
            fn = getattr(self, f"t_{name}")
            return str(fn(**args))[:4000]
        except Exception as exc:  # the model sees the error, as agents do
            return f"error: {type(exc).__name__}: {exc}"[:2000]

    def _mcp_call(self, name: str, args: dict[str, Any]) -> str:
        import asyncio

        from fastmcp import Client

        async def call() -> str:
            async with Client(self.cfg["mcp"]) as client:
                result = await client.call_tool(name, args, raise_on_error=False)
                return "\n".join(getattr(c, "text", "") for c in result.content)
        return asyncio.run(call())[:4000]

    def t_read_file(self, path: str) -> str:
        return Path(path).read_text(errors="replace")[:4000]

    def t_write_file(self, path: str, content: str) -> str:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        return f"wrote {len(content)} bytes to {path}"

    def t_list_dir(self, path: str) -> str:
        return "\n".join(sorted(p.name for p in Path(path).iterdir()))

    def t_run(self, command: str, timeout: float = 60) -> str:
        proc = subprocess.run(command, shell=True, capture_output=True, text=True,
                              cwd=self.workdir, timeout=timeout)
        return f"exit {proc.returncode}\n{proc.stdout[-2000:]}{proc.stderr[-1000:]}"

    def t_http(self, url: str, method: str = "GET", body: Any = None,
               headers: dict[str, str] | None = None) -> str:
        data = None
        hdrs = {"User-Agent": f"{self.name}/1.0", **(headers or {})}
        if body is not None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            hdrs.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=20) as resp:
                return f"{resp.status}\n{resp.read(4000).decode(errors='replace')}"
        except urllib.error.HTTPError as exc:
            return f"{exc.code}\n{exc.read(1000).decode(errors='replace')}"

    def t_query_db(self, sql: str) -> str:
        with sqlite3.connect(self.cfg["db"]) as db:
            rows = db.execute(sql).fetchmany(50)
        return json.dumps(rows)

    def t_kube_api(self, path: str, method: str = "GET") -> str:
        token = Path("/var/run/secrets/kubernetes.io/serviceaccount/token").read_text()
        return self.t_http(f"https://kubernetes.default.svc{path}", method=method,
                           headers={"Authorization": f"Bearer {token}"})

    def aws_session(self) -> Any:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        if self._aws is not None and self._session is not None:
            return self._session
        if self._aws is None:
            token_file = os.environ["AWS_WEB_IDENTITY_TOKEN_FILE"]
            token = Path(token_file).read_text()
            sts = boto3.client("sts", region_name="us-west-2", verify=self.ca,
                               config=Config(signature_version=UNSIGNED))
            creds = sts.assume_role_with_web_identity(
                RoleArn=os.environ["AWS_ROLE_ARN"],
                RoleSessionName=f"botocore-session-{int(time.time())}",
                WebIdentityToken=token)["Credentials"]
            self._aws = {"aws_access_key_id": creds["AccessKeyId"],
                         "aws_secret_access_key": creds["SecretAccessKey"],
                         "aws_session_token": creds["SessionToken"]}
        self._session = boto3.session.Session(region_name="us-west-2", **self._aws)
        self._clients = {}
        return self._session

    def aws_client(self, service: str) -> Any:
        """One client per service for the life of the credentials, as SDK users keep."""
        session = self.aws_session()
        if service not in self._clients:
            self._clients[service] = session.client(service, verify=self.ca)
        return self._clients[service]

    def t_aws(self, service: str, operation: str, params: dict[str, Any] | None = None) -> str:
        client = self.aws_client(service)
        result = getattr(client, operation)(**(params or {}))
        body = result.get("Body")
        if body is not None:
            result["Body"] = f"<{len(body.read())} bytes>"
        result.pop("ResponseMetadata", None)
        return json.dumps(result, default=str)[:4000]

    def t_s3_sync(self, bucket: str, prefix: str, dest: str) -> str:
        """Download every object under a prefix (as `aws s3 sync` does)."""
        client = self.aws_client("s3")
        listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
        total = 0
        for item in listing.get("Contents", []):
            data = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            target = Path(dest) / item["Key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            total += len(data)
        return f"downloaded {len(listing.get('Contents', []))} objects, {total} bytes"


def _schema(**props: str) -> dict[str, Any]:
    return {"type": "object", "properties": {k: {"type": v} for k, v in props.items()},
            "required": list(props)}


TOOLS: dict[str, dict[str, Any]] = {
    "read_file": {"name": "read_file", "description": "Read a text file",
                  "parameters": _schema(path="string")},
    "write_file": {"name": "write_file", "description": "Write a text file",
                   "parameters": _schema(path="string", content="string")},
    "list_dir": {"name": "list_dir", "description": "List a folder",
                 "parameters": _schema(path="string")},
    "run": {"name": "run", "description": "Run a shell command in the workspace",
            "parameters": _schema(command="string")},
    "http": {"name": "http", "description": "Make an HTTP request",
             "parameters": {"type": "object", "properties": {
                 "url": {"type": "string"}, "method": {"type": "string"},
                 "body": {}, "headers": {"type": "object"}}, "required": ["url"]}},
    "query_db": {"name": "query_db", "description": "Run a read-only SQL query",
                 "parameters": _schema(sql="string")},
    "kube_api": {"name": "kube_api", "description": "Read from the Kubernetes API",
                 "parameters": _schema(path="string")},
    "aws": {"name": "aws", "description": "Call an AWS API with boto3",
            "parameters": {"type": "object", "properties": {
                "service": {"type": "string"}, "operation": {"type": "string"},
                "params": {"type": "object"}}, "required": ["service", "operation"]}},
    "s3_sync": {"name": "s3_sync", "description": "Download a prefix of an S3 bucket",
                "parameters": _schema(bucket="string", prefix="string", dest="string")},
}


def _read_line_unbuffered() -> str:
    """One line from stdin without reading past it (the next process inherits the rest)."""
    out = b""
    while not out.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte:
            break
        out += byte
    return out.decode().strip()


def main(argv: list[str]) -> int:
    cfg = json.loads(Path(argv[1]).read_text())
    _mount_pod_run(cfg.get("files", {}))
    if cfg.get("runtime") == "node":  # a Node CLI: exec it inside the pod, same protocol
        print("setup", flush=True)
        if _read_line_unbuffered() != "go":
            return 3
        os.chdir(cfg["workdir"])
        script = str(Path(__file__).with_name("node_agent") / "agent.js")
        os.execv(cfg["node"], [cfg["node"], script, argv[1]])
    agent = Agent(cfg)
    if agent.provider == "anthropic":
        import anthropic  # noqa: F401  (map libssl and the SDK before the pod starts)
    else:
        import openai  # noqa: F401
    import boto3  # noqa: F401
    print("setup", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 3
    os.chdir(agent.workdir)
    for line in sys.stdin:
        task = json.loads(line)
        error = ""
        try:
            agent.run_task(task)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        print(json.dumps({"done": task.get("id"), "error": error}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
