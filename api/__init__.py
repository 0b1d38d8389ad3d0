"""The HTTP API (FastAPI): routers per resource, problem-details errors, health and metrics."""
