"""The cost receipt that comes with every grade: what each resource cost, what spot saved, what idle things wasted.

Pure arithmetic over a :class:`~labctl.grading.snapshot.Snapshot`:

- an **item** per cost-bearing resource (any resource with ``cost_usd`` or ``hourly_usd``: pods, PersistentVolumeClaims,
  LoadBalancer Services, cloud instances): hours x rate, and what it cost (``cost_usd`` from the ledger when the
  snapshot has it, else hours x rate);
- **spot savings**: for every item that knows its on-demand rate, ``(on_demand_hourly_usd - hourly_usd) x hours``;
- **idle waste**: the cost of items that did nothing for it: running pods whose measured CPU use is under
  ``idle_cpu_cores`` (and whose GPUs, if measured, are under ``idle_gpu_engine_active``), claims no pod mounts,
  LoadBalancers with no ready endpoints (or, endpoints unknown, whose selector matches no running pod);
- the total of the items, beside the ledger's ``accrued_usd`` (which also holds what deleted resources cost);
- **service**, for a lab with demand: per declared workload, requests served and dropped, served share and cost per
  1,000 requests over the grading window's replay (the snapshot's ``service`` section, read from the service
  ledger), beside the starter's figures over the same window (:mod:`labctl.simulator.starter`, given by the caller).

Figures are exact in the data; :meth:`Receipt.render` rounds money to cents for people. The idle rule is the one
``graders/idle_orphans.py`` and ``graders/budget.py`` apply (there with thresholds from lab parameters).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from labctl.grading.snapshot import Resource, ServiceFigures, Snapshot

IDLE_CPU_CORES = 0.005
IDLE_GPU_ENGINE_ACTIVE = 0.05


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReceiptItem(_Closed):
    """One cost-bearing resource: hours x rate, what it cost, what spot saved on it, and why it was idle if it was."""

    resource: str
    hours: float
    hourly_usd: float
    usd: float
    capacity_type: str | None = None
    spot_savings_usd: float = 0.0
    idle: str | None = None


class ServiceLine(_Closed):
    """One declared workload over the grading window: the learner's figures, and the starter's (None: unknown)."""

    workload: str
    learner: ServiceFigures
    starter: ServiceFigures | None = None


class Receipt(_Closed):
    """The itemised cost of a sandbox at submission, and what its workloads served for it."""

    items: list[ReceiptItem]
    total_usd: float
    accrued_usd: float
    spot_savings_usd: float
    idle_waste_usd: float
    service: list[ServiceLine] = []

    def render(self) -> str:
        """The receipt as a plain-text table, money rounded to cents."""
        width = max([len("resource"), *(len(i.resource) for i in self.items)])
        lines = [f"{'resource':<{width}}  {'hours':>7}  {'$/hour':>8}  {'cost':>9}  note"]
        for item in self.items:
            note = f"idle: {item.idle}" if item.idle else (item.capacity_type or "")
            lines.append(f"{item.resource:<{width}}  {item.hours:>7.2f}  {item.hourly_usd:>8.4f}  "
                         f"{_money(item.usd):>9}  {note}".rstrip())
        lines.append(f"{'total':<{width}}  {'':>7}  {'':>8}  {_money(self.total_usd):>9}")
        lines.append(f"ledger {_money(self.accrued_usd)} (including deleted resources); spot saved "
                     f"{_money(self.spot_savings_usd)}; idle waste {_money(self.idle_waste_usd)}")
        if self.service:
            lines.append("")
            lines.extend(self._service_table())
        return "\n".join(lines)

    def _service_table(self) -> list[str]:
        width = max([len("workload"), *(len(line.workload) for line in self.service)])
        lines = [f"{'workload':<{width}}  {'':<8}  {'served':>12}  {'dropped':>12}  {'served %':>8}  "
                 f"{'cost':>9}  {'$/1k req':>9}"]
        for line in self.service:
            for who, fig in (("you", line.learner), ("starter", line.starter)):
                name = line.workload if who == "you" else ""
                if fig is None:
                    lines.append(f"{name:<{width}}  {who:<8}  {'unknown':>12}")
                    continue
                lines.append(f"{name:<{width}}  {who:<8}  {fig.served:>12,.0f}  {fig.dropped:>12,.0f}  "
                             f"{_percent(fig.served_share):>8}  {_money(fig.cost_usd):>9}  "
                             f"{_unit(fig.cost_per_1000_requests):>9}")
        return lines


def receipt(snapshot: Snapshot, *, starter: list[ServiceFigures] | None = None,
            idle_cpu_cores: float = IDLE_CPU_CORES, idle_gpu_engine_active: float = IDLE_GPU_ENGINE_ACTIVE) -> Receipt:
    """The receipt of ``snapshot`` (see the module doc for what counts); ``starter``: the starter's figures over
    the grading window, set beside the learner's workload by workload."""
    items = [_item(snapshot, r, idle_cpu_cores, idle_gpu_engine_active) for r in snapshot.resources
             if r.cost_usd is not None or r.hourly_usd is not None]
    starters = {f.workload: f for f in starter or []}
    service = [ServiceLine(workload=f.workload, learner=f, starter=starters.get(f.workload))
               for f in snapshot.service or []]
    return Receipt(items=items, total_usd=sum(i.usd for i in items), accrued_usd=snapshot.cost.accrued_usd,
                   spot_savings_usd=sum(i.spot_savings_usd for i in items),
                   idle_waste_usd=sum(i.usd for i in items if i.idle), service=service)


def idle_reason(snapshot: Snapshot, res: Resource, *, idle_cpu_cores: float = IDLE_CPU_CORES,
                idle_gpu_engine_active: float = IDLE_GPU_ENGINE_ACTIVE) -> str | None:
    """Why ``res`` is idle waste, or None when it is not (or its use is unknown)."""
    if res.kind == "Pod":
        return _idle_pod(res, idle_cpu_cores, idle_gpu_engine_active)
    if res.kind == "PersistentVolumeClaim":
        return None if res.mounted_by else "mounted by no pod"
    if res.kind == "Service" and res.service_type == "LoadBalancer":
        return _idle_load_balancer(snapshot, res)
    return None


def _item(snapshot: Snapshot, res: Resource, idle_cpu: float, idle_gpu: float) -> ReceiptItem:
    hourly = res.hourly_usd
    hours = res.running_hours
    if hours is None:
        hours = res.cost_usd / hourly if res.cost_usd is not None and hourly else 0.0
    usd = res.cost_usd if res.cost_usd is not None else hours * (hourly or 0.0)
    if hourly is None:
        hourly = usd / hours if hours else 0.0
    savings = (res.on_demand_hourly_usd - hourly) * hours if res.on_demand_hourly_usd is not None else 0.0
    return ReceiptItem(resource=res.ref, hours=hours, hourly_usd=hourly, usd=usd,
                       capacity_type=_capacity_type(snapshot, res), spot_savings_usd=savings,
                       idle=idle_reason(snapshot, res, idle_cpu_cores=idle_cpu, idle_gpu_engine_active=idle_gpu))


def _capacity_type(snapshot: Snapshot, res: Resource) -> str | None:
    node = snapshot.node(res.node)
    return node.capacity_type if node is not None else res.capacity_type


def _idle_pod(pod: Resource, idle_cpu: float, idle_gpu: float) -> str | None:
    if pod.phase != "Running":
        return None
    usages = [c.usage for c in pod.containers if c.usage is not None]
    cpus = [u.cpu for u in usages if u.cpu is not None]
    if not cpus or sum(cpus) >= idle_cpu:
        return None
    engines = [u.gpu_engine_active for u in usages if u.gpu_engine_active is not None]
    if engines and max(engines) >= idle_gpu:
        return None
    return f"used {sum(cpus) * 1000:g}m CPU (idle under {idle_cpu * 1000:g}m)"


def _idle_load_balancer(snapshot: Snapshot, service: Resource) -> str | None:
    if service.endpoints is not None:
        return None if service.endpoints > 0 else "a LoadBalancer with no ready endpoints"
    if service.selector is None:
        return None
    selector = service.selector
    running = [p for p in snapshot.of_kind("Pod") if p.phase == "Running" and selector.matches(p.labels)]
    return None if running else "a LoadBalancer whose selector matches no running pod"


def _money(usd: float) -> str:
    return f"${usd:,.2f}"


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.2f}%"


def _unit(usd: float | None) -> str:
    """Cost per 1,000 requests: small amounts, so four decimals."""
    return "-" if usd is None else f"${usd:,.4f}"
