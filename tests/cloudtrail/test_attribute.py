from __future__ import annotations

import doctest
from typing import Any

import orjson
import yaml

from collectors.cloudtrail import attribute as attribute_module
from collectors.cloudtrail.attribute import Attributed, CloudAttributor
from collectors.cloudtrail.normalize import normalize
from collectors.pods import PodIndex, PodInfo

from . import records as r
from .conftest import MANIFESTS, RAG_UID, SUPPORT_UID_A, SUPPORT_UID_B

IRSA_KEY = "ASIAEXAMPLEIRSAKEY01"
PI_KEY = "ASIAPODIDENTITYKEY01"
AGENT = "support/Deployment/support-bot"


def feed(att: CloudAttributor, *recs: dict[str, Any]) -> list[Attributed]:
    out: list[Attributed] = []
    for rec in recs:
        out.extend(att.process(*normalize(rec)))
    return out


def by_action(items: list[Attributed]) -> dict[str, Attributed]:
    return {item.data["action"]: item for item in items}


def test_doctests() -> None:
    assert doctest.testmod(attribute_module).failed == 0


def test_irsa_shared_service_account_is_ambiguous_never_a_pick(pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index)
    out = feed(
        att,
        r.irsa_assume("2026-11-21T05:20:00Z", "support", "support-bot", IRSA_KEY),
        r.s3_get_object("2026-11-21T05:21:00Z", r.assumed_role(IRSA_KEY), "corp", "a.csv"),
        r.bedrock_invoke("2026-11-21T05:22:00Z", r.assumed_role(IRSA_KEY)),
        r.iam_create_access_key("2026-11-21T05:23:00Z", r.assumed_role(IRSA_KEY)),
        r.lambda_create_function("2026-11-21T05:24:00Z", r.assumed_role(IRSA_KEY)),
    )
    assert [i.data["action"] for i in out] == [
        "AssumeRoleWithWebIdentity", "GetObject", "InvokeModel", "CreateAccessKey",
        "CreateFunction20150331"]
    for item in out:
        # two replicas share the SA: no pod, both candidates, their one agent
        assert item.pod is None
        attribution = item.data["attribution"]
        assert attribution["via"] == "irsa"
        assert attribution["status"] == "ambiguous"
        assert attribution["reason"] == "shared_service_account"
        assert attribution["agent"] == AGENT
        assert attribution["service_account"] == "support/support-bot"
        assert attribution["candidates"] == [SUPPORT_UID_A, SUPPORT_UID_B]
        assert attribution["cluster"] == f"oidc:{r.OIDC_ID}"
        assert attribution["role_arn"].endswith(":role/agent-role")
    ident = att.identity_of(IRSA_KEY)
    assert ident is not None and ident.expires_ns == 1795242139 * 10**9
    assert att.counts["attributed_irsa"] == 5
    assert att.counts["status_ambiguous"] == 5


def test_irsa_service_account_with_one_pod_names_it(pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index)
    out = feed(att, r.irsa_assume("2026-11-21T05:20:00Z", "rag", "rag", IRSA_KEY),
               r.s3_get_object("2026-11-21T05:21:00Z", r.assumed_role(IRSA_KEY), "c", "k"))
    for item in out:
        assert item.pod is not None and item.pod.uid == RAG_UID
        assert item.data["attribution"]["via"] == "irsa"
        assert item.data["attribution"]["status"] == "attributed"
        assert item.data["attribution"]["agent"] == "rag/Deployment/rag-indexer"
        assert "candidates" not in item.data["attribution"]


def test_source_ip_equal_to_one_candidates_pod_ip_settles_it() -> None:
    index = PodIndex()
    for doc in yaml.safe_load_all(MANIFESTS):
        if doc["metadata"]["namespace"] == "support":
            last = doc["metadata"]["uid"][-1]
            doc["status"]["podIP"] = f"10.0.7.{ord(last)}"
            doc["status"]["podIPs"] = [{"ip": f"10.0.7.{ord(last)}"}]
        index.apply("ADDED", PodInfo.from_manifest(doc))
    att = CloudAttributor(index)
    feed(att, r.irsa_assume("2026-11-21T05:20:00Z", "support", "support-bot", IRSA_KEY))
    via_endpoint = r.with_(
        r.s3_get_object("2026-11-21T05:21:00Z", r.assumed_role(IRSA_KEY), "c", "k"),
        sourceIPAddress=f"10.0.7.{ord('b')}", vpcEndpointId="vpce-0a1b2c3d4e5f60718")
    elsewhere = r.with_(via_endpoint, sourceIPAddress="10.0.9.9", eventID="other")
    settled, unsettled = feed(att, via_endpoint, elsewhere)
    assert settled.pod is not None and settled.pod.uid == SUPPORT_UID_B
    assert settled.data["attribution"]["settled_by"] == "source_ip"
    assert unsettled.pod is None
    assert unsettled.data["attribution"]["candidates"] == [SUPPORT_UID_A, SUPPORT_UID_B]


def test_pod_identity_tags_name_the_pod(pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index)
    out = by_action(feed(
        att,
        r.pod_identity_assume("2026-11-21T05:20:00Z", RAG_UID, "rag-indexer-5c6d7-abcde",
                              "rag", "rag", PI_KEY),
        r.s3_get_object("2026-11-21T05:21:00Z", r.assumed_role(PI_KEY, role="pi-role"),
                        "rag-corpus", "docs/1.pdf"),
    ))
    for action in ("AssumeRole", "GetObject"):
        item = out[action]
        assert item.pod is not None and item.pod.uid == RAG_UID
        assert item.pod.agent == "rag/Deployment/rag-indexer"
        assert item.pod.container == "indexer"
        assert item.data["attribution"]["via"] == "pod-identity"
        assert item.data["attribution"]["status"] == "attributed"
        assert item.data["attribution"]["agent"] == "rag/Deployment/rag-indexer"
        assert item.data["attribution"]["cluster"] == "prod"
        assert "candidates" not in item.data["attribution"]


def test_pod_identity_pod_not_in_index_still_keyed_by_uid(pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index)
    gone = "deadbeef-0000-4000-8000-000000000000"
    out = feed(att,
               r.pod_identity_assume("2026-11-21T05:20:00Z", gone, "rag-indexer-5c6d7-old",
                                     "rag", "rag", PI_KEY),
               r.s3_get_object("2026-11-21T05:21:00Z", r.assumed_role(PI_KEY), "b", "k"))
    assert out[1].pod is not None and out[1].pod.uid == gone
    assert out[1].pod.name == "rag-indexer-5c6d7-old"
    assert out[1].pod.agent == "rag/Deployment/rag-indexer"  # the SA's agent
    assert out[1].data["attribution"]["reason"] == "not_in_index"


def test_pod_identity_without_session_tags_falls_back(pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index)
    out = feed(att,
               r.pod_identity_assume("2026-11-21T05:20:00Z", RAG_UID, "x", "rag", "rag",
                                     PI_KEY, tags=False),
               r.s3_get_object("2026-11-21T05:21:00Z", r.assumed_role(PI_KEY, role="pi-role"),
                               "b", "k"))
    call = out[1]
    assert call.pod is None
    assert call.data["attribution"] == {
        "via": "pod-identity", "status": "unattributed",
        "role_arn": f"arn:aws:iam::{r.ACCOUNT}:role/pi-role",
        "assume_event_id": out[0].data["event_id"], "reason": "no_session_tags"}


def test_node_role_call_goes_to_the_node(pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index)
    (item,) = feed(att, r.node_role_call("2026-11-21T05:20:00Z"))
    assert item.pod is None
    assert item.data["attribution"] == {
        "via": "node-role", "status": "node",
        "role": f"arn:aws:iam::{r.ACCOUNT}:role/eks-node-role",
        "instance_id": "i-0abc1234def567890"}
    assert att.held == 0


def test_configured_node_role_without_instance_session(pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index, node_roles=["eks-node-role"])
    (item,) = feed(att, r.node_role_call("2026-11-21T05:20:00Z", instance_id="kubelet-x"))
    assert item.data["attribution"]["via"] == "node-role"
    assert "instance_id" not in item.data["attribution"]


def test_unknown_principals_are_unattributed_and_keyed_by_arn(pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index)
    (user,) = feed(att, r.iam_create_access_key("2026-11-21T05:20:00Z", r.iam_user()))
    assert user.pod is None
    assert user.data["attribution"] == {
        "via": "long-term-key", "status": "unattributed", "reason": "long_term_key"}
    assert user.data["principal"]["arn"] == f"arn:aws:iam::{r.ACCOUNT}:user/alice"


def test_unknown_temporary_key_waits_then_goes_out_unattributed(pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index, grace_s=600)
    stranger = r.assumed_role("ASIASTRANGERKEY00001", role="human-sso")
    assert feed(att, r.s3_get_object("2026-11-21T05:20:00Z", stranger, "b", "k")) == []
    assert att.held == 1
    # 9 minutes later in event time: still waiting
    assert feed(att, r.node_role_call("2026-11-21T05:29:00Z"))[0].data["attribution"][
        "via"] == "node-role"
    assert att.held == 1
    out = feed(att, r.node_role_call("2026-11-21T05:30:01Z"))
    released = [i for i in out if i.data["action"] == "GetObject"]
    assert len(released) == 1 and released[0].pod is None
    assert released[0].data["attribution"] == {
        "via": "unknown-key", "status": "unattributed", "reason": "assume_not_seen"}
    assert att.counts["unattributed_assume_not_seen"] == 1
    assert att.held == 0


def test_out_of_order_assume_within_grace_attributes_held_calls(pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index, grace_s=900)
    early = feed(
        att,
        r.s3_get_object("2026-11-21T05:21:00Z", r.assumed_role(IRSA_KEY), "corp", "a"),
        r.s3_get_object("2026-11-21T05:22:00Z", r.assumed_role(IRSA_KEY), "corp", "b"),
    )
    assert early == [] and att.held == 2
    out = feed(att, r.irsa_assume("2026-11-21T05:20:00Z", "support", "support-bot", IRSA_KEY))
    assert [i.data["action"] for i in out] == [
        "AssumeRoleWithWebIdentity", "GetObject", "GetObject"]
    for item in out[1:]:
        assert item.pod is None and item.data["attribution"]["agent"] == AGENT
        assert item.data["attribution"]["held"] is True
    assert att.held == 0
    assert att.counts["released_after_assume"] == 2


def test_assume_after_grace_is_too_late(pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index, grace_s=60)
    feed(att, r.s3_get_object("2026-11-21T05:21:00Z", r.assumed_role(IRSA_KEY), "c", "a"))
    out = feed(att, r.node_role_call("2026-11-21T05:25:00Z"),
               r.irsa_assume("2026-11-21T05:20:00Z", "support", "support-bot", IRSA_KEY))
    get = next(i for i in out if i.data["action"] == "GetObject")
    assert get.pod is None and get.data["attribution"]["reason"] == "assume_not_seen"


def test_grace_release_skips_calls_already_released(pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index, grace_s=600)
    other = "ASIAOTHERKEY00000001"
    feed(att, r.s3_get_object("2026-11-21T05:21:00Z", r.assumed_role(IRSA_KEY), "c", "a"),
         r.s3_get_object("2026-11-21T05:29:00Z", r.assumed_role(other), "c", "b"))
    feed(att, r.irsa_assume("2026-11-21T05:20:00Z", "support", "support-bot", IRSA_KEY))
    assert att.held == 1
    # 05:37 - 600 s = 05:27: the released 05:21 call is gone, the 05:29 one still waits
    out = feed(att, r.node_role_call("2026-11-21T05:37:00Z"))
    assert [i.data["action"] for i in out] == ["DescribeInstances"]
    assert att.held == 1


def test_held_calls_are_bounded(pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index, max_held=2)
    out = feed(att, *(
        r.s3_get_object(f"2026-11-21T05:2{i}:00Z", r.assumed_role(f"ASIAUNKNOWN0000000{i}"),
                        "b", str(i)) for i in range(3)))
    assert len(out) == 1
    assert out[0].data["params"]["key"] == "0"  # the oldest gives way
    assert out[0].data["attribution"]["reason"] == "held_overflow"
    assert att.held == 2


def test_keys_expire_with_credentials(pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index, grace_s=60)
    feed(att, r.irsa_assume("2026-11-21T05:20:00Z", "support", "support-bot", IRSA_KEY,
                            expiration="Nov 21, 2026, 6:20:00 AM"))
    assert att.identity_of(IRSA_KEY) is not None
    # a call just inside expiration + grace still finds it
    (late,) = feed(att, r.s3_get_object("2026-11-21T06:20:30Z", r.assumed_role(IRSA_KEY),
                                        "b", "k"))
    assert late.data["attribution"]["via"] == "irsa"
    assert "expired" not in late.data["attribution"]
    feed(att, r.node_role_call("2026-11-21T06:21:01Z"))
    assert att.identity_of(IRSA_KEY) is None
    assert att.counts["keys_expired"] == 1
    # a call with it after that: still that identity's, and said to be expired
    (after,) = feed(att, r.with_(
        r.s3_get_object("2026-11-21T06:30:00Z", r.assumed_role(IRSA_KEY), "b", "k2"),
        errorCode="ExpiredToken", errorMessage="The provided token has expired."))
    assert after.data["attribution"]["service_account"] == "support/support-bot"
    assert after.data["attribution"]["expired"] is True
    assert after.data["outcome"] == "failure"
    assert att.held == 0


def test_wrong_pod_never_after_expiry_or_with_an_unknown_key() -> None:
    """The issue's case: pods app1 and app2 (app2 has the lower uid) of one service
    account on EKS Pod Identity. app1's key outlives the map; an unknown key of the
    role shows up. Neither call may be blamed on app2."""
    index = PodIndex()
    uids = {"app1": "f0000000-0000-4000-8000-000000000001",
            "app2": "00000000-0000-4000-8000-000000000002"}
    for name, uid in uids.items():
        index.apply("ADDED", PodInfo(uid=uid, namespace="shop", name=name, node="n",
                                     service_account="app", agent="shop/Deployment/app"))
    att = CloudAttributor(index, grace_s=60)
    app1_key, stranger = "ASIAAPP1KEY000000001", "ASIAUNKNOWNKEY000001"
    feed(att, r.pod_identity_assume("2026-11-21T05:00:00Z", uids["app1"], "app1", "shop",
                                    "app", app1_key,
                                    expiration="Nov 21, 2026, 5:15:00 AM"))
    feed(att, r.node_role_call("2026-11-21T05:30:00Z"))  # event time moves past expiry
    assert att.identity_of(app1_key) is None
    (late,) = feed(att, r.s3_get_object("2026-11-21T05:31:00Z",
                                        r.assumed_role(app1_key, role="pi-role"), "b", "k"))
    assert late.pod is not None and late.pod.uid == uids["app1"]
    assert late.data["attribution"]["expired"] is True
    feed(att, r.s3_get_object("2026-11-21T05:32:00Z", r.assumed_role(stranger, role="pi-role"),
                              "b", "k2"))
    out = feed(att, r.node_role_call("2026-11-21T05:40:00Z"))
    (unknown,) = [i for i in out if i.data["action"] == "GetObject"]
    assert unknown.pod is None
    assert unknown.data["attribution"]["status"] == "ambiguous"
    assert unknown.data["attribution"]["reason"] == "inferred_from_role"
    assert unknown.data["attribution"]["agent"] == "shop/Deployment/app"
    assert sorted(unknown.data["attribution"]["candidates"]) == sorted(uids.values())


def test_key_map_is_bounded_and_evictions_counted(pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index, max_keys=2)
    feed(att, *(r.irsa_assume(f"2026-11-21T05:2{i}:00Z", "support", "support-bot",
                              f"ASIAIRSAKEY00000000{i}") for i in range(3)))
    assert att.known_keys == 2
    assert att.identity_of("ASIAIRSAKEY000000000") is None  # least recently used
    assert att.counts["keys_evicted"] == 1


def test_role_chaining_inherits_the_pod(pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index)
    chained_key = "ASIACHAINEDKEY000001"
    hop = r.pod_identity_assume("2026-11-21T05:21:00Z", "x", "x", "x", "x", chained_key)
    hop["userIdentity"] = r.assumed_role(IRSA_KEY)  # the pod itself calls sts:AssumeRole
    hop["requestParameters"] = {"roleArn": f"arn:aws:iam::{r.ACCOUNT}:role/data-admin",
                                "roleSessionName": "hop"}
    out = feed(att,
               r.irsa_assume("2026-11-21T05:20:00Z", "support", "support-bot", IRSA_KEY),
               hop,
               r.s3_get_object("2026-11-21T05:22:00Z", r.assumed_role(chained_key,
                               role="data-admin"), "secrets", "k"))
    last = out[-1]
    assert last.pod is None  # the chain inherits the ambiguity, never resolves it
    assert last.data["attribution"]["agent"] == AGENT
    assert last.data["attribution"]["candidates"] == [SUPPORT_UID_A, SUPPORT_UID_B]
    assert last.data["attribution"]["chained"] is True
    assert last.data["attribution"]["role_arn"].endswith(":role/data-admin")


def test_no_pod_for_service_account() -> None:
    att = CloudAttributor(PodIndex())
    out = feed(att, r.irsa_assume("2026-11-21T05:20:00Z", "ghost", "sa", IRSA_KEY),
               r.s3_get_object("2026-11-21T05:21:00Z", r.assumed_role(IRSA_KEY), "b", "k"))
    assert out[1].pod is None
    assert out[1].data["attribution"]["service_account"] == "ghost/sa"
    assert out[1].data["attribution"]["reason"] == "no_pod_for_service_account"


def test_pod_index_changes_are_seen(pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index)
    feed(att, r.irsa_assume("2026-11-21T05:20:00Z", "support", "support-bot", IRSA_KEY))
    info = pod_index.get(SUPPORT_UID_A)
    assert info is not None
    pod_index.apply("DELETED", info)
    (call,) = feed(att, r.s3_get_object("2026-11-21T05:21:00Z", r.assumed_role(IRSA_KEY),
                                        "b", "k"))
    # one pod left on the service account: now certain
    assert call.pod is not None and call.pod.uid == SUPPORT_UID_B
    assert call.data["attribution"]["status"] == "attributed"


def test_snapshot_restore_keeps_keys_and_held_calls(pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index)
    feed(att, r.irsa_assume("2026-11-21T05:20:00Z", "support", "support-bot", IRSA_KEY),
         r.s3_get_object("2026-11-21T05:21:00Z", r.assumed_role(PI_KEY), "b", "held"))
    doc = orjson.loads(orjson.dumps(att.snapshot()))  # it is what the checkpoint stores
    again = CloudAttributor(pod_index)
    again.restore(doc)
    assert again.held == 1 and again.watermark == att.watermark
    assert again.snapshot()["roles"] == att.snapshot()["roles"] == [
        [f"arn:aws:iam::{r.ACCOUNT}:role/agent-role", [["irsa", "support", "support-bot"]]]]
    (call,) = feed(again, r.s3_get_object("2026-11-21T05:22:00Z", r.assumed_role(IRSA_KEY),
                                          "b", "k"))
    assert call.data["attribution"]["via"] == "irsa"
    out = feed(again, r.pod_identity_assume("2026-11-21T05:20:30Z", RAG_UID, "n", "rag",
                                            "rag", PI_KEY))
    assert [i.data["params"].get("key") for i in out] == [None, "held"]
    assert out[1].pod is not None and out[1].pod.uid == RAG_UID


def test_drain_releases_everything_held(pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index)
    feed(att, r.s3_get_object("2026-11-21T05:21:00Z", r.assumed_role(PI_KEY), "b", "k"))
    (item,) = att.drain()
    assert item.data["attribution"]["reason"] == "assume_not_seen"
    assert att.held == 0 and att.drain() == []


def test_missing_assume_falls_back_to_the_roles_only_service_account(
        pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index, grace_s=60)
    fresh = "ASIAFRESHKEYNOASSUME"
    feed(att, r.irsa_assume("2026-11-21T05:20:00Z", "support", "support-bot", IRSA_KEY))
    # a new key of the same role whose assume event is not in the logs we read
    held = feed(att, r.s3_get_object("2026-11-21T05:21:00Z",
                                     r.assumed_role(fresh, web_identity=True), "c", "x"))
    assert held == []
    out = feed(att, r.node_role_call("2026-11-21T05:23:00Z"))
    get = next(i for i in out if i.data["action"] == "GetObject")
    assert get.pod is None  # a role's one known service account is a lead, not proof
    assert get.data["attribution"]["agent"] == AGENT
    assert get.data["attribution"]["status"] == "ambiguous"
    assert get.data["attribution"]["inferred"] == "role"
    assert get.data["attribution"]["service_account"] == "support/support-bot"
    # the key is now known: the next call is not held
    (nxt,) = feed(att, r.s3_get_object("2026-11-21T05:24:00Z",
                                       r.assumed_role(fresh, web_identity=True), "c", "y"))
    assert nxt.data["attribution"]["inferred"] == "role"
    assert att.counts["inferred_from_role"] == 1


def test_no_inference_for_shared_roles_or_non_web_identity_sessions(
        pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index, grace_s=60)
    feed(att, r.irsa_assume("2026-11-21T05:20:00Z", "support", "support-bot", IRSA_KEY))
    # same role, no webIdFederationData: could be anyone allowed to assume it
    feed(att, r.s3_get_object("2026-11-21T05:21:00Z", r.assumed_role("ASIAHUMANKEY00000001"),
                              "c", "x"))
    # a second service account on the same role: shared, no guess
    feed(att, r.irsa_assume("2026-11-21T05:21:10Z", "rag", "rag", "ASIARAGKEY0000000001"))
    feed(att, r.s3_get_object("2026-11-21T05:21:20Z",
                              r.assumed_role("ASIAFRESHKEYNOASSUME", web_identity=True),
                              "c", "y"))
    out = feed(att, r.node_role_call("2026-11-21T05:25:00Z"))
    gets = [i for i in out if i.data["action"] == "GetObject"]
    assert len(gets) == 2
    assert all(i.pod is None and i.data["attribution"]["reason"] == "assume_not_seen"
               for i in gets)


def test_role_chaining_from_a_pod_identity_key_keeps_the_certain_pod(
        pod_index: PodIndex) -> None:
    att = CloudAttributor(pod_index)
    chained_key = "ASIACHAINEDKEY000002"
    hop = r.api_call("2026-11-21T05:21:00Z", r.assumed_role(PI_KEY, role="pi-role"),
                     "sts.amazonaws.com", "AssumeRole",
                     {"roleArn": f"arn:aws:iam::{r.ACCOUNT}:role/data-admin",
                      "roleSessionName": "hop"})
    hop["responseElements"] = {"credentials": {
        "accessKeyId": chained_key, "expiration": "Nov 21, 2026, 6:21:00 AM"}}
    out = feed(att,
               r.pod_identity_assume("2026-11-21T05:20:00Z", RAG_UID,
                                     "rag-indexer-5c6d7-abcde", "rag", "rag", PI_KEY),
               hop,
               r.kms_decrypt("2026-11-21T05:22:00Z", r.assumed_role(chained_key,
                                                                   role="data-admin")))
    last = out[-1]
    assert last.pod is not None and last.pod.uid == RAG_UID
    assert last.data["attribution"] == {
        "via": "pod-identity", "status": "attributed", "agent": "rag/Deployment/rag-indexer",
        "service_account": "rag/rag", "cluster": "prod",
        "role_arn": f"arn:aws:iam::{r.ACCOUNT}:role/data-admin",
        "assume_event_id": hop["eventID"], "chained": True}
