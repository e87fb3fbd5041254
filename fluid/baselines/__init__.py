"""Classical baselines (TF-IDF and simple image features + logistic regression), the reference rows of every
experiment: ``Classifier(model="tfidf-logreg" | "image-logreg" | "tfidf-image-logreg")``.

Knows ``fluid.data`` (image decoding), numpy, scipy, scikit-learn, and ``fluid.model``'s registry only, where each
classical model is declared (name, modalities; kind "classical"). Importing that registry loads torch; nothing
here computes with it.
"""

from fluid.baselines.model import CLASSICAL_MODELS, DEFAULT_OPTIONS, DESCRIPTIONS, ClassicalModel, is_classical

__all__ = ["CLASSICAL_MODELS", "DEFAULT_OPTIONS", "DESCRIPTIONS", "ClassicalModel", "is_classical"]
