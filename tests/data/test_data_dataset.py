from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image

from fluid.data import BadRowError, normalize_frame, read_glami, stratified_split
from fluid.data.dataset import CatalogueDataset
from fluid.data.problems import image_problem
from fluid.data.problems import Problem
from fluid.data.schema import STRING


@pytest.fixture
def frame(tmp_path, make_jpeg):
    (tmp_path / "ok.jpg").write_bytes(make_jpeg())
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    df = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "text": ["red shirt", None, "blue coat", "hat"],
            "image": ["ok.jpg", "broken.jpg", None, "ok.jpg"],
            "label": ["shirt", "coat", "alien", None],
        },
        index=[100, 200, 300, 400],
    )
    return normalize_frame(df, image_root=tmp_path).frame


@pytest.mark.parametrize("compact", [True, False])
def test_sample_dict(frame, compact):
    ds = CatalogueDataset(frame, {"shirt": 0, "coat": 1}, compact=compact)
    assert len(ds) == 4 and ds.classes == ["shirt", "coat"]
    s = ds[0]
    assert set(s) == {"index", "id", "text", "image", "label", "problems"}
    assert s["index"] == 0 and s["id"] == "a" and s["text"] == "red shirt" and s["label"] == 0
    assert isinstance(s["image"], Image.Image) and s["image"].mode == "RGB" and s["problems"] == []
    s = ds[1]  # broken file under missing-modality: image None + problem, never raises
    assert s["image"] is None and s["text"] is None and s["label"] == 1
    (problem,) = s["problems"]
    assert (problem.modality, problem.reason) == ("image", "unreadable") and "broken.jpg" in problem.detail
    assert str(problem).startswith("image: unreadable file") and image_problem(s["problems"]) == problem.detail
    s = ds[2]  # unknown label
    assert s["label"] == -1 and s["image"] is None
    assert s["problems"] == [Problem("label", "unknown label", "unknown label 'alien'")]
    assert image_problem(s["problems"]) is None
    s = ds[3]  # unlabelled: -1 without a problem
    assert s["label"] == -1 and s["problems"] == []
    assert ds[-1]["id"] == "d"
    assert ds.source_index[2] == 300
    with pytest.raises(IndexError):
        ds[4]


def test_default_label_map_and_skip_policy(frame):
    ds = CatalogueDataset(frame, on_bad_row="skip")
    assert ds.classes == ["alien", "coat", "shirt"]
    assert ds.labels.tolist() == [2, 1, 0, -1]
    assert ds[1]["image"] is None and ds[1]["problems"]  # rows cannot vanish from a Dataset


def test_fail_policy_raises_with_row_and_id(frame):
    ds = CatalogueDataset(frame, on_bad_row="fail")
    with pytest.raises(BadRowError) as e:
        ds[1]
    assert e.value.row == 200 and e.value.id == "b" and "broken.jpg" in str(e.value)


@pytest.mark.parametrize("compact", [True, False])
def test_picklable_and_dataloader(frame, compact):
    import torch

    ds = CatalogueDataset(frame, {"shirt": 0, "coat": 1}, compact=compact)
    clone = pickle.loads(pickle.dumps(ds))
    assert clone[0]["text"] == "red shirt" and clone[2]["problems"] == ds[2]["problems"]
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1, collate_fn=list,
                                         multiprocessing_context="fork")
    ids = [s["id"] for batch in loader for s in batch]
    assert ids == ["a", "b", "c", "d"]


@pytest.mark.parametrize("compact", [True, False])
def test_in_memory_images(make_jpeg, compact):
    pil = Image.new("RGBA", (5, 5), (0, 0, 0, 0))
    df = pd.DataFrame({"text": ["x", "  "], "image": [pil, make_jpeg()], "label": ["p", "q"]})
    ds = CatalogueDataset(normalize_frame(df).frame, compact=compact)
    assert ds[0]["image"].getpixel((0, 0)) == (255, 255, 255)
    assert ds[1]["image"].size == (12, 16)
    assert ds[0]["text"] == "x" and ds[1]["text"] is None


def test_object_columns_compact_copies_and_in_place_does_not(frame):
    """Object columns (a hand-made frame): compact=True packs the strings (DataLoader workers must not touch the
    frame's objects); compact=False hands out the frame's own objects (nothing copied for num_workers=0)."""
    frame = frame.astype({"id": object, "text": object, "image": object})
    packed, shared = CatalogueDataset(frame, compact=True), CatalogueDataset(frame, compact=False)
    assert packed[0]["text"] == shared[0]["text"] == frame["text"].iloc[0]
    assert shared[0]["text"] is frame["text"].iloc[0]
    assert packed[0]["text"] is not frame["text"].iloc[0]


@pytest.mark.parametrize("compact", [True, False])
def test_reader_frames_are_read_from_their_arrow_buffers(frame, compact):
    """The readers' id / text / image columns are Arrow-backed: the dataset reads those buffers in place
    (no copy, no Python string per row), with or without workers."""
    assert all(isinstance(frame[c].dtype, pd.StringDtype) for c in ("id", "text", "image"))
    ds = CatalogueDataset(frame, compact=compact)
    arrow = frame["text"].array.__arrow_array__()
    arrow = arrow.chunk(0) if isinstance(arrow, pa.ChunkedArray) else arrow
    assert ds._texts._reader.bufs[0].ctypes.data == arrow.buffers()[2].address
    assert [ds[i]["text"] for i in range(4)] == ["red shirt", None, "blue coat", "hat"]
    assert [ds[i]["id"] for i in range(4)] == ["a", "b", "c", "d"]
    assert ds[2]["image"] is None and ds[0]["image"].size == (12, 16)


def test_string_column_reader_spans_chunks_and_blanks():
    chunks = pa.chunked_array([pa.array(["a", None], type=pa.large_string()),
                               pa.array(["  ", "dé"], type=pa.large_string()).slice(0)], type=pa.large_string())
    column = pd.Series(pd.arrays.ArrowStringArray(chunks, dtype=STRING))
    frame = pd.DataFrame({"id": ["1", "2", "3", "4"], "text": column, "image": [None] * 4, "label": ["x"] * 4})
    ds = CatalogueDataset(frame)
    assert [ds[i]["text"] for i in range(4)] == ["a", None, None, "dé"]  # a blank text is missing


def test_catalogue_input(glami_dir):
    ds = CatalogueDataset(read_glami(glami_dir))
    assert ds.source.endswith("GLAMI-1M-train.csv") and ds.classes == ["12", "34", "56"]
    assert ds[0]["image"].size == (12, 16)


def _labelled_frame(n_per_class, index=None):
    labels = [c for c, n in n_per_class.items() for _ in range(n)]
    rng = np.random.default_rng(1)
    labels = list(rng.permutation(labels))
    return pd.DataFrame({"id": [f"i{k}" for k in range(len(labels))], "label": labels},
                        index=index if index is not None else None)


def test_stratified_split_deterministic_and_stratified():
    counts = {"a": 200, "b": 50, "c": 10, "d": 1, "e": 2}
    n = sum(counts.values())
    df = _labelled_frame(counts, index=[f"row{k}" for k in range(n)])
    df.loc["row0", "label"] = None
    tr, va = stratified_split(df, 0.1, seed=3)
    tr2, va2 = stratified_split(df, 0.1, seed=3)
    pd.testing.assert_frame_equal(tr, tr2)
    pd.testing.assert_frame_equal(va, va2)
    assert not stratified_split(df, 0.1, seed=4)[1].index.equals(va.index)
    assert len(tr) + len(va) == n and not set(tr.index) & set(va.index)
    assert list(tr.index) == [i for i in df.index if i in set(tr.index)]  # original order kept
    vc = va["label"].value_counts()
    full = df["label"].value_counts()
    assert abs(vc["a"] - 0.1 * full["a"]) <= 1 and abs(vc["b"] - 0.1 * full["b"]) <= 1
    assert "d" not in vc  # single item stays in train
    assert (tr["label"] == "e").sum() >= 1  # never loses all train items
    assert "row0" in tr.index  # unlabelled rows stay in train
    assert abs(len(va) - round(0.1 * (n - 2))) <= 1


def test_stratified_split_edge_cases():
    df = _labelled_frame({"a": 3})
    tr, va = stratified_split(df, 0.0)
    assert len(tr) == 3 and len(va) == 0
    with pytest.raises(ValueError):
        stratified_split(df, 1.0)


def test_package_boundaries():
    import subprocess
    import sys

    code = ("import sys, fluid.data; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('fluid.model', 'fluid.encoders', "
            "'fluid.training', 'fluid.api'))]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
