"""Text cells that are not text (JSON lines parse lists, objects and booleans as such) are bad rows, counted
under ``text-invalid``, never the Python repr of the value (#24)."""

import json

import pytest
from PIL import Image

from fluid.data import read_catalogue
from fluid.data.errors import BadRowError


@pytest.fixture
def jsonl(tmp_path):
    Image.new("RGB", (8, 8), (200, 0, 0)).save(tmp_path / "red.png")
    rows = [{"id": 1, "text": "red dress", "image": "red.png", "label": "a"},
            {"id": 2, "text": ["a", "list"], "image": "red.png", "label": "b"},
            {"id": 3, "text": {"k": "v"}, "label": "a"},
            {"id": 4, "text": True, "image": "red.png", "label": "b"},
            {"id": 5, "text": 42, "label": "a"}]
    path = tmp_path / "products.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_non_text_cells_are_counted_and_read_as_missing_text(jsonl):
    catalogue = read_catalogue(jsonl)
    frame = catalogue.frame.set_index("id")
    assert frame.loc["5", "text"] == "42"  # a number is text
    assert frame.loc[["2", "4"], "text"].isna().all()  # kept for their image
    assert "3" not in frame.index  # neither usable text nor an image: dropped, and counted
    report = catalogue.report.to_dict()
    assert report["counts"]["text-invalid"] == 3
    details = " ".join(e["detail"] for e in report["examples"]["text-invalid"])
    assert "holds a list" in details and "holds a dict" in details and "holds a bool" in details
    assert "['a', 'list']" not in frame["text"].dropna().tolist()


def test_fail_policy_stops_at_the_first_non_text_cell(jsonl):
    with pytest.raises(BadRowError, match="text-invalid"):
        read_catalogue(jsonl, on_bad_row="fail")
