"""FLUID: multimodal (image + text) product classification.

The public entry point is :class:`fluid.Classifier`; the model heads live in :mod:`fluid.model`, the readers
and the synthetic catalogue in :mod:`fluid.data`, the Hugging Face encoders in :mod:`fluid.encoders`.
"""

from fluid.version import __version__

__all__ = ["Classifier", "__version__"]


def __getattr__(name):
    # Lazy, so `import fluid.model` does not pull in pandas, Lightning or the encoders.
    if name == "Classifier":
        from fluid.api import Classifier

        return Classifier
    raise AttributeError(f"module 'fluid' has no attribute {name!r}")
