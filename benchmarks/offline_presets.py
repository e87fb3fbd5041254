"""Quality of the offline pretrained presets (issue 11): FLUID with ``minilm`` + ``efficientnet-lite0`` against
TF-IDF + logistic regression and frozen-feature logistic-regression probes on the same encoders.

    python benchmarks/offline_presets.py                 # ~10 minutes on 2 shared CPU cores
    python benchmarks/offline_presets.py --items 400 --epochs 5    # quicker, noisier

The catalogue (no real product-photo catalogue is available offline, see docs/encoders.md): the images and
labels of the built-in synthetic catalogue (``fluid.data.synthetic``: garment silhouettes filled with a
pattern; the image shows the pattern and the silhouette *family*, not the exact garment type), restricted to
its 10 most frequent classes, with the procedural-language texts replaced by long **English** descriptions
written here from the garment type (4-8 sentences: real English synonyms, brands, colours, materials, fit,
care; the pattern is named in only 25% of them, the type is left out of 10%). Text alone cannot separate
e.g. a striped from a plain T-shirt, the image alone cannot separate a T-shirt from a jacket: a model must
use both. The files are written as plain CSVs (``id,text,image,label``), the worked example of the docs.

Protocol: train / validation / test = stratified split of the synthetic train file (80/20) / its test file.
Hyper-parameters (the probes' C, FLUID's epoch) are chosen on validation; the test set is scored once per
method at the end. Writes ``benchmarks/results/offline_presets.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fluid.atomic import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "offline_presets.json"
TOP_CLASSES = 10

SYNONYMS = {
    "t-shirt": ["t-shirt", "tee", "crew-neck tee", "short-sleeve top", "cotton tee"],
    "dress": ["dress", "midi dress", "sundress", "wrap dress", "shift dress"],
    "jacket": ["jacket", "blazer", "bomber jacket", "light jacket", "denim jacket"],
    "trousers": ["trousers", "pants", "chinos", "slacks", "straight-leg trousers"],
    "skirt": ["skirt", "midi skirt", "pleated skirt", "A-line skirt", "mini skirt"],
    "scarf": ["scarf", "wrap", "shawl", "neck scarf", "muffler"],
}
PATTERN_WORDS = {"plain": ["plain", "solid-colour"], "striped": ["striped", "stripy"],
                 "dotted": ["polka-dot", "dotted"], "checked": ["checked", "plaid"], "zigzag": ["zigzag", "chevron"]}
BRANDS = ["Northwind", "Alder & Co", "Maison Lune", "Redfern", "Blue Harbour", "Kestrel", "Oakline", "Vela"]
COLOURS = ["red", "navy", "forest green", "mustard", "black", "blush pink", "grey", "chocolate brown", "cream"]
MATERIALS = ["organic cotton", "linen", "a soft viscose blend", "recycled polyester", "wool blend", "jersey",
             "stretch cotton", "lyocell"]
FITS = ["a relaxed fit", "a regular fit", "a slim fit", "an oversized cut", "a tailored silhouette"]
OCCASIONS = ["everyday wear", "the office", "weekends away", "summer evenings", "travel", "casual Fridays"]
FILLERS = [
    "Machine washable at 30 degrees; do not tumble dry.",
    "Our model is 178 cm tall and wears size M.",
    "Part of our responsibly sourced collection.",
    "Free returns within 30 days of delivery.",
    "Pairs well with white sneakers and a simple tote.",
    "Designed in Europe and made to last season after season.",
    "Iron on a low setting if needed.",
    "The colour may vary slightly from the photo.",
    "A wardrobe staple you will reach for again and again.",
    "Available in sizes XS to XXL.",
]


def english_text(rng: random.Random, gtype: str, pattern: str, pattern_share: float = 0.25) -> str:
    """A long English product text naming the garment type (90 %) and the pattern (``pattern_share``)."""
    noun = rng.choice(SYNONYMS[gtype]) if rng.random() > 0.10 else "piece"
    pattern_word = (rng.choice(PATTERN_WORDS[pattern]) + " ") if rng.random() < pattern_share else ""
    colour, brand, material = rng.choice(COLOURS), rng.choice(BRANDS), rng.choice(MATERIALS)
    name = f"{brand} {colour} {pattern_word}{noun}".strip()
    sentences = [
        f"This {colour} {noun} from {brand} is made from {material}.",
        f"It has {rng.choice(FITS)} and is ideal for {rng.choice(OCCASIONS)}.",
    ]
    if noun != "piece" and rng.random() < 0.5:
        sentences.append(f"Style the {rng.choice(SYNONYMS[gtype])} with your favourite accessories.")
    sentences += rng.sample(FILLERS, rng.randint(2, 5))
    rng.shuffle(sentences)
    return name + "\n" + " ".join(sentences)


#: Product-page sentences with nothing about the garment's type or pattern: what pads a real description to
#: ~200 words (delivery, care, sizing, sustainability, brand story). One says "checked" in its other sense, as
#: real pages do.
PAGE_FILLERS = [
    "Orders placed before 2 pm ship the same working day.",
    "Standard delivery takes two to four working days; express delivery is available at checkout.",
    "Returns are free within 30 days, as long as the tags are still attached.",
    "Wash inside out with similar colours and reshape while damp.",
    "Do not bleach, do not dry clean, and dry flat away from direct heat.",
    "Our sizes follow the European standard; if you are between two sizes, we suggest the larger one.",
    "The model in the photos is 176 cm tall and wears a size small.",
    "Every piece is checked by hand before it leaves our warehouse.",
    "We work with certified mills that limit water and energy use.",
    "The packaging is made from recycled cardboard and can go straight into the paper bin.",
    "Colours on screen may differ slightly from the real product.",
    "Join our newsletter for early access to new collections and member-only offers.",
    "Gift wrapping and a handwritten card can be added at checkout.",
    "Customer service answers every message within one working day.",
    "Small variations in the weave are part of the character of the fabric.",
    "The fabric is breathable, soft against the skin and keeps its shape wash after wash.",
    "Seams are double-stitched at the points that take the most strain.",
    "Designed in our studio and produced in small batches to reduce waste.",
    "Store folded in a cool, dry place and keep away from sharp objects.",
    "Reviews from verified buyers mention the comfortable feel and the generous cut.",
    "Pay in three interest-free instalments with the payment partners shown at checkout.",
    "This item is part of our permanent collection and is restocked regularly.",
    "Matching pieces from the same collection are shown further down the page.",
    "Measurements are taken flat and may vary by one or two centimetres.",
    "All trims are nickel-free and the dyes meet the OEKO-TEX standard.",
    "Click and collect is free at every one of our stores.",
    "Track your parcel at any time with the link in your confirmation email.",
    "Exchanges for another size are free and usually arrive within a week.",
    "Our stores can order any size that is missing from the shelf.",
    "A percentage of every sale supports textile recycling programmes.",
]


PAGE_TYPE_NAMED = PAGE_PATTERN_NAMED = 0.98  # long_english_text's default shares
PAGE_IMAGE_MISSING = 0.03  # share of quality.py's product-pages rows without an image


def long_english_text(rng: random.Random, gtype: str, pattern: str, *, words: int = 200,
                      type_share: float = PAGE_TYPE_NAMED, pattern_share: float = PAGE_PATTERN_NAMED) -> str:
    """A product page of about ``words`` words: a title and a description that name the garment type (in
    ``type_share`` of the texts, several times, with synonyms) and the pattern (``pattern_share``), padded with
    product-page sentences that say nothing about either (``PAGE_FILLERS``) in a random order."""
    named = rng.random() < type_share
    noun = rng.choice(SYNONYMS[gtype]) if named else "piece"
    pattern_word = (rng.choice(PATTERN_WORDS[pattern]) + " ") if rng.random() < pattern_share else ""
    colour, brand, material = rng.choice(COLOURS), rng.choice(BRANDS), rng.choice(MATERIALS)
    sentences = [f"This {colour} {pattern_word}{noun} from {brand} is made from {material}.",
                 f"It has {rng.choice(FITS)} and is ideal for {rng.choice(OCCASIONS)}."]
    if named:
        sentences += [f"Style the {rng.choice(SYNONYMS[gtype])} with your favourite accessories.",
                      f"A {rng.choice(SYNONYMS[gtype])} that works from morning to evening."]
    fillers = rng.sample(PAGE_FILLERS + FILLERS, len(PAGE_FILLERS) + len(FILLERS))
    count = sum(len(s.split()) for s in sentences)
    while count < words and fillers:
        sentences.append(fillers.pop())
        count += len(sentences[-1].split())
    rng.shuffle(sentences)
    return f"{brand} {colour} {pattern_word}{noun}".strip() + "\n" + " ".join(sentences)


def make_catalogue(workdir: Path, items: int, seed: int) -> dict[str, pd.DataFrame]:
    """Write train/val/test CSVs (id,text,image,label; image paths relative to ``workdir``) and return them."""
    from fluid.data.splits import stratified_split
    from fluid.data.synthetic import CLASSES, write_synthetic

    root = write_synthetic(workdir / "synthetic", items=items, seed=seed, noise=0.0, image_size=(160, 160),
                           test_fraction=0.25, languages=("cz",), overwrite=True, mode="complementary")
    keep = sorted(range(len(CLASSES)), key=lambda k: -CLASSES[k][2])[:TOP_CLASSES]
    names = {1000 + k: f"{CLASSES[k][1]} {CLASSES[k][0]}" for k in keep}
    frames = {}
    for split in ("train", "test"):
        raw = pd.read_csv(root / f"GLAMI-1M-{split}.csv", dtype=str)
        raw = raw[raw["category"].astype(int).isin(names)]
        rows = []
        for _, r in raw.iterrows():
            k = int(r["category"]) - 1000
            rng = random.Random(f"offline-presets:{seed}:{r['item_id']}")
            rows.append({"id": r["item_id"], "text": english_text(rng, CLASSES[k][0], CLASSES[k][1]),
                         "image": f"synthetic/GLAMI-1M-dataset/images/{r['image_id']}.jpg",
                         "label": names[int(r["category"])]})
        frames[split] = pd.DataFrame(rows)
    train, val = stratified_split(frames["train"], val_fraction=0.2, seed=seed)
    out = {"train": train.reset_index(drop=True), "val": val.reset_index(drop=True),
           "test": frames["test"].reset_index(drop=True)}
    for split, frame in out.items():
        frame.to_csv(workdir / f"{split}.csv", index=False)
    return out


# ----------------------------------------------------------------------------------------------- features
def pooled_features(frames: dict[str, pd.DataFrame], workdir: Path, batch_size: int = 32) -> dict[str, dict]:
    """Frozen minilm (masked mean of its tokens) and efficientnet-lite0 (mean of its 49 tokens) features."""
    import torch
    from PIL import Image

    from fluid.encoders import build_image_encoder, build_text_encoder

    text_encoder = build_text_encoder("minilm", max_length=256).eval()
    image_encoder = build_image_encoder("efficientnet-lite0").eval()
    out: dict[str, dict] = {}
    for split, frame in frames.items():
        text_rows, image_rows = [], []
        for start in range(0, len(frame), batch_size):
            part = frame.iloc[start:start + batch_size]
            with torch.inference_mode():
                t = text_encoder(text_encoder.prepare(part["text"].tolist()))
                m = t.mask.unsqueeze(-1).float()
                text_rows.append(((t.tokens * m).sum(1) / m.sum(1).clamp(min=1)).numpy())
                images = [Image.open(workdir / p).convert("RGB") for p in part["image"]]
                image_rows.append(image_encoder(image_encoder.prepare(images)).tokens.mean(1).numpy())
        out[split] = {"text": np.concatenate(text_rows), "image": np.concatenate(image_rows)}
        print(f"  features {split}: {len(frame)} items", flush=True)
    return out


# ----------------------------------------------------------------------------------------------- baselines
def _scores(y_true, y_pred) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0))}


def logistic_probe(x: dict[str, np.ndarray], y: dict[str, np.ndarray], seed: int) -> dict:
    """Standardised features + logistic regression; C chosen on validation accuracy, test scored once."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best = None
    for c in (0.001, 0.01, 0.1, 1.0, 10.0):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000, random_state=seed))
        model.fit(x["train"], y["train"])
        val = _scores(y["val"], model.predict(x["val"]))
        if best is None or val["accuracy"] > best[1]["accuracy"]:
            best = (c, val, model)
    c, val, model = best
    return {"C": c, "val": val, "test": _scores(y["test"], model.predict(x["test"]))}


def tfidf_logreg(texts: dict[str, list[str]], y: dict[str, np.ndarray], seed: int) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x = {"train": vectorizer.fit_transform(texts["train"])}
    x.update({s: vectorizer.transform(texts[s]) for s in ("val", "test")})
    best = None
    for c in (0.1, 1.0, 10.0, 100.0):
        model = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit(x["train"], y["train"])
        val = _scores(y["val"], model.predict(x["val"]))
        if best is None or val["accuracy"] > best[1]["accuracy"]:
            best = (c, val, model)
    c, val, model = best
    return {"C": c, "val": val, "test": _scores(y["test"], model.predict(x["test"]))}


# ----------------------------------------------------------------------------------------------- FLUID
def fluid_run(frames: dict[str, pd.DataFrame], workdir: Path, epochs: int, modality_dropout: float,
              seed: int) -> dict:
    from fluid import Classifier
    from fluid.config import DEMO_HEAD

    clf = Classifier(
        "fluid", text_encoder="minilm", image_encoder="efficientnet-lite0", label="label", text=["text"],
        image="image", id="id", image_root=str(workdir), path=str(workdir / f"run-md{modality_dropout}"),
        head={**DEMO_HEAD, "hidden_dim": 128}, epochs=epochs, batch_size=32, lr=1e-3, warmup_steps=20,
        schedule="cosine", max_text_length=256, modality_dropout=modality_dropout,
        feature_cache=str(workdir / "feature-cache"), seed=seed,
    )
    started = time.perf_counter()
    clf.fit(frames["train"], frames["val"], progress=False)
    seconds = time.perf_counter() - started
    result = {"modality_dropout": modality_dropout, "epochs": epochs, "best_epoch": clf.metrics_["best_epoch"],
              "train_seconds": round(seconds, 1),
              "val": {k: clf.metrics_["validation"][k] for k in ("accuracy", "macro_f1")}}
    for name, drop in (("test", None), ("test_text_removed", "text"), ("test_image_removed", "image")):
        metrics = clf.evaluate(frames["test"], drop_modality=drop)
        result[name] = {"accuracy": float(metrics["accuracy"]), "macro_f1": float(metrics["macro_f1"])}
    return result


# ----------------------------------------------------------------------------------------------- main
def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, obj)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=900, help="synthetic items before keeping the top 10 classes")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--modality-dropout", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared machine)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the catalogue and runs here")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fluid-offline-presets-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    print(f"catalogue in {workdir}", flush=True)
    frames = make_catalogue(workdir, args.items, args.seed)
    y = {s: f["label"].to_numpy() for s, f in frames.items()}
    counts = frames["train"]["label"].value_counts().to_dict()
    print(f"  train {len(frames['train'])}, val {len(frames['val'])}, test {len(frames['test'])}, "
          f"{len(counts)} classes", flush=True)

    print("frozen features (minilm, efficientnet-lite0)", flush=True)
    feats = pooled_features(frames, workdir)
    both = {s: np.concatenate([feats[s]["text"], feats[s]["image"]], axis=1) for s in frames}
    results: dict = {"methods": {}}
    m = results["methods"]
    m["tfidf_logreg_text"] = tfidf_logreg({s: f["text"].tolist() for s, f in frames.items()}, y, args.seed)
    m["probe_text_minilm"] = logistic_probe({s: feats[s]["text"] for s in frames}, y, args.seed)
    m["probe_image_efficientnet_lite0"] = logistic_probe({s: feats[s]["image"] for s in frames}, y, args.seed)
    m["probe_both"] = logistic_probe(both, y, args.seed)
    print("FLUID (minilm + efficientnet-lite0, frozen, head trained)", flush=True)
    m[f"fluid_md{args.modality_dropout}"] = fluid_run(frames, workdir, args.epochs, args.modality_dropout, args.seed)
    if args.modality_dropout > 0:
        m["fluid_md0.0"] = fluid_run(frames, workdir, args.epochs, 0.0, args.seed)

    results["setup"] = {
        "catalogue": "synthetic images + labels (top 10 classes), long English texts (benchmarks/offline_presets.py)",
        "items": {s: len(f) for s, f in frames.items()}, "classes": len(counts), "train_label_counts": counts,
        "seed": args.seed, "epochs": args.epochs, "torch_threads": args.threads,
        "seconds_total": round(time.perf_counter() - started, 1),
        "majority_class_test_accuracy": float((y["test"] == pd.Series(y["train"]).mode()[0]).mean()),
    }
    _write_json(args.out, results)

    print(f"\n{'method':38s} {'val acc':>8s} {'test acc':>9s} {'test F1':>8s}")
    for name, r in m.items():
        print(f"{name:38s} {r['val']['accuracy']:8.3f} {r['test']['accuracy']:9.3f} {r['test']['macro_f1']:8.3f}")
        for extra in ("test_text_removed", "test_image_removed"):
            if extra in r:
                print(f"{'  ' + extra:38s} {'':8s} {r[extra]['accuracy']:9.3f} {r[extra]['macro_f1']:8.3f}")
    print(f"\nwrote {args.out} ({results['setup']['seconds_total']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
