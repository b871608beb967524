"""Job logging: the package's INFO messages to stderr and to a log file beside the outputs."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def log_to_console() -> None:
    """The package's INFO messages on stderr as plain lines, other libraries' from WARNING only.

    At INFO, jax reports every platform it could not start ("Unable to initialize backend 'tpu'")
    on a machine that simply has none.
    """
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("cellssl_jax").setLevel(logging.INFO)


@contextmanager
def logging_to(path: Path) -> Iterator[None]:
    """Log the package's INFO messages to stderr and to `path` for the duration of a job; an
    error that ends the job (``SystemExit("error: ...")``) goes to the file too.

    Propagation to the root logger is off meanwhile: libraries imported on the way (absl, tfds)
    give it a handler of their own, which would print every line twice.
    """
    logger = logging.getLogger("cellssl_jax")
    handlers = [logging.StreamHandler(sys.stderr), logging.FileHandler(path)]
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield
    except SystemExit as stop:  # the message reaches stderr once, as Python prints it
        if isinstance(stop.code, str):
            record = logger.makeRecord(logger.name, logging.ERROR, "", 0, stop.code, None, None)
            handlers[1].handle(record)  # and the log file, which would otherwise lack it
        raise
    finally:
        logger.propagate = propagate
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
