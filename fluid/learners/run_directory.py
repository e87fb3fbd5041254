"""The run directory: the one place that knows which file of a trained model lives where.

A run directory holds everything needed to reload and audit a model, in plain formats only (YAML, JSON, CSV,
safetensors)::

    config.yaml        the resolved RunConfig (recipe choices filled in)
    labels.json        {"classes": [...]}: the class order of every probability matrix
    model.safetensors  the weights (classical models: + classical.json)
    metrics.json       validation metrics, epochs, blend, floor, selection
    recipe.json        each setting the recipe chose, and why
    split.csv          which training rows went to validation
    bad_rows.json      rows the reader could not use, images that could not be decoded
    report.md, plots/  the human-readable report (``fluid report``)
    encoders/          tokenizer / image processor / config of each encoder (weights only where they train)
    floor/             the classical floor fitted beside a deep model
    candidates/        the heads ``model="auto"`` trained (the kept one is copied up)
    checkpoints/       Lightning's checkpoints (``last.ckpt`` resumes an interrupted run)
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fluid.atomic import atomic_path, write_json
from fluid.config import RunConfig
from fluid.training.checkpoints import last_checkpoint

CONFIG_FILE = "config.yaml"
LABELS_FILE = "labels.json"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"
RECIPE_FILE = "recipe.json"
SPLIT_FILE = "split.csv"
BAD_ROWS_FILE = "bad_rows.json"
REPORT_FILE = "report.md"
FLOOR_DIR = "floor"
CANDIDATES_DIR = "candidates"
ENCODERS_DIR = "encoders"
#: Files that travel with a model when it is saved elsewhere (the weights, config and labels are rewritten).
RECORDS = (SPLIT_FILE, RECIPE_FILE, REPORT_FILE, BAD_ROWS_FILE)


@dataclass(frozen=True)
class RunDirectory:
    """A run directory at ``path`` (it may not exist yet)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS_FILE

    @property
    def encoders(self) -> Path:
        return self.path / ENCODERS_DIR

    @property
    def last_checkpoint(self) -> Path:
        return last_checkpoint(self.path)

    def floor(self) -> "RunDirectory":
        return RunDirectory(self.path / FLOOR_DIR)

    def candidate(self, name: str) -> "RunDirectory":
        return RunDirectory(self.path / CANDIDATES_DIR / name)

    def create(self) -> "RunDirectory":
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def check_resumable(self) -> None:
        if not self.last_checkpoint.exists():
            raise FileNotFoundError(f"resume=True but {self.last_checkpoint} does not exist: there is no "
                                    "interrupted run in this directory to continue")

    def check_complete(self) -> "RunDirectory":
        """Itself; FileNotFoundError naming what is missing unless a model can be loaded from here."""
        for name in (CONFIG_FILE, LABELS_FILE, WEIGHTS_FILE):
            if not (self.path / name).exists():
                raise FileNotFoundError(f"{self.path} is not a FLUID run directory: {name} is missing "
                                        f"(expected {CONFIG_FILE}, {LABELS_FILE}, {WEIGHTS_FILE})")
        return self

    # ------------------------------------------------------------------------------------------ reading
    def config(self) -> RunConfig:
        return RunConfig.load(self.path / CONFIG_FILE)

    def classes(self) -> list[str]:
        return json.loads((self.path / LABELS_FILE).read_text(encoding="utf-8"))["classes"]

    def metrics(self) -> dict | None:
        path = self.path / METRICS_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def has_labels(self) -> bool:
        return (self.path / LABELS_FILE).exists()

    # ------------------------------------------------------------------------------------------ writing
    def write_config(self, config: RunConfig, classes: list[str]) -> None:
        self.create()
        with atomic_path(self.path / CONFIG_FILE) as tmp:
            config.save(tmp)
        write_json(self.path / LABELS_FILE, {"classes": classes})

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.path / METRICS_FILE, metrics)

    def write_recipe(self, recipe: dict) -> None:
        write_json(self.path / RECIPE_FILE, recipe)

    def write_bad_rows(self, bad_rows: dict) -> None:
        write_json(self.path / BAD_ROWS_FILE, bad_rows)

    def write_split(self, train: pd.DataFrame, val: pd.DataFrame) -> None:
        split = pd.concat([pd.DataFrame({"id": train["id"], "split": "train"}),
                           pd.DataFrame({"id": val["id"], "split": "val"})])
        with atomic_path(self.path / SPLIT_FILE) as tmp:
            split.to_csv(tmp, index=False)

    def copy_records_to(self, other: "RunDirectory", *, with_floor: bool = True) -> None:
        """Copies the run's records (split, recipe, report, bad rows) and, with ``with_floor``, its floor."""
        for name in RECORDS:
            if (self.path / name).exists():
                shutil.copy2(self.path / name, other.path / name)
        if with_floor and (self.path / FLOOR_DIR).is_dir():
            shutil.copytree(self.path / FLOOR_DIR, other.path / FLOOR_DIR, dirs_exist_ok=True)

    def same_as(self, other: "RunDirectory") -> bool:
        return self.path.resolve() == other.path.resolve()

    # ------------------------------------------------------------------------------------------ the Hub
    def push_to_hub(self, repo_id: str | None, *, private: bool | None = None) -> None:
        """Uploads the run directory to the Hugging Face Hub repository ``repo_id`` (created if missing)."""
        from huggingface_hub import HfApi

        if not repo_id:
            raise ValueError("push_to_hub=True needs repo_id='org/name'")
        api = HfApi()
        api.create_repo(repo_id, exist_ok=True, **({"private": private} if private is not None else {}))
        api.upload_folder(folder_path=str(self.path), repo_id=repo_id)

    @classmethod
    def download(cls, repo_id: str, *, revision: str | None = None, **hub_kwargs) -> "RunDirectory":
        """The run directory of Hub repository ``repo_id``, downloaded (or found in the Hub cache)."""
        from huggingface_hub import snapshot_download

        return cls(Path(snapshot_download(repo_id=repo_id, revision=revision, **hub_kwargs)))
