"""The AWS sandbox provider: a per-session IAM role fenced by tags, EC2 inventory by the session tag (boto3)."""
