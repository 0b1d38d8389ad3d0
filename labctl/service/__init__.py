"""Use cases: what the API, the CLI and the scheduler ask labctl to do. No cloud SDKs here."""
