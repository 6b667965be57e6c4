"""Shared pieces with no dependency on the rest of ragkiln: settings, errors, manifests, logs."""

__version__ = "0.1.0"
