"""labctl: a hands-on FinOps lab controller."""

__version__ = "0.1.0"
