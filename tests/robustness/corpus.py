"""A generated corpus of bad input: every kind of dirty catalogue FLUID must survive (issue 9).

``build_corpus(root)`` writes, under ``root`` (a tmp dir):

* ``catalogue/imgs/``: 36 clean PNGs (3 colour classes) plus one file per bad or unusual image — corrupt bytes,
  a truncated JPEG, a 0-byte file, a decompression bomb (a PNG whose header claims 30000 x 30000 pixels), an
  extreme 20000 x 2 strip, CMYK JPEG, 16-bit greyscale PNG, palette PNG with transparency, RGBA PNG;
* ``outside/secret.png``: a readable image *outside* the image root, which paths in the CSV try to reach;
* ``catalogue/train.csv`` (UTF-8): the clean rows plus one row per problem (see ``TRAIN_CASES``);
* ``catalogue/test.csv``: clean rows, rows whose labels the model has never seen, and a few bad images;
* ``catalogue/latin1.csv`` (latin-1 bytes), ``catalogue/mixed.csv`` (UTF-8 with one invalid byte sequence);
* ``catalogue/misnamed.csv`` (``Title`` for ``title``), ``catalogue/no_label.csv`` (no ``cat`` column),
  ``catalogue/empty.csv`` (0 bytes), ``catalogue/header_only.csv``, ``catalogue/ragged.csv`` (a row with
  too many fields), ``catalogue/one_class.csv``, ``catalogue/unclosed_quote.csv``, ``catalogue/corrupt.parquet``
  (random bytes between the magic numbers), ``catalogue/broken.jsonl`` (a truncated JSON line).

Columns of the catalogues: ``id, title, description, img, cat``.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}
N_CLEAN = 36
HUGE_TEXT_CHARS = 1_000_000

#: train.csv rows beyond the clean ones: id → (what it exercises, image cell, title, expected reader reason or
#: decoding outcome). "decode" cases pass the reader (the file exists) and fail or succeed when decoded.
TRAIN_CASES = {
    "corrupt-image": ("random bytes in a .jpg", "imgs/corrupt.jpg", "decode-fails"),
    "truncated-image": ("first half of a JPEG", "imgs/truncated.jpg", "decode-fails"),
    "zero-byte-image": ("0-byte file", "imgs/empty.jpg", "decode-fails"),
    "bomb-image": ("PNG header claiming 30000x30000 pixels", "imgs/bomb.png", "decode-fails"),
    "huge-dims": ("a 20000 x 2 pixel strip", "imgs/strip.png", "decodes"),
    "cmyk": ("CMYK JPEG", "imgs/cmyk.jpg", "decodes"),
    "gray16": ("16-bit greyscale PNG", "imgs/gray16.png", "decodes"),
    "palette": ("palette PNG with a transparent colour", "imgs/palette.png", "decodes"),
    "alpha": ("RGBA PNG", "imgs/alpha.png", "decodes"),
    "windows-path": ("Windows separators inside the root", "imgs\\win.png", "decodes"),
    "missing-image": ("file does not exist", "imgs/nope.jpg", "image-missing"),
    "windows-abs": ("Windows drive path", "C:\\photos\\x.jpg", "image-outside-root"),
    "escape-dotdot": ("'..' to a real file outside the root", "../outside/secret.png", "image-outside-root"),
    "escape-abs": ("absolute path to a real file outside the root", "<ABS>", "image-outside-root"),
    "url": ("a URL (never fetched)", "http://127.0.0.1:9/x.jpg", "image-outside-root"),
    "empty-text": ("no text, good image", "imgs/0.png", "text-empty"),
    "huge-text": ("1 MB of text", "imgs/1.png", "text-huge"),
    "no-modality": ("neither text nor image", "", "no-modality"),
    "no-label": ("empty label cell", "imgs/2.png", "label-missing"),
}
DECODE_FAILS = [k for k, v in TRAIN_CASES.items() if v[2] == "decode-fails"]
DECODES = [k for k, v in TRAIN_CASES.items() if v[2] == "decodes"]


@dataclass
class Corpus:
    root: Path
    image_root: Path
    outside_file: Path
    train: Path
    test: Path
    latin1: Path
    mixed: Path
    misnamed: Path
    no_label: Path
    empty: Path
    header_only: Path
    ragged: Path
    one_class: Path
    unclosed_quote: Path
    corrupt_parquet: Path
    broken_jsonl: Path
    unknown_test_labels: list[str] = field(default_factory=list)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width x height`` 1-bit pixels, with one tiny IDAT: a decompression bomb's
    header, a few hundred bytes on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def rng_bytes(n: int, seed: int = 1) -> bytes:
    return np.random.default_rng(seed).bytes(n)


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def _write_images(imgs: Path, outside: Path) -> None:
    imgs.mkdir(parents=True)
    outside.mkdir(parents=True)
    for i in range(N_CLEAN):
        Image.new("RGB", (16, 16), list(COLOURS.values())[i % 3]).save(imgs / f"{i}.png")
    Image.new("RGB", (16, 16), (255, 0, 255)).save(outside / "secret.png")
    rng = np.random.default_rng(0)
    (imgs / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + rng.bytes(300))
    full = _jpeg(Image.new("RGB", (64, 64), COLOURS["red"]))
    (imgs / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (imgs / "empty.jpg").write_bytes(b"")
    (imgs / "bomb.png").write_bytes(_png_header_only(30000, 30000))
    Image.new("L", (20000, 2), 90).save(imgs / "strip.png")
    Image.new("CMYK", (16, 16), (0, 200, 200, 0)).save(imgs / "cmyk.jpg")
    Image.fromarray(np.full((16, 16), 40000, dtype=np.uint16)).save(imgs / "gray16.png")
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 220, 30, 30] + [0] * 762)
    palette.save(imgs / "palette.png", transparency=0)
    Image.new("RGBA", (16, 16), (30, 30, 220, 128)).save(imgs / "alpha.png")
    Image.new("RGB", (16, 16), COLOURS["green"]).save(imgs / "win.png")


def _clean_rows(prefix: str, n: int = N_CLEAN) -> list[dict]:
    rows = []
    for i in range(n):
        colour = list(COLOURS)[i % 3]
        rows.append({"id": f"{prefix}{i}", "title": f"{colour} café shirt {i}", "description": f"a {colour} item",
                     "img": f"imgs/{i}.png", "cat": f"cat-{colour}"})
    return rows


def build_corpus(root: Path) -> Corpus:
    cat_dir = root / "catalogue"
    imgs, outside = cat_dir / "imgs", root / "outside"
    _write_images(imgs, outside)

    rows = _clean_rows("p")
    for case, (_, image, _) in TRAIN_CASES.items():
        colour = "red"
        row = {"id": case, "title": f"{colour} café shirt", "description": "", "img": image, "cat": f"cat-{colour}"}
        if image == "<ABS>":
            row["img"] = str(outside / "secret.png")
        if case in ("empty-text", "no-modality"):
            row["title"] = ""
        if case == "huge-text":
            row["description"] = ("red shirt " * (HUGE_TEXT_CHARS // 10 + 1))[:HUGE_TEXT_CHARS]
        if case == "no-label":
            row["cat"] = ""
        rows.append(row)
    rows.append({**rows[0], "title": "a second row with the id p0"})  # duplicate id
    train = pd.DataFrame(rows)
    train.to_csv(cat_dir / "train.csv", index=False, encoding="utf-8")

    test = pd.DataFrame(_clean_rows("t", 12) + [
        {"id": "u1", "title": "purple café shirt", "description": "", "img": "imgs/0.png", "cat": "cat-purple"},
        {"id": "u2", "title": "yellow café shirt", "description": "", "img": "imgs/1.png", "cat": "cat-yellow"},
        {"id": "t-corrupt", "title": "red café shirt", "description": "", "img": "imgs/corrupt.jpg",
         "cat": "cat-red"},
        {"id": "t-bomb", "title": "blue café shirt", "description": "", "img": "imgs/bomb.png", "cat": "cat-blue"},
    ])
    test.to_csv(cat_dir / "test.csv", index=False)

    clean = pd.DataFrame(_clean_rows("p"))
    clean.to_csv(cat_dir / "latin1.csv", index=False, encoding="latin-1")
    mixed = clean.to_csv(index=False).encode("utf-8").replace(b"green caf\xc3\xa9 shirt 2,", b"green caf\xe9 shirt 2,")
    (cat_dir / "mixed.csv").write_bytes(mixed)
    clean.rename(columns={"title": "Title"}).to_csv(cat_dir / "misnamed.csv", index=False)
    clean.drop(columns=["cat"]).to_csv(cat_dir / "no_label.csv", index=False)
    (cat_dir / "empty.csv").write_bytes(b"")
    clean.iloc[:0].to_csv(cat_dir / "header_only.csv", index=False)
    ragged = clean.to_csv(index=False).splitlines()
    ragged[3] += ",extra,fields"
    (cat_dir / "ragged.csv").write_text("\n".join(ragged) + "\n", encoding="utf-8")
    clean.assign(cat="cat-red").to_csv(cat_dir / "one_class.csv", index=False)
    unclosed = clean.to_csv(index=False).splitlines()
    unclosed[5] = unclosed[5].replace(",", ',"', 1)  # a quote opened on data row 4 and never closed
    (cat_dir / "unclosed_quote.csv").write_text("\n".join(unclosed) + "\n", encoding="utf-8")
    (cat_dir / "corrupt.parquet").write_bytes(b"PAR1" + rng_bytes(200) + b"PAR1")
    (cat_dir / "broken.jsonl").write_text('{"id": "a", "title": "red", "cat": "x"}\n{"id": "b", "title": \n',
                                          encoding="utf-8")

    return Corpus(root=root, image_root=cat_dir, outside_file=outside / "secret.png", train=cat_dir / "train.csv",
                  test=cat_dir / "test.csv", latin1=cat_dir / "latin1.csv", mixed=cat_dir / "mixed.csv",
                  misnamed=cat_dir / "misnamed.csv", no_label=cat_dir / "no_label.csv", empty=cat_dir / "empty.csv",
                  header_only=cat_dir / "header_only.csv", ragged=cat_dir / "ragged.csv",
                  one_class=cat_dir / "one_class.csv", unclosed_quote=cat_dir / "unclosed_quote.csv",
                  corrupt_parquet=cat_dir / "corrupt.parquet", broken_jsonl=cat_dir / "broken.jsonl",
                  unknown_test_labels=["cat-purple", "cat-yellow"])
