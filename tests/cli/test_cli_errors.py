"""User errors on the command line: one line on stderr, exit code 2, nothing left behind; bugs keep their
traceback (#24)."""

import subprocess
import sys
import warnings

import pytest
from typer.testing import CliRunner

from fluid.cli import app
from fluid.cli.common import USER_ERRORS
from fluid.config import RunConfig
from fluid.data import read_catalogue
from fluid.errors import OptionError

runner = CliRunner()


@pytest.fixture
def text_catalogue(tmp_path):
    rows = ["id,text,label"] + [f"{i},{'red dress' if i % 2 else 'blue shirt'} {i},{'dress' if i % 2 else 'shirt'}"
                                for i in range(20)]
    path = tmp_path / "products.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _fluid(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fluid", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_bugs_are_not_dressed_as_user_errors_but_unknown_options_are():
    assert not any(issubclass(TypeError, e) or issubclass(KeyError, e) for e in USER_ERRORS)
    assert issubclass(OptionError, USER_ERRORS) and issubclass(OptionError, TypeError)


def test_a_config_with_python_tags_is_refused_naming_the_file(tmp_path, text_catalogue):
    bad = tmp_path / "bad.yaml"
    bad.write_text('model: !!python/object/apply:os.system ["echo pwned"]\n')
    with pytest.raises(ValueError, match=r"bad\.yaml: not a plain YAML mapping.*Python tags are refused"):
        RunConfig.load(bad)
    result = _fluid("train", "--data", str(text_catalogue), "--out", str(tmp_path / "run"), "--config", str(bad),
                    cwd=tmp_path)
    assert result.returncode == 2 and "pwned" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "bad.yaml" in lines[0], result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_an_unknown_head_option_is_one_line_on_stderr_and_the_failed_run_leaves_no_directory(tmp_path,
                                                                                           text_catalogue):
    out = tmp_path / "run"
    result = _fluid("train", "--data", str(text_catalogue), "--out", str(out), "--model", "fluid",
                    "--text-encoder", "tiny", "--image-encoder", "tiny", "--image-col", "text",
                    "--head", "bogus_option=1", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "bogus_option" in errors[0] and result.stderr.strip().endswith(errors[0].strip())
    assert "Traceback" not in result.stderr and "error" not in result.stdout
    assert not out.exists()


def test_a_failed_train_keeps_a_directory_that_already_existed(tmp_path, text_catalogue):
    out = tmp_path / "existing"
    out.mkdir()
    result = runner.invoke(app, ["train", "--data", str(text_catalogue), "--out", str(out), "--model",
                                 "tfidf-logreg", "--label-col", "nope"])
    assert result.exit_code == 2 and out.is_dir()


def test_the_missing_label_error_names_the_cli_option(tmp_path, text_catalogue):
    result = runner.invoke(app, ["train", "--data", str(text_catalogue), "--out", str(tmp_path / "run"),
                                 "--model", "tfidf-logreg", "--image-col", "text", "--label-col", "category"])
    assert result.exit_code == 2 and "--label-col" in result.output and "label_col=None" not in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("delimiter, name", [(";", "semicolon"), ("\t", "tab"), ("|", "pipe")])
def test_a_csv_with_another_delimiter_is_read_and_the_delimiter_named(tmp_path, delimiter, name):
    path = tmp_path / "products.csv"
    path.write_text(delimiter.join(["id", "text", "label"]) + "\n"
                    + "\n".join(delimiter.join([str(i), f"text, with a comma {i}", "a" if i % 2 else "b"])
                                for i in range(6)) + "\n", encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = read_catalogue(path, image_col=None).frame
    assert list(frame["text"])[:2] == ["text, with a comma 0", "text, with a comma 1"]
    assert sorted(frame["label"].unique()) == ["a", "b"]
    messages = [str(w.message) for w in caught if name in str(w.message)]
    assert messages and f"{name}-separated" in messages[0] and "products.csv" in messages[0]


def test_a_comma_csv_gives_no_delimiter_warning(tmp_path, text_catalogue):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = read_catalogue(text_catalogue, image_col=None).frame
    assert len(frame) == 20


def test_a_python_tag_in_a_head_override_is_a_one_line_error(tmp_path, text_catalogue):
    result = runner.invoke(app, ["train", "--data", str(text_catalogue), "--out", str(tmp_path / "run"),
                                 "--model", "tfidf-logreg", "--head", "x=!!python/name:os.system"])
    assert result.exit_code == 2 and "not a plain YAML value" in result.output and "Traceback" not in result.output


def test_an_encoder_that_cannot_be_loaded_is_one_line_on_stderr(tmp_path, text_catalogue, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "run"
    result = _fluid("train", "--data", str(text_catalogue), "--out", str(out), "--model", "text-only",
                    "--text-encoder", "no-such-org/no-such-encoder", "--image-col", "text", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no-such-org/no-such-encoder" in errors[0] and "Traceback" not in result.stderr
    assert not out.exists()


def test_train_takes_a_delimiter_and_refuses_a_bad_one_in_one_line(tmp_path):
    path = tmp_path / "products.csv"
    path.write_text("id|text|image|label\n" + "\n".join(
        f"{i}|item {i}, {'red' if i % 2 else 'blue'}||{'a' if i % 2 else 'b'}" for i in range(20)) + "\n",
        encoding="utf-8")
    bad = runner.invoke(app, ["train", "--data", str(path), "--out", str(tmp_path / "bad"), "--model",
                              "tfidf-logreg", "--delimiter", "||"])
    assert bad.exit_code == 2 and "the delimiter must be one character" in bad.output
    good = runner.invoke(app, ["train", "--data", str(path), "--out", str(tmp_path / "run"), "--model",
                               "tfidf-logreg", "--delimiter", "pipe", "--no-floor"])
    assert good.exit_code == 0, good.output
    assert "delimiter: pipe" in (tmp_path / "run" / "config.yaml").read_text()  # evaluate reads files alike
