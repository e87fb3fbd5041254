"""On-disk feature cache for frozen encoders: compute once, read as fp16 memmaps every epoch.

Layout (one directory per encoder fingerprint, one immutable shard per build that had something to compute)::

    <root>/<fingerprint[:24]>/fingerprint.json       # the full fingerprint (source, config, preprocessing, weights)
    <root>/<fingerprint[:24]>/shard-<ids-hash>/
        index.json     # ids, dim, n_tokens, dtype, fingerprint (written last inside the temp dir)
        tokens.f16     # raw float16 memmap, n_tokens x dim: the real (mask True) tokens of every item, concatenated
        offsets.npy    # int64, n_items + 1: item i is tokens[offsets[i]:offsets[i+1]]
        present.npy    # bool, n_items

* Only the last layer is stored (``EncoderOutput.tokens``), and only the real tokens: padding is never
  written; :meth:`CachedFeatures.collate` pads again, dynamically, to the longest item of the batch. A missing
  item stores 0 tokens.
* Key = encoder fingerprint + item id. The fingerprint hashes the source, the model config, the tokenizer /
  image processor settings (incl. max_length) and a digest of the weights. A changed fingerprint maps to a new
  directory, so stale features are never read (old directories stay until :meth:`FeatureCache.clear`).
* A build computes only the ids no shard of this fingerprint holds yet. It first logs (and, with
  ``progress``, prints) :meth:`FeatureCache.estimate_bytes`; when that exceeds ``budget_bytes`` or the free
  disk space, it writes nothing and returns None.
* Shards are written into ``.tmp-*`` and renamed into place: a crash never leaves a half shard that is read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fluid._io import write_json_atomic

from .base import Encoder, EncoderOutput, _json_default

logger = logging.getLogger(__name__)

CACHE_FORMAT = "fluid.feature-cache/1"
DEFAULT_BUDGET_BYTES = 20 * 1024**3
ESTIMATE_SAMPLE = 2000  # items read to estimate a build's size
_FP16_MAX = 65504.0


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


class _Subset(Sequence):
    """``items[positions[i]]`` without copying: ``items`` may decode lazily (e.g. images read from disk), so
    only the batch being encoded is ever in memory."""

    def __init__(self, items: Sequence[Any], positions: list[int]) -> None:
        self.items = items
        self.positions = positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.items[p] for p in self.positions[i]]
        return self.items[self.positions[i]]


class _Shard:
    """One immutable shard; memmaps are opened lazily and dropped when pickled (DataLoader workers)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.index = json.loads((self.path / "index.json").read_text(encoding="utf-8"))
        self.ids: list[str] = list(self.index["ids"])
        self.dim = int(self.index["dim"])
        self.n_tokens = int(self.index["n_tokens"])
        self._tokens: np.ndarray | None = None
        self._offsets: np.ndarray | None = None
        self._present: np.ndarray | None = None

    def _open(self) -> None:
        if self._offsets is None:
            self._offsets = np.load(self.path / "offsets.npy", allow_pickle=False)
            self._present = np.load(self.path / "present.npy", allow_pickle=False)
            if self.n_tokens:
                self._tokens = np.memmap(
                    self.path / "tokens.f16", dtype=np.float16, mode="r", shape=(self.n_tokens, self.dim)
                )
            else:
                self._tokens = np.zeros((0, self.dim), dtype=np.float16)

    def row(self, r: int) -> tuple[np.ndarray, bool]:
        self._open()
        a, b = int(self._offsets[r]), int(self._offsets[r + 1])
        return np.array(self._tokens[a:b]), bool(self._present[r])

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_tokens"] = state["_offsets"] = state["_present"] = None
        return state

    @property
    def nbytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())


class CachedFeatures:
    """Cached last-layer features for a list of ids, in the order they were requested.

    ``features[i] -> (tokens L x D float16 tensor, mask L bool tensor)`` (L = 0 for a missing item);
    ``features.collate(indices) -> EncoderOutput`` pads a batch to its longest item. Picklable.
    """

    def __init__(self, shards: list[_Shard], rows: list[tuple[int, int]], ids: list[str], dim: int, fingerprint: str):
        self.shards = shards
        self.rows = rows
        self.ids = ids
        self.dim = dim
        self.fingerprint = fingerprint
        self._pos = {i: k for k, i in enumerate(ids)}

    def __len__(self) -> int:
        return len(self.rows)

    def index(self, item_id: Any) -> int:
        """Position of ``item_id`` in this object's order."""
        return self._pos[str(item_id)]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        s, r = self.rows[i]
        arr, present = self.shards[s].row(r)
        tokens = torch.from_numpy(arr)
        mask = torch.full((tokens.shape[0],), bool(present), dtype=torch.bool)
        return tokens, mask

    def collate(self, indices: Sequence[int], dtype: torch.dtype = torch.float32) -> EncoderOutput:
        """Batch of cached features, padded (with 0 and mask False) to the longest item; at least 1 position."""
        items = [self[int(i)] for i in indices]
        length = max([1] + [t.shape[0] for t, _ in items])
        tokens = torch.zeros((len(items), length, self.dim), dtype=dtype)
        mask = torch.zeros((len(items), length), dtype=torch.bool)
        for k, (t, m) in enumerate(items):
            n = t.shape[0]
            if n:
                tokens[k, :n] = t.to(dtype)
                mask[k, :n] = m
        return EncoderOutput(tokens=tokens, mask=mask, layers=None)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.shards)


class FeatureCache:
    """Disk cache of frozen-encoder outputs under ``root`` (see the module docstring for the layout).

    Args:
        root: cache directory (created on first write).
        budget_bytes: largest size one build may write; bigger builds are skipped (``build`` returns None).
    """

    def __init__(self, root: str | os.PathLike, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self.root = Path(root)
        self.budget_bytes = int(budget_bytes)

    # ------------------------------------------------------------------ sizes
    @staticmethod
    def estimate_bytes(n_items: int, avg_tokens: float, dim: int) -> int:
        """Bytes a build writes: fp16 tokens plus 9 bytes of offsets/presence per item."""
        return int(round(n_items * avg_tokens * dim * 2)) + 9 * int(n_items) + 8

    def fingerprint(self, encoder: Encoder) -> str:
        return encoder.fingerprint_hash()

    def _fp_dir(self, fp: str) -> Path:
        return self.root / fp[:24]

    def _shards(self, fp: str) -> list[_Shard]:
        d = self._fp_dir(fp)
        if not d.is_dir():
            return []
        out = []
        for p in sorted(d.glob("shard-*")):
            if not (p / "index.json").is_file():
                continue
            try:
                shard = _Shard(p)
            except (OSError, ValueError, KeyError):  # unreadable index: ignore the shard
                logger.warning("ignoring unreadable cache shard %s", p)
                continue
            if shard.index.get("fingerprint") == fp and shard.index.get("format") == CACHE_FORMAT:
                out.append(shard)
        return out

    def lookup(self, encoder: Encoder, ids: Sequence[Any]) -> CachedFeatures | None:
        """Cached features for all ``ids`` if every one is cached under the encoder's fingerprint, else None."""
        fp = self.fingerprint(encoder)
        return self._assemble(fp, [str(i) for i in ids], encoder.dim)

    def _assemble(self, fp: str, ids: list[str], dim: int) -> CachedFeatures | None:
        shards = self._shards(fp)
        where: dict[str, tuple[int, int]] = {}
        for s_idx, shard in enumerate(shards):
            for r, i in enumerate(shard.ids):
                where.setdefault(i, (s_idx, r))
        if any(i not in where for i in ids):
            return None
        rows = [where[i] for i in ids]
        used = sorted({s for s, _ in rows})
        remap = {s: k for k, s in enumerate(used)}
        return CachedFeatures([shards[s] for s in used], [(remap[s], r) for s, r in rows], ids, dim, fp)

    # ------------------------------------------------------------------ build
    def build(
        self,
        encoder: Encoder,
        ids: Sequence[Any],
        items: Sequence[Any],
        batch_size: int = 32,
        progress: bool = True,
    ) -> CachedFeatures | None:
        """Return cached features for ``ids``, computing (under ``torch.inference_mode``) the ones missing.

        Args:
            encoder: a frozen encoder (``encoder.frozen``); trainable encoders cannot be cached.
            ids: item keys (converted to str); items with equal keys are encoded once.
            items: the raw inputs (texts or PIL images / None), aligned with ``ids``; any sequence, read one
                batch at a time (so a lazily decoding sequence keeps memory flat).
            batch_size: encoder batch size.
            progress: print the size estimate and a progress bar to stderr.

        Returns:
            CachedFeatures in the order of ``ids``, or None when the estimated size exceeds the budget or the
            free disk space (nothing is written; a message says why).
        """
        if not encoder.frozen:
            raise ValueError("only frozen encoders can be cached (this one has trainable parameters)")
        ids = [str(i) for i in ids]
        if not isinstance(items, Sequence):
            items = list(items)
        if len(ids) != len(items):
            raise ValueError(f"{len(ids)} ids but {len(items)} items")
        fp = self.fingerprint(encoder)
        known = {i for s in self._shards(fp) for i in s.ids}
        todo: list[int] = []
        seen: set[str] = set()
        for k, i in enumerate(ids):
            if i not in known and i not in seen:
                todo.append(k)
                seen.add(i)
        if todo:
            todo_items = _Subset(items, todo)
            step = max(1, len(todo) // ESTIMATE_SAMPLE)
            avg = encoder.estimate_tokens(todo_items[::step])
            est = self.estimate_bytes(len(todo), avg, encoder.dim)
            msg = (
                f"feature cache: {len(todo)} of {len(ids)} items to encode with {encoder.source!r} "
                f"(~{avg:.1f} tokens x {encoder.dim} dims, fp16) -> estimated {_human(est)} in {self.root}"
            )
            logger.info(msg)
            if progress:
                print(msg, file=sys.stderr)
            self.root.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.root).free
            if est > self.budget_bytes or est > free:
                limit = "budget" if est > self.budget_bytes else "free disk space"
                skip = (
                    f"feature cache: skipped; the estimate {_human(est)} exceeds the {limit} "
                    f"(budget {_human(self.budget_bytes)}, free {_human(free)}). Features will be computed on "
                    f"the fly; raise budget_bytes or use a smaller encoder/max_length to cache them."
                )
                logger.warning(skip)
                print(skip, file=sys.stderr)
                return None
            self._write_shard(encoder, fp, [ids[k] for k in todo], todo_items, batch_size, progress)
        out = self._assemble(fp, ids, encoder.dim)
        if out is None:  # pragma: no cover - a concurrent clear()
            raise RuntimeError("feature cache: shards disappeared while building")
        return out

    def _write_shard(
        self, encoder: Encoder, fp: str, ids: list[str], items: list[Any], batch_size: int, progress: bool
    ) -> Path:
        fp_dir = self._fp_dir(fp)
        fp_dir.mkdir(parents=True, exist_ok=True)
        fp_file = fp_dir / "fingerprint.json"
        if not fp_file.exists():
            write_json_atomic(fp_file, {"fingerprint": fp, "spec": encoder.fingerprint()},
                              indent=1, sort_keys=True, default=_json_default)
        tmp = fp_dir / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            offsets = [0]
            present: list[bool] = []
            dim = encoder.dim
            n_batches = -(-len(items) // batch_size)
            bar = None
            if progress:
                try:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=n_batches, desc=f"caching {encoder.kind} features", unit="batch", file=sys.stderr)
                except ImportError:  # pragma: no cover
                    bar = None
            was_training = encoder.training
            encoder.eval()
            try:
                with open(tmp / "tokens.f16", "wb") as f, torch.inference_mode():
                    for b in range(0, len(items), batch_size):
                        chunk = items[b:b + batch_size]
                        out = encoder(encoder.prepare(chunk))
                        toks = out.tokens.float().clamp(-_FP16_MAX, _FP16_MAX).cpu()
                        mask = out.mask.cpu()
                        for r in range(len(chunk)):
                            real = toks[r][mask[r]].numpy().astype(np.float16)
                            f.write(real.tobytes())
                            offsets.append(offsets[-1] + real.shape[0])
                            present.append(bool(mask[r].any()))
                        if bar is not None:
                            bar.update(1)
            finally:
                encoder.train(was_training)
                if bar is not None:
                    bar.close()
            np.save(tmp / "offsets.npy", np.asarray(offsets, dtype=np.int64), allow_pickle=False)
            np.save(tmp / "present.npy", np.asarray(present, dtype=bool), allow_pickle=False)
            index = {
                "format": CACHE_FORMAT,
                "fingerprint": fp,
                "kind": encoder.kind,
                "source": encoder.source,
                "dim": dim,
                "dtype": "float16",
                "n_items": len(ids),
                "n_tokens": offsets[-1],
                "layers": "last",
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "ids": ids,
            }
            (tmp / "index.json").write_text(json.dumps(index), encoding="utf-8")
            name = "shard-" + hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()[:16]
            final = fp_dir / name
            try:
                os.rename(tmp, final)
            except OSError:
                if (final / "index.json").is_file():  # same ids written concurrently: keep theirs
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    raise
            return final
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    # ------------------------------------------------------------------ housekeeping
    def entries(self) -> list[dict[str, Any]]:
        """One dict per fingerprint directory: fingerprint, source, kind, items, bytes."""
        out = []
        if not self.root.is_dir():
            return out
        for d in sorted(p for p in self.root.iterdir() if p.is_dir()):
            shards = [s for s in (self._shards_any(d)) if s is not None]
            out.append({
                "dir": str(d),
                "fingerprint": shards[0].index["fingerprint"] if shards else None,
                "source": shards[0].index.get("source") if shards else None,
                "kind": shards[0].index.get("kind") if shards else None,
                "items": sum(len(s.ids) for s in shards),
                "bytes": sum(f.stat().st_size for f in d.rglob("*") if f.is_file()),
            })
        return out

    @staticmethod
    def _shards_any(d: Path) -> list[_Shard]:
        out = []
        for p in sorted(d.glob("shard-*")):
            try:
                out.append(_Shard(p))
            except (OSError, ValueError, KeyError):
                continue
        return out

    def clear(self, fingerprint: str | None = None) -> None:
        """Delete the cache of one fingerprint (full hash or its prefix), or everything under ``root``."""
        if fingerprint is None:
            if self.root.is_dir():
                shutil.rmtree(self.root)
            return
        d = self._fp_dir(fingerprint)
        if d.is_dir():
            shutil.rmtree(d)
