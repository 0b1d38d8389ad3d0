"""Unit economics of a served workload: the share of demand served, and the cost of 1,000 served requests.

A cut in cost that drops requests is not a saving, so a unit cost always goes with its service level: the cost per
1,000 requests is the serving workload's cost over the requests it *served* (dropped ones earn nothing), and the
served share says how much of the demand that was. Both are exact :class:`~decimal.Decimal` quotients (28
significant digits) and None where they are undefined: no demand offered, or nothing served.

>>> served_share(950, 1000), cost_per_1000_requests(Decimal("1.90"), 950)
(Decimal('0.95'), Decimal('2.000'))
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

Count = Decimal | Fraction | int


def _decimal(value: Count, name: str) -> Decimal:
    number = Decimal(value.numerator) / Decimal(value.denominator) if isinstance(value, Fraction) else Decimal(value)
    if number < 0:
        raise ValueError(f"{name} cannot be negative, got {value}")
    return number


def served_share(served: Count, offered: Count) -> Decimal | None:
    """``served / offered`` (0 to 1); None when nothing was offered (no demand: no service level to judge)."""
    done, asked = _decimal(served, "served"), _decimal(offered, "offered")
    if done > asked:
        raise ValueError(f"served ({served}) cannot exceed offered ({offered})")
    return None if asked == 0 else done / asked


def cost_per_1000_requests(cost_usd: Count, served: Count) -> Decimal | None:
    """USD per 1,000 served requests: ``cost / served x 1000``; None when nothing was served (no unit to price)."""
    cost, done = _decimal(cost_usd, "cost_usd"), _decimal(served, "served")
    return None if done == 0 else cost / done * 1000
