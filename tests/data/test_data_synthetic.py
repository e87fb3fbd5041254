from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fluid.data import read_glami, write_synthetic
from fluid.data.synthetic import CLASSES, FAMILIES, HUMAN, MACHINE, NOISY_LABELS_FILE, modality_caps


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
    assert da == db and len(da) == 120 + 3
    assert _digest(c) != da
    with pytest.raises(FileExistsError):
        write_synthetic(tmp_path / "a", items=10, seed=5)
    again = write_synthetic(tmp_path / "a", items=120, seed=5, overwrite=True)
    assert _digest(again) == da


def test_glami_layout_readable(default_catalogue):
    root = default_catalogue
    assert sorted(p.name for p in root.iterdir()) == ["GLAMI-1M-test.csv", "GLAMI-1M-train.csv", "images",
                                                      NOISY_LABELS_FILE]
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
    text_cap, image_cap = modality_caps()
    assert text_cap == pytest.approx(262.5 / 431.5) and image_cap == pytest.approx(322.5 / 431.5)
    assert 0.55 < text_cap < 0.65 and 0.65 < image_cap < 0.8  # fusion has room to beat either modality
    # uniform weights: one class per type (text) / per (silhouette family, pattern) pair (image) is right
    families_patterns = {(FAMILIES[t], p) for t, p, _ in CLASSES}
    assert len(families_patterns) == 13
    assert modality_caps([1.0] * len(CLASSES)) == pytest.approx((6 / 17, 13 / 17))
    one = [0.0] * len(CLASSES)
    one[3] = 1.0
    assert modality_caps(one) == pytest.approx((1.0, 1.0))
    with pytest.raises(ValueError):
        modality_caps([1.0, 2.0])


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


def test_task_needs_both_modalities(tmp_path):
    pytest.importorskip("sklearn")
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    root = write_synthetic(tmp_path, items=1500, seed=1, noise=0.0)
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
    text_cap, image_cap = modality_caps()
    assert text_acc < text_cap + 0.05 and image_acc < image_cap + 0.05, (text_acc, image_acc)
    assert both_acc > max(text_acc, image_acc) + 0.15, (text_acc, image_acc, both_acc)
