"""benchmarks/reading_limits.py's reference readers: the generator's Bayes reader of a text, and the expected
accuracy of combining a text posterior with a perfect image reader, checked against the library's exact caps."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from fluid.data.synthetic import CLASSES, modality_caps, naming_words

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "reading_limits.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("reading_limits", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _word(words: dict, kind: str, value: str) -> str:
    return next(w for w, (k, v) in words.items() if (k, v) == (kind, value))


def test_generator_reader_reads_the_class_a_text_names_and_the_prior_from_a_text_naming_nothing(script):
    words = naming_words(0)
    prior = np.array([c[2] for c in CLASSES], dtype=float)
    for k, (gtype, pattern, _) in enumerate(CLASSES):
        text = f"Brand {_word(words, 'pattern', pattern).capitalize()} {_word(words, 'type', gtype)}."
        assert script.generator_posteriors([text], words)[0].argmax() == k, text
    empty = script.generator_posteriors(["Brand nothing else"], words)[0]
    np.testing.assert_allclose(empty, prior / prior.sum())


def test_fusion_with_a_perfect_image_reader_is_1_for_a_certain_text_and_the_image_cap_for_a_blank_one(script):
    classes = list(range(len(CLASSES)))
    truth = np.array(classes)
    certain = np.eye(len(CLASSES))
    assert script.fusion_with_perfect_image(certain, classes, truth) == pytest.approx(1.0)
    prior = np.array([c[2] for c in CLASSES], dtype=float)
    prior /= prior.sum()
    # a text that says nothing leaves the prior; items of each class weighted by the prior give the image cap
    per_class = [script.fusion_with_perfect_image(prior[None, :], classes, np.array([k])) for k in classes]
    assert float(np.dot(prior, per_class)) == pytest.approx(modality_caps()[1])


def test_text_readers_score_one_small_catalogue(script, tmp_path):
    """The whole ``text`` part on a 300-item catalogue: every reader scores the test split, and adding a perfect
    image reader never lowers a text reader's accuracy."""
    out = script.text_readers(0, tmp_path, items=300)
    assert out["train_items"] + out["test_items"] == 300
    for name in ("generator", "told-words nb", "told-words lr", "tfidf-lr", "chi2-nb"):
        assert 0.0 < out[name] <= 1.0, name
    assert out["fusion:generator"] >= out["generator"]
    assert out["fusion:told-words nb"] >= out["told-words nb"] - 1e-9
    assert out["chi2-nb chosen"] in {"100", "200", "400", "800"}
