"""Readers that stream a large catalogue's text into memory-mapped files, and what keeps it there."""

from __future__ import annotations

import tempfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fluid.data import read_glami, read_table, stratified_split, write_synthetic
from fluid.data._canonical import first_rows
from fluid.data.store import MEMORY_MAP_ROWS, StringColumns, StringSpill, is_memory_mapped, rows_where

STRING_COLUMNS = ("id", "text", "image")


@pytest.fixture
def temp_folder(tmp_path, monkeypatch):
    """The system's temporary folder, for this test only: what the readers leave there can be listed."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture(scope="module")
def glami_root(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("cat"), items=400, seed=5)


def _pool_bytes_of(read):
    """Arrow memory-pool bytes held by what ``read()`` returns (the text in RAM shows up here; mapped text not)."""
    before = pa.total_allocated_bytes()
    result = read()
    return result, pa.total_allocated_bytes() - before


def _text_bytes(frame: pd.DataFrame) -> int:
    return sum(frame[c].array.__arrow_array__().nbytes for c in STRING_COLUMNS)


def test_spill_maps_what_was_appended_and_deletes_its_file(temp_folder):
    chunks = [pa.array(["a", None, "ccc"]), pa.array(["dd"], type=pa.string()), pa.chunked_array([["e", "f"]])]
    with StringSpill() as spill:
        for chunk in chunks:
            spill.append(chunk)
        mapped = spill.mapped()
    assert mapped.type == pa.large_string()
    assert mapped.to_pylist() == ["a", None, "ccc", "dd", "e", "f"]
    assert list(temp_folder.iterdir()) == []
    with pytest.raises(ValueError, match="already mapped"):
        spill.append(pa.array(["g"]))


def test_spill_removes_its_file_when_the_writer_fails(temp_folder):
    with pytest.raises(RuntimeError), StringSpill() as spill:
        spill.append(pa.array(["a"]))
        raise RuntimeError("the reader failed")
    assert list(temp_folder.iterdir()) == []


def test_string_columns_stay_in_ram_below_the_threshold_and_spill_from_it(temp_folder):
    def gather(threshold):
        columns = StringColumns(("a", "b"), memory_map_rows=threshold)
        for i in range(5):
            columns.append({"a": pa.array([f"a{i}{j}" for j in range(10)]),
                            "b": pa.array([None if j % 3 else f"b{j}" for j in range(10)])})
        return columns.memory_mapped, columns.columns()

    in_ram, ram = gather(None)
    below, kept = gather(51)
    mapped, spilled = gather(20)
    assert not in_ram and not below and mapped
    for name in ("a", "b"):
        assert spilled[name].to_pylist() == kept[name].to_pylist() == ram[name].to_pylist()
        assert len(spilled[name]) == 50
    assert list(temp_folder.iterdir()) == []
    with pytest.raises(ValueError, match="differ in length"):
        StringColumns(("a", "b")).append({"a": pa.array(["x"]), "b": pa.array(["x", "y"])})


def test_glami_reader_streams_the_text_into_mapped_files(glami_root, temp_folder):
    in_ram, ram_bytes = _pool_bytes_of(lambda: read_glami(glami_root, memory_map_rows=None))
    mapped, mapped_bytes = _pool_bytes_of(lambda: read_glami(glami_root, memory_map_rows=50, chunk_rows=64))
    assert not is_memory_mapped(in_ram.frame) and is_memory_mapped(mapped.frame)
    pd.testing.assert_frame_equal(mapped.frame, in_ram.frame, check_exact=True)
    assert mapped.report.to_dict() == in_ram.report.to_dict()
    assert ram_bytes >= _text_bytes(in_ram.frame) > 0
    assert mapped_bytes < 0.05 * ram_bytes  # the text is not in Arrow's memory: it is in the mapped files
    assert list(temp_folder.iterdir()) == []


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_table_readers_stream_the_text_into_mapped_files(tmp_path, temp_folder, suffix):
    n = 1500
    table = pd.DataFrame({"id": [f"sku-{i}" for i in range(n)],
                          "text": [None if i % 11 == 0 else f"Řada {i} " + "slovo " * (i % 40) for i in range(n)],
                          "image": [f"imgs\\{i}.jpg" for i in range(n)],
                          "label": [str(i % 4) for i in range(n)]})
    path = tmp_path / f"catalogue{suffix}"
    if suffix == ".parquet":
        table.to_parquet(path)
    elif suffix == ".jsonl":
        table.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        table.to_csv(path, index=False, sep="," if suffix == ".csv" else "\t")
    read = dict(check_images=False, require_label=True)
    in_ram = read_table(path, memory_map_rows=None, **read)
    mapped, pool_bytes = _pool_bytes_of(lambda: read_table(path, memory_map_rows=100, **read))
    assert is_memory_mapped(mapped.frame) and not is_memory_mapped(in_ram.frame)
    pd.testing.assert_frame_equal(mapped.frame, in_ram.frame, check_exact=True)
    assert mapped.report.to_dict() == in_ram.report.to_dict()
    assert mapped.frame["image"].iloc[3].endswith("3.jpg") and mapped.frame["text"].iloc[2].startswith("Řada 2")
    assert pool_bytes < 0.05 * _text_bytes(in_ram.frame)
    assert list(temp_folder.iterdir()) == []


def test_a_parse_error_after_the_spill_began_leaves_no_file(tmp_path, temp_folder):
    rows = [f"item {i},{i}.jpg,{i % 3}" for i in range(30_000)]
    rows[25_000] = '"an unterminated quote,1.jpg,1'  # the parser fails in the second chunk
    path = tmp_path / "broken.csv"
    path.write_text("text,image,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="broken.csv"):
        read_table(path, check_images=False, memory_map_rows=100)
    assert list(temp_folder.iterdir()) == []


def test_bad_rows_dropped_from_a_mapped_catalogue_stay_mapped(tmp_path, temp_folder):
    n = 600
    table = pd.DataFrame({"text": [None if i % 5 == 0 else f"text {i}" for i in range(n)],
                          "image": [f"{i}.jpg" for i in range(n)], "label": [str(i % 2) for i in range(n)]})
    table.to_csv(tmp_path / "c.csv", index=False)
    for i in range(0, n, 2):  # odd rows' images are missing
        (tmp_path / f"{i}.jpg").write_bytes(b"")
    read = dict(check_images=True, on_bad_row="skip")
    kept = read_table(tmp_path / "c.csv", memory_map_rows=10, **read)
    assert is_memory_mapped(kept.frame)
    assert kept.frame.index.tolist() == [i for i in range(n) if i % 2 == 0 and i % 5 != 0]
    pd.testing.assert_frame_equal(kept.frame, read_table(tmp_path / "c.csv", memory_map_rows=None, **read).frame)
    assert kept.report.to_dict()["dropped"] == {"no-modality": 60, "image-missing": 240, "text-empty": 60}


def test_filtering_and_splitting_a_mapped_frame_keeps_its_text_out_of_ram(glami_root, temp_folder):
    in_ram = read_glami(glami_root, memory_map_rows=None).frame
    mapped = read_glami(glami_root, memory_map_rows=0).frame
    mask = np.arange(len(mapped)) % 3 != 1
    filtered, pool_bytes = _pool_bytes_of(lambda: rows_where(mapped, mask))
    assert is_memory_mapped(filtered)
    pd.testing.assert_frame_equal(filtered, in_ram[mask], check_exact=True)
    assert pool_bytes < 0.05 * _text_bytes(filtered)
    (train, val), split_bytes = _pool_bytes_of(lambda: stratified_split(mapped, 0.2, seed=1))
    ram_train, ram_val = stratified_split(in_ram, 0.2, seed=1)
    assert is_memory_mapped(train) and is_memory_mapped(val)
    pd.testing.assert_frame_equal(train, ram_train, check_exact=True)
    pd.testing.assert_frame_equal(val, ram_val, check_exact=True)
    assert split_bytes < 0.05 * _text_bytes(in_ram)
    nothing = rows_where(mapped, np.zeros(len(mapped), dtype=bool))
    assert len(nothing) == 0 and list(nothing.columns) == list(mapped.columns)
    assert list(temp_folder.iterdir()) == []


def test_huge_texts_are_cut_in_a_mapped_catalogue(tmp_path):
    from fluid.data.schema import MAX_TEXT_CHARS

    texts = [f"t{i}" for i in range(300)]
    texts[250] = "x" * (MAX_TEXT_CHARS + 10)
    pd.DataFrame({"text": texts, "label": ["a", "b"] * 150}).to_csv(tmp_path / "c.csv", index=False)
    frame = read_table(tmp_path / "c.csv", image_col=None, memory_map_rows=0).frame
    assert len(frame["text"].iloc[250]) == MAX_TEXT_CHARS and frame["text"].iloc[249] == "t249"


def _first_rows_reference(values: list) -> list[int]:
    seen: dict = {}
    return [seen.setdefault(v, i) for i, v in enumerate(values)]


def test_first_rows_finds_duplicates_across_chunks():
    rng = np.random.default_rng(0)
    values = [f"id{v}" for v in rng.integers(0, 400, size=1000)]
    chunks = pa.chunked_array([values[:300], values[300:301], values[301:]], type=pa.large_string())
    assert first_rows(chunks).tolist() == _first_rows_reference(values)
    assert first_rows(pa.chunked_array([], type=pa.large_string())).tolist() == []


def test_first_rows_never_merges_different_ids_whose_hashes_collide(monkeypatch):
    import fluid.data._canonical as canonical

    monkeypatch.setattr(canonical, "_hash_strings", lambda chunk: np.zeros(len(chunk), dtype=np.uint64))
    values = ["a", "b", "a", "c", "b", "d"]
    got = first_rows(pa.chunked_array([values[:4], values[4:]], type=pa.large_string()))
    assert got.tolist() == _first_rows_reference(values) == [0, 1, 0, 3, 1, 5]


def test_the_classifier_and_the_readers_share_the_threshold():
    from fluid.config import RunConfig

    assert RunConfig().memory_map_rows == MEMORY_MAP_ROWS


def test_glami_read_in_a_worker_gives_the_same_catalogue(glami_root, temp_folder):
    here = read_glami(glami_root, chunk_rows=64, memory_map_rows=100)
    worker = read_glami(glami_root, chunk_rows=64, memory_map_rows=100, workers=1)
    assert is_memory_mapped(worker.frame)
    pd.testing.assert_frame_equal(worker.frame, here.frame, check_exact=True)
    assert worker.report.to_dict() == here.report.to_dict()
    assert list(temp_folder.iterdir()) == []


def test_table_read_in_a_worker_counts_the_same_bad_rows(tmp_path, monkeypatch):
    import fluid.data._canonical as canonical

    monkeypatch.setattr(canonical, "CHUNK_ROWS", 50)  # several chunks, problems renumbered across them
    import fluid.data.readers as readers

    monkeypatch.setattr(readers, "CHUNK_ROWS", 50)
    n = 230
    for i in range(0, n, 3):
        (tmp_path / f"{i}.jpg").write_bytes(b"")
    pd.DataFrame({"text": [f"t {i}" if i % 7 else "" for i in range(n)], "image": [f"{i}.jpg" for i in range(n)],
                  "label": [str(i % 3) for i in range(n)]}).to_csv(tmp_path / "c.csv", index=False)
    here = read_table(tmp_path / "c.csv")
    worker = read_table(tmp_path / "c.csv", workers=1)
    pd.testing.assert_frame_equal(worker.frame, here.frame, check_exact=True)
    assert worker.report.to_dict() == here.report.to_dict()
    assert worker.report.to_dict()["counts"]["image-missing"] == n - len(range(0, n, 3))
    examples = worker.report.to_dict()["examples"]["image-missing"]
    assert [e["row"] for e in examples] == [1, 2, 4, 5, 7]


def test_a_parse_error_in_the_worker_reads_like_one_here(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text('text,image,label\n"unterminated,1.jpg,1\n', encoding="utf-8")
    with pytest.raises(ValueError, match="broken.csv: cannot read it as CSV") as here:
        read_table(path, check_images=False)
    with pytest.raises(ValueError, match="broken.csv: cannot read it as CSV") as worker:
        read_table(path, check_images=False, workers=1)
    assert str(worker.value) == str(here.value)


class _Unpicklable(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a} and {b}")


def _raising(error):
    yield from ()
    raise error


def test_worker_exceptions_keep_their_type_or_say_it():
    import functools

    from fluid.data.stream import parsed_chunks

    decode = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    with pytest.raises(UnicodeDecodeError):  # the readers retry a guessed encoding on exactly this type
        list(parsed_chunks(functools.partial(_raising, decode), workers=1))
    with pytest.raises(RuntimeError, match="_Unpicklable: x and y"):
        list(parsed_chunks(functools.partial(_raising, _Unpicklable("x", "y")), workers=1))


def test_glami_image_problems_keep_their_file_row_across_chunks(tmp_path):
    root = write_synthetic(tmp_path / "cat", items=200, seed=2)
    csv = next(root.rglob("GLAMI-1M-train.csv"))
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    table.loc[150, "image_id"] = "../escape"
    table.loc[70, "image_id"] = ""
    table.to_csv(csv, index=False)
    report = read_glami(root, chunk_rows=64, memory_map_rows=0).report.to_dict()
    assert [e["row"] for e in report["examples"]["image-outside-root"]] == [150]
    assert [e["row"] for e in report["examples"]["image-empty"]] == [70]


def test_a_full_temporary_folder_says_where_and_what_to_do(tmp_path, temp_folder, monkeypatch):
    import errno

    import fluid.data.store as store
    from fluid.data.errors import SpillError

    class FullDisk:
        def write_batch(self, batch):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            pass

    monkeypatch.setattr(store.ipc, "new_file", lambda path, schema: FullDisk())
    pd.DataFrame({"text": [f"t{i}" for i in range(300)], "label": ["a", "b"] * 150}).to_csv(
        tmp_path / "c.csv", index=False)
    with pytest.raises(SpillError, match="No space left on device") as error:
        read_table(tmp_path / "c.csv", image_col=None, memory_map_rows=100)
    assert str(temp_folder) in str(error.value) and "memory_map_rows" in str(error.value)
    assert error.value.errno == errno.ENOSPC
    assert list(temp_folder.iterdir()) == []


# ------------------------------------------------------------------ JSON lines, read in chunks
def _small_chunks(monkeypatch, rows: int = 50):
    import fluid.data._canonical as canonical
    import fluid.data.readers as readers

    monkeypatch.setattr(canonical, "CHUNK_ROWS", rows)
    monkeypatch.setattr(readers, "CHUNK_ROWS", rows)


def _json_pair(folder, records):
    """The same records as JSON lines (read in chunks) and as one JSON array (parsed whole: the reference)."""
    import json

    lines, array = folder / "c.jsonl", folder / "c.json"
    lines.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    array.write_text(json.dumps(records), encoding="utf-8")
    return lines, array


def _assert_same_catalogue(got, reference):
    pd.testing.assert_frame_equal(got.frame, reference.frame, check_exact=True)
    assert got.report.to_dict()["counts"] == reference.report.to_dict()["counts"]
    assert got.report.to_dict()["examples"] == reference.report.to_dict()["examples"]


def test_json_lines_are_read_in_chunks_like_a_whole_json_file(tmp_path, temp_folder, monkeypatch):
    _small_chunks(monkeypatch)
    for i in range(0, 230, 3):
        (tmp_path / f"{i}.jpg").write_bytes(b"")
    records = [{"id": f"p{i}", "text": f"shirt {i}" if i % 7 else "", "image": f"{i}.jpg",
                "label": i % 4 if i % 11 else None, "price": i * 1.5} for i in range(230)]
    for r in records[120:170]:
        del r["image"]  # a whole chunk without the key
    lines, array = _json_pair(tmp_path, records)
    reference = read_table(array, memory_map_rows=None)
    chunks = []
    import fluid.data.readers as readers

    real = readers._json_lines_chunks
    monkeypatch.setattr(readers, "_json_lines_chunks", lambda *a, **k: (chunks.append(c) or c for c in real(*a, **k)))
    for memory_map_rows in (None, 100):
        chunks.clear()
        got = read_table(lines, memory_map_rows=memory_map_rows)
        assert len(chunks) == 5 and [c.rows for c in chunks] == [50, 50, 50, 50, 30]
        assert is_memory_mapped(got.frame) == (memory_map_rows is not None)
        _assert_same_catalogue(got, reference)
    assert got.frame["label"].tolist()[:3] == [None, "1", "2"]  # 0 % 11 == 0: no label; ints read as "1"
    assert got.report.to_dict()["counts"]["image-missing"] > 50
    assert list(temp_folder.iterdir()) == []


def test_a_json_lines_column_first_named_after_the_first_chunk_is_read(tmp_path, monkeypatch):
    """``language`` first appears at record 130: the file is read again knowing it (a whole-file read sees it)."""
    _small_chunks(monkeypatch)
    records = [{"text": f"dress {i}", "label": "a" if i % 2 else "b"} for i in range(200)]
    for r in records[130:]:
        r["language"] = "cz"
    lines, array = _json_pair(tmp_path, records)
    got = read_table(lines, image_col=None)
    _assert_same_catalogue(got, read_table(array, image_col=None))
    assert got.frame["language"].tolist() == [None] * 130 + ["cz"] * 70


def test_a_required_json_lines_column_absent_from_the_first_chunk_is_found_further_on(tmp_path, monkeypatch):
    _small_chunks(monkeypatch)
    records = [{"name": f"n{i}", "label": "x"} for i in range(120)] + [
        {"name": f"n{i}", "text": f"coat {i}", "label": "y"} for i in range(120, 150)]
    lines, array = _json_pair(tmp_path, records)
    got = read_table(lines, image_col=None)
    _assert_same_catalogue(got, read_table(array, image_col=None))
    assert got.frame["text"].tolist() == [f"coat {i}" for i in range(120, 150)]  # the rest have no input at all
    assert got.report.to_dict()["total_rows"] == 150 and got.report.to_dict()["dropped"] == {"no-modality": 120}
    (tmp_path / "none.jsonl").write_text("".join('{"name": "n%d"}\n' % i for i in range(120)), encoding="utf-8")
    with pytest.raises(ValueError, match="text"):
        read_table(tmp_path / "none.jsonl", image_col=None)


def test_a_json_lines_parse_error_in_a_later_chunk_names_the_file_and_leaves_no_file(tmp_path, temp_folder,
                                                                                      monkeypatch):
    _small_chunks(monkeypatch)
    path = tmp_path / "broken.jsonl"
    path.write_text("".join('{"text": "t%d", "label": "a"}\n' % i for i in range(160)) + '{"text": "oops\n',
                    encoding="utf-8")
    with pytest.raises(ValueError, match="broken.jsonl: cannot read it as JSONL"):
        read_table(path, image_col=None, memory_map_rows=60)
    assert list(temp_folder.iterdir()) == []
