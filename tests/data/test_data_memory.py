"""Memory behaviour of the readers: low-cardinality columns share their strings, and the Arrow memory pool is
emptied once a reader has returned (otherwise it keeps ~85 MiB per 100k rows after the conversion)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import fluid.data._canonical as canonical_module
from fluid.data import read_catalogue
from fluid.data._canonical import shared_strings
from fluid.data.synthetic import write_synthetic


def test_shared_strings_keeps_values_and_shares_objects():
    values = np.array(["12", "7", None, "".join(["1", "2"]), float("nan"), "7"], dtype=object)
    assert values[0] is not values[3]  # equal strings, distinct objects
    out = shared_strings(values)
    assert out.tolist() == ["12", "7", None, "12", None, "7"]
    assert out[0] is out[3] and out[1] is out[5]
    assert shared_strings(None) is None


@pytest.fixture(scope="module")
def glami_dir(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("synthetic"), items=200, seed=1)


def test_glami_frame_shares_label_language_and_source_strings(glami_dir):
    frame = read_catalogue(glami_dir).frame
    for column in ("label", "language", "label_source"):
        cells = [v for v in frame[column] if v is not None]
        assert len({id(v) for v in cells}) == len(set(cells)), column


@pytest.mark.parametrize("kind", ["glami", "csv", "frame"])
def test_readers_release_arrow_memory_after_returning(glami_dir, tmp_path, monkeypatch, kind):
    frame = pd.DataFrame({"text": ["red shirt", "blue hat", None], "image": [None, None, None],
                          "label": ["a", "b", "a"]})
    if kind == "csv":
        source = tmp_path / "catalogue.csv"
        frame.to_csv(source, index=False)
    elif kind == "frame":
        source = frame
    else:
        source = glami_dir
    calls = []
    monkeypatch.setattr(canonical_module, "release_arrow_memory", lambda: calls.append(1))
    catalogue = read_catalogue(source)
    assert len(catalogue) > 0
    assert calls == [1]
