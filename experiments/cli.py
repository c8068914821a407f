"""What the console scripts share: a refused argument ends the script with its message alone.

``lr-train`` gets this from ``hydra.main``: an unknown key, a value of the wrong type, a missing config
option, bad override syntax and a failed instantiation are Hydra's compact exceptions, printed without a
traceback. The other scripts run their work inside :func:`refusing_bad_arguments`, which does the same for
Hydra's compact exceptions, for Lightning's ``MisconfigurationException`` and for :class:`BadArgument`, the
error our own argument checks raise. As with Hydra, ``HYDRA_FULL_ERROR=1`` shows the full traceback instead.
A new console script wraps its ``main`` the same way and gets a case in ``tests/experiments/test_cli.py``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from hydra.errors import CompactHydraException
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf.errors import OmegaConfBaseException

#: exit status of a refused argument (argparse's, and the shell's "usage error")
EXIT_BAD_ARGUMENT = 2


class BadArgument(ValueError):
    """An argument a console script refuses; the message says which one and what is allowed."""


class ConfigurationError(CompactHydraException):
    """A configuration that fails once training starts, e.g. two schedules on one optimizer.

    Hydra prints a ``CompactHydraException`` as its message alone, as it does for errors found while
    composing the config.
    """


#: what a refused argument raises
BAD_ARGUMENT_ERRORS = (CompactHydraException, MisconfigurationException, BadArgument)


def message(err: BaseException) -> str:
    """The error's message, with the OmegaConf detail (key, expected type) that Hydra prints beneath it."""
    text = str(err).strip()
    if isinstance(err.__cause__, OmegaConfBaseException) and str(err.__cause__) not in text:
        text += "\n" + str(err.__cause__).strip()
    return text


@contextmanager
def refusing_bad_arguments(prog: str) -> Iterator[None]:
    """Turns a refused argument into ``<prog>: error: <message>`` on stderr and exit status 2.

    Args:
        prog: the console script's name, printed first.

    Raises:
        SystemExit: with status :data:`EXIT_BAD_ARGUMENT` on one of :data:`BAD_ARGUMENT_ERRORS`, unless
            ``HYDRA_FULL_ERROR=1``, which lets the error through with its traceback.
    """
    try:
        yield
    except BAD_ARGUMENT_ERRORS as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"{prog}: error: {message(err)}", file=sys.stderr)
        print("\nSet the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.", file=sys.stderr)
        raise SystemExit(EXIT_BAD_ARGUMENT) from None
