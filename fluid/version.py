"""The package version and distribution name (a leaf module: importing it loads nothing else of FLUID)."""

__version__ = "0.1.0"
#: The name to pip install (the import name stays ``fluid``; PyPI's ``fluid`` is an unrelated 2006 package).
DISTRIBUTION = "fluid-multimodal"
