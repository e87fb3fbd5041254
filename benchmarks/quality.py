"""Quality of a first run with default settings: FLUID (recipe ``auto``) against strong simple baselines.

    python benchmarks/quality.py                                  # every catalogue, 3 seeds (over an hour)
    python benchmarks/quality.py --catalogues small-english --seeds 1 --systems fluid floor

Catalogues (all built offline, see docs/benchmarks.md):
  realistic       the synthetic catalogue in its default mode (class evidence on both sides, each noisy),
                  2,000 items, 6 languages, tiny encoders;
  complementary   the synthetic catalogue's complementary mode (the type only in the text, the pattern only in
                  the image), 2,000 items, tiny encoders;
  offline-presets 10 classes of the synthetic drawings with long English descriptions
                  (benchmarks/offline_presets.py), the pretrained offline encoders minilm + efficientnet-lite0;
  small-english   ~250 training items, 10 classes, long English descriptions that name the garment (and often
                  the pattern) over realistic-mode drawings, tiny encoders: the size of a first user's catalogue;
  product-pages   the shape of the real catalogue that opened issue 23 (docs/benchmarks.md): ~250 training items,
                  10 classes, ~200-word English product pages that name the garment (98 %) and the pattern
                  (98 %) among delivery, care and sizing sentences, 3 % of the images missing, tiny encoders;
  pages-pretrained  the same catalogue with minilm + efficientnet-lite0;
  english-pretrained  the same kind of catalogue with ~600 training items and minilm + efficientnet-lite0 (the
                  drawings show the garment type, so the image alone can classify, unlike offline-presets);
  multilingual    ~375 training items like small-english, but short texts in seven real languages (Czech,
                  German, Spanish, Greek, Bulgarian, Turkish, Hungarian; benchmarks/multilingual_texts.py), tiny
                  encoders (compare text encoders with --variant 'e5={"text_encoder": "e5-small"}');
  multilingual-transfer  the same, but the training texts are in Czech, German, Spanish and Hungarian and the
                  test texts in Greek, Bulgarian and Turkish: what a model reads in languages its training data
                  never showed (a rare GLAMI-1M market).

Systems: every deep head with default settings (``Classifier(model, text_encoder=..., image_encoder=...)``, nothing
else set), the classical floor ``tfidf-image-logreg``, and on ``offline-presets`` a logistic probe on the
mean-pooled frozen encoder features and FLUID trained with modality dropout 0.3 (scored with the text removed too)
on the catalogues with pretrained encoders. On request, ``auto``: ``model="auto"`` with its default candidates
(``--systems auto``) or those a variant names (``--variant 'ft={"candidates": ["fluid", "text-only"]}'``); its runs
record the candidate kept. Each (catalogue, seed) draws its own catalogue and trains with that seed; the test split
is scored once. Results (every run, then mean ± std per system) go to benchmarks/results/quality.json, which is
rewritten after every run, and finished runs are skipped when the script is started again.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fluid.atomic import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "quality.json"
CATALOGUES = ("realistic", "complementary", "offline-presets", "small-english", "product-pages", "pages-pretrained",
              "english-pretrained", "multilingual", "multilingual-transfer")
DEEP = ("fluid", "early-fusion", "text-only", "image-only")
SYSTEMS = (*DEEP, "floor", "probe", "fluid+md")
#: ``model="auto"``: its default candidates, or those a ``--variant`` names (``{"candidates": [...]}``), and the
#: floor, the lowest validation log-loss kept. Run only when asked for (``--systems auto``).
ON_REQUEST = ("auto",)
ENCODERS = {name: ("minilm", "efficientnet-lite0") for name in ("offline-presets", "english-pretrained",
                                                                "pages-pretrained")}


# ------------------------------------------------------------------------------------------------- catalogues
def synthetic_frames(workdir: Path, mode: str, items: int, seed: int) -> dict[str, pd.DataFrame]:
    """The synthetic catalogue's train and test splits as canonical frames (absolute image paths)."""
    from fluid.data import read_catalogue
    from fluid.data.synthetic import write_synthetic

    root = write_synthetic(workdir / f"synthetic-{mode}", items=items, seed=seed, mode=mode, overwrite=True)
    frames = {}
    for split in ("train", "test"):
        frame = read_catalogue(root, split=split).frame
        frames[split] = pd.DataFrame({"id": frame["id"].astype(str), "text": frame["text"].astype(object),
                                      "image": [str(root / "images" / Path(str(p)).name) for p in frame["image"]],
                                      "label": frame["label"].astype(str)})
    return frames


#: The texts ``small_english_frames`` can write over the same drawings.
TEXTS = ("english", "multilingual", "multilingual-transfer", "pages")


def small_english_frames(workdir: Path, items: int, seed: int, *, texts: str = "english") -> dict[str, pd.DataFrame]:
    """~``items`` realistic-mode drawings of the 10 largest classes, 75 % train, 25 % test, with ``texts``:
    "english", long English texts naming the garment (90 %) and the pattern (60 %); "multilingual", short texts
    in seven real languages naming the same (benchmarks/multilingual_texts.py); "multilingual-transfer", the
    same with the training texts in four languages and the test texts in the other three; "pages", ~200-word
    product pages naming the garment (98 %) and the pattern (98 %), with 3 % of the rows' images missing."""
    if texts not in TEXTS:
        raise ValueError(f"texts must be one of {TEXTS}, got {texts!r}")
    from multilingual_texts import LANGUAGES, TRANSFER_TEST, TRANSFER_TRAIN, multilingual_text
    from offline_presets import PAGE_IMAGE_MISSING, TOP_CLASSES, english_text, long_english_text

    from fluid.data.synthetic import CLASSES

    frames = synthetic_frames(workdir, "realistic", int(items * 1.15), seed)
    keep = [f"{CLASSES[k][1]} {CLASSES[k][0]}" for k in
            sorted(range(len(CLASSES)), key=lambda k: -CLASSES[k][2])[:TOP_CLASSES]]
    names = {str(1000 + k): f"{CLASSES[k][1]} {CLASSES[k][0]}" for k in range(len(CLASSES))}
    every = pd.concat([frames["train"], frames["test"]], ignore_index=True)
    every["label"] = every["label"].map(names)
    every = every[every["label"].isin(keep)].reset_index(drop=True)
    test = np.random.default_rng(seed).random(len(every)) < 0.25
    rows = []
    for (_, r), in_test in zip(every.iterrows(), test):
        pattern, gtype = r["label"].split(" ", 1)
        rng = random.Random(f"quality-small-english:{seed}:{r['id']}")
        languages = (TRANSFER_TEST if in_test else TRANSFER_TRAIN) if texts == "multilingual-transfer" else LANGUAGES
        text = (multilingual_text(rng, gtype, pattern, languages=languages)[1] if texts.startswith("multilingual")
                else long_english_text(rng, gtype, pattern) if texts == "pages"
                else english_text(rng, gtype, pattern, pattern_share=0.6))
        image = None if texts == "pages" and rng.random() < PAGE_IMAGE_MISSING else r["image"]
        rows.append({**r.to_dict(), "text": text, "image": image})
    every = pd.DataFrame(rows)
    return {"train": every[~test].reset_index(drop=True), "test": every[test].reset_index(drop=True)}


def offline_preset_frames(workdir: Path, items: int, seed: int) -> dict[str, pd.DataFrame]:
    from offline_presets import make_catalogue

    frames = make_catalogue(workdir, items, seed)
    out = {"train": pd.concat([frames["train"], frames["val"]], ignore_index=True), "test": frames["test"]}
    for frame in out.values():
        frame["image"] = [str(workdir / p) for p in frame["image"]]
    return out


def build_catalogue(name: str, workdir: Path, seed: int, items: int | None) -> dict[str, pd.DataFrame]:
    if name in ("realistic", "complementary"):
        return synthetic_frames(workdir, name, items or 2000, seed)
    if name == "offline-presets":
        return offline_preset_frames(workdir, items or 900, seed)
    if name == "english-pretrained":
        return small_english_frames(workdir, items or 800, seed)
    if name in ("multilingual", "multilingual-transfer"):
        return small_english_frames(workdir, items or 500, seed, texts=name)
    return small_english_frames(workdir, items or 330, seed,
                                texts="pages" if name in ("product-pages", "pages-pretrained") else "english")


# ------------------------------------------------------------------------------------------------- systems
def train_and_score(system: str, frames: dict[str, pd.DataFrame], encoders: tuple[str, str], workdir: Path,
                    seed: int, variants: dict[str, dict] | None = None) -> dict:
    """Fits ``system`` with default settings (plus a ``--variant``'s options) on the train split; scores the
    test split once."""
    from fluid import Classifier

    base, _, variant = system.partition("[")
    model = {"floor": "tfidf-image-logreg", "fluid+md": "fluid"}.get(base, base)
    options = {"modality_dropout": 0.3} if base == "fluid+md" else {}
    if model != "tfidf-image-logreg":
        options.update(text_encoder=encoders[0], image_encoder=encoders[1],
                       feature_cache=str(workdir / "feature-cache"))
    if variant:  # a variant's options win, encoders included (e.g. {"text_encoder": "e5-small"})
        options.update((variants or {})[variant.rstrip("]")])
    clf = Classifier(model, id="id", path=str(workdir / f"run-{system}-{seed}"), seed=seed, floor=False, **options)
    started = time.perf_counter()
    clf.fit(frames["train"], progress=False, verbose=False)
    seconds = time.perf_counter() - started
    result = {"train_seconds": round(seconds, 1), "val_accuracy": clf.metrics_["validation"]["accuracy"],
              "epochs_run": clf.metrics_.get("epochs_run"), "best_epoch": clf.metrics_.get("best_epoch")}
    if "selection" in clf.metrics_:
        result["chosen"] = clf.metrics_["selection"]["chosen"]
    metrics = clf.evaluate(frames["test"])
    result.update(accuracy=float(metrics["accuracy"]), macro_f1=float(metrics["macro_f1"]))
    if system == "fluid+md":
        result["accuracy_text_removed"] = float(clf.evaluate(frames["test"], drop_modality="text")["accuracy"])
    return result


def probe(frames: dict[str, pd.DataFrame], encoders: tuple[str, str], seed: int) -> dict:
    """Logistic regression on the mean-pooled frozen features of both encoders; C chosen on a stratified 15 %
    validation split of train."""
    import torch
    from PIL import Image
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fluid.data.splits import stratified_split
    from fluid.encoders import build_image_encoder, build_text_encoder

    text_encoder = build_text_encoder(encoders[0], max_length=256).eval()
    image_encoder = build_image_encoder(encoders[1]).eval()

    def features(frame):
        rows = []
        for start in range(0, len(frame), 32):
            part = frame.iloc[start:start + 32]
            with torch.inference_mode():
                t = text_encoder(text_encoder.prepare(part["text"].fillna("").tolist()))
                m = t.mask.unsqueeze(-1).float()
                text = (t.tokens * m).sum(1) / m.sum(1).clamp(min=1)
                shown = [i for i, p in enumerate(part["image"]) if isinstance(p, str)]
                image = torch.zeros(len(part), image_encoder.dim)  # a missing image reads as zeros
                if shown:
                    pictures = [Image.open(part["image"].iloc[i]).convert("RGB") for i in shown]
                    image[shown] = image_encoder(image_encoder.prepare(pictures)).tokens.mean(1)
            rows.append(torch.cat([text, image], dim=1).numpy())
        return np.concatenate(rows)

    started = time.perf_counter()
    train, val = stratified_split(frames["train"], val_fraction=0.15, seed=seed)
    x = {"train": features(train), "val": features(val), "test": features(frames["test"])}
    y = {"train": train["label"].to_numpy(), "val": val["label"].to_numpy(), "test": frames["test"]["label"].to_numpy()}
    best = None
    for c in (0.001, 0.01, 0.1, 1.0, 10.0):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000)).fit(x["train"], y["train"])
        score = float((model.predict(x["val"]) == y["val"]).mean())
        if best is None or score > best[0]:
            best = (score, c, model)
    score, c, model = best
    predicted = model.predict(x["test"])
    from sklearn.metrics import f1_score

    return {"C": c, "val_accuracy": score, "accuracy": float((predicted == y["test"]).mean()),
            "macro_f1": float(f1_score(y["test"], predicted, average="macro", zero_division=0)),
            "train_seconds": round(time.perf_counter() - started, 1)}


# ------------------------------------------------------------------------------------------------- main
def summarise(runs: list[dict]) -> dict:
    table: dict = {}
    for run in runs:
        table.setdefault(run["catalogue"], {}).setdefault(run["system"], []).append(run)
    out = {}
    for catalogue, systems in table.items():
        out[catalogue] = {}
        for system, items in systems.items():
            row = {"seeds": [r["seed"] for r in items]}
            for key in ("accuracy", "macro_f1", "accuracy_text_removed", "train_seconds"):
                values = [r[key] for r in items if key in r]
                if values:
                    row[key] = {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4)}
            out[catalogue][system] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalogues", nargs="+", default=list(CATALOGUES), choices=CATALOGUES)
    parser.add_argument("--systems", nargs="+", default=None,
                        help="default: all; probe and fluid+md run on offline-presets only")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                        help="also train each deep system with these Classifier options, named SYSTEM[NAME], "
                             "e.g. shortcut='{\"head\": {\"pooled_shortcut\": true}}'")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--items", type=int, default=None, help="catalogue size (default per catalogue)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    import json

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fluid-quality-"))
    variants = {name: json.loads(value) for name, value in (v.split("=", 1) for v in args.variant)}
    unknown = set(args.systems or ()) - set(SYSTEMS) - set(ON_REQUEST)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; choose from {SYSTEMS + ON_REQUEST}")
    runs = json.loads(args.out.read_text())["runs"] if args.out.exists() else []
    done = {(r["catalogue"], r["system"], r["seed"]) for r in runs}
    for catalogue in args.catalogues:
        systems = [s for s in args.systems or SYSTEMS
                   if catalogue in ENCODERS or s not in ("probe", "fluid+md")]  # both need pretrained encoders
        systems += [f"{s}[{name}]" for name in variants for s in systems if s in (*DEEP, "fluid+md", *ON_REQUEST)]
        encoders = ENCODERS.get(catalogue, ("tiny", "tiny"))
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            todo = [s for s in systems if (catalogue, s, seed) not in done]
            if not todo:
                continue
            where = workdir / f"{catalogue}-{seed}"
            where.mkdir(parents=True, exist_ok=True)
            frames = build_catalogue(catalogue, where, seed, args.items)
            print(f"{catalogue} seed {seed}: train {len(frames['train'])}, test {len(frames['test'])}, "
                  f"{frames['train']['label'].nunique()} classes", flush=True)
            for system in todo:
                result = (probe(frames, encoders, seed) if system == "probe"
                          else train_and_score(system, frames, encoders, where, seed, variants))
                result.update(catalogue=catalogue, system=system, seed=seed, n_train=len(frames["train"]),
                              n_test=len(frames["test"]), encoders=list(encoders) if system != "floor" else None,
                              peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
                runs.append(result)
                print(f"  {system:14s} acc {result['accuracy']:.3f}  F1 {result['macro_f1']:.3f}  "
                      f"{result['train_seconds']:.0f} s", flush=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic(args.out, {"date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv),
                                             "summary": summarise(runs), "runs": runs})
    summary = summarise(runs)
    print(f"\n{'catalogue':16s} {'system':14s} {'accuracy':>16s} {'macro F1':>16s}")
    for catalogue, systems in summary.items():
        for system, row in systems.items():
            acc, f1 = row["accuracy"], row["macro_f1"]
            print(f"{catalogue:16s} {system:14s} {acc['mean']:.3f} ± {acc['std']:.3f}    "
                  f"{f1['mean']:.3f} ± {f1['std']:.3f}   (n={len(row['seeds'])})")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
