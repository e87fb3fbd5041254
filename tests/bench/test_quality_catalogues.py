"""benchmarks/quality.py's catalogues: the multilingual transfer catalogue trains and tests in disjoint languages,
the plain one draws every language on both sides; product-pages writes ~200-word pages whose titles name the
class, with a few images missing."""

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


def test_the_product_pages_catalogue_has_long_pages_naming_the_class_and_some_missing_images(quality, tmp_path):
    bench, _ = quality
    import offline_presets

    pages = bench.build_catalogue("product-pages", tmp_path / "pages", seed=0, items=330)
    plain = bench.build_catalogue("small-english", tmp_path / "plain", seed=0, items=330)
    rows = [r for split in ("train", "test") for _, r in pages[split].iterrows()]
    words = [len(r["text"].split()) for r in rows]
    assert min(words) >= 200 and max(words) <= 260

    def title_names_the_class(row) -> bool:
        title = row["text"].split("\n")[0].lower()
        pattern, gtype = row["label"].split(" ", 1)
        return (any(word.lower() in title for word in offline_presets.SYNONYMS[gtype])
                and any(word in title for word in offline_presets.PATTERN_WORDS[pattern]))

    named = [r for r in rows if title_names_the_class(r)]
    assert len(named) / len(rows) > 0.9
    missing = sum(not isinstance(r["image"], str) for r in rows)
    assert 0 < missing / len(rows) < 0.08
    # the same items, labels and split as small-english; only the texts and the missing images differ
    for split in ("train", "test"):
        assert pages[split]["id"].tolist() == plain[split]["id"].tolist()
        assert pages[split]["label"].tolist() == plain[split]["label"].tolist()
