import random

from fluid.encoders import LengthBucketSampler


def _lengths(n=1000):
    rng = random.Random(0)
    return [rng.randint(3, 500) for _ in range(n)]


def test_deterministic_and_complete():
    lengths = _lengths()
    a = list(LengthBucketSampler(lengths, 32, shuffle=True, seed=7))
    b = list(LengthBucketSampler(lengths, 32, shuffle=True, seed=7))
    c = list(LengthBucketSampler(lengths, 32, shuffle=True, seed=8))
    assert a == b and a != c
    assert sorted(i for batch in a for i in batch) == list(range(len(lengths)))
    assert len(a) == len(LengthBucketSampler(lengths, 32))


def test_epochs_differ():
    s = LengthBucketSampler(_lengths(), 16, seed=1)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first
    s.set_epoch(0)
    assert list(s) == first


def test_batches_are_length_homogeneous():
    lengths = _lengths()
    batches = list(LengthBucketSampler(lengths, 32, seed=0, bucket_batches=10))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    rnd = random.Random(0)
    perm = list(range(len(lengths)))
    rnd.shuffle(perm)
    rand_batches = [perm[i:i + 32] for i in range(0, len(perm), 32)]
    rand_spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in rand_batches) / len(rand_batches)
    assert spread < rand_spread / 4


def test_no_shuffle_and_drop_last():
    lengths = list(range(10))
    s = LengthBucketSampler(lengths, 3, shuffle=False, drop_last=True, bucket_batches=2)
    batches = list(s)
    assert batches == [[5, 4, 3], [2, 1, 0], [9, 8, 7]]
    assert len(s) == 3
