"""FeatureCache build: DataLoader workers, batched fp16 writes (same bytes as the per-row format), problems."""

import io
import json
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from fluid.encoders import FeatureCache, build_image_encoder, build_text_encoder
from fluid.encoders.cache import PreparedBatches, real_tokens_fp16

TEXTS = ["Červené šaty s krajkou", None, "Κόκκινο φόρεμα", "Червена рокля с дантела и дълги ръкави", "a", "",
         "Red lace dress with long sleeves", "Vestido rojo", "x " * 40, "Punane kleit", "   ", "Piros ruha"]
IDS = [f"item-{i}" for i in range(len(TEXTS))]
FILES = ("tokens.f16", "offsets.npy", "present.npy")


@pytest.fixture(scope="module")
def frozen_text(corpus):
    return build_text_encoder("tiny", corpus=corpus, freeze=True, seed=3)


@pytest.fixture(scope="module")
def frozen_image():
    return build_image_encoder("tiny", freeze=True, seed=1)


class ImagesWithProblems:
    """A ProblemSequence: image i is None (with a reason) where ``reasons[i]`` is set."""

    def __init__(self, images, reasons):
        self.images, self.reasons = images, reasons

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.fetch(i)[0]

    def fetch(self, i):
        return (None, self.reasons[i]) if self.reasons[i] else (self.images[i], None)


def _shard_dir(root):
    [shard] = list(root.rglob("shard-*"))
    return shard


def reference_build(encoder, items, batch_size):
    """The per-row write loop that produced every existing cache (fluid.feature-cache/1 before batched writes)."""
    offsets, present, chunks = [0], [], []
    with torch.inference_mode():
        for b in range(0, len(items), batch_size):
            chunk = items[b:b + batch_size]
            out = encoder(encoder.prepare(chunk))
            toks = out.tokens.float().clamp(-65504.0, 65504.0).cpu()
            mask = out.mask.cpu()
            for r in range(len(chunk)):
                real = toks[r][mask[r]].numpy().astype(np.float16)
                chunks.append(real.tobytes())
                offsets.append(offsets[-1] + real.shape[0])
                present.append(bool(mask[r].any()))
    return b"".join(chunks), np.asarray(offsets, dtype=np.int64), np.asarray(present, dtype=bool)


def reference_rows(tokens, mask):
    toks = tokens.float().clamp(-65504.0, 65504.0).cpu()
    rows = [toks[r][mask[r]].numpy().astype(np.float16) for r in range(tokens.shape[0])]
    return b"".join(r.tobytes() for r in rows), [r.shape[0] for r in rows]


def test_batched_fp16_rows_equal_the_per_row_reference():
    torch.manual_seed(0)
    tokens = torch.randn(4, 7, 5) * torch.tensor([1.0, 1e-6, 3e4, 1e5, 1e-9])  # normal, subnormal, near/over max
    tokens[0, 0, 0] = 65519.0  # rounds up to inf in fp16 unless clamped
    tokens[1, 2, 3] = -1e9
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0],
                         [0, 0, 0, 0, 0, 0, 0],  # a missing item
                         [1, 0, 1, 1, 0, 1, 0],  # not a prefix: order must still be row-major
                         [1, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        t = tokens.to(dtype)
        real, counts = real_tokens_fp16(t, mask)
        want, want_counts = reference_rows(t, mask)
        assert real.dtype == np.float16 and real.flags.c_contiguous and real.shape == (int(mask.sum()), 5)
        assert real.tobytes() == want and counts.tolist() == want_counts == [3, 0, 4, 7]
        assert np.isfinite(real.astype(np.float32)).all()


def test_build_writes_the_same_bytes_as_the_per_row_loop(tmp_path, frozen_text):
    feats = FeatureCache(tmp_path).build(frozen_text, IDS, TEXTS, batch_size=5, progress=False)
    shard = _shard_dir(tmp_path)
    # texts are encoded (and stored) longest first, so each batch pads little; lookups keep the asked order
    lengths = frozen_text.lengths(TEXTS)
    order = sorted(range(len(TEXTS)), key=lambda k: -lengths[k])
    assert order != list(range(len(TEXTS)))
    assert json.loads((shard / "index.json").read_text())["ids"] == [IDS[k] for k in order]
    assert feats.ids == [str(i) for i in IDS]
    tokens, offsets, present = reference_build(frozen_text, [TEXTS[k] for k in order], batch_size=5)
    assert (shard / "tokens.f16").read_bytes() == tokens
    np.testing.assert_array_equal(np.load(shard / "offsets.npy"), offsets)
    np.testing.assert_array_equal(np.load(shard / "present.npy"), present)
    assert np.load(shard / "offsets.npy").dtype == np.int64 and np.load(shard / "present.npy").dtype == bool
    index = json.loads((shard / "index.json").read_text())
    assert index["n_tokens"] == offsets[-1] == len(tokens) // (2 * frozen_text.dim)
    assert "problems" not in index and feats.problems == {}
    assert present.tolist() == [[True, False, True, True, True, False, True, True, True, True, False, True][k]
                                for k in order]


@pytest.mark.parametrize("kind", ["text", "image"])
def test_workers_write_byte_identical_shards(tmp_path, frozen_text, frozen_image, kind):
    if kind == "text":
        encoder, items = frozen_text, TEXTS
    else:
        colours = [(200, 30, 30), (10, 120, 240), (30, 200, 30)]
        images = [Image.new("RGB", (20 + 3 * i, 24), colours[i % 3]) for i in range(len(IDS))]
        reasons = [None] * len(IDS)
        reasons[4] = "image: unreadable file /x/4.jpg (cannot identify image file)"
        images[7] = None  # no image, no problem
        encoder, items = frozen_image, ImagesWithProblems(images, reasons)
    built = {}
    for workers in (0, 2):
        root = tmp_path / f"w{workers}"
        built[workers] = FeatureCache(root).build(encoder, IDS, items, batch_size=5, progress=False,
                                                  workers=workers)
        shard = _shard_dir(root)
        built[f"files{workers}"] = [(shard / name).read_bytes() for name in FILES]
    assert built["files0"] == built["files2"]
    for i in range(len(IDS)):
        assert torch.equal(built[0][i][0], built[2][i][0])
    if kind == "image":
        expected = {4: "image: unreadable file /x/4.jpg (cannot identify image file)"}
        assert built[0].problems == built[2].problems == expected  # travelled back from the workers
        present = np.load(_shard_dir(tmp_path / "w2") / "present.npy")
        assert not present[4] and not present[7] and present.sum() == len(IDS) - 2


class ReportsItsProcess:
    """Every item "has a problem": the id of the process that loaded it."""

    def __init__(self, texts):
        self.texts = texts

    def __len__(self):
        return len(self.texts)

    def __getitem__(self, i):
        return self.texts[i]

    def fetch(self, i):
        return self.texts[i], f"pid {os.getpid()}"


def test_workers_load_the_batches_in_other_processes(tmp_path, frozen_text):
    pids = {}
    for workers in (0, 2):
        feats = FeatureCache(tmp_path / f"w{workers}").build(frozen_text, IDS, ReportsItsProcess(TEXTS), batch_size=5,
                                                             progress=False, workers=workers)
        pids[workers] = {int(reason.split()[1]) for reason in feats.problems.values()}
        assert len(feats.problems) == len(IDS)
    assert pids[0] == {os.getpid()}
    assert len(pids[2]) == 2 and os.getpid() not in pids[2]  # 3 batches over 2 worker processes


def test_problems_survive_a_cache_hit_and_follow_the_requested_order(tmp_path, frozen_image, images):
    reasons = [None, "image: missing file /x/1.jpg (no such file)", None]
    cache = FeatureCache(tmp_path)
    first = cache.build(frozen_image, ["a", "b", "c"], ImagesWithProblems(images, reasons), progress=False)
    assert first.problems == {1: reasons[1]} and first[1][0].shape[0] == 0
    index = json.loads((_shard_dir(tmp_path) / "index.json").read_text())
    assert index["problems"] == {"b": reasons[1]}
    again = [images[2], images[1], images[0], images[1]]
    hit = cache.build(frozen_image, ["c", "b", "a", "b"], ImagesWithProblems(again, [None] * 4), progress=False)
    assert len(list(tmp_path.rglob("shard-*"))) == 1  # a hit: nothing encoded again
    assert hit.problems == {1: reasons[1], 3: reasons[1]}
    assert cache.lookup(frozen_image, ["b"]).problems == {0: reasons[1]}
    assert pickle.loads(pickle.dumps(hit)).problems == hit.problems


def test_shards_written_before_problems_existed_still_load(tmp_path, frozen_image, images):
    cache = FeatureCache(tmp_path)
    cache.build(frozen_image, ["a", "b"], ImagesWithProblems(images[:2], [None, "image: bad"]), progress=False)
    index_file = _shard_dir(tmp_path) / "index.json"
    index = json.loads(index_file.read_text())
    del index["problems"]
    index_file.write_text(json.dumps(index))
    old = cache.lookup(frozen_image, ["a", "b"])
    assert old is not None and old.problems == {} and old[0][0].shape[0] > 0 and old[1][0].shape[0] == 0


def test_workers_get_the_preprocessor_never_the_encoder(frozen_text):
    class NoModules(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, (torch.nn.Module, torch.nn.Parameter)):
                raise AssertionError(f"{type(obj).__name__} would be sent to a DataLoader worker")
            return NotImplemented

    dataset = PreparedBatches(TEXTS, frozen_text.preprocessor, batch_size=5)
    NoModules(io.BytesIO()).dump(dataset)
    assert len(dataset) == 3
    prepared, problems = dataset[2]
    assert prepared["input_ids"].shape[0] == 2 and problems == {}
    with pytest.raises(IndexError):
        dataset[3]
    with pytest.raises(AssertionError, match="would be sent"):  # the check itself catches a module
        NoModules(io.BytesIO()).dump(frozen_text)


def test_negative_workers_refused(tmp_path, frozen_text):
    with pytest.raises(ValueError, match="workers must be >= 0"):
        FeatureCache(tmp_path).build(frozen_text, IDS, TEXTS, progress=False, workers=-1)
