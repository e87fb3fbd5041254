from __future__ import annotations

import pandas as pd
import pytest

from fluid.data import (
    COLUMNS, ColumnError, find_glami, load_image, read_catalogue, read_glami,
)


def _no_image(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="image").reset_index(drop=True)


def test_read_from_folder(glami_dir):
    cat = read_glami(glami_dir, "train")
    f = cat.frame
    assert list(f.columns) == list(COLUMNS)
    assert f["id"].tolist() == ["007", "8", "9", "10"]  # ids read as strings: leading zeros kept
    assert f["text"].tolist() == ["red shirt\nsoft cotton", "blue dress", "green coat\nwarm\nwool", "socks"]
    assert f["label"].tolist() == ["12", "34", "12", "56"]
    assert f["language"].tolist() == ["cz", "sk", "es", "tr"]
    assert f["label_source"].tolist() == ["quality-check", "machine", "quality-check", "quality-check"]
    assert f["image"].iloc[0] == str(glami_dir / "images" / "0101.jpg")
    assert all(isinstance(v, str) for c in ("id", "text", "image", "label") for v in f[c])
    assert cat.split == "train" and cat.source.endswith("GLAMI-1M-train.csv")
    assert cat.image_root == glami_dir / "images"
    assert cat.report.total_rows == 4 and cat.report.kept_rows == 4 and not cat.report.counts
    assert load_image(f["image"].iloc[1]).mode == "RGB"


def test_text_never_contains_label_columns(glami_dir, glami_frames):
    train, _ = glami_frames
    f = read_glami(glami_dir).frame
    for text in f["text"]:
        assert "CATNAME" not in text
        assert not any(ch.isdigit() for ch in text)  # category ids never enter the text


def test_read_from_parent_and_test_split(glami_dir):
    from_parent = read_glami(glami_dir.parent, "train")
    pd.testing.assert_frame_equal(from_parent.frame, read_glami(glami_dir, "train").frame)
    test = read_glami(glami_dir.parent, "test")
    assert test.frame["id"].tolist() == ["t1", "t2"] and test.split == "test"
    assert read_glami(glami_dir, nrows=2).frame["id"].tolist() == ["007", "8"]


def test_read_from_zip_without_extracting(glami_zip, glami_dir):
    ref = read_glami(glami_dir).frame
    for where in (glami_zip, glami_zip.parent):
        cat = read_glami(where, "train")
        pd.testing.assert_frame_equal(_no_image(cat.frame), _no_image(ref))
        first = cat.frame["image"].iloc[0]
        assert first.startswith("zip://") and first.endswith("::GLAMI-1M-dataset/images/0101.jpg")
        im = load_image(first)
        assert im.mode == "RGB" and im.size == (12, 16)
    assert not (glami_zip.parent / "GLAMI-1M-dataset").exists()  # nothing extracted
    assert find_glami(glami_zip).kind == "zip"


def test_read_catalogue_dispatches_glami(glami_dir, glami_zip):
    assert len(read_catalogue(glami_dir)) == 4
    assert read_catalogue(glami_dir.parent, split="test").split == "test"
    assert len(read_catalogue(glami_zip)) == 4
    with pytest.raises(TypeError, match="do not apply"):
        read_catalogue(glami_dir, text_cols=("name",))


def test_missing_image_is_found_lazily(tmp_path, make_glami):
    from fluid.data.dataset import CatalogueDataset

    root = make_glami(tmp_path, missing_image="102")
    cat = read_glami(root)
    assert cat.report.kept_rows == 4  # not checked at read time (1M stat calls)
    sample = CatalogueDataset(cat)[1]
    assert sample["image"] is None
    assert sample["problems"] and "102.jpg" in sample["problems"][0].detail


def test_missing_column_and_wrong_folder(tmp_path, glami_frames):
    train, _ = glami_frames
    root = tmp_path / "GLAMI-1M-dataset"
    root.mkdir()
    train.drop(columns="name").to_csv(root / "GLAMI-1M-train.csv", index=False)
    with pytest.raises(ColumnError) as e:
        read_glami(root)
    assert "'name'" in str(e.value) and "GLAMI-1M-train.csv" in str(e.value) and "item_id" in str(e.value)
    with pytest.raises(FileNotFoundError, match="GLAMI-1M-test.csv"):
        read_glami(root, "test")
    with pytest.raises(FileNotFoundError, match="no GLAMI-1M layout"):
        read_glami(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="not a GLAMI-1M layout"):
        read_catalogue(tmp_path / "plain")


def test_unsafe_image_id_is_rejected(tmp_path, glami_frames):
    train, _ = glami_frames
    root = tmp_path / "GLAMI-1M-dataset"
    (root / "images").mkdir(parents=True)
    train.assign(image_id=["../../etc/passwd", "102", "103", None]).to_csv(root / "GLAMI-1M-train.csv", index=False)
    cat = read_glami(root)
    assert cat.report.count("image-outside-root") == 1 and cat.report.count("image-empty") == 1
    assert pd.isna(cat.frame["image"].iloc[0]) and pd.isna(cat.frame["image"].iloc[3])


@pytest.mark.parametrize("chunk_rows", [1, 3])
def test_chunked_parsing_gives_the_same_catalogue(tmp_path, glami_frames, chunk_rows):
    """The CSV is parsed a chunk at a time (bounded memory); rows, bad-row numbers and the report must not
    depend on where the chunks break."""
    train, _ = glami_frames
    root = tmp_path / "GLAMI-1M-dataset"
    (root / "images").mkdir(parents=True)
    train.assign(image_id=["101", "102", "../x", None]).to_csv(root / "GLAMI-1M-train.csv", index=False)
    whole = read_glami(root)
    chunked = read_glami(root, chunk_rows=chunk_rows)
    pd.testing.assert_frame_equal(chunked.frame, whole.frame)
    assert chunked.report.to_dict() == whole.report.to_dict()
    examples = {r: [e.row for e in ex] for r, ex in chunked.report.examples.items()}
    assert examples == {"image-outside-root": [2], "image-empty": [3]}
    assert read_glami(root, chunk_rows=chunk_rows, nrows=3).frame["id"].tolist() == whole.frame["id"].tolist()[:3]
