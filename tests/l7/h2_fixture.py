"""A local HTTP/2 TLS server (the ``h2`` library's server connection over ``ssl``, ALPN
``h2``) answering chat-completions-shaped JSON, and an httpx client with ``http2=True``
for the live capture test and the parser benchmark.

The client (``python -m tests.l7.h2_fixture client URL CAFILE TAG``) prints ``ready``,
and on each line of stdin makes the next batch of requests over one HTTP/2 connection:
batch 1 a POST, batch 2 a GET and a POST with a 60 KB body; it prints the HTTP version
and statuses of each batch.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["H2Server"]


class H2Server:
    """Serves each connection in a thread; ``seen`` keeps (path, body) per request."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ctx.set_alpn_protocols(["h2"])
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[tuple[str, bytes]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        import h2.config
        import h2.connection
        import h2.events

        try:
            tls = self.ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        tls.sendall(conn.data_to_send())
        requests: dict[int, dict[str, Any]] = {}
        with tls:
            while True:
                try:
                    data = tls.recv(65536)
                except (OSError, ssl.SSLError):
                    return
                if not data:
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        requests[ev.stream_id] = {"headers": dict(ev.headers), "body": b""}
                    elif isinstance(ev, h2.events.DataReceived):
                        requests[ev.stream_id]["body"] += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length,
                                                       ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        req = requests.pop(ev.stream_id)
                        self._answer(conn, ev.stream_id, req)
                tls.sendall(conn.data_to_send())

    def _answer(self, conn: Any, sid: int, req: dict[str, Any]) -> None:
        path = req["headers"].get(":path", "")
        self.seen.append((path, req["body"]))
        model = "none"
        if req["body"]:
            model = json.loads(req["body"]).get("model", "none")
        reply = json.dumps({"id": f"chatcmpl-{sid}", "object": "chat.completion",
                            "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": f"ok {sid}"}}]})
        conn.send_headers(sid, [(":status", "200"), ("content-type", "application/json"),
                                ("content-length", str(len(reply)))])
        conn.send_data(sid, reply.encode(), end_stream=True)

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def client(url: str, cafile: str, tag: str) -> None:
    import httpx2 as httpx

    ctx = ssl.create_default_context(cafile=cafile)
    headers = {"Authorization": f"Bearer sk-h2-{tag}-secret0123456789abcdef"}
    with httpx.Client(http2=True, verify=ctx, base_url=url, headers=headers) as http:
        print("ready", flush=True)
        sys.stdin.readline()
        r = http.post("/v1/chat/completions", json={
            "model": f"gpt-h2-first-{tag}", "messages": [{"role": "user", "content": "hi"}]})
        print(r.http_version, r.status_code, flush=True)
        sys.stdin.readline()
        g = http.get("/v1/models")
        p = http.post("/v1/chat/completions", json={
            "model": f"gpt-h2-second-{tag}",
            "messages": [{"role": "user", "content": "z" * 60_000}]})
        print(g.http_version, g.status_code, p.status_code, flush=True)


if __name__ == "__main__":
    client(*sys.argv[2:5])
