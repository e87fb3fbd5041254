from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image

from fluid.data import (
    BadRowError, BadRowReport, COLUMNS, ColumnError, detect_encoding, normalize_frame, read_catalogue, read_table,
)

LATIN1_CSV = (
    "sku;titre;description;photo;cat\n"
    "a1;Chemise à carreaux;très élégante;imgs\\a.jpg;shirt\n"
    "a2;Jupe plissée;;imgs\\missing.jpg;skirt\n"
    "a3;Pull écru;laine;imgs\\sub\\b.jpg;sweater\n"
)


@pytest.fixture
def latin1_catalogue(tmp_path, make_jpeg):
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    (tmp_path / "imgs" / "a.jpg").write_bytes(make_jpeg())
    (tmp_path / "imgs" / "sub" / "b.jpg").write_bytes(make_jpeg())
    path = tmp_path / "catalogue.csv"
    path.write_bytes(LATIN1_CSV.replace(";", ",").encode("latin-1"))
    return path


OPTS = dict(text_cols=("titre", "description"), image_col="photo", label_col="cat", id_col="sku")


def test_latin1_windows_paths_missing_image_modality(latin1_catalogue, tmp_path):
    assert detect_encoding(latin1_catalogue) != "utf-8"
    cat = read_table(latin1_catalogue, **OPTS)
    f = cat.frame
    assert f["text"].tolist() == ["Chemise à carreaux\ntrès élégante", "Jupe plissée", "Pull écru\nlaine"]
    assert cells(f["image"]) == [str(tmp_path / "imgs" / "a.jpg"), None, str(tmp_path / "imgs" / "sub" / "b.jpg")]
    assert f["id"].tolist() == ["a1", "a2", "a3"] and f["label"].tolist() == ["shirt", "skirt", "sweater"]
    rep = cat.report
    assert rep.count("image-missing") == 1 and rep.kept_rows == 3 and rep.dropped_rows == 0
    ex = rep.examples["image-missing"][0]
    assert ex.row == 1 and ex.id == "a2" and "missing.jpg" in ex.detail
    assert "image-missing: 1" in str(rep)


def test_latin1_skip_and_fail(latin1_catalogue):
    skipped = read_table(latin1_catalogue, on_bad_row="skip", **OPTS)
    assert skipped.frame["id"].tolist() == ["a1", "a3"]
    assert skipped.frame.index.tolist() == [0, 2]  # original row numbers
    assert skipped.report.dropped == {"image-missing": 1} and skipped.report.kept_rows == 2
    with pytest.raises(BadRowError) as e:
        read_table(latin1_catalogue, on_bad_row="fail", **OPTS)
    msg = str(e.value)
    assert "catalogue.csv" in msg and "row 1" in msg and "'a2'" in msg and "image-missing" in msg
    assert e.value.row == 1


def test_forced_encoding(latin1_catalogue):
    cat = read_table(latin1_catalogue, encoding="cp1252", **OPTS)
    assert cat.frame["text"].iloc[0].startswith("Chemise à")


def _write_all_formats(tmp_path, df):
    paths = {}
    paths["csv"] = tmp_path / "c.csv"
    df.to_csv(paths["csv"], index=False)
    paths["tsv"] = tmp_path / "c.tsv"
    df.to_csv(paths["tsv"], index=False, sep="\t")
    paths["parquet"] = tmp_path / "c.parquet"
    df.to_parquet(paths["parquet"], index=False)
    paths["jsonl"] = tmp_path / "c.jsonl"
    with open(paths["jsonl"], "w", encoding="utf-8") as f:
        for rec in df.to_dict("records"):
            f.write(json.dumps({k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()}) + "\n")
    return paths


def test_all_formats_give_the_same_frame(tmp_path, make_jpeg):
    (tmp_path / "x.jpg").write_bytes(make_jpeg())
    df = pd.DataFrame(
        {
            "id": ["p1", "p2", "p3"],
            "title": ["Red shirt", "NA", None],
            "body": ["cotton", None, "long description"],
            "image": ["x.jpg", "x.jpg", None],
            "label": ["shirt", "None", "coat"],
            "language": ["en", "cz", None],
        }
    )
    frames = []
    for fmt, path in _write_all_formats(tmp_path, df).items():
        cat = read_table(path, text_cols=["title", "body"])
        assert list(cat.frame.columns) == list(COLUMNS), fmt
        frames.append(cat.frame)
        assert cat.report.count("image-empty") == 1, fmt
    for f in frames[1:]:
        pd.testing.assert_frame_equal(f, frames[0])
    f = frames[0]
    assert f["text"].tolist() == ["Red shirt\ncotton", "NA", "long description"]  # "NA" stays text
    assert f["label"].tolist() == ["shirt", "None", "coat"]
    assert f["image"].iloc[0] == str(tmp_path / "x.jpg") and pd.isna(f["image"].iloc[2])
    assert f["language"].tolist() == ["en", "cz", None]
    assert f["label_source"].tolist() == [None, None, None]


def test_numeric_ids_and_labels_become_strings(tmp_path):
    df = pd.DataFrame({"text": ["a", "b", "c"], "label": [3, 4, None], "id": [10, 11, 12]})
    path = tmp_path / "n.parquet"
    df.to_parquet(path)
    f = read_table(path, image_col=None).frame
    assert f["label"].tolist() == ["3", "4", None] and f["id"].tolist() == ["10", "11", "12"]


def test_column_error_lists_columns(latin1_catalogue):
    with pytest.raises(ColumnError) as e:
        read_table(latin1_catalogue, text_cols=("title",), image_col="photo", label_col="cat")
    msg = str(e.value)
    assert "'title'" in msg and "catalogue.csv" in msg
    for col in ("sku", "titre", "description", "photo", "cat"):
        assert col in msg
    assert isinstance(e.value, KeyError) and isinstance(e.value, ValueError)
    with pytest.raises(ColumnError, match="'kategorie'"):
        read_table(latin1_catalogue, text_cols=("titre",), image_col="photo", label_col="kategorie")


def test_default_label_column_may_be_absent(tmp_path):
    path = tmp_path / "predict.csv"
    pd.DataFrame({"text": ["a", "b"]}).to_csv(path, index=False)
    f = read_table(path, image_col=None).frame
    assert f["label"].tolist() == [None, None] and f["id"].tolist() == ["0", "1"]
    with pytest.raises(ColumnError):
        read_table(path, image_col=None, require_label=True)


def test_image_paths_cannot_escape_root(tmp_path, make_jpeg):
    root = tmp_path / "root"
    root.mkdir()
    (root / "ok.jpg").write_bytes(make_jpeg())
    (tmp_path / "secret.jpg").write_bytes(make_jpeg())
    path = root / "c.csv"
    pd.DataFrame(
        {
            "text": ["a", "b", "c", "d", "e", "f"],
            "image": ["ok.jpg", "../secret.jpg", str(tmp_path / "secret.jpg"), "C:\\x\\y.jpg",
                      "http://example.com/a.jpg", "sub/../../secret.jpg"],
        }
    ).to_csv(path, index=False)
    cat = read_table(path)
    assert cells(cat.frame["image"]) == [str(root / "ok.jpg"), None, None, None, None, None]
    assert cat.report.count("image-outside-root") == 5
    assert "escapes the image root" in cat.report.examples["image-outside-root"][0].detail
    skipped = read_table(path, on_bad_row="skip")
    assert len(skipped.frame) == 1
    with pytest.raises(BadRowError, match="image-outside-root"):
        read_table(path, on_bad_row="fail")


def test_bad_rows_counted_never_silently_dropped(tmp_path):
    path = tmp_path / "c.csv"
    pd.DataFrame(
        {
            "id": ["a", "b", "a", "d", None],
            "text": ["x", None, "y", None, "z"],
            "label": ["l1", "l2", None, "l1", "l2"],
        }
    ).to_csv(path, index=False)
    cat = read_table(path, image_col=None)
    rep = cat.report
    assert rep.count("duplicate-id") == 1 and rep.count("text-empty") == 2 and rep.count("no-modality") == 2
    assert rep.count("label-missing") == 1 and rep.count("id-missing") == 1
    assert cat.frame["id"].tolist() == ["a", "a", "4"]  # empty id → row number
    assert rep.dropped == {"no-modality": 2} and rep.total_rows == 5 and rep.kept_rows == 3
    required = read_table(path, image_col=None, require_label=True)
    assert required.report.dropped == {"no-modality": 2, "label-missing": 1}
    assert required.frame["id"].tolist() == ["a", "4"]
    d = required.report.to_dict()
    assert d["dropped_rows"] == 3 and d["counts"]["duplicate-id"] == 1 and json.dumps(d)
    merged = cat.report.merge(required.report)
    assert merged.count("no-modality") == 4 and merged.total_rows == 10 and merged.dropped_rows == 5


def test_report_str_without_problems():
    rep = BadRowReport("x.csv")
    rep.total_rows = rep.kept_rows = 3
    assert str(rep) == "x.csv: 3 rows, no bad rows"


def test_normalize_frame_keeps_index_and_accepts_cells(tmp_path, make_jpeg):
    (tmp_path / "a.jpg").write_bytes(make_jpeg())
    pil = Image.new("RGB", (4, 4))
    df = pd.DataFrame(
        {
            "name": ["shirt", None, "coat", "", "hat"],
            "desc": ["blue", "only description", None, None, None],
            "img": ["a.jpg", make_jpeg(), pil, None, np.nan],
            "y": ["s", "d", "c", "x", None],
        },
        index=[10, 3, 7, 99, 5],
    )
    cat = normalize_frame(df, text_cols=["name", "desc"], image_col="img", label_col="y", image_root=tmp_path)
    f = cat.frame
    assert f.index.tolist() == [10, 3, 7, 5]  # row 99 has neither text nor image: dropped, counted
    assert cat.report.dropped == {"no-modality": 1}
    assert f["text"].tolist() == ["shirt\nblue", "only description", "coat", "hat"]
    assert f["image"].iloc[0] == str(tmp_path / "a.jpg")
    assert isinstance(f["image"].iloc[1], bytes) and f["image"].iloc[2] is pil and f["image"].iloc[3] is None
    assert f["id"].tolist() == ["10", "3", "7", "5"]  # no id column → index labels
    assert isinstance(f["text"].dtype, pd.StringDtype) and f["image"].dtype == object  # bytes / PIL stay objects
    req = normalize_frame(df, text_cols=["name", "desc"], image_col="img", label_col="y", image_root=tmp_path,
                          require_label=True)
    assert req.frame.index.tolist() == [10, 3, 7]


def test_normalize_frame_absolute_paths_without_root(tmp_path, make_jpeg):
    (tmp_path / "a.jpg").write_bytes(make_jpeg())
    df = pd.DataFrame({"text": ["a", "b"], "image": [str(tmp_path / "a.jpg"), str(tmp_path / "nope.jpg")]})
    cat = normalize_frame(df)
    assert cells(cat.frame["image"]) == [str(tmp_path / "a.jpg"), None]
    assert cat.report.count("image-missing") == 1
    # a canonical frame goes through unchanged
    again = normalize_frame(cat.frame)
    pd.testing.assert_frame_equal(again.frame, cat.frame)


def test_read_catalogue_dispatch(tmp_path):
    df = pd.DataFrame({"text": ["a"], "label": ["x"]})
    cat = read_catalogue(df, image_col=None)
    assert cat.source == "<DataFrame>" and read_catalogue(cat) is cat
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n', encoding="utf-8")
    assert read_catalogue(path, image_col=None, split="val").split == "val"
    for bad in (42, [1, 2], io.BytesIO(b"")):
        with pytest.raises(TypeError, match="DataFrame"):
            read_catalogue(bad)
    other = tmp_path / "x.xlsx"
    other.write_bytes(b"")
    with pytest.raises(TypeError, match=r"\.parquet"):
        read_catalogue(other)
    with pytest.raises(FileNotFoundError):
        read_catalogue(tmp_path / "missing.csv")


def test_json_array_compressed_csv_and_huge_text(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"text": "a", "label": 1}, {"text": "b", "label": 2}]))
    assert read_table(tmp_path / "a.json", image_col=None).frame["label"].tolist() == ["1", "2"]
    (tmp_path / "l.json").write_text('{"text": "a"}\n{"text": "b"}\n')
    assert read_table(tmp_path / "l.json", image_col=None).frame["text"].tolist() == ["a", "b"]
    pd.DataFrame({"text": ["x", "y"]}).to_csv(tmp_path / "c.csv.gz", index=False)
    assert len(read_catalogue(tmp_path / "c.csv.gz", image_col=None)) == 2
    df = pd.DataFrame({"text": ["x" * 100_001, "ok"], "label": pd.Categorical(["a", "b"])})
    cat = normalize_frame(df, image_col=None)
    assert cat.report.count("text-huge") == 1 and len(cat.frame) == 2 and cat.frame["label"].tolist() == ["a", "b"]


@pytest.mark.parametrize(
    "text, encoding",
    [("Chemise à carreaux;Jupe plissée", "cp1252"), ("Žluťoučký kůň;Řeřicha ďábel", "cp1250"),
     ("Γεια σου κόσμε;ωραίο φόρεμα", "utf-8")],
)
def test_encoding_detection(tmp_path, text, encoding):
    path = tmp_path / "t.csv"
    path.write_bytes(("text\n" + text.replace(";", "\n") + "\n").encode(encoding))
    assert read_table(path, image_col=None).frame["text"].tolist() == text.split(";")


def cells(column: pd.Series) -> list:
    """A canonical column's cells, None where missing (STRING columns hold NaN there)."""
    return [None if pd.isna(v) else v for v in column.tolist()]


def test_rows_where_filters_string_columns_like_pandas():
    from fluid.data.store import rows_where
    from fluid.data.schema import STRING

    chunks = pa.chunked_array([pa.array(["a", None, "c"], type=pa.large_string()),
                               pa.array(["d", "e"], type=pa.large_string())])
    frame = pd.DataFrame({"text": pd.Series(pd.arrays.ArrowStringArray(chunks, dtype=STRING), index=[5, 6, 7, 8, 9]),
                          "label": pd.Series(["x", None, "y", "z", "x"], index=[5, 6, 7, 8, 9], dtype=object)})
    mask = np.array([True, True, False, False, True])
    got, expected = rows_where(frame, mask), frame[mask]
    pd.testing.assert_frame_equal(got, expected)
    assert got["text"].dtype == STRING and cells(got["text"]) == ["a", None, "e"]
    assert len(rows_where(frame, np.zeros(5, dtype=bool))) == 0


def test_readers_keep_id_text_and_image_paths_in_arrow_buffers(tmp_path, make_jpeg):
    (tmp_path / "a.jpg").write_bytes(make_jpeg())
    (tmp_path / "c.csv").write_text("id,text,image,label\nA,red shirt,a.jpg,s\nB,,a.jpg,s\nA,coat,,c\n",
                                    encoding="utf-8")
    cat = read_table(tmp_path / "c.csv")
    f = cat.frame
    for column in ("id", "text", "image"):
        assert isinstance(f[column].dtype, pd.StringDtype) and f[column].dtype.storage == "pyarrow", column
    assert cells(f["text"]) == ["red shirt", None, "coat"] and cells(f["image"])[2] is None
    assert cat.report.counts["duplicate-id"] == 1
    (example,) = [e for e in cat.report.examples["duplicate-id"]]
    assert "already used on row 0" in str(example)
