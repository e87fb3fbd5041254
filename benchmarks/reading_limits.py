"""What stands between FLUID and the exact caps (benchmarks/catalogue_caps.py) on the tiny-encoder catalogues.

    python benchmarks/reading_limits.py text                      # the demo's catalogue, 3 seeds, ~2 min
    python benchmarks/reading_limits.py late-fusion               # small-english, 3 seeds, ~15 min
    python benchmarks/reading_limits.py late-fusion --catalogue realistic --seeds 2

``text``: on the realistic synthetic catalogue (2,000 items, 6 invented languages: the catalogue ``fluid demo``
and ``benchmarks/quality.py --catalogues realistic`` train on), how well the text can be read, from the cap down
to learners that must find the class words themselves. Every reader scores the test split once:

- ``generator``: knows every word the generator names a type or a pattern with (``naming_words``) and the
  generator's probabilities; the Bayes rule on what it finds (the text cap, measured on these items);
- ``told-words``: knows which tokens are class words, not what they mean: naive Bayes (``nb``) or logistic
  regression (``lr``) on those tokens alone, learnt from the training split;
- ``tfidf-lr``: logistic regression on TF-IDF word uni- and bigrams (the floor's word view), every token;
- ``chi2-nb``: naive Bayes on the k tokens with the highest chi² score on the training split;
- ``fusion:generator`` / ``fusion:told-words``: the expected accuracy, over the image evidence the generator
  draws for each test item's class, of the Bayes rule combining that text reader's posterior with a perfect
  image reader (the image side at its cap: every drawn outline and pattern read).

Hyperparameters (alpha, C, k) are chosen on a stratified 15 % validation share of the training split, then the
reader is refitted on the whole training split.

``late-fusion``: on a catalogue of benchmarks/quality.py (default small-english), trains text-only, image-only
and FLUID with default settings (one torch thread, as quality.py), then scores on the test split: each, the
product of the two single-modality models' probabilities divided by the class prior (their Bayes combination
if they were conditionally independent), and FLUID's own per-modality classifiers (its blend weights set to
image only, text only, and half each). Whether FLUID fuses worse than two separate readers would, or reads each
modality worse.

Results go to benchmarks/results/reading_limits.json (rewritten after every seed; finished seeds are skipped).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
OUT = ROOT / "benchmarks" / "results" / "reading_limits.json"
WORD = re.compile(r"\w+")


# ------------------------------------------------------------------------------------------------- text
def tokens(text: str) -> list[str]:
    return WORD.findall(str(text).lower())


def generator_posteriors(texts, words: dict[str, tuple[str, str]]) -> np.ndarray:
    """N x 17: P(class | the type and pattern words found), from the generator's own probabilities."""
    from fluid.data.synthetic import CLASSES, PATTERNS, TYPES, evidence_likelihoods

    likelihood, _ = evidence_likelihoods("realistic")
    evidence = list(itertools.product([None, *TYPES], [None, *PATTERNS]))
    prior = np.array([c[2] for c in CLASSES], dtype=float)
    rows = []
    for text in texts:
        found = {"type": None, "pattern": None}
        for token in tokens(text):
            kind, value = words.get(token, (None, None))
            if kind is not None and found[kind] is None:
                found[kind] = value
        row = likelihood[evidence.index((found["type"], found["pattern"]))] * prior
        rows.append(row / row.sum())
    return np.asarray(rows)


def fusion_with_perfect_image(posteriors: np.ndarray, classes: list[int], truth: np.ndarray) -> float:
    """Expected accuracy of argmax_k posterior(k) · P(image evidence | k), the image evidence drawn as the
    generator draws it for each item's true class. ``classes``: the class index (into CLASSES) of each column."""
    from fluid.data.synthetic import evidence_likelihoods

    _, image = evidence_likelihoods("realistic")
    image = image[:, classes]  # E x C
    column = {k: j for j, k in enumerate(classes)}
    total = 0.0
    for q, k in zip(posteriors, truth):
        j = column[k]
        chosen = np.argmax(q[None, :] * image, axis=1)  # E
        total += float(image[chosen == j, j].sum())
    return total / len(truth)


def choose(make, grid, x_fit, y_fit, x_val, y_val):
    """The grid value whose model scores best on validation (ties: the first)."""
    scores = [float((make(v).fit(x_fit, y_fit).predict(x_val) == y_val).mean()) for v in grid]
    return grid[int(np.argmax(scores))]


def text_readers(seed: int, workdir: Path, items: int = 2000) -> dict:
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.feature_selection import SelectKBest, chi2
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline

    from fluid.data import stratified_split
    from fluid.data.synthetic import CLASSES, naming_words
    from quality import synthetic_frames

    frames = synthetic_frames(workdir, "realistic", items, seed)
    train, test = frames["train"], frames["test"]
    fit, val = stratified_split(train, val_fraction=0.15, seed=seed)
    words = naming_words(seed)
    only_words = lambda texts: [" ".join(t for t in tokens(s) if t in words) for s in texts]  # noqa: E731
    truth = np.array([int(label) - 1000 for label in test["label"]])
    out: dict = {"seed": seed, "train_items": len(train), "test_items": len(test)}

    generator = generator_posteriors(test["text"], words)
    out["generator"] = float((generator.argmax(1) == truth).mean())
    out["fusion:generator"] = fusion_with_perfect_image(generator, list(range(len(CLASSES))), truth)

    counts = dict(token_pattern=r"\S+", binary=True)
    readers = {
        "told-words nb": (lambda a: make_pipeline(CountVectorizer(**counts), MultinomialNB(alpha=a)),
                          (0.03, 0.1, 0.3, 1.0), only_words),
        "told-words lr": (lambda c: make_pipeline(CountVectorizer(**counts), LogisticRegression(C=c, max_iter=5000)),
                          (1.0, 3.0, 10.0, 30.0, 100.0), only_words),
        "tfidf-lr": (lambda c: make_pipeline(TfidfVectorizer(ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b",
                                                             sublinear_tf=True),
                                             LogisticRegression(C=c, max_iter=5000)),
                     (1.0, 3.0, 10.0, 30.0, 100.0), lambda texts: [str(t) for t in texts]),
        "chi2-nb": (lambda k: make_pipeline(CountVectorizer(token_pattern=r"(?u)\b\w+\b", binary=True),
                                            SelectKBest(chi2, k=k), MultinomialNB(alpha=0.1)),
                    (100, 200, 400, 800), lambda texts: [str(t) for t in texts]),
    }
    for name, (make, grid, prepare) in readers.items():
        value = choose(make, grid, prepare(fit["text"]), fit["label"], prepare(val["text"]), val["label"])
        model = make(value).fit(prepare(train["text"]), train["label"])
        x_test = prepare(test["text"])
        out[name] = float((model.predict(x_test) == test["label"]).mean())
        out[f"{name} chosen"] = str(value)
        if name == "told-words nb":
            classes = [int(c) - 1000 for c in model.classes_]
            out["fusion:told-words nb"] = fusion_with_perfect_image(model.predict_proba(x_test), classes, truth)
    return out


# ------------------------------------------------------------------------------------------------- late fusion
def late_fusion(catalogue: str, seed: int, workdir: Path, fluid_options: dict | None = None) -> dict:
    import torch

    from fluid import Classifier
    from quality import build_catalogue

    frames = build_catalogue(catalogue, workdir, seed, None)
    truth = frames["test"]["label"].astype(str).to_numpy()
    out: dict = {"catalogue": catalogue, "seed": seed, "test_items": len(truth), "fluid options": fluid_options or {}}
    probabilities: dict[str, pd.DataFrame] = {}
    fluid = None
    for model in ("text-only", "image-only", "fluid"):
        options = (fluid_options or {}) if model == "fluid" else {}
        clf = Classifier(model, id="id", path=str(workdir / f"run-{model}"), seed=seed, floor=False,
                         text_encoder="tiny", image_encoder="tiny", **options)
        clf.fit(frames["train"], progress=False, verbose=False)
        probabilities[model] = clf.predict_proba(frames["test"])
        fluid = clf if model == "fluid" else fluid
    columns = list(probabilities["fluid"].columns)
    accuracy = lambda scores: float((np.asarray(columns)[scores.argmax(1)].astype(str) == truth).mean())  # noqa: E731
    for model, p in probabilities.items():
        out[model] = accuracy(p[columns].to_numpy())
    prior = frames["train"]["label"].astype(str).value_counts(normalize=True).reindex(columns).fillna(0).to_numpy()
    log = {m: np.log(probabilities[m][columns].to_numpy() + 1e-9) for m in ("text-only", "image-only")}
    out["product text-only x image-only"] = accuracy(log["text-only"] + log["image-only"] - np.log(prior + 1e-9))
    head = fluid.network.head
    fitted = getattr(head, "blend_weights", None)
    if fitted is not None:
        out["fluid blend weights"] = [round(float(w), 3) for w in fitted]
        for name, weights in (("fluid image classifier", (0.0, 1.0, 0.0)), ("fluid text classifier", (0.0, 0.0, 1.0)),
                              ("fluid image x text classifiers", (0.0, 0.5, 0.5))):
            with torch.no_grad():
                head.blend_weights.copy_(torch.tensor(weights))
            out[name] = float(fluid.evaluate(frames["test"])["accuracy"])
        with torch.no_grad():
            head.blend_weights.copy_(fitted.clone())
    return out


# ------------------------------------------------------------------------------------------------- main
def summarise(runs: list[dict]) -> dict:
    out: dict = {}
    for run in runs:
        key = run["part"] if run["part"] == "text" else f"late-fusion {run['catalogue']}"
        if run.get("fluid options"):
            key += " " + json.dumps(run["fluid options"], sort_keys=True)
        group = out.setdefault(key, {})
        for name, value in run.items():
            if isinstance(value, float):
                group.setdefault(name, []).append(value)
    return {k: {n: {"mean": round(float(np.mean(v)), 4), "std": round(float(np.std(v)), 4), "n": len(v)}
                for n, v in g.items()} for k, g in out.items()}


def run_key(part: str, catalogue: str, seed: int, options: dict) -> tuple:
    return part, catalogue, seed, json.dumps(options, sort_keys=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=("text", "late-fusion"))
    parser.add_argument("--catalogue", default="small-english", help="late-fusion: a catalogue of quality.py")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--fluid-options", type=json.loads, default=None, metavar="JSON",
                        help="late-fusion: extra Classifier options for FLUID, e.g. "
                             "'{\"head\": {\"unimodal_weight\": 3}}'")
    parser.add_argument("--items", type=int, default=2000, help="text: catalogue size")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fluid-reading-"))
    document = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    runs = document["runs"]
    catalogue = "realistic" if args.part == "text" else args.catalogue
    options = (args.fluid_options or {}) if args.part == "late-fusion" else {}
    done = {run_key(r["part"], r.get("catalogue", "realistic"), r["seed"], r.get("fluid options", {})) for r in runs}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        if run_key(args.part, catalogue, seed, options) in done:
            continue
        where = workdir / f"{args.part}-{catalogue}-{seed}"
        where.mkdir(parents=True, exist_ok=True)
        if args.part == "text":
            run = text_readers(seed, where, args.items)
        else:
            run = late_fusion(catalogue, seed, where, args.fluid_options)
        runs.append({"part": args.part, **run})
        print(json.dumps(runs[-1]), flush=True)
        document.update(command="python benchmarks/reading_limits.py " + " ".join(argv or sys.argv[1:]),
                        runs=runs, summary=summarise(runs))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(document, indent=1) + "\n")
    for group, values in summarise(runs).items():
        print(group)
        for name, v in values.items():
            print(f"  {name:34s} {v['mean']:.3f} ± {v['std']:.3f}  (n={v['n']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
