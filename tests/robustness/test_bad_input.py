"""The generated bad-input corpus (corpus.py) through the readers, the Dataset, the Classifier and the CLI: every
case gives a clean result or an error that names the file, the row and the problem — never a library's own
exception from deep inside pandas, Pillow or pyarrow."""

from __future__ import annotations

import json
import warnings

import pytest
from typer.testing import CliRunner

from fluid import Classifier
from fluid.cli import app
from fluid.config import SMOKE_TEST_OVERRIDES
from fluid.data import BadRowError, ColumnError, read_catalogue
from fluid.data.dataset import CatalogueDataset

runner = CliRunner()


# ----------------------------------------------------------------------------------------------- readers
def test_reader_counts_every_bad_row(corpus, read_columns):
    cat = read_catalogue(corpus.train, require_label=True, **read_columns)
    report = cat.report
    assert report.total_rows == 36 + 19 + 1
    assert report.count("image-outside-root") == 4  # Windows drive, '..', absolute, URL
    assert report.count("image-missing") == 1 and report.count("duplicate-id") == 1
    assert report.count("text-huge") == 1 and report.count("no-modality") == 1
    assert report.count("label-missing") == 1
    assert report.dropped_rows == 2 and len(cat.frame) == 54  # no-modality and the unlabelled row
    text = str(report)
    assert "row 48 (id 'escape-dotdot'): '../outside/secret.png' escapes the image root" in text
    assert "row 50 (id 'url'): 'http://127.0.0.1:9/x.jpg' is a URL; URLs are never fetched" in text
    assert "row 55 (id 'p0'): id 'p0' already used on row 0" in text
    frame = cat.frame.set_index("id", drop=False)
    # nothing outside the image root is ever referenced; those rows keep their text
    outside = ["windows-abs", "escape-dotdot", "escape-abs", "url", "missing-image"]
    assert frame.loc[outside, "image"].isna().all() and frame.loc[outside, "text"].notna().all()
    assert not any(str(corpus.outside_file) == str(v) for v in frame["image"])
    huge = frame.loc["huge-text", "text"]
    assert len(huge) == 100_000  # cut: no encoder reads further, tokenizing 1 MB per epoch would stall
    assert frame.loc["windows-path", "image"].endswith("imgs/win.png")


def test_decoding_bad_and_unusual_images(corpus, corpus_mod, read_columns):
    cat = read_catalogue(corpus.train, require_label=True, **read_columns)
    samples = {}
    dataset = CatalogueDataset(cat)
    for i in range(len(dataset)):
        samples.setdefault(dataset[i]["id"], dataset[i])
    expected = {"corrupt-image": "unreadable file", "truncated-image": "unreadable file",
                "zero-byte-image": "empty file", "bomb-image": "too large file"}
    for case in corpus_mod.DECODE_FAILS:
        sample = samples[case]
        assert sample["image"] is None and sample["text"], case
        (problem,) = sample["problems"]
        file_name = corpus_mod.TRAIN_CASES[case][1].split("/")[-1]
        assert problem.modality == "image" and problem.reason == expected[case].removesuffix(" file"), problem
        assert file_name in problem.detail, problem
        assert str(problem).startswith(f"image: {expected[case]} ")
    assert "decompression-bomb guard" in samples["bomb-image"]["problems"][0].detail
    for case in corpus_mod.DECODES:
        image = samples[case]["image"]
        assert image is not None and image.mode == "RGB" and samples[case]["problems"] == [], case
    assert samples["huge-dims"]["image"].size == (1024, 1)  # downscaled while decoding (MAX_DECODED_SIDE)
    assert samples["cmyk"]["image"].getpixel((8, 8))[0] > 200  # cyan-free, magenta+yellow → red
    assert samples["alpha"]["image"].getpixel((8, 8)) == pytest.approx((142, 142, 237), abs=2)  # over white
    assert samples["gray16"]["image"].getpixel((8, 8)) == (156, 156, 156)  # 40000 / 65535 * 255


def test_fail_policy_names_file_row_id_and_problem(corpus, read_columns):
    with pytest.raises(BadRowError) as error:
        read_catalogue(corpus.train, require_label=True, on_bad_row="fail", **read_columns)
    assert str(error.value).startswith(f"{corpus.train}: row 46 (id 'missing-image'): image-missing: "
                                       "'imgs/nope.jpg' not found")
    # decoding failures under 'fail': the Dataset names the row, the id and the file
    cat = read_catalogue(corpus.train, require_label=True, on_bad_row="skip", **read_columns)
    dataset = CatalogueDataset(cat, on_bad_row="fail")
    position = list(cat.frame["id"]).index("corrupt-image")
    with pytest.raises(BadRowError, match=r"row 36 \(id 'corrupt-image'\): image-unreadable: unreadable file "
                                          r".*corrupt\.jpg"):
        dataset[position]


def test_skip_policy_drops_every_row_with_a_bad_cell(corpus, read_columns):
    cat = read_catalogue(corpus.train, require_label=True, on_bad_row="skip", **read_columns)
    kept = set(cat.frame["id"])
    assert not kept & {"missing-image", "windows-abs", "escape-dotdot", "escape-abs", "url", "empty-text",
                       "no-modality", "no-label"}
    assert {"huge-text", "cmyk", "corrupt-image"} <= kept  # readable at read time; decoded later


@pytest.mark.parametrize("name, message", [
    ("empty", r"empty\.csv: the file is empty \(0 bytes\)"),
    ("unclosed_quote", r"unclosed_quote\.csv: cannot read it as CSV: .*EOF inside string starting at row 5"),
    ("corrupt_parquet", r"corrupt\.parquet: cannot read it as PARQUET: "),
    ("broken_jsonl", r"broken\.jsonl: cannot read it as JSONL: "),
    ("misnamed", r"column 'title' not found in .*misnamed\.csv; columns present: \['id', 'Title'"),
    ("no_label", r"column 'cat' not found in .*no_label\.csv"),
])
def test_unreadable_tables_raise_an_error_naming_the_file(corpus, read_columns, name, message):
    with pytest.raises(ValueError, match=message) as error:
        read_catalogue(getattr(corpus, name), require_label=True, **read_columns)
    assert type(error.value).__module__ in ("builtins", "fluid.data.errors")  # not pandas', pyarrow's, ...


@pytest.mark.parametrize("name", ["latin1", "mixed", "ragged"])
def test_legacy_encodings_and_ragged_rows_read_cleanly(corpus, read_columns, name):
    cat = read_catalogue(getattr(corpus, name), require_label=True, **read_columns)
    assert len(cat.frame) == 36 and cat.report.total_problems == 0
    assert cat.frame["text"].iloc[2] == "green café shirt 2\na green item"


# ----------------------------------------------------------------------------------------------- Classifier
@pytest.mark.slow
def test_classifier_trains_evaluates_and_predicts_on_the_dirty_corpus(trained_on_corpus, corpus, corpus_mod):
    clf = trained_on_corpus
    bad_rows = json.loads((clf.run_dir / "bad_rows.json").read_text())
    assert bad_rows["train"]["dropped_rows"] == 2
    # images that exist but fail to decode are found while training: each counted once, in its split
    decode = bad_rows["unreadable_images"]
    found = {e["id"]: e for stage in ("train", "val") for e in decode[stage]["examples"]}
    assert decode["train"]["count"] + decode["val"]["count"] == len(corpus_mod.DECODE_FAILS)
    assert set(found) == set(corpus_mod.DECODE_FAILS)
    assert "decompression-bomb guard" in found["bomb-image"]["problem"]
    assert clf.metrics_["n_unreadable_image"] == {stage: decode[stage]["count"] for stage in ("train", "val")}
    assert set(clf.classes_) == {"cat-red", "cat-green", "cat-blue"}

    metrics = clf.evaluate(corpus.test)
    # labels the model never saw are counted and score as errors; unreadable images are counted and listed
    assert metrics["n_items"] == 16 and metrics["n_unknown_label"] == 2
    assert metrics["unknown_labels"] == ["cat-purple", "cat-yellow"]
    assert metrics["n_unreadable_image"] == 2
    problems = {u["id"]: u for u in metrics["unreadable_images"]}
    assert problems["t-corrupt"]["row"] == 14 and "corrupt.jpg" in problems["t-corrupt"]["problem"]
    assert "decompression-bomb guard" in problems["t-bomb"]["problem"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predictions = clf.predict(corpus.test)
    assert predictions.notna().all() and set(predictions) <= set(clf.classes_)
    top = clf.predict_top_k(corpus.test, k=2)
    assert len(top) == 16 and all(len(item["labels"]) == 2 for item in top)


@pytest.mark.slow
def test_classifier_errors_are_readable(trained_on_corpus, corpus, classifier_columns):
    with pytest.raises(ValueError, match=r"nothing to evaluate in .*header_only\.csv"):
        trained_on_corpus.evaluate(corpus.header_only)
    with pytest.raises(ValueError, match=r"empty\.csv: the file is empty"):
        trained_on_corpus.predict(corpus.empty)
    fresh = Classifier("fluid", **classifier_columns, **SMOKE_TEST_OVERRIDES)
    with pytest.raises(ValueError, match=r"no usable training rows in .*header_only\.csv"):
        fresh.fit(corpus.header_only, progress=False)
    with pytest.raises(ValueError, match=r"training needs at least 2 classes; the training data has \['cat-red'\]"):
        fresh.fit(corpus.one_class, progress=False)
    with pytest.raises(ColumnError, match="column 'title' not found"):
        fresh.fit(corpus.misnamed, progress=False)


# ----------------------------------------------------------------------------------------------- CLI
def _train_args(corpus, data, out):
    return ["train", "--data", str(data), "--out", str(out), "--config", str(corpus.root / "tiny.yaml"),
            "--text-col", "title", "--text-col", "description", "--image-col", "img", "--label-col", "cat",
            "--id-col", "id", "--seed", "0"]


@pytest.mark.parametrize("name, message", [
    ("misnamed", "column 'title' not found in"),
    ("empty", "the file is empty (0 bytes)"),
    ("unclosed_quote", "cannot read it as CSV"),
    ("one_class", "training needs at least 2 classes"),
])
def test_cli_train_exits_2_with_a_readable_message(corpus, tmp_path, name, message):
    result = runner.invoke(app, _train_args(corpus, getattr(corpus, name), tmp_path / "run"))
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and message in " ".join(result.output.split())
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_cli_evaluate_dirty_test_set_and_corrupted_input(trained_on_corpus, corpus):
    run = trained_on_corpus.run_dir
    result = runner.invoke(app, ["evaluate", str(run), "--data", str(corpus.test)])
    assert result.exit_code == 0, result.output
    assert "unknown labels: 2" in result.output
    result = runner.invoke(app, ["evaluate", str(run), "--data", str(corpus.test), "--corrupt", "image-noise:4"])
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "eval" / "test-corrupt-image-noise-4.json").read_text())
    assert saved["corruption"] == "image-noise:4" and saved["n_items"] == 16
    report = (run / "report.md").read_text()
    assert "## Robustness: missing and corrupted input" in report
    assert "corrupted image-noise:4 (`test-corrupt-image-noise-4`)" in report
    result = runner.invoke(app, ["evaluate", str(run), "--data", str(corpus.header_only)])
    assert result.exit_code == 2 and "nothing to evaluate" in result.output
    result = runner.invoke(app, ["evaluate", str(run), "--data", str(corpus.test), "--corrupt", "image-blurry"])
    assert result.exit_code == 2 and "unknown corruption 'image-blurry'" in result.output
