"""Ruche: desk occupancy and door access control for coworking spaces."""

__version__ = "0.1.0"

__all__ = ["__version__"]
