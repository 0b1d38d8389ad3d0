"""The cost meter's pure core: the price sheet and OpenCost's cost model.

:mod:`.prices` reads ``labs/prices.yaml`` (dated prices per provider, region and instance type, fallback unit rates,
storage and load balancer rates, MIG shares) and prices a node from its labels and capacity, never at zero;
:mod:`.model` splits a node's price into unit rates and prices containers, MIG slices, PVCs and load balancers, and
accrues and forecasts spend. No cluster, no network, no clock: callers pass ``now``.
"""
