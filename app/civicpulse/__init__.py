"""CivicPulse Ops reference workload: a small Django JSON API."""

__version__ = "0.1.0"
