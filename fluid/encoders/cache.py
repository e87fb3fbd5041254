"""On-disk feature cache for frozen encoders: compute once, read as fp16 memmaps every epoch.

Layout (one directory per encoder fingerprint, one immutable shard per build that had something to compute)::

    <root>/<fingerprint[:24]>/fingerprint.json       # the full fingerprint (source, config, preprocessing, weights)
    <root>/<fingerprint[:24]>/shard-<ids-hash>/
        index.json     # ids, dim, n_tokens, dtype, fingerprint, problems (written last inside the temp dir)
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
  disk space, it writes nothing and returns None. For texts (encoders with ``lengths``, items not a
  :class:`ProblemSequence`) the estimate uses the token count of every item to encode, from the one
  tokenisation pass that also orders them longest first, so it is exactly the bytes of ``tokens.f16``,
  ``offsets.npy`` and ``present.npy`` without the ``.npy`` headers; otherwise (images) ``estimate_tokens`` on a
  sample of up to ``ESTIMATE_SAMPLE`` items.
* Shards are written into ``.tmp-*`` and renamed into place: a crash never leaves a half shard that is read.
* Why an item is missing: an ``items`` sequence may implement ``fetch(i) -> (item, problem)`` (see
  :class:`ProblemSequence`); each non-empty problem (e.g. ``"image: unreadable file /x/1.jpg (cannot identify
  image file ...)"``) is stored in ``index.json`` as ``"problems": {"<id>": "<reason>"}`` (the key is absent
  when there is none; shards written before it existed read as having none) and is reported by
  :attr:`CachedFeatures.problems` on every later lookup, so a cache hit still says which items were unreadable.
* Building: loading + preprocessing (``items[a:b]`` then the encoder's picklable ``preprocessor``) runs in a
  :class:`torch.utils.data.DataLoader` over :class:`PreparedBatches` (``workers`` processes, or the calling
  process with ``workers=0``); the encoder itself stays in the calling process. Per batch the tokens are
  clamped to the fp16 range and converted to fp16 on the encoder's device, the real tokens of the whole batch
  are selected with the mask at once and written with one ``write``.
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from fluid.atomic import write_json_atomic
from fluid.progress import progress_bar

from .base import Encoder, EncoderOutput, _json_default

logger = logging.getLogger(__name__)

#: Shards of another format are rebuilt, not read. 2: images with a side over 1,024 px are decoded downscaled
#: (fluid.data.images.MAX_DECODED_SIDE), so features cached from full-size decodes are not reused.
CACHE_FORMAT = "fluid.feature-cache/2"
DEFAULT_BUDGET_BYTES = 20 * 1024**3
ESTIMATE_SAMPLE = 2000  # items read to estimate a build's size when token counts are not known per item
_FP16_MAX = 65504.0


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


@runtime_checkable
class ProblemSequence(Protocol):
    """An ``items`` sequence that can say why an item is missing (e.g. images decoded lazily from disk).

    ``fetch(i) -> (item, problem)``: ``item`` is what ``items[i]`` returns (None for a missing item) and
    ``problem`` the reason it is missing, in the form the dataset reports (``"image: <BadImageError message>"``),
    or None when nothing went wrong. ``estimate_view()`` (optional) returns a sequence of the same length that is
    cheap to read and good enough for :meth:`Encoder.estimate_tokens` (e.g. undecoded image cells, None where
    there is none), so sizing a build does not decode every sampled image twice.
    """

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Any: ...

    def fetch(self, i: int) -> tuple[Any, str | None]: ...


def fetch_item(items: Sequence[Any], i: int) -> tuple[Any, str | None]:
    """``(items[i], why it is missing or None)``; plain sequences never report a problem."""
    fetch = getattr(items, "fetch", None)  # duck-typed: cheaper per item than isinstance(items, ProblemSequence)
    if fetch is None:
        return items[i], None
    return fetch(i)


def _estimate_view(items: Sequence[Any]) -> Sequence[Any]:
    view = getattr(items, "estimate_view", None)
    return items if view is None else view()


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

    def fetch(self, i: int) -> tuple[Any, str | None]:
        return fetch_item(self.items, self.positions[i])

    def estimate_view(self) -> Sequence[Any]:
        return _Subset(_estimate_view(self.items), self.positions)


def _longest_first(encoder: Encoder, items: Sequence[Any], todo: list[int]) -> tuple[list[int], list[int] | None]:
    """``todo`` (positions in ``items``) ordered by token count, longest first (stable), and the token counts in
    that order, for encoders whose items vary in length (texts): each batch then pads to a length close to all of
    its items', instead of to the longest of a random draw (catalogue descriptions run from a few words to
    hundreds). A shard may hold its items in any order (``index.json`` lists the ids), so the order costs nothing
    but one tokenisation pass, whose counts (``encoder.lengths``: real tokens per item, 0 when missing) also size
    the build. Encoders without ``lengths`` (images: fixed token count) keep ``todo`` as it is, counts None."""
    lengths = getattr(encoder, "lengths", None)
    if lengths is None or isinstance(items, ProblemSequence):
        return todo, None
    counts = lengths([items[k] for k in todo])
    order = sorted(range(len(todo)), key=lambda j: -counts[j])
    return [todo[j] for j in order], [counts[j] for j in order]


class PreparedBatches(Dataset):
    """Map-style dataset whose item ``b`` is batch ``b`` of ``items``, ready for the encoder.

    ``dataset[b] -> (prepared, problems)``: ``prepared = preprocessor(items[b * batch_size:(b + 1) * batch_size])``
    (the dict of CPU tensors :meth:`Encoder.prepare` returns, e.g. ``input_ids`` B x L or ``pixel_values``
    B x C x H x W, plus ``present`` B) and ``problems = {position in items: reason}`` for the batch's items that
    ``items`` reports as unreadable (see :class:`ProblemSequence`).

    It holds the items and the encoder's picklable ``preprocessor`` (tokenizer / image processor), never the
    encoder's weights: DataLoader workers, forked or spawned, get no copy of the model.
    """

    def __init__(self, items: Sequence[Any], preprocessor: Callable[[list[Any]], dict[str, Tensor]],
                 batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.items = items
        self.preprocessor = preprocessor
        self.batch_size = int(batch_size)

    def __len__(self) -> int:
        return -(-len(self.items) // self.batch_size)

    def __getitem__(self, b: int) -> tuple[dict[str, Tensor], dict[int, str]]:
        if not 0 <= b < len(self):
            raise IndexError(f"batch {b} out of range for {len(self)} batches")
        start = b * self.batch_size
        chunk: list[Any] = []
        problems: dict[int, str] = {}
        for i in range(start, min(start + self.batch_size, len(self.items))):
            item, problem = fetch_item(self.items, i)
            chunk.append(item)
            if problem:
                problems[i] = problem
        return self.preprocessor(chunk), problems


def _as_is(batch: Any) -> Any:
    return batch


def real_tokens_fp16(tokens: Tensor, mask: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The bytes one batch adds to ``tokens.f16``, computed on the tokens' device.

    Args:
        tokens: B x L x D float (any dtype and device).
        mask: B x L bool, True for real tokens.

    Returns:
        ``(real, counts)``: ``real`` N x D float16 (C order), the real tokens of item 0, then of item 1, ...
        (``tokens[mask]`` keeps row-major order), clamped to the fp16 range; ``counts`` B int64, real tokens per
        item (N = counts.sum()).
    """
    mask = mask.to(device=tokens.device, dtype=torch.bool)
    real = tokens[mask].float().clamp_(-_FP16_MAX, _FP16_MAX).to(torch.float16)
    counts = mask.sum(1)
    return real.cpu().numpy(), counts.cpu().numpy().astype(np.int64)


class _Shard:
    """One immutable shard; memmaps are opened lazily and dropped when pickled (DataLoader workers)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.index = json.loads((self.path / "index.json").read_text(encoding="utf-8"))
        self.ids: list[str] = list(self.index["ids"])
        self.dim = int(self.index["dim"])
        self.n_tokens = int(self.index["n_tokens"])
        self.problems: dict[str, str] = {str(k): str(v) for k, v in dict(self.index.get("problems") or {}).items()}
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
    ``features.collate(indices) -> EncoderOutput`` pads a batch to its longest item;
    ``features.problems -> {position: reason}`` says why items are missing (unreadable images). Picklable.
    """

    def __init__(self, shards: list[_Shard], rows: list[tuple[int, int]], ids: list[str], dim: int, fingerprint: str):
        self.shards = shards
        self.rows = rows
        self.ids = ids
        self.dim = dim
        self.fingerprint = fingerprint
        self._pos = {i: k for k, i in enumerate(ids)}
        self._problems: dict[int, str] | None = None

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

    @property
    def problems(self) -> dict[int, str]:
        """Why items are missing: ``{position in this object's order: reason}``, e.g.
        ``{3: "image: unreadable file /x/1.jpg (cannot identify image file ...)"}``; only items whose input
        could not be read (a missing text or an empty image cell is not a problem). Read from the shards'
        ``index.json``, so a cache hit reports the problems found when the shard was built."""
        if self._problems is None:
            self._problems = {}
            for k, (s, _) in enumerate(self.rows):
                reason = self.shards[s].problems.get(self.ids[k])
                if reason:
                    self._problems[k] = reason
        return dict(self._problems)


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
        workers: int = 0,
    ) -> CachedFeatures | None:
        """Return cached features for ``ids``, computing (under ``torch.inference_mode``) the ones missing.

        Args:
            encoder: a frozen encoder (``encoder.frozen``); trainable encoders cannot be cached.
            ids: item keys (converted to str); items with equal keys are encoded once.
            items: the raw inputs (texts or PIL images / None), aligned with ``ids``; any sequence, read one
                batch at a time (so a lazily decoding sequence keeps memory flat). A :class:`ProblemSequence`
                also says why an item is missing; the reasons are stored with the shard.
            batch_size: encoder batch size.
            progress: print the size estimate and a progress bar to stderr.
            workers: DataLoader worker processes that read and preprocess batches (``items[a:b]`` and the
                encoder's ``preprocessor``) while the encoder runs in this process; 0 does it in this process.
                The workers get the items and the preprocessor, never the encoder. The bytes written do not
                depend on ``workers``.

        Returns:
            CachedFeatures in the order of ``ids`` (``.problems``: why items are missing), or None when the
            estimated size exceeds the budget or the free disk space (nothing is written; a message says why).
        """
        if not encoder.frozen:
            raise ValueError("only frozen encoders can be cached (this one has trainable parameters)")
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        ids = [str(i) for i in ids]
        if not isinstance(items, (Sequence, ProblemSequence)):
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
            todo, counts = _longest_first(encoder, items, todo)
            todo_items = _Subset(items, todo)
            if counts is not None:  # every item's token count: the estimate is exact
                avg = float(sum(counts)) / len(counts)
            else:
                step = max(1, len(todo) // ESTIMATE_SAMPLE)
                avg = encoder.estimate_tokens(_estimate_view(todo_items)[::step])
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
            self._write_shard(encoder, fp, [ids[k] for k in todo], todo_items, batch_size, progress, workers)
        out = self._assemble(fp, ids, encoder.dim)
        if out is None:  # pragma: no cover - a concurrent clear()
            raise RuntimeError("feature cache: shards disappeared while building")
        return out

    def _write_shard(self, encoder: Encoder, fp: str, ids: list[str], items: Sequence[Any], batch_size: int,
                     progress: bool, workers: int = 0) -> Path:
        fp_dir = self._fp_dir(fp)
        fp_dir.mkdir(parents=True, exist_ok=True)
        fp_file = fp_dir / "fingerprint.json"
        if not fp_file.exists():
            write_json_atomic(fp_file, {"fingerprint": fp, "spec": encoder.fingerprint()},
                              indent=1, sort_keys=True, default=_json_default)
        tmp = fp_dir / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            dim = encoder.dim
            device = next(encoder.parameters()).device
            pin = device.type == "cuda"
            preprocessor = getattr(encoder, "preprocessor", None)
            if preprocessor is None:
                if workers:
                    raise ValueError(f"{type(encoder).__name__} has no picklable `preprocessor` for DataLoader "
                                     "workers; build its cache with workers=0")
                preprocessor = encoder.prepare
            batches = PreparedBatches(items, preprocessor, batch_size)
            loader = DataLoader(batches, batch_size=None, shuffle=False, num_workers=workers, pin_memory=pin,
                                collate_fn=_as_is)
            counts: list[np.ndarray] = []
            problems: dict[str, str] = {}
            was_training = encoder.training
            encoder.eval()
            try:
                with progress_bar(f"caching {encoder.kind} features", len(batches), enabled=progress,
                                  transient=True) as advance, \
                        open(tmp / "tokens.f16", "wb") as f, torch.inference_mode():
                    for prepared, batch_problems in loader:
                        prepared = {k: v.to(device, non_blocking=pin) for k, v in prepared.items()}
                        out = encoder(prepared)
                        real, batch_counts = real_tokens_fp16(out.tokens, out.mask)
                        f.write(np.ascontiguousarray(real))  # one write per batch; no copy (already C order)
                        counts.append(batch_counts)
                        problems.update({ids[i]: str(reason) for i, reason in batch_problems.items()})
                        advance(1)
            finally:
                encoder.train(was_training)
            per_item = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)
            if len(per_item) != len(ids):  # pragma: no cover - a preprocessor that drops items
                raise RuntimeError(f"feature cache: encoded {len(per_item)} items, expected {len(ids)}")
            offsets = np.concatenate([[0], np.cumsum(per_item)]).astype(np.int64)
            present = per_item > 0
            np.save(tmp / "offsets.npy", offsets, allow_pickle=False)
            np.save(tmp / "present.npy", present, allow_pickle=False)
            index = {
                "format": CACHE_FORMAT,
                "fingerprint": fp,
                "kind": encoder.kind,
                "source": encoder.source,
                "dim": dim,
                "dtype": "float16",
                "n_items": len(ids),
                "n_tokens": int(offsets[-1]),
                "layers": "last",
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "ids": ids,
            }
            if problems:
                index["problems"] = problems
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
