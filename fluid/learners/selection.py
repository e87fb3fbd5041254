"""``model="auto"``: train several candidates and the classical floor on one split, keep the one with the lowest
validation log-loss."""

from __future__ import annotations

import dataclasses
import sys
import warnings

from fluid.config import RunConfig
from fluid.learners import floor as floors
from fluid.learners.base import FitOptions
from fluid.learners.run_directory import RunDirectory

#: The heads ``model="auto"`` trains when ``candidates`` is not set and an encoder trains.
AUTO_CANDIDATES = ("fluid",)
#: ... and when every encoder is frozen: each head then trains on cached features, so the single-modality heads
#: cost little, and on a small catalogue with one weak modality they can beat the fused head (docs/recipes.md).
FROZEN_AUTO_CANDIDATES = ("fluid", "text-only", "image-only")


def default_candidates(config: RunConfig) -> tuple[str, ...]:
    """The heads ``model="auto"`` trains when ``config.candidates`` is None: :data:`FROZEN_AUTO_CANDIDATES` when
    every encoder is frozen (a single-modality head only where the catalogue has that column), else
    :data:`AUTO_CANDIDATES`."""
    from fluid.training.recipe import EncoderSetup

    if EncoderSetup.from_config(config).modes != {"frozen"}:
        return AUTO_CANDIDATES
    has_column = {"image-only": config.columns.image is not None, "text-only": bool(config.columns.text)}
    return tuple(name for name in FROZEN_AUTO_CANDIDATES if has_column.get(name, True))


def fit_auto(front: type, params: dict, config: RunConfig, run: RunDirectory, train, val, options: FitOptions):
    """Trains each head of ``config.candidates`` (default :func:`default_candidates`) with ``front(**params)``
    (the ``Classifier`` class) in ``run/candidates/<name>/``, the first with the classical floor; keeps the one
    with the lowest validation log-loss (:data:`fluid.learners.floor.SELECTION_METRIC`; ties: the earlier
    candidate, the floor last) as ``run``'s model, and returns it loaded, with ``metrics_["selection"]`` saying
    which and why; None in the secondary processes of a multi-device run."""
    names = list(config.candidates or default_candidates(config))
    fitted = {}
    for position, name in enumerate(names):
        candidate = front(**{**params, "model": name, "candidates": None, "floor": position == 0,
                             "path": str(run.candidate(name).path), "head": head_keys_of(name, config.head)})
        with warnings.catch_warnings():  # "worse than the floor, try model='auto'": the selection below decides
            warnings.simplefilter("ignore", floors.FloorWarning)
            candidate.fit(train, val, **dataclasses.asdict(options))
        if candidate.metrics_ is None:
            return None
        fitted[name] = candidate
    first = fitted[names[0]]
    key = floors.SELECTION_METRIC
    losses = {name: float(c.metrics_["validation"][key]) for name, c in fitted.items()}
    losses[first.metrics_["floor"]["model"]] = float(first.metrics_["floor"]["validation"][key])
    selection = floors.select(losses, key)
    if selection["chosen"] in fitted:
        fitted[selection["chosen"]].save(run.path)
    else:
        floors.adopt_floor(RunDirectory(first.run_dir), first.config, first.classes_, first.metrics_, run)
    kept = front.load(run.path, device=config.device)
    kept.metrics_ = {**kept.metrics_, "selection": selection}
    kept.recipe_ = first.recipe_
    run.write_metrics(kept.metrics_)
    if options.verbose:
        print(f"model auto: kept {selection['reason']}", file=sys.stderr, flush=True)
    return kept


def head_keys_of(model: str, head: dict) -> dict:
    """The entries of a ``head`` mapping that ``model``'s head config has (model="auto" shares one mapping)."""
    from fluid.model import head_config

    known = {f.name for f in dataclasses.fields(head_config(model))}
    return {k: v for k, v in head.items() if k in known}
