"""Envoyage: registry, translation, validation and an xDS server for Envoy."""

__version__ = "0.1.0"
