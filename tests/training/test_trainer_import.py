"""Importing the trainer changes nothing global; it quietens Lightning only while a fit runs."""

import logging
import subprocess
import sys
import warnings

from fluid.training.trainer import QUIET_LOGGERS, quiet_lightning


def test_importing_the_trainer_leaves_warning_filters_and_logging_levels_alone():
    code = (
        "import logging, warnings\n"
        "import lightning.pytorch\n"
        "from fluid.training.trainer import QUIET_LOGGERS\n"
        "import sys\n"
        "del sys.modules['fluid.training.trainer']\n"
        "filters = list(warnings.filters)\n"
        "levels = [logging.getLogger(n).level for n in QUIET_LOGGERS]\n"
        "import fluid.training.trainer\n"
        "assert list(warnings.filters) == filters, 'warning filters changed at import'\n"
        "assert [logging.getLogger(n).level for n in QUIET_LOGGERS] == levels, 'logging levels changed at import'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_quiet_lightning_silences_during_the_block_and_restores_afterwards():
    logger = logging.getLogger(QUIET_LOGGERS[0])
    logger.setLevel(logging.INFO)
    before = list(warnings.filters)
    with quiet_lightning():
        assert logger.level == logging.WARNING
        with warnings.catch_warnings(record=True) as seen:
            warnings.warn("The 'train_dataloader' does not have many workers which may be a bottleneck.")
            warnings.warn("Found 12 module(s) in eval mode at the start of training. This may lead to ...")
            warnings.warn("something else")
        assert [str(w.message) for w in seen] == ["something else"]
    assert logger.level == logging.INFO and list(warnings.filters) == before
    logger.setLevel(logging.NOTSET)
