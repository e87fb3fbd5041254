"""The ``fluid`` command line: a thin layer over :class:`fluid.Classifier` (typer + rich).

One module per group of commands; each registers its commands on the shared :data:`app` when imported.
"""

from fluid.cli.common import app
from fluid.cli import bench, data, doctor, run, predict, serve, review, export, experiment  # noqa: F401,E402  (registers the commands)

__all__ = ["app", "main"]


def main() -> None:
    """The ``fluid`` executable: the typer app, with any user error that a command did not report itself
    (see :data:`fluid.cli.common.USER_ERRORS`) printed as one line on stderr and exit code 2."""
    import warnings

    from fluid.cli.common import USER_ERRORS, error_line, warning_line

    warnings.showwarning = warning_line
    try:
        app(prog_name="fluid")
    except USER_ERRORS as error:
        error_line(error)
        raise SystemExit(2) from None
