"""Grading: snapshots in, checks, a weighted grade and a cost receipt out.

A lab's graders are executables under ``graders/`` that read ``{"snapshot": ..., "params": ...}`` as JSON on stdin
and print ``{"checks": [...]}`` on stdout; nothing here knows what they check. :mod:`.snapshot` is the shape of the
provider-neutral inventory they read, :mod:`.checks` the shape of their results and the pure arithmetic that weighs
them into a :class:`~labctl.grading.checks.Grade`, :mod:`.runner` runs each script as a limited subprocess (time,
memory, output size; no shell, no inherited secrets) and turns every failure into an ``error`` check, and
:mod:`.receipt` itemises what the sandbox cost, what spot capacity saved and what idle resources wasted.

The package imports no cloud SDK and no other labctl layer but the lab catalog's models.
"""
