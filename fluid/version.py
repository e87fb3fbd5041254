"""The package version (a leaf module: importing it loads nothing else of FLUID)."""

__version__ = "0.1.0"
