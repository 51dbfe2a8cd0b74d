"""KubernetesPodSource against an API server double speaking the real wire format.

No API server can run here, so a loopback HTTP server answers ``GET /api/v1/pods`` the
way kube-apiserver does (a PodList; a watch as newline-delimited WatchEvents; an ERROR
event with a 410 Status when the resourceVersion is too old). The code under test is the
production source with the real kubernetes client.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client

from collectors.pods import KubernetesPodSource, PodIndex


def pod(name: str, uid: str, rv: str, node: str = "node-a") -> dict[str, Any]:
    cid = uid.replace("-", "")[:12] * 5 + "abcd"
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "support", "uid": uid, "resourceVersion": rv,
            "creationTimestamp": "2026-11-20T10:00:00Z",
            "labels": {"app": "support-bot", "pod-template-hash": "7d9f8"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                 "name": "support-bot-7d9f8", "uid": "rs-uid",
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {"nodeName": node, "serviceAccountName": "support-bot",
                 "containers": [{"name": "bot", "image": "ghcr.io/acme/bot:1.2"}]},
        "status": {"phase": "Running", "podIP": "10.0.3.7",
                   "containerStatuses": [{
                       "name": "bot", "ready": True, "restartCount": 0, "started": True,
                       "image": "ghcr.io/acme/bot:1.2", "imageID": "ghcr.io/acme/bot@sha256:00",
                       "containerID": f"containerd://{cid}",
                       "state": {"running": {"startedAt": "2026-11-20T10:00:02Z"}}}]},
    }


UIDS = ["11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222",
        "33333333-3333-4333-8333-333333333333"]


class FakeApiServer:
    """Scripted responses: a list, a watch with three events, a 410, then a relist."""

    def __init__(self) -> None:
        self.requests: list[dict[str, list[str]]] = []
        self.watch_calls = 0
        self.list_calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                outer.requests.append(query)
                if url.path != "/api/v1/pods":
                    self.send_error(404)
                    return
                if query.get("watch") == ["true"] or query.get("watch") == ["True"]:
                    body = outer.watch_body()
                else:
                    body = outer.list_body()
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def list_body(self) -> str:
        self.list_calls += 1
        if self.list_calls == 1:
            items, rv = [pod("bot-a", UIDS[0], "100")], "100"
        else:  # the relist after 410: bot-a is gone, bot-c appeared while we were away
            items, rv = [pod("bot-b", UIDS[1], "205"), pod("bot-c", UIDS[2], "230")], "230"
        return json.dumps({"kind": "PodList", "apiVersion": "v1",
                           "metadata": {"resourceVersion": rv}, "items": items})

    def watch_body(self) -> str:
        self.watch_calls += 1
        if self.watch_calls == 1:
            events = [{"type": "ADDED", "object": pod("bot-b", UIDS[1], "101")},
                      {"type": "MODIFIED", "object": pod("bot-a", UIDS[0], "102")}]
        elif self.watch_calls == 2:
            events = [{"type": "ERROR", "object": {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "too old resource version: 102 (200)", "reason": "Expired",
                "code": 410}}]
        else:
            time.sleep(0.05)
            events = []
        return "".join(json.dumps(e) + "\n" for e in events)

    def __enter__(self) -> FakeApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api_server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        yield server


def test_list_watch_and_relist_after_410(api_server: FakeApiServer) -> None:
    config = client.Configuration(host=api_server.host)
    api_client = client.ApiClient(config)
    source = KubernetesPodSource("node-a", api=client.CoreV1Api(api_client), timeout_s=5)
    index = PodIndex()
    changes: list[tuple[str, str]] = []
    index.on_change(lambda change, p: changes.append((change, p.name)))

    source.load(index)
    assert [name for _, name in changes] == ["bot-a"]
    info = index.get(UIDS[0])
    assert info is not None
    assert (info.agent, info.service_account, info.node) == \
        ("support/Deployment/support-bot", "support-bot", "node-a")

    runner = threading.Thread(target=source.run, args=(index,), daemon=True)
    runner.start()
    deadline = time.monotonic() + 10
    while api_server.watch_calls < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    source.stop()
    runner.join(10)
    api_client.close()
    assert not runner.is_alive()

    assert changes == [("ADDED", "bot-a"), ("ADDED", "bot-b"), ("MODIFIED", "bot-a"),
                       ("MODIFIED", "bot-b"), ("ADDED", "bot-c"), ("DELETED", "bot-a")]
    assert {p for p in UIDS if index.get(p)} == {UIDS[1], UIDS[2]}
    # Every request was restricted to this node; the watch resumed from what was seen.
    assert all(q.get("fieldSelector") == ["spec.nodeName=node-a"] for q in api_server.requests)
    watches = [q for q in api_server.requests if q.get("watch")]
    assert watches[0]["resourceVersion"] == ["100"]
    assert watches[1]["resourceVersion"] == ["102"]
    assert watches[2]["resourceVersion"] == ["230"]
