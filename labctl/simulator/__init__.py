"""The simulated world of the local cluster: what each workload is asked to serve, serves, drops and uses.

kwok runs no containers, so labctl simulates them from each lab's demand declaration (``demand`` in ``lab.yaml``):
requests per second over a simulated clock, spread evenly over a workload's Ready pods, each pod capped by what its
CPU and GPU allow; the usage to write for every pod, and the requests offered, served and dropped, go to the usage
writer and the service ledger. Everything here is pure (``now`` and the step's length come in, new values go out),
except :mod:`labctl.simulator.ledger`, which adds a step to the ledger rows of the caller's unit of work.

- :mod:`labctl.simulator.clock`: the simulated clock and exact integrals of a demand curve over a step;
- :mod:`labctl.simulator.economics`: served share and cost per 1,000 requests;
- :mod:`labctl.simulator.model`: pods in, a step's usage and service out; the plan of a grading window's replay
  (its slices), one slice played, and a whole window played against fixed pods (the starter's figures);
- :mod:`labctl.simulator.ledger`: the step's counts and per-workload cost accrued into the store, per window.
"""
