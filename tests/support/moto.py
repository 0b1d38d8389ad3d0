"""moto in server mode: a separate process on a free loopback port that boto3 reaches by ``endpoint_url``.

moto emulates EC2, IAM and STS (tagging, spot fulfilment, roles and inline policies, AssumeRole) but does not
evaluate IAM condition keys, so what a policy allows is checked by the independent evaluator (``tests/iam``), not by
moto. Each server is private to one test module (`moto_url`); :func:`reset` clears its state.
"""

from __future__ import annotations

import urllib.request

from labctl.localcluster.moto import TEST_KEYS, moto_server

__all__ = ["TEST_ENV", "moto_server", "reset"]

# moto's server accepts any key pair; these are the documented test values, not credentials of any account.
TEST_ENV = {**TEST_KEYS, "AWS_DEFAULT_REGION": "us-east-1"}


def reset(url: str) -> None:
    """Forget every resource the server holds (moto's own reset endpoint)."""
    req = urllib.request.Request(f"{url}/moto-api/reset", method="POST")  # noqa: S310
    with urllib.request.urlopen(req, timeout=10) as answer:  # noqa: S310
        answer.read()
