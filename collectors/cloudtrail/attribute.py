"""Which pod made a cloud API call: joining CloudTrail on temporary access key ids (pure).

A pod gets AWS credentials in one of two ways, and both leave a trace in CloudTrail
that names the Kubernetes identity *and* the access key id the pod will sign with:

- IRSA: ``sts:AssumeRoleWithWebIdentity`` by ``system:serviceaccount:<ns>:<sa>``
  (``userIdentity.userName`` / ``responseElements.subjectFromWebIdentityToken``),
  issuing ``responseElements.credentials.accessKeyId``. Pod name and uid are not in the
  event, so the service account is resolved to pods through the pod source.
- EKS Pod Identity: ``sts:AssumeRole`` invoked by ``pods.eks.amazonaws.com`` whose
  session tags name the pod uid/name, namespace, service account and cluster.

Every later call whose ``userIdentity.accessKeyId`` is that key belongs to that pod, so
the key → identity map is the whole trick. It is bounded (LRU, evictions counted) and
entries expire with the credentials. Log files arrive out of order, so a call with an
unknown temporary key waits (bounded, in event time) for the assume event that explains
it, then goes out attributed — or, after the grace period, unattributed with a counted
reason, keyed by its principal (the Tetragon event-cache pattern).

Calls by a node's instance role (session name = EC2 instance id, or a configured node
role) are attributed to the node, never to a pod on it.

A pod is named only when it is certain: Pod Identity tags carry the pod uid, or an IRSA
service account has exactly one pod (or the call's ``sourceIPAddress`` is the pod IP of
exactly one of its pods, as calls through a VPC endpoint show). Otherwise ``pod`` stays
None and ``data["attribution"]`` says ``status: ambiguous`` with the candidate pods and,
when they all belong to one, the agent — a responder never isolates a workload on a guess.
``data["attribution"]["via"]`` says how (``irsa``, ``pod-identity``, ``node-role``,
``unknown-key``, ``long-term-key``, ``no-key``).
"""

from __future__ import annotations

import heapq
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from collectors.pods import PodInfo
from streams.events import Pod

from .normalize import parse_expiration

__all__ = [
    "POD_IDENTITY_SERVICE",
    "Attributed",
    "CloudAttributor",
    "Identity",
    "PodLookup",
    "parse_subject",
]

POD_IDENTITY_SERVICE = "pods.eks.amazonaws.com"
_SUBJECT = re.compile(r"^system:serviceaccount:([^:]+):([^:]+)$")
_INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
_NS = 1_000_000_000
_MAX_CANDIDATES = 16
_VIA = {"irsa": "irsa", "pod_identity": "pod-identity"}


def parse_subject(subject: str) -> tuple[str, str] | None:
    """``system:serviceaccount:<ns>:<sa>`` → ``(ns, sa)``; None for other OIDC subjects.

    >>> parse_subject("system:serviceaccount:support:support-bot")
    ('support', 'support-bot')
    >>> parse_subject("repo:acme/app:ref:refs/heads/main") is None
    True
    """
    match = _SUBJECT.match(subject or "")
    return (match.group(1), match.group(2)) if match else None


class PodLookup(Protocol):
    """What attribution needs from :class:`collectors.pods.PodIndex`."""

    def get(self, uid: str) -> PodInfo | None: ...
    def by_service_account(self, namespace: str, service_account: str) -> list[PodInfo]: ...


@dataclass(slots=True)
class Identity:
    """Who holds a temporary key, as far as the assume event told us."""

    method: str  # "irsa" | "pod_identity"
    expires_ns: int
    namespace: str = ""
    service_account: str = ""
    pod_uid: str = ""
    pod_name: str = ""
    cluster: str = ""
    role_arn: str = ""
    assume_event_id: str = ""
    chained: bool = False  # issued by an AssumeRole made with a pod's key
    inferred: str = ""  # "role": no assume event seen; the role has one service account

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Identity:
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


@dataclass(slots=True)
class Attributed:
    """One event ready to publish: ``data["attribution"]`` says how (or why not)."""

    ts: int
    data: dict[str, Any]
    pod: Pod | None


@dataclass(slots=True)
class _Held:
    ts: int
    key: str
    data: dict[str, Any]
    done: bool = False


@dataclass
class _Counts:
    values: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, n: int = 1) -> None:
        self.values[name] = self.values.get(name, 0) + n


class CloudAttributor:
    """Stateful join of CloudTrail events on access key ids, driven by event time.

    Parameters
    ----------
    pods
        The pod source's index (``PodIndex``), or None to attribute to service
        accounts only.
    grace_s
        How long (event time) a call with an unknown temporary key waits for its
        assume event, and how long a key outlives its expiration for late files.
    max_keys, max_held
        Bounds of the key map and of the held calls; overflow is counted.
    node_roles
        Role names or ARNs of node instance roles (besides sessions named ``i-…``).
    default_ttl_s
        Lifetime of a key whose expiration is unreadable (12 h: the STS maximum).
    max_roles
        Roles remembered with the service accounts that assumed them (the fallback
        for calls whose assume event never came).
    """

    def __init__(
        self,
        pods: PodLookup | None = None,
        *,
        grace_s: float = 900.0,
        max_keys: int = 100_000,
        max_held: int = 10_000,
        node_roles: Iterable[str] = (),
        default_ttl_s: float = 43_200.0,
        max_roles: int = 10_000,
    ) -> None:
        self.pods = pods
        self.grace_s = grace_s
        self.max_keys = max_keys
        self.max_held = max_held
        self.node_roles = frozenset(node_roles)
        self.default_ttl_s = default_ttl_s
        self.max_roles = max_roles
        self._grace_ns = int(grace_s * _NS)
        self._keys: OrderedDict[str, Identity] = OrderedDict()
        # keys past expiration + grace: a late call with one is still its holder's
        self._expired: OrderedDict[str, Identity] = OrderedDict()
        self._expiry: list[tuple[int, str]] = []
        self._held: dict[str, list[_Held]] = {}
        self._held_heap: list[tuple[int, int, _Held]] = []
        self._held_n = 0
        self._seq = 0
        self._watermark = 0
        self._counts = _Counts()
        self._sa_cache: dict[tuple[str, str], list[PodInfo]] = {}
        # role ARN → the (method, namespace, service account) seen assuming it
        self._roles: OrderedDict[str, list[list[str]]] = OrderedDict()
        if pods is not None and hasattr(pods, "on_change"):
            pods.on_change(lambda _change, _pod: self._sa_cache.clear())

    # -- introspection ---------------------------------------------------------------
    @property
    def counts(self) -> dict[str, int]:
        return dict(self._counts.values)

    @property
    def watermark(self) -> int:
        return self._watermark

    @property
    def held(self) -> int:
        return self._held_n

    @property
    def known_keys(self) -> int:
        return len(self._keys)

    def identity_of(self, access_key_id: str) -> Identity | None:
        return self._keys.get(access_key_id)

    # -- the join --------------------------------------------------------------------
    def process(self, ts: int, data: dict[str, Any]) -> list[Attributed]:
        """Attribute one normalized event; returns what is ready now (this event, and
        any held ones it explains or whose grace ran out), possibly nothing."""
        advanced = ts > self._watermark
        if advanced:
            self._watermark = ts
        out: list[Attributed] = []
        assumed = self._assume(ts, data)
        if assumed is not None:
            ident, key = assumed
            self._learn_role(ident)
            out.append(self._attribute(ts, data, ident))
            if key:
                self._learn(key, ident)
                out.extend(self._release_key(key, ident))
        else:
            out.extend(self._route(ts, data))
        if advanced:
            out.extend(self._release_expired_holds())
            self._expire_keys()
        return out

    def drain(self) -> list[Attributed]:
        """End of input: release every held call unattributed (reason counted)."""
        out: list[Attributed] = []
        for _, _, item in sorted(self._held_heap, key=lambda e: (e[0], e[1])):
            if not item.done:
                item.done = True
                out.append(self._give_up(item.ts, item.data, "assume_not_seen"))
        self._held.clear()
        self._held_heap.clear()
        self._held_n = 0
        return out

    # -- assume events -----------------------------------------------------------------
    def _assume(self, ts: int, data: dict[str, Any]) -> tuple[Identity, str] | None:
        """The identity and issued key of an IRSA / Pod Identity assume event, else None.
        Failed assumes still name who tried (no key is issued)."""
        if data["service"] != "sts":
            return None
        action = data["action"]
        record = data["record"]
        principal = data["principal"]
        request = record.get("requestParameters") or {}
        response = record.get("responseElements") or {}
        if not isinstance(request, Mapping):
            request = {}
        if not isinstance(response, Mapping):
            response = {}
        if action == "AssumeRoleWithWebIdentity":
            subject = response.get("subjectFromWebIdentityToken") or principal.get("user_name")
            parsed = parse_subject(str(subject or ""))
            if parsed is None:
                return None  # a web identity that is not a Kubernetes service account
            ident = Identity(
                "irsa", 0, namespace=parsed[0], service_account=parsed[1],
                cluster=_oidc_id(principal.get("identity_provider", "")),
                role_arn=str(request.get("roleArn") or ""),
                assume_event_id=data["event_id"],
            )
        elif action == "AssumeRole" and principal.get("invoked_by") == POD_IDENTITY_SERVICE:
            tags = _tags(request.get("tags"))
            tags.update(_tags(request.get("sessionTags")))
            ident = Identity(
                "pod_identity", 0,
                namespace=tags.get("kubernetes-namespace", ""),
                service_account=tags.get("kubernetes-service-account", ""),
                pod_uid=tags.get("kubernetes-pod-uid", ""),
                pod_name=tags.get("kubernetes-pod-name", ""),
                cluster=tags.get("eks-cluster-name", ""),
                role_arn=str(request.get("roleArn") or ""),
                assume_event_id=data["event_id"],
            )
        else:
            return None
        credentials = response.get("credentials") or {}
        key = str(credentials.get("accessKeyId") or "") if isinstance(credentials, Mapping) else ""
        expires = parse_expiration(credentials.get("expiration")) if key else None
        ident.expires_ns = expires if expires is not None else ts + int(self.default_ttl_s * _NS)
        return ident, key

    def _chain(self, ts: int, data: dict[str, Any], ident: Identity) -> None:
        """A pod's key used to assume another role: the new key is the pod's too."""
        if data["service"] != "sts" or not data["action"].startswith("AssumeRole"):
            return
        response = data["record"].get("responseElements") or {}
        credentials = response.get("credentials") if isinstance(response, Mapping) else None
        if not isinstance(credentials, Mapping) or not credentials.get("accessKeyId"):
            return
        expires = parse_expiration(credentials.get("expiration"))
        request = data["record"].get("requestParameters") or {}
        chained = Identity(**{
            **ident.to_dict(), "chained": True, "assume_event_id": data["event_id"],
            "role_arn": str(request.get("roleArn") or "") if isinstance(request, Mapping) else "",
            "expires_ns": expires if expires is not None else ts + int(self.default_ttl_s * _NS),
        })
        self._learn(str(credentials["accessKeyId"]), chained)
        self._counts.add("keys_chained")

    # -- routing other calls -------------------------------------------------------------
    def _route(self, ts: int, data: dict[str, Any]) -> list[Attributed]:
        principal = data["principal"]
        key = principal["access_key_id"]
        if key:
            ident = self._keys.get(key)
            if ident is not None:
                self._keys.move_to_end(key)
                if ts > ident.expires_ns + self._grace_ns:
                    return [self._attribute_call(ts, data, ident, expired=True)]
                return [self._attribute_call(ts, data, ident)]
            ident = self._expired.get(key)
            if ident is not None:
                self._counts.add("expired_key_used")
                return [self._attribute_call(ts, data, ident, expired=True)]
        node = self._node_of(principal)
        if node is not None:
            data["attribution"] = node
            self._counts.add("attributed_node")
            return [Attributed(ts, data, None)]
        if key.startswith("ASIA"):
            return self._hold(ts, data, key)
        if key:
            return [self._unattributed(ts, data, "long_term_key", via="long-term-key")]
        return [self._unattributed(ts, data, "no_access_key", via="no-key")]

    def _node_of(self, principal: Mapping[str, Any]) -> dict[str, Any] | None:
        if principal.get("type") != "AssumedRole":
            return None
        session = principal.get("session_name", "")
        role_arn = principal.get("role_arn", "")
        role_name = principal.get("role_name") or role_arn.rpartition("/")[2]
        is_instance = bool(_INSTANCE_ID.match(session))
        if not (is_instance or role_arn in self.node_roles or role_name in self.node_roles):
            return None
        out: dict[str, Any] = {"via": "node-role", "status": "node",
                               "role": role_arn or role_name}
        if is_instance:
            out["instance_id"] = session
        return out

    # -- holding calls whose key is not known yet -------------------------------------------
    def _hold(self, ts: int, data: dict[str, Any], key: str) -> list[Attributed]:
        item = _Held(ts, key, data)
        self._held.setdefault(key, []).append(item)
        self._seq += 1
        heapq.heappush(self._held_heap, (ts, self._seq, item))
        self._held_n += 1
        self._counts.add("held")
        out: list[Attributed] = []
        while self._held_n > self.max_held:
            oldest = self._pop_held()
            if oldest is not None:
                out.append(self._give_up(oldest.ts, oldest.data, "held_overflow"))
        if len(self._held_heap) > 4 * max(self.max_held, 1024):
            self._held_heap = [e for e in self._held_heap if not e[2].done]
            heapq.heapify(self._held_heap)
        return out

    def _pop_held(self, before: int | None = None) -> _Held | None:
        """The oldest call still held (only if older than ``before``), taken out."""
        while self._held_heap:
            ts, _, item = self._held_heap[0]
            if item.done:
                heapq.heappop(self._held_heap)  # released by its assume event already
                continue
            if before is not None and ts >= before:
                return None
            heapq.heappop(self._held_heap)
            item.done = True
            self._held_n -= 1
            siblings = self._held.get(item.key, [])
            siblings.remove(item)
            if not siblings:
                self._held.pop(item.key, None)
            return item
        return None

    def _release_expired_holds(self) -> list[Attributed]:
        out: list[Attributed] = []
        limit = self._watermark - self._grace_ns
        while (item := self._pop_held(before=limit)) is not None:
            out.append(self._give_up(item.ts, item.data, "assume_not_seen"))
        return out

    def _release_key(self, key: str, ident: Identity) -> list[Attributed]:
        out: list[Attributed] = []
        for item in self._held.pop(key, []):
            if item.done:
                continue
            item.done = True
            self._held_n -= 1
            self._counts.add("released_after_assume")
            out.append(self._attribute_call(item.ts, item.data, ident, held=True))
        return out

    # -- key map ---------------------------------------------------------------------------
    def _learn(self, key: str, ident: Identity) -> None:
        if key in self._keys:
            self._keys.move_to_end(key)
        self._keys[key] = ident
        heapq.heappush(self._expiry, (ident.expires_ns, key))
        self._counts.add("keys_learned")
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
            self._counts.add("keys_evicted")

    def _expire_keys(self) -> None:
        limit = self._watermark - self._grace_ns
        while self._expiry and self._expiry[0][0] < limit:
            expires, key = heapq.heappop(self._expiry)
            ident = self._keys.get(key)
            if ident is not None and ident.expires_ns == expires:
                del self._keys[key]
                self._expired[key] = ident
                self._counts.add("keys_expired")
                while len(self._expired) > self.max_keys:
                    self._expired.popitem(last=False)

    # -- when the assume event never came: what the role says ------------------------------
    def _learn_role(self, ident: Identity) -> None:
        if not ident.role_arn or not ident.service_account or ident.chained:
            return
        entry = [ident.method, ident.namespace, ident.service_account]
        seen = self._roles.get(ident.role_arn)
        if seen is None:
            self._roles[ident.role_arn] = [entry]
            while len(self._roles) > self.max_roles:
                self._roles.popitem(last=False)
        elif entry not in seen and len(seen) < 2:
            seen.append(entry)  # two is enough to know the role is shared
        self._roles.move_to_end(ident.role_arn)

    def _give_up(self, ts: int, data: dict[str, Any], reason: str) -> Attributed:
        """A held call whose assume event did not come. If its role has only ever been
        assumed by one service account (an IRSA session must also carry the OIDC
        provider in ``webIdFederationData``), name that service account and its pods as
        candidates, marked ``inferred`` — never one pod: another holder of the role may
        simply not have been seen — and remember the key; else release it unattributed."""
        principal = data["principal"]
        seen = self._roles.get(principal.get("role_arn", ""))
        if seen is not None and len(seen) == 1:
            method, namespace, service_account = seen[0]
            if method != "irsa" or principal.get("web_identity_provider"):
                ident = Identity(
                    method, ts + int(self.default_ttl_s * _NS), namespace=namespace,
                    service_account=service_account, role_arn=principal["role_arn"],
                    inferred="role")
                self._learn(principal["access_key_id"], ident)
                self._counts.add("inferred_from_role")
                return self._attribute_call(ts, data, ident)
        return self._unattributed(ts, data, reason, via="unknown-key")

    # -- building results -------------------------------------------------------------------
    def _attribute_call(
        self, ts: int, data: dict[str, Any], ident: Identity, *, held: bool = False,
        expired: bool = False,
    ) -> Attributed:
        self._chain(ts, data, ident)
        return self._attribute(ts, data, ident, held=held, expired=expired)

    def _attribute(
        self, ts: int, data: dict[str, Any], ident: Identity, *, held: bool = False,
        expired: bool = False,
    ) -> Attributed:
        attribution: dict[str, Any] = {"via": _VIA.get(ident.method, ident.method)}
        pod = self._resolve(ident, data, attribution)
        if ident.service_account:
            attribution["service_account"] = f"{ident.namespace}/{ident.service_account}"
        for name in ("cluster", "role_arn", "assume_event_id"):
            value = getattr(ident, name)
            if value:
                attribution[name] = value
        if ident.chained:
            attribution["chained"] = True
        if ident.inferred:
            attribution["inferred"] = ident.inferred
        if held:
            attribution["held"] = True
        if expired:
            attribution["expired"] = True  # AWS refuses expired keys: expect a failure
            self._counts.add("pod_key_expired")
        data["attribution"] = attribution
        self._counts.add(f"attributed_{ident.method}")
        self._counts.add(f"status_{attribution['status']}")
        return Attributed(ts, data, pod)

    def _unattributed(self, ts: int, data: dict[str, Any], reason: str, *,
                      via: str) -> Attributed:
        data["attribution"] = {"via": via, "status": "unattributed", "reason": reason}
        self._counts.add(f"unattributed_{reason}")
        return Attributed(ts, data, None)

    def _resolve(self, ident: Identity, data: Mapping[str, Any],
                 out: dict[str, Any]) -> Pod | None:
        """The pod an identity belongs to when that is certain, else None; fills
        ``status``, ``agent``, ``candidates`` and ``reason`` of the attribution."""
        infos = self._by_sa(ident.namespace, ident.service_account)
        agents = {p.agent for p in infos}
        agent = agents.pop() if len(agents) == 1 else ""
        if ident.pod_uid:  # Pod Identity session tags name the pod: certain
            info = self.pods.get(ident.pod_uid) if self.pods is not None else None
            out["status"] = "attributed"
            if info is not None:
                out["agent"] = info.agent
                return info.to_pod()
            # not (or no longer) in the index: the tags still name the pod
            out["reason"] = "not_in_index"
            if agent:
                out["agent"] = agent
            return Pod(uid=ident.pod_uid, namespace=ident.namespace, name=ident.pod_name,
                       service_account=ident.service_account, agent=agent)
        if not ident.service_account:
            out["status"] = "unattributed"
            out["reason"] = "no_session_tags"
            return None
        if not infos:
            out["status"] = "unattributed"
            out["reason"] = "no_pod_for_service_account"
            return None
        if agent:
            out["agent"] = agent
        if len(infos) == 1 and not ident.inferred:
            out["status"] = "attributed"
            return infos[0].to_pod()
        if not ident.inferred:
            ips = set(_ips_of(data))
            hits = [p for p in infos if ips.intersection(getattr(p, "ips", ()))]
            if len(hits) == 1:
                out["status"] = "attributed"
                out["settled_by"] = "source_ip"
                return hits[0].to_pod()
        out["status"] = "ambiguous"
        out["reason"] = "inferred_from_role" if ident.inferred else "shared_service_account"
        out["candidates"] = [p.uid for p in infos[:_MAX_CANDIDATES]]
        if len(infos) > _MAX_CANDIDATES:
            out["candidates_total"] = len(infos)
        return None

    def _by_sa(self, namespace: str, service_account: str) -> list[PodInfo]:
        """The service account's pods now, sorted by uid (cached until the index
        changes)."""
        if self.pods is None or not service_account:
            return []
        cache_key = (namespace, service_account)
        cached = self._sa_cache.get(cache_key)
        if cached is None:
            cached = sorted(self.pods.by_service_account(namespace, service_account),
                            key=lambda p: p.uid)
            self._sa_cache[cache_key] = cached
        return cached

    # -- persistence (the checkpoint carries it, so a restart keeps the join) ----------------
    def snapshot(self) -> dict[str, Any]:
        held = sorted(
            (e for e in self._held_heap if not e[2].done), key=lambda e: (e[0], e[1]))
        return {
            "v": 1,
            "watermark": self._watermark,
            "keys": [[k, ident.to_dict()] for k, ident in self._keys.items()],
            "held": [[item.ts, item.key, item.data] for _, _, item in held],
            "roles": [[role, seen] for role, seen in self._roles.items()],
            "expired": [[k, ident.to_dict()] for k, ident in self._expired.items()],
        }

    def restore(self, doc: Mapping[str, Any] | None) -> None:
        if not doc:
            return
        self._watermark = int(doc.get("watermark", 0))
        self._keys.clear()
        self._expiry.clear()
        for key, ident_doc in doc.get("keys", []):
            ident = Identity.from_dict(ident_doc)
            self._keys[key] = ident
            self._expiry.append((ident.expires_ns, key))
        heapq.heapify(self._expiry)
        self._held.clear()
        self._held_heap.clear()
        self._held_n = 0
        for ts, key, data in doc.get("held", []):
            item = _Held(int(ts), key, data)
            self._held.setdefault(key, []).append(item)
            self._seq += 1
            self._held_heap.append((item.ts, self._seq, item))
            self._held_n += 1
        heapq.heapify(self._held_heap)
        self._roles = OrderedDict((role, seen) for role, seen in doc.get("roles", []))
        self._expired = OrderedDict(
            (key, Identity.from_dict(ident_doc)) for key, ident_doc in doc.get("expired", []))


def _tags(value: Any) -> dict[str, str]:
    """Session tags as CloudTrail logs them: ``[{"key": …, "value": …}]`` (also the
    API's ``Key``/``Value`` spelling, or a plain object)."""
    out: dict[str, str] = {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, list):
        for tag in value:
            if isinstance(tag, Mapping):
                k = tag.get("key", tag.get("Key"))
                v = tag.get("value", tag.get("Value"))
                if k is not None and v is not None:
                    out[str(k)] = str(v)
    return out


def _oidc_id(provider: str) -> str:
    """``…:oidc-provider/oidc.eks.<region>.amazonaws.com/id/<ID>`` → ``oidc:<ID>``; the
    OIDC issuer id is what identifies an IRSA cluster in CloudTrail."""
    _, _, rest = str(provider).partition("/id/")
    return f"oidc:{rest}" if rest else ""


def _ips_of(data: Mapping[str, Any]) -> list[str]:
    ips = data.get("source_ips")
    if isinstance(ips, list):
        return ips
    ip = data.get("source_ip")
    return [ip] if ip else []
