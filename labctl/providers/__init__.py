"""Sandbox providers: the only modules that talk to Kubernetes, AWS or GCP through their SDKs."""
