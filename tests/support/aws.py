"""The AWS test world around moto's server: an admin boto3 session, an ``aws`` lab, session specs, learner clients.

The admin session is labctl's own principal (moto's test keys); the learner's clients are built from the env file
labctl hands out, exactly as a learner would use it.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from labctl.catalog.models import Lab
from labctl.ports import Credentials, SandboxSpec
from tests.support.moto import TEST_ENV

REGIONS = ["us-east-1", "us-west-2"]
INSTANCE_TYPES = ["m5.large", "g4dn.xlarge"]


def admin_session() -> boto3.Session:
    return boto3.Session(aws_access_key_id=TEST_ENV["AWS_ACCESS_KEY_ID"],
                         aws_secret_access_key=TEST_ENV["AWS_SECRET_ACCESS_KEY"], region_name=REGIONS[0])


def aws_lab(**changes: Any) -> Lab:
    data: dict[str, Any] = {
        "id": "aws-test", "title": "An AWS test lab", "summary": "EC2 in a fenced slice of a sandbox account.",
        "provider": "aws", "budget": {"usd": 10}, "time": {"limit": "1h", "max_extension": "30m"},
        "required_labels": ["team", "cost-center", "env"],
        "aws": {"regions": REGIONS, "instance_types": INSTANCE_TYPES},
        "graders": [{"id": "tags", "script": "graders/tag_coverage.py", "weight": 1,
                     "params": {"required_labels": ["team", "cost-center", "env"]}}],
    }
    return Lab.model_validate({**data, **changes})


def spec(lab: Lab | None = None, *, now: datetime | None = None) -> SandboxSpec:
    now = now or datetime.now(UTC)
    session_id = f"aws-test-{secrets.token_hex(5)}"
    return SandboxSpec(session_id=session_id, lab=lab or aws_lab(), learner_id="learner-1", namespace=session_id,
                       expires_at=now + timedelta(hours=1), budget_usd=10.0, started_at=now)


def env_of(creds: Credentials | str) -> dict[str, str]:
    """The env file labctl issued (the credentials, or the text the API served), as a mapping."""
    text = creds if isinstance(creds, str) else creds.content
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def learner_ec2(creds: Credentials | str, region: str | None = None) -> Any:
    """An EC2 client built only from the credentials labctl gave the learner."""
    env = env_of(creds)
    return boto3.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                         aws_session_token=env["AWS_SESSION_TOKEN"]).client(
        "ec2", region_name=region or env["AWS_REGION"], endpoint_url=env["AWS_ENDPOINT_URL"])


def session_tags(session_id: str, **more: str) -> list[dict[str, str]]:
    return [{"Key": "labctl-session", "Value": session_id}, *({"Key": k, "Value": v} for k, v in more.items())]


def launch(ec2: Any, session_id: str | None, *, instance_type: str = "m5.large", spot: bool = False,
           **tags: str) -> str:
    """RunInstances as a learner does it: tags on the instance and its volume at create time."""
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    extra: dict[str, Any] = {"InstanceMarketOptions": {"MarketType": "spot"}} if spot else {}
    tag_list = session_tags(session_id, **tags) if session_id else [{"Key": k, "Value": v} for k, v in tags.items()]
    if tag_list:
        extra["TagSpecifications"] = [{"ResourceType": t, "Tags": tag_list} for t in ("instance", "volume")]
    answer = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType=instance_type, **extra)
    return str(answer["Instances"][0]["InstanceId"])
