"""Error types shared across packages: what a caller can fix, as distinct from a bug in FLUID."""

from __future__ import annotations


class OptionError(TypeError):
    """An option that does not exist (an unknown keyword for a head, an encoder preset, ``Classifier``, a
    reader). A ``TypeError`` for Python callers, as Python raises for an unexpected keyword; the command line
    reports it as a one-line user error, which it never does for a plain ``TypeError`` (that is a bug)."""
