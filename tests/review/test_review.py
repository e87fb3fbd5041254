"""Label review: fold assignment, confident-learning detection against known corruptions, the gallery, and
``fluid review`` end to end finding injected label errors."""

import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from fluid.cli import app
from fluid.config import SMOKE_TEST_OVERRIDES
from fluid.review import class_noise_rates, detection_metrics, find_label_issues, fold_assignment, read_corrupted_ids
from fluid.review.issues import MIN_TRUSTED, fdr_flags, trusted_mask
from fluid.review.gallery import NAV_MARKER, render_gallery, thumbnail_data_uri
from fluid.review.review import ISSUE_COLUMNS, _sidecar

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30), "yellow": (230, 210, 40)}


def _png(rgb, size=24) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(buffer, format="PNG")
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------- folds
def test_fold_assignment_is_stratified_and_deterministic():
    labels = np.repeat([0, 1, 2], [40, 12, 5])
    folds = fold_assignment(labels, 4, seed=3)
    assert np.array_equal(folds, fold_assignment(labels, 4, seed=3))
    assert set(folds) == {0, 1, 2, 3}
    for cls in (0, 1):  # each class spread evenly: fold sizes differ by at most one
        counts = np.bincount(folds[labels == cls], minlength=4)
        assert counts.max() - counts.min() <= 1
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 2


def test_fold_assignment_refuses_too_few_items():
    with pytest.raises(ValueError, match="at least one item per fold"):
        fold_assignment(np.array([0, 1]), 3, seed=0)
    with pytest.raises(ValueError, match="folds must be >= 2"):
        fold_assignment(np.array([0, 1, 0]), 1, seed=0)


# ----------------------------------------------------------------------------------------------- detection
def _noisy_problem(n=300, classes=3, corrupted=30, seed=0):
    """Probabilities confident in the true class; ``corrupted`` given labels flipped to another class."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, n)
    proba = np.full((n, classes), 0.1 / (classes - 1))
    proba[np.arange(n), truth] = 0.9
    proba = proba + rng.uniform(0, 0.02, proba.shape)
    proba /= proba.sum(axis=1, keepdims=True)
    given = truth.copy()
    flipped = rng.choice(n, corrupted, replace=False)
    given[flipped] = (truth[flipped] + 1 + rng.integers(0, classes - 1, corrupted)) % classes
    return given, proba, flipped, truth


def test_confident_learning_finds_flipped_labels_and_ranks_them_first():
    given, proba, flipped, truth = _noisy_problem()
    issues = find_label_issues(given, proba)
    assert set(np.flatnonzero(issues.is_issue)) == set(flipped)
    assert set(issues.ranking[: len(flipped)]) == set(flipped)
    assert np.array_equal(issues.suggested[flipped], truth[flipped])
    assert np.all(np.diff(issues.score[issues.ranking]) <= 0)
    # score = 1 - self-confidence: 1 - p(given label)
    assert issues.score == pytest.approx(1 - proba[np.arange(len(given)), given])


def test_detection_metrics_match_their_definition():
    given, proba, flipped, _ = _noisy_problem(n=200, corrupted=20)
    issues = find_label_issues(given, proba)
    ids = [f"item{i}" for i in range(200)]
    known = {f"item{i}" for i in flipped[:10]} | {"not-reviewed"}  # half of the flips "unknown" to the truth
    metrics = detection_metrics(ids, issues, known, k=100)
    flagged = {ids[i] for i in np.flatnonzero(issues.is_issue)}
    found = len(flagged & known)
    assert metrics["detection_precision"] == pytest.approx(found / len(flagged))
    assert metrics["detection_recall"] == pytest.approx(found / 10)  # only reviewed ids count
    assert metrics["precision_at_100"] == pytest.approx(len({ids[i] for i in issues.ranking[:100]} & known) / 100)
    assert metrics["n_corrupted"] == 10 and metrics["n_flagged"] == len(flagged)
    cut = next(c for c in range(1, 201) if len({ids[i] for i in issues.ranking[:c]} & known) >= 5)
    assert metrics["ranking_precision_at_recall_50"] == pytest.approx(5 / cut)


def test_ranking_precision_at_half_recall_on_a_mixed_ranking():
    from fluid.review import LabelIssues

    ranking = np.arange(8)
    issues = LabelIssues(is_issue=np.zeros(8, bool), score=np.linspace(1, 0, 8), ranking=ranking,
                         suggested=np.zeros(8, int))
    ids = list("abcdefgh")
    # corrupted: a, c, f, h -> half recall (2 of 4) first reached at the 3rd item: precision 2/3
    metrics = detection_metrics(ids, issues, {"a", "c", "f", "h"}, k=4)
    assert metrics["ranking_precision_at_recall_50"] == pytest.approx(2 / 3)
    assert metrics["precision_at_4"] == pytest.approx(2 / 4)
    assert metrics["detection_precision"] == 0.0 and metrics["detection_recall"] == 0.0


def test_noise_rates_estimate_each_class_share_of_wrong_labels():
    given, proba, _, truth = _noisy_problem(n=600, corrupted=60)
    rates = class_noise_rates(given, proba, ["a", "b", "c"])
    assert list(rates.columns) == ["label", "n_items", "estimated_label_issues", "noise_rate"]
    assert rates["noise_rate"].is_monotonic_decreasing
    for row in rates.itertuples():
        k = "abc".index(row.label)
        actual = np.mean(given[given == k] != truth[given == k])
        assert row.n_items == int((given == k).sum())
        assert row.noise_rate == pytest.approx(actual, abs=0.03)


def test_detection_refuses_unscored_rows():
    given, proba, _, _ = _noisy_problem(n=30, corrupted=3)
    proba[4] = np.nan
    with pytest.raises(ValueError, match="NaN rows"):
        find_label_issues(given, proba)


# ----------------------------------------------------------------------------------------------- trusted-FDR flags
# 10 items, 6 trusted (T); FDR(t) = 10 * (#T >= t / 6) / #(>= t):
#   score .9  .8  .7    .6    .5    .4    .3    .2    .1    0
#   T      -   -   T     -     -     T     T     T     T     T
#   FDR    0   0  .556  .417  .333  .556  .714  .833  .926  1
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
TRUSTED = np.array([0, 0, 1, 0, 0, 1, 1, 1, 1, 1], dtype=bool)


@pytest.mark.parametrize(("max_fdr", "threshold", "estimated"), [
    (0.2, 0.8, 0.0),  # only above every trusted score
    (0.34, 0.5, 10 * 1 / 6 / 5),  # .7 and .6 exceed the bound but the lower .5 does not: monotone, largest set
    (0.42, 0.5, 10 * 1 / 6 / 5),  # .6 qualifies too; the smallest qualifying threshold wins
    (0.9, 0.2, 10 * 4 / 6 / 8),
    (0.99, 0.1, 10 * 5 / 6 / 9),
])
def test_fdr_flags_hand_computed(max_fdr, threshold, estimated):
    is_issue, t, fdr = fdr_flags(SCORES, TRUSTED, max_fdr)
    assert t == pytest.approx(threshold) and fdr == pytest.approx(estimated)
    assert np.array_equal(is_issue, SCORES >= threshold)
    shuffled = np.random.default_rng(0).permutation(10)  # order of the items does not matter
    again, t2, fdr2 = fdr_flags(SCORES[shuffled], TRUSTED[shuffled], max_fdr)
    assert (t2, fdr2) == (t, fdr) and np.array_equal(again, is_issue[shuffled])


def test_fdr_flags_is_monotone_in_the_bound():
    rng = np.random.default_rng(1)
    score = np.r_[rng.beta(2, 5, 400), rng.beta(5, 1.5, 60)]
    trusted = np.r_[rng.random(400) < 0.7, np.zeros(60, bool)]
    sizes, last = [], np.zeros(len(score), bool)
    for bound in (0.05, 0.1, 0.2, 0.3, 0.5):
        flags, threshold, estimated = fdr_flags(score, trusted, bound)
        assert estimated <= bound and np.all(flags >= last)  # a looser bound only adds items
        last = flags
        sizes.append(int(flags.sum()))
        # the estimate at the chosen threshold is the formula's
        assert estimated == pytest.approx(len(score) * (trusted & (score >= threshold)).sum() / trusted.sum()
                                          / flags.sum())
    assert sizes == sorted(sizes) and sizes[0] > 0


def test_fdr_flags_controls_the_false_discoveries_when_trusted_items_are_like_the_clean_ones():
    rng = np.random.default_rng(2)
    clean, wrong = 3000, 300
    score = np.r_[rng.beta(2, 6, clean), rng.beta(6, 2, wrong)]
    trusted = np.r_[rng.random(clean) < 0.75, np.zeros(wrong, bool)]  # trusted = a random share of clean items
    flags, _, estimated = fdr_flags(score, trusted, 0.2)
    false = flags[:clean].sum() / flags.sum()
    assert estimated <= 0.2 and false <= 0.2 + 0.03, (false, estimated)
    assert flags[clean:].mean() >= 0.5  # and finds most of the wrong labels


def test_fdr_flags_ties_flag_together():
    flags, threshold, estimated = fdr_flags(np.array([0.9, 0.9, 0.5, 0.5, 0.1]),
                                            np.array([False, False, False, True, True]), 0.7)
    assert threshold == 0.5 and estimated == pytest.approx(5 * 0.5 / 4)
    assert flags.tolist() == [True, True, True, True, False]


def test_fdr_flags_without_a_qualifying_threshold_flags_nothing():
    # the highest score is trusted: every threshold's estimate is >= 3 * (1/1) / 3 = 1
    flags, threshold, estimated = fdr_flags(np.array([0.9, 0.8, 0.7]), np.array([True, False, False]), 0.2)
    assert not flags.any() and threshold is None and estimated is None


def test_fdr_flags_refuses_bad_input():
    with pytest.raises(ValueError, match=r"max_fdr must be in \(0, 1\)"):
        fdr_flags(SCORES, TRUSTED, 1.0)
    with pytest.raises(ValueError, match="max_fdr"):
        fdr_flags(SCORES, TRUSTED, 0.0)
    with pytest.raises(ValueError, match="at least one trusted item"):
        fdr_flags(SCORES, np.zeros(10, bool), 0.2)
    with pytest.raises(ValueError, match="one length"):
        fdr_flags(SCORES, TRUSTED[:5], 0.2)


def test_trusted_mask_and_its_fallbacks():
    sources = np.array(["human"] * 60 + ["machine"] * 20 + [None, float("nan")], dtype=object)
    mask, reason = trusted_mask(sources, "human")
    assert reason == "" and mask.sum() == 60 and not mask[60:].any()
    assert trusted_mask(np.array([" human "] * 60 + ["machine"], dtype=object), "human")[0].sum() == 60
    for args, why in [((sources, None), "no trusted label source"),
                      ((None, "human"), "no label_source column"),
                      ((sources, "expert"), "no item has label_source 'expert'"),
                      ((sources[MIN_TRUSTED - 1:], "human"), f"only {61 - MIN_TRUSTED} items .* needs {MIN_TRUSTED}"),
                      ((np.array(["human"] * 80, dtype=object), "human"), "every item has label_source 'human'")]:
        mask, reason = trusted_mask(*args)
        assert mask is None
        assert re.search(why, reason), reason
    assert trusted_mask(sources, "human", min_trusted=61)[0] is None


def test_truth_sidecar(tmp_path):
    path = tmp_path / "noisy_labels.csv"
    path.write_text("item_id,true_category,given_category\n1,1000,1000\n2,1003,1001\n3,1002,1002\n")
    assert read_corrupted_ids(path) == {"2"}
    bad = tmp_path / "bad.csv"
    bad.write_text("id,label\n1,2\n")
    with pytest.raises(ValueError, match=r"bad.csv: expected the columns"):
        read_corrupted_ids(bad)


def test_the_synthetic_catalogue_sidecar_is_found(tmp_path):
    from fluid.data.synthetic import write_synthetic

    root = write_synthetic(tmp_path, items=30, seed=1, image_size=(24, 24))
    assert _sidecar(str(tmp_path)) == root / "noisy_labels.csv"
    assert _sidecar(str(root)) == root / "noisy_labels.csv"
    assert _sidecar(str(root / "GLAMI-1M-train.csv")) is None


# ----------------------------------------------------------------------------------------------- gallery
def test_gallery_is_self_contained_and_escapes_text():
    issues = pd.DataFrame({"id": ["a<1>", "b"], "given_label": ["x", "y"], "suggested_label": ["y", "x"],
                           "score": [0.9, 0.8], "language": ["cz", None], "label_source": ["machine", None]})
    noise = pd.DataFrame({"label": ["x", "y"], "n_items": [5, 5], "estimated_label_issues": [1, 1],
                          "noise_rate": [0.2, 0.2]})
    page = render_gallery(issues, pd.Series([_png((200, 0, 0)), None]),
                          pd.Series(["<script>alert(1)</script>", None]), {"n_items": 10, "n_flagged": 2,
                                                                           "detection_precision": 0.5}, noise)
    assert "<script>" not in page and "&lt;script&gt;" in page and "a&lt;1&gt;" in page
    assert "http://" not in page and "https://" not in page
    assert page.count("data:image/jpeg;base64,") == 1 and "no image" in page
    assert NAV_MARKER in page and "detection precision: <b>0.500</b>" in page
    assert page.count("class=card") == 2


def test_thumbnails_are_small_jpegs(tmp_path):
    import base64

    path = tmp_path / "big.png"
    Image.new("RGB", (900, 600), (10, 120, 200)).save(path)
    uri = thumbnail_data_uri(str(path))
    thumb = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert thumb.format == "JPEG" and max(thumb.size) == 160 and thumb.size[0] > thumb.size[1]
    assert thumbnail_data_uri(str(tmp_path / "missing.png")) is None
    assert thumbnail_data_uri(None) is None


# ----------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def noisy_catalogue(tmp_path_factory):
    """120 products in 4 colour classes (the colour is in the text and the image); 12 labels corrupted, recorded
    in a truth file beside the catalogue that no training reads."""
    root = tmp_path_factory.mktemp("noisy")
    rng = np.random.default_rng(0)
    names = list(COLOURS)
    rows, truth = [], []
    corrupt = set(rng.choice(120, 12, replace=False).tolist())
    for i in range(120):
        colour = names[i % 4]
        label = colour
        if i in corrupt:
            label = names[(names.index(colour) + 1 + int(rng.integers(0, 3))) % 4]
        (root / f"{i}.png").write_bytes(_png(COLOURS[colour]))
        rows.append({"sku": f"s{i}", "title": f"{colour} cotton shirt {i}", "picture": f"{i}.png",
                     "category": label, "geo": "cz", "source": "machine" if i in corrupt else "human"})
        truth.append({"item_id": f"s{i}", "true_category": colour, "given_category": label})
    pd.DataFrame(rows).to_csv(root / "products.csv", index=False)
    pd.DataFrame(truth).to_csv(root / "truth.csv", index=False)
    return root


@pytest.mark.slow
def test_fluid_review_finds_the_corrupted_labels(noisy_catalogue, tmp_path):
    from fluid import Classifier

    # `review` reads only the run's configuration (the folds retrain from it), so an untrained run's config is
    # enough here; `fluid train` writes the same file.
    run = tmp_path / "run"
    run.mkdir()
    config = {**SMOKE_TEST_OVERRIDES, "epochs": 3, "lr": 0.004}
    Classifier("fluid", label="category", text="title", image="picture", id="sku", language="geo",
               label_source="source", image_root=str(noisy_catalogue), **config).config.save(run / "config.yaml")
    result = CliRunner().invoke(app, ["review", str(run), "--data", str(noisy_catalogue / "products.csv"),
                                      "--folds", "3", "--truth", str(noisy_catalogue / "truth.csv"),
                                      "--json", str(tmp_path / "review.json")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "review.json").read_text())
    assert summary["n_items"] == 120 and summary["n_corrupted"] == 12
    assert summary["detection_precision"] >= 0.8, summary
    assert summary["detection_recall"] >= 0.5, summary
    assert summary["flag_rule"] == "trusted-fdr" and summary["n_trusted"] == 108, summary
    out = run / "review"
    issues = pd.read_csv(out / "label_issues.csv", dtype=str)
    assert list(issues.columns) == ISSUE_COLUMNS
    assert len(issues) == summary["n_flagged"]
    assert issues["score"].astype(float).is_monotonic_decreasing
    truth = pd.read_csv(noisy_catalogue / "truth.csv", dtype=str).set_index("item_id")
    hits = issues[issues["id"].map(lambda i: truth.loc[i, "true_category"] != truth.loc[i, "given_category"])]
    assert (hits["suggested_label"] == hits["id"].map(truth["true_category"])).mean() >= 0.8
    assert set(issues["language"]) == {"cz"}
    noise = pd.read_csv(out / "noise_rates.csv")
    assert sorted(noise["label"]) == sorted(COLOURS) and noise["n_items"].sum() == 120
    gallery = (out / "gallery.html").read_text()
    assert gallery.count("class=card") == len(issues) and "data:image/jpeg;base64," in gallery
    assert json.loads((out / "review.json").read_text())["n_flagged"] == summary["n_flagged"]
    assert "probably wrong" in result.output


def _classical_run(noisy_catalogue, tmp_path):
    """A run configuration whose folds train in about a second (TF-IDF + logistic regression on the title)."""
    from fluid import Classifier

    run = tmp_path / "run"
    run.mkdir()
    Classifier("tfidf-logreg", label="category", text="title", image="picture", id="sku", language="geo",
               label_source="source", image_root=str(noisy_catalogue), seed=0).config.save(run / "config.yaml")
    return run


def test_fluid_review_flags_by_trusted_fdr_and_falls_back_to_cleanlab(noisy_catalogue, tmp_path):
    run = _classical_run(noisy_catalogue, tmp_path)
    data, truth = str(noisy_catalogue / "products.csv"), str(noisy_catalogue / "truth.csv")
    result = CliRunner().invoke(app, ["review", str(run), "--data", data, "--folds", "3", "--truth", truth,
                                      "--gallery-items", "0", "--max-fdr", "0.25", "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "a" / "review.json").read_text())
    assert summary["flag_rule"] == "trusted-fdr" and summary["trusted_source"] == "human"
    assert summary["n_trusted"] == 108 and summary["max_fdr"] == 0.25  # the 12 corrupted rows are "machine"
    assert summary["estimated_fdr"] <= 0.25 and "flag rule trusted-fdr" in result.output
    issues = pd.read_csv(tmp_path / "a" / "label_issues.csv")
    assert len(issues) == summary["n_flagged"] > 0 and (issues["score"] >= summary["flag_threshold"] - 1e-6).all()

    # disabled: cleanlab's flagged set, with the reason
    result = CliRunner().invoke(app, ["review", str(run), "--data", data, "--folds", "3", "--truth", truth,
                                      "--gallery-items", "0", "--trusted-source", "none", "--out",
                                      str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "b" / "review.json").read_text())
    assert summary["flag_rule"] == "cleanlab" and summary["trusted_source"] is None
    assert summary["flag_threshold"] is None and summary["estimated_fdr"] is None
    assert "no trusted label source" in summary["flag_note"]


def test_review_catalogue_falls_back_without_usable_trusted_labels(noisy_catalogue, tmp_path):
    from fluid.review import review_catalogue

    run = _classical_run(noisy_catalogue, tmp_path)
    summary = review_catalogue(run, str(noisy_catalogue / "products.csv"), tmp_path / "out", folds=3,
                               gallery_items=0, trusted_source="expert", progress=False)
    assert summary["flag_rule"] == "cleanlab" and summary["n_trusted"] == 0
    assert "no item has label_source 'expert'" in summary["flag_note"]
    with pytest.raises(ValueError, match=r"max_fdr must be in \(0, 1\)"):
        review_catalogue(run, str(noisy_catalogue / "products.csv"), max_fdr=1.5)


def test_fluid_review_refuses_a_bad_max_fdr(tmp_path):
    (tmp_path / "config.yaml").write_text("model: tfidf-logreg\n")
    result = CliRunner().invoke(app, ["review", str(tmp_path), "--data", "x.csv", "--max-fdr", "0"])
    assert result.exit_code == 2 and "--max-fdr must be in (0, 1)" in result.output
    result = CliRunner().invoke(app, ["review", str(tmp_path), "--data", "x.csv", "--trusted-source", " "])
    assert result.exit_code == 2 and "--trusted-source" in result.output


def test_fluid_review_reports_a_missing_run(tmp_path):
    result = CliRunner().invoke(app, ["review", str(tmp_path), "--data", "x.csv"])
    assert result.exit_code == 2
    assert "config.yaml is missing" in result.output
