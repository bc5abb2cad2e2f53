import subprocess
import sys
from collections import Counter

from clap_corpus.core.hashing import rng_for, stable_hash64
from clap_corpus.transforms.sharding import hash_split, placement_hash, shard_boundaries, shard_index

PROPS = (("train", 0.8), ("valid", 0.1), ("test", 0.1))
PLACEMENT = 0xE02A6D5538C45DDC
SPLITS = ["train", "train", "train", "test", "train", "train"]
RNG_K = 305192338


def test_stable_hash_is_not_salted_per_process():
    # Python's hash() would differ between interpreters started with different PYTHONHASHSEED.
    code = "from clap_corpus.core.hashing import stable_hash64; print(stable_hash64('abc', salt='x'))"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert outs == {str(stable_hash64("abc", salt="x"))}
    assert stable_hash64("abc", salt="x") != stable_hash64("abc", salt="y")


def test_known_values_do_not_drift():
    # Changing these changes every split and shard assignment of every corpus ever built.
    assert stable_hash64("demo_key") == 0xAD2CB61F6A511B01
    assert placement_hash("demo_key") == PLACEMENT
    assert [hash_split(f"key{i}", PROPS) for i in range(6)] == SPLITS
    assert rng_for("k").integers(0, 1 << 30) == RNG_K


def test_hash_split_proportions():
    counts = Counter(hash_split(f"key{i}", PROPS) for i in range(20000))
    assert abs(counts["train"] / 20000 - 0.8) < 0.015
    assert abs(counts["valid"] / 20000 - 0.1) < 0.01
    assert abs(counts["test"] / 20000 - 0.1) < 0.01


def test_shards_are_exact_size_and_independent_of_order():
    keys = [f"k{i}" for i in range(1030)]
    b1 = shard_boundaries((placement_hash(k) for k in keys), 512)
    b2 = shard_boundaries((placement_hash(k) for k in reversed(keys)), 512)
    assert b1 == b2 and len(b1) == 2
    sizes = Counter(shard_index(placement_hash(k), b1) for k in keys)
    assert [sizes[0], sizes[1], sizes[2]] == [512, 512, 6]


def test_duplicate_keys_land_in_the_same_shard():
    keys = [f"k{i}" for i in range(10)] + ["k3"]
    b = shard_boundaries((placement_hash(k) for k in keys), 2)
    idx = [shard_index(placement_hash(k), b) for k in keys]
    assert idx[3] == idx[-1]


def test_single_shard_when_fewer_than_shard_size():
    assert shard_boundaries([5, 1, 3], 512) == []
    assert shard_index(123, []) == 0
