"""Learners: the models behind :class:`fluid.Classifier`, each kept behind one contract
(:class:`~fluid.learners.base.Learner`): a :class:`DeepLearner` (encoders + a registered head, trained with
Lightning) or a :class:`ClassicalLearner` (a ``fluid.baselines`` model). The run directory's layout lives in
:class:`RunDirectory`."""

from fluid.learners.base import FitOptions, Learner, TrainingData, TrainOutcome
from fluid.learners.classical import ClassicalLearner
from fluid.learners.deep import DeepLearner
from fluid.learners.floor import FloorWarning
from fluid.learners.run_directory import RunDirectory
from fluid.learners.scores import Scores

__all__ = ["ClassicalLearner", "DeepLearner", "FitOptions", "FloorWarning", "Learner", "RunDirectory", "Scores",
           "TrainOutcome", "TrainingData", "learner_class"]


def learner_class(model: str) -> type:
    """The learner that trains ``model`` (a registry entry of :mod:`fluid.model`)."""
    from fluid.model import is_classical

    return ClassicalLearner if is_classical(model) else DeepLearner
