"""``codemod locate -- COMMAND``: the in-place locator around any program run.

The parent side (:mod:`.run`) starts the command with :mod:`.bootstrap` on ``PYTHONPATH``; in each
Python process of the run, :mod:`.hook` waits for torch to be imported and then starts
:mod:`.recorder`, which watches the whole process with :class:`codemod.verify.locator.InplaceLocator`
and keeps a report file per process. :mod:`.merge` joins those reports (DataLoader workers write
none; every rank of a distributed run writes its own), :mod:`.engine` says what the rules do at the
located lines (and rewrites them with ``--diff``/``--apply``), :mod:`.report` renders the result.

This module is imported in every process of a located run: it stays free of heavy imports.
"""

ENV_DIR = "CODEMOD_LOCATE_DIR"  # where each process writes its report
ENV_ROOTS = "CODEMOD_LOCATE_ROOTS"  # the user's directories (os.pathsep-separated)
ENV_UNTIL = "CODEMOD_LOCATE_UNTIL"  # "backward" or "exit"
ENV_PACKAGE = "CODEMOD_LOCATE_PACKAGE"  # the directory holding the codemod package


class LocateError(Exception):
    """`codemod locate` could not start (no command, a command that cannot run); the message says why."""
