"""Benchmarks: bounded, loopback-only measurements printed side by side with a baseline."""
