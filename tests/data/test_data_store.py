from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fluid.data import memory_map_strings, read_glami, write_synthetic
from fluid.data.dataset import CatalogueDataset
from fluid.data.schema import STRING


def _frame(n: int = 2000) -> pd.DataFrame:
    texts = [None if i % 7 == 0 else f"product {i} " + "word " * (i % 50) for i in range(n)]
    return pd.DataFrame({"id": pd.array([f"id{i}" for i in range(n)], dtype=STRING),
                         "text": pd.array(texts, dtype=STRING),
                         "image": np.full(n, None, dtype=object),
                         "label": np.array([str(i % 3) for i in range(n)], dtype=object)},
                        index=np.arange(100, 100 + n))


def test_same_cells_read_from_a_mapped_file_that_is_already_deleted(tmp_path):
    frame = _frame()
    mapped = memory_map_strings(frame, tmp_path)
    pd.testing.assert_frame_equal(mapped, frame)
    assert mapped["text"].dtype == STRING and mapped["image"].dtype == object
    assert list(tmp_path.iterdir()) == []  # unlinked once mapped: nothing left on disk
    assert frame["text"].array is not mapped["text"].array  # the input is unchanged


def test_the_text_leaves_arrows_memory_pool(tmp_path):
    frame = _frame(20_000)
    text_bytes = frame["text"].array.__arrow_array__().nbytes
    in_pool = pa.total_allocated_bytes()
    mapped = memory_map_strings(frame, tmp_path)
    del frame
    assert pa.total_allocated_bytes() <= in_pool - text_bytes  # the mapped columns own no pool memory
    assert mapped["text"].iloc[1] == "product 1 word " and pd.isna(mapped["text"].iloc[0])


def test_frames_without_string_columns_are_returned_as_they_are(tmp_path):
    frame = pd.DataFrame({"text": ["a", None], "label": ["x", "y"]}, dtype=object)
    assert memory_map_strings(frame, tmp_path) is frame


def test_dataset_over_a_mapped_glami_frame_in_a_worker(tmp_path):
    import torch

    root = write_synthetic(tmp_path / "cat", items=60, seed=3)
    frame = read_glami(root).frame
    mapped = memory_map_strings(frame, tmp_path)
    plain, lazy = CatalogueDataset(frame), CatalogueDataset(mapped)
    loader = torch.utils.data.DataLoader(lazy, batch_size=8, num_workers=1, collate_fn=list,
                                         multiprocessing_context="fork")
    from_worker = [s for batch in loader for s in batch]
    for i in (0, 5, len(plain) - 1):
        a, b = plain[i], from_worker[i]
        assert (a["id"], a["text"], a["label"]) == (b["id"], b["text"], b["label"])
        assert np.array_equal(np.asarray(a["image"]), np.asarray(b["image"]))


@pytest.mark.slow
def test_fit_with_memory_mapped_frames_trains_the_same_model(tmp_path):
    from fluid import Classifier
    from fluid.config import SMOKE_TEST_OVERRIDES

    root = write_synthetic(tmp_path / "cat", items=150, seed=1)
    overrides = {**SMOKE_TEST_OVERRIDES, "epochs": 1}
    in_ram = Classifier("fluid", memory_map_rows=None, path=str(tmp_path / "ram"), **overrides)
    mapped = Classifier("fluid", memory_map_rows=0, path=str(tmp_path / "mapped"), **overrides)
    in_ram.fit(root, progress=False)
    mapped.fit(root, progress=False)
    pd.testing.assert_frame_equal(in_ram.predict_proba(root), mapped.predict_proba(root), check_exact=True)
