"""Suspend and resume one Kubernetes sandbox: stop every pod that costs compute, keep the work, restore exactly.

``suspend`` first sets the sandbox quota to ``pods: 0``, so nothing new can start whatever the learner does next;
then it scales every scalable workload (Deployment, StatefulSet, a ReplicaSet no Deployment controls) to zero,
suspends every unfinished Job (CronJob children too) and every CronJob, parks every DaemonSet on a node selector no
node carries, and deletes every pod still left: bare pods (which cannot come back: the record names them) and those
whose controllers have not removed them yet. What each object was before is returned as a
:class:`~labctl.ports.Suspension`, which labctl keeps in its store. Nothing is written into the sandbox as memory,
so nothing the learner writes there (an annotation, a replica count) is ever read back.

``resume`` writes the record back, exactly: the quota first (so pods may start), then replicas, suspend flags and
node selectors, ignoring whatever the learner changed meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from labctl.ports import Suspension

QUOTA = "sandbox"
PARKED = {"labctl.dev/suspended": "true"}  # a node selector no node carries: the DaemonSet's pods go away
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
FINISHED = ("Succeeded", "Failed")
STOPPED_CONTROLLERS = frozenset({"ReplicaSet", "StatefulSet", "DaemonSet", "Job"})

Call = Callable[..., Any]


def _scalable(api: client.ApiClient) -> list[tuple[str, Call, Call]]:
    apps = client.AppsV1Api(api)
    return [("Deployment", apps.list_namespaced_deployment, apps.patch_namespaced_deployment),
            ("StatefulSet", apps.list_namespaced_stateful_set, apps.patch_namespaced_stateful_set),
            ("ReplicaSet", apps.list_namespaced_replica_set, apps.patch_namespaced_replica_set)]


def _suspendable(api: client.ApiClient) -> list[tuple[str, Call, Call]]:
    batch = client.BatchV1Api(api)
    return [("CronJob", batch.list_namespaced_cron_job, batch.patch_namespaced_cron_job),
            ("Job", batch.list_namespaced_job, batch.patch_namespaced_job)]


def _unless_gone(call: Call, *args: Any, **kwargs: Any) -> None:
    """One object's call; an object deleted meanwhile (by its controller or the learner) needs nothing more."""
    try:
        call(*args, **kwargs)
    except ApiException as exc:
        if exc.status != 404:
            raise


def _controlled_by_deployment(obj: Any) -> bool:
    return any(ref.kind == "Deployment" and ref.controller for ref in obj.metadata.owner_references or [])


def _finished(job: Any) -> bool:
    return any(c.type in ("Complete", "Failed") and c.status == "True" for c in (job.status.conditions or []))


def suspend(api: client.ApiClient, namespace: str) -> Suspension:
    """Stop all compute in ``namespace``; returns what was there before (for :func:`resume`)."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    quota = core.read_namespaced_resource_quota(QUOTA, namespace)
    quota_pods = (quota.spec.hard or {}).get("pods")
    core.patch_namespaced_resource_quota(QUOTA, namespace, {"spec": {"hard": {"pods": "0"}}}, _content_type=MERGE)

    replicas: dict[str, int] = {}
    for kind, lister, patcher in _scalable(api):
        for obj in lister(namespace).items:
            if kind == "ReplicaSet" and _controlled_by_deployment(obj):
                continue  # it follows its Deployment
            replicas[f"{kind}/{obj.metadata.name}"] = obj.spec.replicas if obj.spec.replicas is not None else 1
            _unless_gone(patcher, obj.metadata.name, namespace, {"spec": {"replicas": 0}}, _content_type=MERGE)

    flags: dict[str, bool] = {}
    for kind, lister, patcher in _suspendable(api):
        for obj in lister(namespace).items:
            if kind == "Job" and _finished(obj):
                continue  # a finished Job runs nothing
            flags[f"{kind}/{obj.metadata.name}"] = bool(obj.spec.suspend)
            _unless_gone(patcher, obj.metadata.name, namespace, {"spec": {"suspend": True}}, _content_type=MERGE)

    selectors: dict[str, dict[str, str]] = {}
    for ds in apps.list_namespaced_daemon_set(namespace).items:
        selectors[f"DaemonSet/{ds.metadata.name}"] = dict(ds.spec.template.spec.node_selector or {})
        _unless_gone(apps.patch_namespaced_daemon_set, ds.metadata.name, namespace, [
            {"op": "add", "path": "/spec/template/spec/nodeSelector", "value": PARKED}], _content_type=JSON_PATCH)

    deleted: list[str] = []
    for pod in core.list_namespaced_pod(namespace).items:
        if (pod.status.phase or "") in FINISHED or pod.metadata.deletion_timestamp is not None:
            continue
        owners = {ref.kind for ref in pod.metadata.owner_references or [] if ref.controller}
        if not owners & STOPPED_CONTROLLERS:
            deleted.append(pod.metadata.name)
        _unless_gone(core.delete_namespaced_pod, pod.metadata.name, namespace, grace_period_seconds=0)
    return Suspension(replicas=replicas, suspend_flags=flags, node_selectors=selectors, quota_pods=quota_pods,
                      deleted_pods=sorted(deleted))


def resume(api: client.ApiClient, namespace: str, record: Suspension) -> None:
    """Write ``record`` back exactly; objects the learner deleted meanwhile are skipped."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.patch_namespaced_resource_quota(QUOTA, namespace, {"spec": {"hard": {"pods": record.quota_pods}}},
                                         _content_type=MERGE)
    patchers = {kind: patcher for kind, _, patcher in _scalable(api) + _suspendable(api)}
    for key, count in record.replicas.items():
        kind, name = key.split("/", 1)
        _unless_gone(patchers[kind], name, namespace, {"spec": {"replicas": count}}, _content_type=MERGE)
    for key, flag in record.suspend_flags.items():
        kind, name = key.split("/", 1)
        _unless_gone(patchers[kind], name, namespace, {"spec": {"suspend": flag}}, _content_type=MERGE)
    for key, selector in record.node_selectors.items():
        _unless_gone(apps.patch_namespaced_daemon_set, key.split("/", 1)[1], namespace, [
            {"op": "add", "path": "/spec/template/spec/nodeSelector", "value": selector}], _content_type=JSON_PATCH)
