import pickle
import tempfile
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from pyanode.forecast.store import RecordStore


def _value(i: int) -> dict:
    return {"i": i, "values": np.random.default_rng(i).normal(size=(50, 2)), "name": f"series {i}"}


def _equal(a: dict, b: dict) -> None:
    assert a["i"] == b["i"] and a["name"] == b["name"]
    np.testing.assert_array_equal(a["values"], b["values"])


@pytest.fixture(params=["file", "memory"])
def store(request, monkeypatch) -> RecordStore:
    if request.param == "memory":  # no temporary directory: the bytes stay in memory
        def refuse(*args, **kwargs):
            raise OSError("read-only file system")

        monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    return RecordStore((f"s{i}", _value(i)) for i in range(30))


def test_a_store_gives_back_each_value_in_the_order_stored(store):
    assert len(store) == 30 and list(store) == [f"s{i}" for i in range(30)]
    for i in (0, 17, 29, 3):  # any order of reads
        _equal(store[f"s{i}"], _value(i))
    assert "s5" in store and "s30" not in store
    with pytest.raises(KeyError):
        store["s30"]
    _equal(dict(store.items())["s12"], _value(12))


def test_a_store_is_arranged_and_replaced_without_losing_values(store):
    store.arrange(["s9", "s2", "s20"])
    assert list(store) == ["s9", "s2", "s20"]
    _equal(store["s2"], _value(2))
    store.put("s2", _value(99))  # a replaced key moves to the end
    assert list(store) == ["s9", "s20", "s2"]
    _equal(store["s2"], _value(99))
    store.pop_key("s9")
    assert list(store) == ["s20", "s2"] and "s9" not in store
    with pytest.raises(KeyError):
        store.arrange(["s1"])  # forgotten keys cannot come back


def test_a_pickled_store_carries_its_values(store):
    store.arrange(["s4", "s1"])
    back = pickle.loads(pickle.dumps(store))
    assert list(back) == ["s4", "s1"]
    _equal(back["s1"], _value(1))
    store.close()  # the copy has its own file
    _equal(back["s4"], _value(4))


def test_reads_from_threads_do_not_interleave():
    store = RecordStore((f"s{i}", _value(i)) for i in range(40))
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda k: store[f"s{k % 40}"], range(400)))
    for k, value in enumerate(got):
        _equal(value, _value(k % 40))


def test_a_store_keeps_its_values_out_of_memory():
    """2,000 values of 8 KB each: the store's memory grows by its bookkeeping (a key's slot and two
    integers), well under a tenth of the values' size."""
    block = np.ones(1000)  # 8 KB
    keys = [f"series-{i}" for i in range(2000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = RecordStore()
        for key in keys:
            store.put(key, block)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(store) == 2000 and store._end > 2000 * 8000
    assert grown < 2000 * 8000 / 10, grown
    np.testing.assert_array_equal(store["series-1999"], block)
