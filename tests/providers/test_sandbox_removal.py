"""Removing a sandbox on the real control plane: destroy waits for the namespace's real finalization (polled as raw
JSON, no typed model per answer), names what holds it back when it does not finish in time, and returns once it is
gone.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client

from labctl.localcluster.cluster import LocalCluster
from labctl.ports import ProviderError, SandboxSpec
from labctl.providers.kubernetes.sandbox import KubernetesSandboxes
from tests.support.sandbox import MANIFESTS, shipped_lab
from tests.support.wait import eventually, namespace_gone

HOLD = "labctl.dev/test-hold"


def test_destroy_names_what_holds_a_namespace_back_then_returns_once_it_is_gone(
        local_cluster: LocalCluster, kube: client.ApiClient) -> None:
    name = f"t-rm-{secrets.token_hex(4)}"
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"labctl.dev/test": "1"})))
    core.create_namespaced_config_map(name, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="held", finalizers=[HOLD]), data={"k": "v"}))
    now = datetime.now(UTC)
    spec = SandboxSpec(session_id=name, lab=shipped_lab("tag-for-showback"), learner_id="ada", namespace=name,
                       expires_at=now + timedelta(hours=1), budget_usd=1.0, started_at=now)
    provider = KubernetesSandboxes(local_cluster.kubeconfig, MANIFESTS)
    try:
        def held_back() -> str:
            with pytest.raises(ProviderError, match="still terminating after 1s") as caught:
                provider.destroy(spec, wait_s=1)
            return str(caught.value) if "Remaining" in str(caught.value) else ""

        # The namespace controller reports the content left (and the finalizer) as the namespace's conditions.
        reason = eventually(held_back, timeout=60, interval=1)
        assert HOLD in reason or "configmaps" in reason, reason
    finally:
        core.patch_namespaced_config_map("held", name, {"metadata": {"finalizers": None}})
    provider.destroy(spec, wait_s=60)
    assert namespace_gone(kube, name)
