from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fluid.data import read_glami, write_synthetic
from fluid.data.synthetic import (CLASSES, FAMILIES, HUMAN, MACHINE, NOISY_LABELS_FILE, PATTERNS, REALISTIC_NOISE,
                                  SIDECAR_FILE, TYPES, _build_languages, _cap, _realistic_likelihoods, fusion_cap,
                                  modality_caps, naming_words)


def _digest(root) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def default_catalogue(tmp_path_factory):
    """The default-size catalogue (3000 items), written once for this module."""
    return write_synthetic(tmp_path_factory.mktemp("synthetic"), items=3000, seed=0)


def test_deterministic_bytes(tmp_path):
    a = write_synthetic(tmp_path / "a", items=120, seed=5)
    b = write_synthetic(tmp_path / "b", items=120, seed=5, workers=2)
    c = write_synthetic(tmp_path / "c", items=120, seed=6)
    assert a.name == "GLAMI-1M-dataset"
    da, db = _digest(a), _digest(b)
    assert da == db and len(da) == 120 + 4
    assert _digest(c) != da
    with pytest.raises(FileExistsError):
        write_synthetic(tmp_path / "a", items=10, seed=5)
    again = write_synthetic(tmp_path / "a", items=120, seed=5, overwrite=True)
    assert _digest(again) == da


def test_glami_layout_readable(default_catalogue):
    root = default_catalogue
    assert sorted(p.name for p in root.iterdir()) == ["GLAMI-1M-test.csv", "GLAMI-1M-train.csv", "images",
                                                      NOISY_LABELS_FILE, SIDECAR_FILE]
    info = json.loads((root / SIDECAR_FILE).read_text(encoding="utf-8"))
    assert (info["mode"], info["seed"], info["items"], info["noise"]) == ("realistic", 0, 3000, 0.1)
    assert info["realistic_noise"]["text_type_wrong"] == REALISTIC_NOISE.text_type_wrong
    assert info["caps"] == pytest.approx({"text": modality_caps()[0], "image": modality_caps()[1],
                                          "both": fusion_cap()})
    raw = pd.read_csv(root / "GLAMI-1M-train.csv", dtype=str)
    assert list(raw.columns) == ["item_id", "image_id", "name", "description", "geo", "category",
                                 "category_name", "label_source"]
    train, test = read_glami(root.parent, "train"), read_glami(root, "test")
    n = len(train.frame) + len(test.frame)
    assert n == 3000 and 0.15 < len(test.frame) / n < 0.25
    assert not train.report.counts and not test.report.counts
    im = Image.open(train.frame["image"].iloc[0])
    assert im.size == (96, 128) and im.format == "JPEG"
    assert raw["description"].isna().any()  # like GLAMI: some descriptions are empty
    words = raw["name"].str.split().str.len()
    assert words.min() <= 2 and words.max() >= 5
    assert raw["description"].str.split().str.len().max() >= 30


def test_long_tail_languages_and_label_columns(default_catalogue):
    root = default_catalogue
    train = pd.read_csv(root / "GLAMI-1M-train.csv", dtype=str, keep_default_na=False)
    test = pd.read_csv(root / "GLAMI-1M-test.csv", dtype=str, keep_default_na=False)
    both = pd.concat([train, test])
    counts = both["category"].value_counts()
    assert 12 <= len(counts) <= 20 and counts.max() >= 20 * counts.min()
    assert len(CLASSES) == len(counts)
    assert both["geo"].nunique() >= 5
    # each language has its own words
    vocab = {g: set(" ".join(grp["name"] + " " + grp["description"]).split()) for g, grp in both.groupby("geo")}
    langs = sorted(vocab)
    for i, a in enumerate(langs):
        for b in langs[i + 1:]:
            overlap = len(vocab[a] & vocab[b]) / min(len(vocab[a]), len(vocab[b]))
            assert overlap < 0.2, (a, b, overlap)  # shared words are brands only
    # label columns never appear in the text
    text = read_glami(root).frame["text"]
    names = set(both["category_name"])
    assert all(n.isascii() for n in names) and len(names) == len(counts)
    for t in text:
        assert not any(ch.isdigit() for ch in t)
        assert not any(n in t for n in names)


def test_noisy_labels_sidecar(default_catalogue):
    root = default_catalogue
    train = pd.read_csv(root / "GLAMI-1M-train.csv", dtype=str)
    test = pd.read_csv(root / "GLAMI-1M-test.csv", dtype=str)
    noisy = pd.read_csv(root / NOISY_LABELS_FILE, dtype=str)
    assert list(noisy.columns) == ["item_id", "true_category", "given_category"]
    assert noisy["item_id"].tolist() == train["item_id"].tolist()
    assert noisy["given_category"].tolist() == train["category"].tolist()
    wrong = noisy["true_category"] != noisy["given_category"]
    assert 0.07 < wrong.mean() < 0.13  # default noise=0.1
    assert set(train.loc[wrong.to_numpy(), "label_source"]) == {MACHINE}
    assert set(train["label_source"]) == {HUMAN, MACHINE}
    assert set(test["label_source"]) == {HUMAN}
    assert not set(test["item_id"]) & set(train["item_id"])


def test_noise_free_catalogue(tmp_path):
    root = write_synthetic(tmp_path, items=200, noise=0.0, seed=2, image_size=(32, 48), languages=("cz", "bg", "gr"))
    noisy = pd.read_csv(root / NOISY_LABELS_FILE, dtype=str)
    assert (noisy["true_category"] == noisy["given_category"]).all()
    assert Image.open(next((root / "images").iterdir())).size == (32, 48)
    assert set(pd.read_csv(root / "GLAMI-1M-train.csv", dtype=str)["geo"]) == {"cz", "bg", "gr"}


def test_modality_caps():
    text_cap, image_cap = modality_caps(mode="complementary")
    assert text_cap == pytest.approx(262.5 / 431.5) and image_cap == pytest.approx(322.5 / 431.5)
    assert 0.55 < text_cap < 0.65 and 0.65 < image_cap < 0.8  # fusion has room to beat either modality
    # uniform weights: one class per type (text) / per (silhouette family, pattern) pair (image) is right
    families_patterns = {(FAMILIES[t], p) for t, p, _ in CLASSES}
    assert len(families_patterns) == 13
    assert modality_caps([1.0] * len(CLASSES), mode="complementary") == pytest.approx((6 / 17, 13 / 17))
    assert fusion_cap(mode="complementary") == pytest.approx(1.0)
    one = [0.0] * len(CLASSES)
    one[3] = 1.0
    for mode in ("complementary", "realistic"):
        assert modality_caps(one, mode=mode) == pytest.approx((1.0, 1.0))
    with pytest.raises(ValueError):
        modality_caps([1.0, 2.0])
    with pytest.raises(ValueError):
        modality_caps(mode="easy")
    # realistic (the default): each side good but imperfect, both together near 100%
    r_text, r_image = modality_caps(mode="realistic")
    assert modality_caps() == (r_text, r_image)
    assert 0.6 < r_text < 0.95 and 0.6 < r_image < 0.95, (r_text, r_image)
    assert r_text > text_cap and r_image > image_cap  # each side now shows the class
    assert max(r_text, r_image) + 0.05 < fusion_cap() < 1.0
    # the likelihoods are distributions over the evidence for every class
    lt, li = _realistic_likelihoods(REALISTIC_NOISE)
    np.testing.assert_allclose(lt.sum(0), 1.0)
    np.testing.assert_allclose(li.sum(0), 1.0)


_SIL = 6  # silhouette statistics at the end of _image_features


def _image_features(path) -> np.ndarray:
    """Simple image statistics: mean colour, gradient energy, an orientation/frequency-pooled spectrum, and the
    garment mask's log height/width ratio, fill and width profile (a silhouette statistic)."""
    im = Image.open(path).convert("RGB").resize((48, 64))
    rgb = np.asarray(im, dtype=np.float32) / 255.0
    g = rgb.mean(axis=2)[8:56, 6:42]
    gx, gy = np.abs(np.diff(g, axis=1)), np.abs(np.diff(g, axis=0))
    spec = np.abs(np.fft.rfft2(g - g.mean()))
    spec /= spec.sum() + 1e-6
    fy, fx = np.fft.fftfreq(g.shape[0])[:, None], np.fft.rfftfreq(g.shape[1])[None, :]
    rb = np.digitize(np.hypot(fx, fy), [0.05, 0.1, 0.15, 0.2, 0.3, 0.4])
    ab = np.digitize(np.arctan2(fy, fx), [-1.2, -0.4, 0.4, 1.2])
    pooled = np.zeros((7, 5))
    np.add.at(pooled, (rb, ab), spec)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    mask = np.abs(rgb - np.median(border, axis=0)).max(axis=2) > 0.12  # far from the background colour
    rows, cols = np.flatnonzero(mask.sum(1) >= 2), np.flatnonzero(mask.sum(0) >= 2)
    sil = np.zeros(_SIL)
    if len(rows) and len(cols):
        m = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        sil[:] = [np.log(m.shape[0] / m.shape[1]), m.mean(),
                  *(m[int(f * (m.shape[0] - 1))].mean() for f in (0.05, 0.5, 0.95)),
                  m[int(0.9 * (m.shape[0] - 1)), m.shape[1] // 2 - 1:m.shape[1] // 2 + 2].mean()]  # legs' gap
    return np.concatenate([rgb.mean(axis=(0, 1)), [gx.mean(), gy.mean(), gx.std(), gy.std(), g.std()],
                           pooled.ravel(), sil])


def test_complementary_task_needs_both_modalities(tmp_path):
    pytest.importorskip("sklearn")
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    root = write_synthetic(tmp_path, items=1500, seed=1, noise=0.0, mode="complementary")
    tr, te = read_glami(root, "train").frame, read_glami(root, "test").frame
    vec = CountVectorizer(token_pattern=r"\S+", binary=True)
    t_tr, t_te = vec.fit_transform(tr["text"]), vec.transform(te["text"])
    f_tr = np.stack([_image_features(p) for p in tr["image"]])
    f_te = np.stack([_image_features(p) for p in te["image"]])
    mu, sd = f_tr.mean(0), f_tr.std(0) + 1e-6
    i_tr, i_te = csr_matrix((f_tr - mu) / sd), csr_matrix((f_te - mu) / sd)

    def accuracy(x_tr, x_te, y_tr=tr["label"], y_te=te["label"]) -> float:
        model = LogisticRegression(max_iter=1000).fit(x_tr, y_tr)
        return float((model.predict(x_te) == np.asarray(y_te)).mean())

    # the image shows the silhouette family ...
    family = {str(1000 + k): FAMILIES[t] for k, (t, _, _) in enumerate(CLASSES)}
    fam_tr, fam_te = tr["label"].map(family), te["label"].map(family)
    assert accuracy(f_tr[:, -_SIL:], f_te[:, -_SIL:], fam_tr, fam_te) > 0.95
    # ... but not the type within it: T-shirts and jackets have the same silhouette statistics
    types = {str(1000 + k): t for k, (t, _, _) in enumerate(CLASSES)}
    ratio = pd.Series(f_tr[:, -_SIL], index=tr.index).groupby(tr["label"].map(types).to_numpy()).mean()
    assert abs(ratio["t-shirt"] - ratio["jacket"]) < 0.06 < 0.3 < ratio["dress"] - ratio["t-shirt"], ratio

    text_acc = accuracy(t_tr, t_te)
    image_acc = accuracy(i_tr, i_te)
    both_acc = accuracy(hstack([t_tr, i_tr]).tocsr(), hstack([t_te, i_te]).tocsr())
    text_cap, image_cap = modality_caps(mode="complementary")
    assert text_acc < text_cap + 0.05 and image_acc < image_cap + 0.05, (text_acc, image_acc)
    assert both_acc > max(text_acc, image_acc) + 0.15, (text_acc, image_acc, both_acc)


# --------------------------------------------------------------------------------------------------------------
# modes

# Computed with the code of commit 0d0f694 (before the modes existed), Pillow 13.0.0 / libjpeg-turbo 3.2.0.
_PINNED_COMPLEMENTARY = {
    (60, 11, 0.1, (32, 40), ("cz", "ro", "hu", "es", "tr", "gr")): {
        "GLAMI-1M-train.csv": "ecf5b89979d6c2c174389c3209af9e5fdad1a3c853bebffbac2abb294c5a1b55",
        "GLAMI-1M-test.csv": "7e422f58e722232c4b447608956c95aca020c4a712f9c5160a71765859913f6c",
        "noisy_labels.csv": "31a2e517a41142aee96489cd58f897c7f697e7c236dbae53c0fbcc7e01217e00",
        "images": "c46692416f35bb9a584576cc835da6f576daa34cae7a885d49cd2a9124978026",
    },
    (40, 3, 0.3, (24, 24), ("bg", "es")): {
        "GLAMI-1M-train.csv": "00d0949763c01408422ebfeb0615649dc2431e0399f004bbd3ab7dfa5fa801ef",
        "GLAMI-1M-test.csv": "1ff55091587cc76de68422b1ef4ab8e6a5395c65821b4a8f7151aee88f22e75a",
        "noisy_labels.csv": "2e493b738ac182bf9d5d4075332ad19ad453faccf7a0d2bef86805edf23c0c33",
        "images": "ea2bbda10c50a5ed0179eaa8548f563aeb5bf88eb27f28c0b956e4f17199cdd9",
    },
}
# JPEG bytes depend on the encoder: the pinned image hashes hold where this reference encodes the same.
_JPEG_FINGERPRINT = "ab80f93ba717aa32833699ced258493fd7eff5bd0548c92506e5b3e6e6d56d52"


def _jpeg_fingerprint() -> str:
    arr = (np.arange(32 * 40 * 3).reshape(40, 32, 3) * 37 % 251).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=85)
    return hashlib.sha256(buf.getvalue()).hexdigest()


def test_complementary_mode_is_byte_identical_to_the_earlier_generator(tmp_path):
    same_encoder = _jpeg_fingerprint() == _JPEG_FINGERPRINT
    for n, ((items, seed, noise, size, langs), pinned) in enumerate(_PINNED_COMPLEMENTARY.items()):
        root = write_synthetic(tmp_path / str(n), items=items, seed=seed, noise=noise, image_size=size,
                               languages=langs, mode="complementary", workers=1 + n)
        got = {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in pinned if name != "images"}
        h = hashlib.sha256()
        for p in sorted((root / "images").iterdir()):
            h.update(p.name.encode() + b"\0" + p.read_bytes())
        got["images"] = h.hexdigest()
        if not same_encoder:  # another libjpeg: only the CSVs can be compared
            got["images"] = pinned["images"]
        assert got == pinned, (items, seed)
        info = json.loads((root / SIDECAR_FILE).read_text(encoding="utf-8"))
        assert (info["mode"], info["seed"], info["items"], info["noise"]) == ("complementary", seed, items, noise)
        assert info["realistic_noise"] is None
        assert info["caps"]["text"] == pytest.approx(modality_caps(mode="complementary")[0])
    if not same_encoder:
        pytest.skip("CSVs match; this Pillow's JPEG encoder differs from the pinned one, images not compared")


def test_modes_share_classes_splits_and_languages(tmp_path):
    r = write_synthetic(tmp_path / "r", items=150, seed=4, noise=0.0, image_size=(24, 24))
    c = write_synthetic(tmp_path / "c", items=150, seed=4, noise=0.0, image_size=(24, 24), mode="complementary")
    for split in ("train", "test"):
        fr = pd.read_csv(r / f"GLAMI-1M-{split}.csv", dtype=str, keep_default_na=False)
        fc = pd.read_csv(c / f"GLAMI-1M-{split}.csv", dtype=str, keep_default_na=False)
        for col in ("item_id", "image_id", "geo", "category", "category_name"):
            assert fr[col].tolist() == fc[col].tolist(), col
        assert (fr["name"] != fc["name"]).mean() > 0.9
    assert (r / "images" / "500000.jpg").read_bytes() != (c / "images" / "500000.jpg").read_bytes()
    with pytest.raises(ValueError, match="mode"):
        write_synthetic(tmp_path / "x", items=5, mode="hard")
    assert not (tmp_path / "x").exists()


def _evidence(name: str, description: str, L) -> tuple[set[int], set[int], bool]:
    """(types named, patterns named, whether the name has any noun) of one realistic text, read with the
    language's vocabulary."""
    def forms(w: str) -> set[str]:
        return {w, _cap(w)}

    name_tokens = set(name.split())
    tokens = name_tokens | set(description.replace(".", " ").split())
    types = {t for t, nouns in enumerate(L.type_nouns) if any(forms(w) & tokens for w, _ in nouns)}
    patterns = {p for p, stems in enumerate(L.patterns) if any(forms(s + suf) & tokens for s in stems
                                                               for suf in L.suffixes)}
    has_noun = any(forms(w) & name_tokens for w, _ in [*L.nouns, *(n for ns in L.type_nouns for n in ns)])
    return types, patterns, has_noun


@pytest.fixture(scope="module")
def realistic_600(tmp_path_factory):
    root = write_synthetic(tmp_path_factory.mktemp("realistic"), items=600, seed=7, noise=0.0)
    both = pd.concat([pd.read_csv(root / f"GLAMI-1M-{s}.csv", dtype=str, keep_default_na=False)
                      for s in ("train", "test")], ignore_index=True)
    return root, both


def test_realistic_text_names_type_and_pattern_with_the_configured_noise(realistic_600):
    _, both = realistic_600
    langs = _build_languages(7)
    r = REALISTIC_NOISE
    rows, evidence = [], []
    for _, x in both.iterrows():
        k = int(x["category"]) - 1000
        gtype, pattern, _ = CLASSES[k]
        types, patterns, has_noun = _evidence(x["name"], x["description"], langs[x["geo"]])
        assert len(types) <= 1 and len(patterns) <= 1, (x["name"], x["description"])  # one type, one pattern
        rows.append({"k": k, "true_type": types == {TYPES.index(gtype)}, "no_type": not types,
                     "wrong_type": bool(types) and types != {TYPES.index(gtype)},
                     "true_pattern": patterns == {PATTERNS.index(pattern)}, "any_pattern": bool(patterns),
                     "wrong_pattern": bool(patterns) and patterns != {PATTERNS.index(pattern)},
                     "uninformative": not has_noun and not x["description"]})
        evidence.append((next(iter(types), None), next(iter(patterns), None)))
    ev = pd.DataFrame(rows)
    share = ev.drop(columns="k").mean()
    informative = 1 - r.text_uninformative
    assert share["true_type"] > 0.78  # most texts name the true type (one of its synonyms) ...
    assert share["any_pattern"] > 0.5  # ... and a sizeable share a pattern
    assert share["true_pattern"] == pytest.approx(informative * r.text_pattern_named, abs=0.06)
    assert share["uninformative"] == pytest.approx(r.text_uninformative, abs=0.025)
    assert share["no_type"] == pytest.approx(r.text_uninformative + informative * r.text_type_omitted, abs=0.035)
    assert share["wrong_type"] == pytest.approx(informative * r.text_type_wrong, abs=0.025)
    assert share["wrong_pattern"] == pytest.approx(informative * r.text_pattern_wrong, abs=0.025)
    assert ev.loc[ev["uninformative"], "no_type"].all() and not ev.loc[ev["uninformative"], "any_pattern"].any()
    # the cap's model is the generator's: a Bayes reader of the parsed evidence scores about the text cap
    lt, _ = _realistic_likelihoods(r)
    w = np.array([c[2] for c in CLASSES])
    index = {e: s for s, e in enumerate((t, p) for t in [None, *range(len(TYPES))]
                                        for p in [None, *range(len(PATTERNS))])}
    pred = [int(np.argmax(lt[index[e]] * w)) for e in evidence]
    accuracy = float((np.asarray(pred) == ev["k"].to_numpy()).mean())
    assert accuracy == pytest.approx(modality_caps()[0], abs=0.06)


def test_naming_words_find_what_each_realistic_text_names(realistic_600):
    _, both = realistic_600
    words = naming_words(7)
    assert {v for k, v in words.values() if k == "type"} == set(TYPES)
    assert {v for k, v in words.values() if k == "pattern"} == set(PATTERNS)
    assert all(w == w.lower() for w in words)
    assert naming_words(8).keys() != words.keys()  # each seed draws its own languages
    langs = _build_languages(7)
    named = 0
    for _, x in both.iterrows():
        found = {(kind, value) for t in f"{x['name']} {x['description']}".lower().replace(".", " ").split()
                 for kind, value in [words.get(t, (None, None))] if kind}
        types, patterns, _ = _evidence(x["name"], x["description"], langs[x["geo"]])
        assert {v for k, v in found if k == "type"} == {TYPES[t] for t in types}, x["name"]
        assert {v for k, v in found if k == "pattern"} == {PATTERNS[p] for p in patterns}, x["description"]
        named += bool(found)
    assert named > 0.9 * len(both)


def test_realistic_images_show_each_types_own_silhouette(realistic_600, tmp_path):
    root, both = realistic_600
    types = both["category_name"].str.split(" ", n=1).str[1]
    ratio = pd.Series([_image_features(root / "images" / f"{i}.jpg")[-_SIL] for i in both["image_id"]])
    med = ratio.groupby(types.to_numpy()).median()
    # same family, different outlines: a jacket is longer than a T-shirt, a dress much longer than a skirt
    assert med["jacket"] - med["t-shirt"] > 0.15 and med["dress"] - med["skirt"] > 0.35, med
    # (the complementary mode draws one outline per family: T-shirts and jackets alike)
    c = write_synthetic(tmp_path, items=300, seed=7, noise=0.0, mode="complementary")
    cb = pd.read_csv(c / "GLAMI-1M-train.csv", dtype=str)
    ct = cb["category_name"].str.split(" ", n=1).str[1]
    cr = pd.Series([_image_features(c / "images" / f"{i}.jpg")[-_SIL] for i in cb["image_id"]])
    cmed = cr.groupby(ct.to_numpy()).median()
    assert abs(cmed["jacket"] - cmed["t-shirt"]) < 0.08, cmed


def test_the_benchmark_catalogue_caps_match_the_synthetic_caps():
    """benchmarks/catalogue_caps.py computes the realistic and complementary caps with the library's own
    functions, and a text that names both type and pattern always can do no worse than one naming fewer."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "catalogue_caps.py"
    spec = importlib.util.spec_from_file_location("catalogue_caps", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.all_caps()
    assert table["realistic"]["both"] == pytest.approx(fusion_cap(mode="realistic"))
    assert table["complementary"]["both"] == pytest.approx(1.0)
    for row in table.values():
        assert max(row["text"], row["image"]) <= row["both"] <= 1.0
    assert table["small-english"]["text"] > table["offline-presets"]["text"]  # pattern named 60 % against 25 %
