"""The ``fluid`` command line: a thin layer over :class:`fluid.Classifier` (typer + rich).

One module per group of commands; each registers its commands on the shared :data:`app` when imported.
"""

from fluid.cli.common import app
from fluid.cli import bench, data, run, predict, serve, review, export, experiment  # noqa: F401,E402  (registers the commands)

__all__ = ["app"]
