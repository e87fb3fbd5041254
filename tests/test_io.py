"""fluid.atomic: atomic writes (temporary sibling + os.replace)."""

from __future__ import annotations

import json
import os
import threading

import pytest

from fluid.atomic import atomic_path, write_json_atomic, write_text_atomic


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


class _Thing:
    def __str__(self) -> str:
        return "thing"


def test_text_round_trip_and_no_temp_left(tmp_path):
    path = tmp_path / "report.md"
    assert write_text_atomic(path, "héllo\nwörld") == path
    assert path.read_bytes() == "héllo\nwörld".encode()
    assert write_text_atomic(str(path), "ünï", encoding="latin-1") == path  # str accepted, Path returned
    assert path.read_bytes() == "ünï".encode("latin-1")
    assert _names(tmp_path) == ["report.md"]


@pytest.mark.parametrize("options", [{}, {"sort_keys": True}, {"indent": 1, "sort_keys": True},
                                     {"indent": None, "ensure_ascii": False}, {"default": str}])
def test_json_is_exactly_json_dumps(tmp_path, options):
    obj = {"b": [1, 2.5, None], "a": "é", "c": {"z": True, "y": "x"}}
    if "default" in options:
        obj["d"] = _Thing()  # JSON cannot encode it: written as default(obj) = "thing"
    path = write_json_atomic(tmp_path / "out.json", obj, **options)
    want = json.dumps(obj, **{"indent": 2, **options})
    assert path.read_bytes() == want.encode("utf-8")  # UTF-8, no trailing newline
    assert _names(tmp_path) == ["out.json"]


def test_json_of_an_unserialisable_object_keeps_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"accuracy": 0.5})
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_json_atomic(path, {"accuracy": object()})
    assert json.loads(path.read_text(encoding="utf-8")) == {"accuracy": 0.5}
    assert _names(tmp_path) == ["metrics.json"]


def test_atomic_path_replaces_on_success(tmp_path):
    path = tmp_path / "split.csv"
    path.write_text("old", encoding="utf-8")
    with atomic_path(path) as tmp:
        assert tmp.parent == path.parent and tmp != path  # a sibling: os.replace stays on one file system
        assert tmp.name.startswith(".split.csv.") and tmp.name.endswith(".tmp") and str(os.getpid()) in tmp.name
        assert not tmp.exists() and path.read_text(encoding="utf-8") == "old"
        tmp.write_text("new", encoding="utf-8")
    assert path.read_text(encoding="utf-8") == "new"
    assert _names(tmp_path) == ["split.csv"]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt("killed")])
def test_a_writer_that_raises_half_way_leaves_the_old_file_and_no_temp(tmp_path, error):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"old weights")

    def writer(target):
        with open(target, "wb") as f:
            f.write(b"half of the new")
            raise error

    with pytest.raises(type(error)), atomic_path(path) as tmp:
        writer(tmp)
    assert path.read_bytes() == b"old weights"
    assert _names(tmp_path) == ["model.safetensors"]


def test_a_writer_that_writes_nothing_fails_and_leaves_the_target(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("kept", encoding="utf-8")
    with pytest.raises(FileNotFoundError), atomic_path(path):
        pass
    assert path.read_text(encoding="utf-8") == "kept" and _names(tmp_path) == ["a.txt"]


def test_a_missing_parent_folder_is_not_created(tmp_path):
    path = tmp_path / "missing" / "deeper" / "out.json"
    with pytest.raises(FileNotFoundError):
        write_json_atomic(path, {"a": 1})
    with pytest.raises(FileNotFoundError):
        write_text_atomic(path, "x")
    with pytest.raises(FileNotFoundError), atomic_path(path) as tmp:
        tmp.write_text("x", encoding="utf-8")
    assert _names(tmp_path) == []
    path.parent.mkdir(parents=True)  # the caller's job
    write_json_atomic(path, {"a": 1})
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": 1}


def test_temporary_names_are_unique_per_writer(tmp_path):
    path = tmp_path / "x.json"
    with atomic_path(path) as first, atomic_path(path) as second:
        assert first != second
        first.write_text("1", encoding="utf-8")
        second.write_text("2", encoding="utf-8")
    assert path.read_text(encoding="utf-8") == "1"  # the outer block replaced last
    assert _names(tmp_path) == ["x.json"]


def test_concurrent_writers_do_not_clash(tmp_path):
    path = tmp_path / "shared.json"
    payloads = [{"writer": i, "data": list(range(2000))} for i in range(8)]
    errors: list[BaseException] = []

    def write(payload):
        try:
            for _ in range(20):
                write_json_atomic(path, payload)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert json.loads(path.read_text(encoding="utf-8")) in payloads  # one whole payload, never a mix
    assert _names(tmp_path) == ["shared.json"]
