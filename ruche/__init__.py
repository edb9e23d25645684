"""Ruche: desk occupancy and door access control for coworking spaces."""

__version__ = "0.1.0"

DISTRIBUTION = "ruche-coworking"
"""What `pip install` takes: the import name and the command are `ruche`, but on PyPI
`ruche` is another project's."""

__all__ = ["DISTRIBUTION", "__version__"]
