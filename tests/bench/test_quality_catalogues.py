"""benchmarks/quality.py's multilingual catalogues: the transfer catalogue trains and tests in disjoint languages;
the plain one draws every language on both sides."""

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def quality():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import multilingual_texts
        import quality
        yield quality, multilingual_texts
    finally:
        sys.path.remove(str(BENCHMARKS))


def _languages(texts, module) -> set[str]:
    sentence_language = {sentence: lang for lang, sentences in module.SENTENCES.items() for sentence in sentences}
    return {sentence_language[text.split("\n")[1]] for text in texts}


def test_the_transfer_catalogue_tests_in_languages_its_training_texts_never_show(quality, tmp_path):
    bench, texts = quality
    plain = bench.build_catalogue("multilingual", tmp_path / "plain", seed=0, items=90)
    transfer = bench.build_catalogue("multilingual-transfer", tmp_path / "transfer", seed=0, items=90)
    assert _languages(transfer["train"]["text"], texts) == set(texts.TRANSFER_TRAIN)
    assert _languages(transfer["test"]["text"], texts) == set(texts.TRANSFER_TEST)
    assert not set(texts.TRANSFER_TRAIN) & set(texts.TRANSFER_TEST)
    assert _languages(plain["test"]["text"], texts) & set(texts.TRANSFER_TRAIN)
    # the same items, labels, images and split; only the texts' languages differ
    for split in ("train", "test"):
        assert transfer[split]["id"].tolist() == plain[split]["id"].tolist()
        assert transfer[split]["label"].tolist() == plain[split]["label"].tolist()
        assert transfer[split]["image"].map(lambda p: Path(p).name).tolist() == \
            plain[split]["image"].map(lambda p: Path(p).name).tolist()
