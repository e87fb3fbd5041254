"""An explicit field separator for CSV / TSV catalogues (``delimiter`` / ``--delimiter``), next to the sniffing."""

import warnings

import pandas as pd
import pytest

from fluid.config import Columns
from fluid.data import read_input, read_table

ROWS = [{"id": "1", "text": "red shirt, short sleeves", "label": "shirt"},
        {"id": "2", "text": "blue coat", "label": "coat"}]


def _write(path, sep):
    pd.DataFrame(ROWS).to_csv(path, sep=sep, index=False)
    return path


@pytest.mark.parametrize("given, sep", [(";", ";"), ("semicolon", ";"), ("tab", "\t"), ("\\t", "\t"),
                                        ("|", "|")])
def test_a_given_delimiter_is_used_as_is_without_sniffing(tmp_path, given, sep):
    path = _write(tmp_path / "products.csv", sep)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the sniffing warning would fire without an explicit delimiter
        frame = read_table(path, image_col=None, id_col="id", delimiter=given).frame
    assert frame["text"].tolist() == ["red shirt, short sleeves", "blue coat"]
    assert frame["label"].tolist() == ["shirt", "coat"]


def test_a_comma_in_a_semicolon_file_is_kept_inside_its_cell(tmp_path):
    """A comma delimiter given for a semicolon file reads one joined column: the error names it."""
    path = _write(tmp_path / "products.csv", ";")
    with pytest.raises(Exception, match="text"):
        read_table(path, image_col=None, id_col="id", delimiter=",")


def test_the_delimiter_travels_in_the_columns(tmp_path):
    path = _write(tmp_path / "products.csv", "|")
    catalogue = read_input(path, Columns(image=None, id="id", delimiter="pipe"), require_label=True)
    assert len(catalogue.frame) == 2


def test_a_bad_delimiter_is_a_one_line_error_naming_the_file(tmp_path):
    path = _write(tmp_path / "products.csv", ";")
    with pytest.raises(ValueError, match="products.csv: the delimiter must be one character"):
        read_table(path, image_col=None, delimiter=";;")
    parquet = tmp_path / "products.parquet"
    pd.DataFrame(ROWS).to_parquet(parquet)
    with pytest.raises(ValueError, match="products.parquet: --delimiter applies to CSV / TSV files"):
        read_table(parquet, image_col=None, delimiter=";")


def test_readers_take_the_run_configs_columns(tmp_path):
    """read_catalogue(columns=Columns(...)) reads what the keyword options read; giving both is an error."""
    from fluid.data import read_catalogue
    from fluid.errors import OptionError

    path = tmp_path / "products.csv"
    pd.DataFrame([{"sku": r["id"], "title": r["text"], "category": r["label"]} for r in ROWS]).to_csv(path, index=False)
    columns = Columns(label="category", text=["title"], image=None, id="sku")
    by_columns = read_catalogue(path, columns=columns).frame
    by_keywords = read_catalogue(path, label_col="category", text_cols=["title"], image_col=None, id_col="sku").frame
    pd.testing.assert_frame_equal(by_columns, by_keywords)
    assert by_columns["id"].tolist() == ["1", "2"] and by_columns["label"].tolist() == ["shirt", "coat"]
    frame = pd.read_csv(path, dtype=str)
    assert read_catalogue(frame, columns=columns).frame["text"].tolist() == by_columns["text"].tolist()
    with pytest.raises(OptionError, match="not both"):
        read_catalogue(path, columns=columns, label_col="category")
