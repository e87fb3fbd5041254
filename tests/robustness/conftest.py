"""Fixtures of the robustness tests: the generated bad-input corpus (tests/robustness/corpus.py) and a tiny model
trained on it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

from fluid.config import SMOKE_TEST_OVERRIDES


def _load_corpus_module():
    name = "fluid_tests_robustness_corpus"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("corpus.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


corpus_module = _load_corpus_module()

#: Column options of the corpus catalogues, for read_catalogue / read_table.
READ_COLUMNS = {"text_cols": ["title", "description"], "image_col": "img", "label_col": "cat", "id_col": "id"}
#: The smoke-test model, reading at most 64 tokens (the corpus has a 1 MB text; 512 tokens would only slow it).
TINY = {**SMOKE_TEST_OVERRIDES, "max_text_length": 64}
#: The same for Classifier(...).
CLASSIFIER_COLUMNS = {"label": "cat", "text": ["title", "description"], "image": "img", "id": "id"}


@pytest.fixture(scope="session")
def corpus_mod():
    return corpus_module


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input")
    built = corpus_module.build_corpus(root)
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    return built


@pytest.fixture(scope="session")
def read_columns():
    return dict(READ_COLUMNS)


@pytest.fixture(scope="session")
def tiny_config():
    return dict(TINY)


@pytest.fixture(scope="session")
def classifier_columns():
    return dict(CLASSIFIER_COLUMNS)


@pytest.fixture(scope="session")
def trained_on_corpus(corpus, tmp_path_factory):
    """A tiny FLUID model trained on the dirty train.csv (every bad row in it)."""
    from fluid import Classifier

    run = tmp_path_factory.mktemp("corpus-run") / "fluid"
    clf = Classifier("fluid", path=str(run), **CLASSIFIER_COLUMNS, **TINY)
    return clf.fit(corpus.train, progress=False)
