"""Run directories load from safetensors + JSON/YAML only: a pickle in place of the weights or of a checkpoint is
refused with a clear error, and its payload never runs."""

from __future__ import annotations

import pickle
import shutil

import pytest
import torch
from typer.testing import CliRunner

from fluid import Classifier
from fluid.cli import app


class _Payload:
    """Unpickling this would create ``marker``: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _malicious_pickle(path, marker, *, as_torch: bool) -> None:
    payload = {"state_dict": {"head.w": torch.ones(2)}, "epoch": 0, "evil": _Payload(marker)}
    if as_torch:
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))


@pytest.fixture
def run_copy(trained_on_corpus, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained_on_corpus.run_dir, copy)
    return copy


@pytest.mark.slow
@pytest.mark.parametrize("as_torch", [True, False], ids=["torch.save", "raw pickle"])
def test_pickled_weights_are_refused_and_never_run(run_copy, tmp_path, as_torch):
    marker = tmp_path / "pwned"
    _malicious_pickle(run_copy / "model.safetensors", marker, as_torch=as_torch)
    with pytest.raises(ValueError, match=r"model\.safetensors: refused to load the weights: not a valid "
                                         r"safetensors file"):
        Classifier.load(run_copy)
    result = CliRunner().invoke(app, ["evaluate", str(run_copy), "--data", str(run_copy / "split.csv")])
    assert result.exit_code == 2 and "refused to load the weights" in result.output
    assert "Traceback" not in result.output
    assert not marker.exists()


@pytest.mark.slow
def test_pickled_checkpoint_is_refused_on_resume_and_never_runs(run_copy, corpus, classifier_columns, tiny_config,
                                                                 tmp_path):
    marker = tmp_path / "pwned"
    _malicious_pickle(run_copy / "checkpoints" / "last.ckpt", marker, as_torch=True)
    clf = Classifier("fluid", path=str(run_copy), **classifier_columns, **tiny_config)
    with pytest.raises(ValueError, match=r"last\.ckpt: refused to load this checkpoint: it is not a plain PyTorch "
                                         r"weights file"):
        clf.fit(corpus.train, resume=True, progress=False)
    result = CliRunner().invoke(app, ["train", "--data", str(corpus.train), "--out", str(run_copy), "--resume",
                                      "--config", str(corpus.root / "tiny.yaml"), "--text-col", "title",
                                      "--text-col", "description", "--image-col", "img", "--label-col", "cat",
                                      "--id-col", "id"])
    assert result.exit_code == 2 and "refused to load this checkpoint" in result.output, result.output
    assert not marker.exists()


def test_image_paths_cannot_escape_the_image_root(corpus, read_columns):
    """The readers refuse every path leaving the root (see test_bad_input); load_image refuses it too."""
    from fluid.data import BadImageError, load_image

    for cell in ("../outside/secret.png", "imgs/../../outside/secret.png", "..\\outside\\secret.png"):
        with pytest.raises(BadImageError, match="outside root"):
            load_image(cell, corpus.image_root)
    assert load_image("imgs/../imgs/0.png", corpus.image_root).size == (16, 16)  # stays inside: fine
