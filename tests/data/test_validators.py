"""The bad-row validators of the canonical frame, one kind of problem each, called on small columns: the rows each
flags and the detail the report gives them; then how :func:`canonical` ranks and drops what they flag (#25)."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image

from fluid.data._canonical import (
    CanonicalColumns, arrow_strings, canonical, cell_problems, chunked, duplicate_ids, empty_text, huge_text,
    missing_ids, missing_labels, no_modality,
)
from fluid.data.errors import BadRowError
from fluid.data.schema import MAX_TEXT_CHARS


def _strings(*cells) -> pa.ChunkedArray:
    """Cells as the readers hand them to the validators: Arrow strings, stripped, empty → null."""
    return chunked(arrow_strings(pd.Series(cells, dtype=object)))


def _in_chunks(*chunks) -> pa.ChunkedArray:
    return pa.chunked_array([list(c) for c in chunks], type=pa.large_string())


def _flagged_rows(found) -> list[int]:
    return np.flatnonzero(found.rows).tolist()


# ------------------------------------------------------------------ id-missing
def test_missing_ids_flags_empty_and_blank_id_cells():
    found = missing_ids(_strings("a", None, "  ", "b", ""))
    assert found.rows.dtype == bool and found.rows.shape == (5,)
    assert _flagged_rows(found) == [1, 2, 4]
    assert found.detail(1) == "empty id; row number used"


def test_missing_ids_flags_nothing_when_every_row_has_one():
    assert _flagged_rows(missing_ids(_strings("a", "0", "b"))) == []


# ------------------------------------------------------------------ duplicate-id
def test_an_id_used_three_times_flags_its_second_and_third_rows_naming_the_first():
    ids = _in_chunks(["k", "x"], ["k"], ["y", "k"])  # the repeats lie in later chunks
    found = duplicate_ids(ids, pd.Index(["r0", "r1", "r2", "r3", "r4"]))
    assert _flagged_rows(found) == [2, 4]
    assert found.detail(2) == "id 'k' already used on row r0"
    assert found.detail(4) == "id 'k' already used on row r0"  # the first row, not the previous repeat


def test_duplicate_ids_compare_whole_strings_and_name_integer_rows_plainly():
    ids = _in_chunks(["K", "k", "k ", "7", "7"])
    found = duplicate_ids(ids, pd.Index(np.array([10, 20, 30, 40, 50], dtype=np.int64)))
    assert _flagged_rows(found) == [4]
    assert found.detail(4) == "id '7' already used on row 40"


# ------------------------------------------------------------------ problems found while converting cells
def test_cell_problems_become_one_flagged_set_per_reason_with_their_own_details():
    problems = {"image-missing": {1: "'a.png' not found"}, "image-empty": {0: "no image given", 3: "0 bytes"},
                "text-invalid": {3: "column 'text' holds a list, not text"}}
    found = cell_problems(problems, 5, has_image=True)
    assert list(found) == ["image-missing", "image-empty", "text-invalid"]
    assert {reason: _flagged_rows(f) for reason, f in found.items()} == {
        "image-missing": [1], "image-empty": [0, 3], "text-invalid": [3]}  # row 3 has two problems
    assert found["image-empty"].detail(3) == "0 bytes"
    assert found["image-missing"].detail(1) == "'a.png' not found"
    assert all(f.rows.shape == (5,) for f in found.values())


def test_an_empty_image_cell_is_no_problem_without_an_image_column():
    problems = {"image-empty": {0: "no image given"}, "text-invalid": {1: "column 'text' holds a bool, not text"}}
    found = cell_problems(problems, 2, has_image=False)
    assert list(found) == ["text-invalid"]
    assert _flagged_rows(found["text-invalid"]) == [1]
    assert cell_problems({}, 3, has_image=True) == {}


# ------------------------------------------------------------------ text-empty
def test_empty_text_flags_missing_empty_and_whitespace_only_text():
    found = empty_text(_strings("red shirt", None, "", " \n\t", "  b "))
    assert _flagged_rows(found) == [1, 2, 3]
    assert found.detail(2) == "all text columns are empty"


# ------------------------------------------------------------------ text-huge
def test_huge_text_counts_characters_not_bytes_and_says_how_long():
    at_limit = "é" * MAX_TEXT_CHARS  # twice as many bytes as characters: still within the limit
    over = "a" * (MAX_TEXT_CHARS + 1)
    found = huge_text(_in_chunks([at_limit, None], [over, "short"]))
    assert _flagged_rows(found) == [2]
    assert found.detail(2) == f"{MAX_TEXT_CHARS + 1} characters, cut to {MAX_TEXT_CHARS}"


def test_huge_text_of_no_rows_flags_none():
    found = huge_text(pa.chunked_array([], type=pa.large_string()))
    assert found.rows.shape == (0,) and found.rows.dtype == bool


# ------------------------------------------------------------------ no-modality
def test_no_modality_flags_rows_without_text_and_without_an_image_path():
    text = _strings("a", None, "   ", None, "")
    image = _strings(None, None, None, "x.png", "")
    found = no_modality(text, image)
    assert _flagged_rows(found) == [1, 2, 4]  # row 2: whitespace-only text, read as empty, and no image
    assert found.detail(1) == "no usable text and no usable image"


def test_no_modality_with_in_memory_images_counts_bytes_and_pil_images_as_images():
    text = _strings(None, None, None, None, "b")
    image = np.array([b"\x89PNG", None, Image.new("RGB", (2, 2)), float("nan"), None], dtype=object)
    assert _flagged_rows(no_modality(text, image)) == [1, 3]


# ------------------------------------------------------------------ label-missing
def test_missing_labels_flags_none_and_nan_in_a_labelled_catalogue():
    labels = np.array(["a", None, float("nan"), "b"], dtype=object)
    found = missing_labels(labels, required=False)
    assert _flagged_rows(found) == [1, 2]
    assert found.detail(1) == "empty label"


def test_a_catalogue_without_any_label_is_unlabelled_unless_labels_are_required():
    labels = np.array([None, None, None], dtype=object)
    assert _flagged_rows(missing_labels(labels, required=False)) == []
    assert _flagged_rows(missing_labels(labels, required=True)) == [0, 1, 2]


# ------------------------------------------------------------------ canonical: ranking and dropping what they flag
def _columns(**change) -> CanonicalColumns:
    values = dict(index=pd.RangeIndex(4), ids=_strings("a", "b", "a", None), text=_strings("t0", None, "t2", None),
                  image=_strings("0.jpg", None, None, "3.jpg"), label=np.array(["x", "y", None, "x"], dtype=object),
                  language=None, label_source=None, has_text=True, has_image=True,
                  cell_problems={"image-empty": {1: "no image given", 2: "no image given"}})
    return CanonicalColumns(**(values | change))


def _read(columns: CanonicalColumns, on_bad_row: str, require_label: bool = False):
    return canonical(columns, source="s.csv", on_bad_row=on_bad_row, require_label=require_label, image_root=None,
                     split=None)


def test_canonical_reports_every_reason_in_priority_order_and_drops_a_row_under_its_first():
    catalogue = _read(_columns(), "missing-modality", require_label=True)
    report = catalogue.report.to_dict()
    assert list(report["counts"]) == ["no-modality", "image-empty", "text-empty", "label-missing", "id-missing",
                                      "duplicate-id"]
    assert report["counts"] == {"no-modality": 1, "image-empty": 2, "text-empty": 2, "label-missing": 1,
                                "id-missing": 1, "duplicate-id": 1}
    assert report["dropped"] == {"no-modality": 1, "label-missing": 1}
    assert catalogue.frame["id"].tolist() == ["a", "3"]  # the missing id is the row number
    assert report["examples"]["duplicate-id"][0]["detail"] == "id 'a' already used on row 0"


def test_skip_drops_rows_with_an_image_problem_or_no_text():
    catalogue = _read(_columns(label=None), "skip")
    assert catalogue.frame.index.tolist() == [0]
    assert catalogue.report.to_dict()["dropped"] == {"no-modality": 1, "image-empty": 1, "text-empty": 1}


def test_fail_raises_for_the_first_row_and_its_first_reason_there():
    with pytest.raises(BadRowError) as error:
        _read(_columns(), "fail")
    assert (error.value.row, error.value.id, error.value.reason) == (1, "b", "no-modality")
    huge_only = _columns(ids=None, text=_strings("a" * (MAX_TEXT_CHARS + 1), "b", "c", "d"),
                         image=_strings(None, None, None, None), cell_problems={})
    assert _read(huge_only, "fail").report.count("text-huge") == 1  # reported, never fails
