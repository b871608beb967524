"""Job logging: the package's INFO messages to stderr and to a log file beside the outputs, and
the one way a job ends on a user's error (`<prog>: error: <message>`, exit status 2, as
argparse's own errors)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

# errors a user causes (a missing folder, a bad value): ended as a JobError, not a traceback
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError)


class JobError(SystemExit):
    """A job ended by a user's error: exit status 2; `str()` is the printed message."""

    def __init__(self, prog: str, message: str):
        super().__init__(2)
        self.message = f"{prog}: error: {message}"

    def __str__(self) -> str:
        return self.message


def fail(prog: str, message: str) -> NoReturn:
    """Print `<prog>: error: <message>` on stderr and end the job with exit status 2."""
    error = JobError(prog, message)
    print(error.message, file=sys.stderr)
    raise error


@contextmanager
def logging_to(path: Path) -> Iterator[None]:
    """Log the package's INFO messages to stderr and to `path` for the duration of a job; an
    error that ends the job (a JobError, or ``SystemExit("error: ...")``) goes to the file too.

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
    except SystemExit as stop:  # the message reaches stderr once (printed already)
        message = stop.message if isinstance(stop, JobError) else stop.code
        if isinstance(message, str):
            record = logger.makeRecord(logger.name, logging.ERROR, "", 0, message, None, None)
            handlers[1].handle(record)  # and the log file, which would otherwise lack it
        raise
    finally:
        logger.propagate = propagate
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()


@contextmanager
def job(prog: str, folder: Path) -> Iterator[None]:
    """Run a job's body logging to the terminal and `<folder>/<job>.log` (folder created);
    a user's error (USER_ERRORS) ends it as `fail` does."""
    folder.mkdir(parents=True, exist_ok=True)
    with logging_to(folder / f"{prog.rsplit('.', 1)[-1]}.log"):
        try:
            yield
        except USER_ERRORS as err:
            fail(prog, str(err))
