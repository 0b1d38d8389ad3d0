"""The graders' modules compiled to bytecode once, by labctl, for graders that cannot write it.

A grader runs in a read-only jail with bytecode writes off, so each start compiles from source every module it
imports from its directory (the graders' shared ``_kit.py`` among them) and throws the result away. :func:`compile_once`
writes each module's bytecode into its ``__pycache__`` beside it, once per directory and process, so the graders'
interpreters read it instead.

The bytecode is *checked-hash*: at import Python compares the hash of the source with the one in the ``.pyc``, so an
edited module is never run from stale bytecode (it is compiled from source, as before, until the next compile), and
no timestamp decides. A directory labctl cannot write (an image's read-only install) is left as it is: its graders
compile from source, correct and only slower; the container image compiles at build instead. A grader's own script
is its ``__main__`` and always compiled from source, as Python does for any script.
"""

from __future__ import annotations

import compileall
import functools
import logging
import py_compile
from pathlib import Path

log = logging.getLogger("labctl.grading.bytecode")


@functools.cache
def compile_once(directory: Path) -> bool:
    """Compile every ``.py`` under ``directory`` into its ``__pycache__``; whether all of it could be written."""
    done = compileall.compile_dir(str(directory), quiet=2, workers=1,
                                  invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    for cache in directory.rglob("__pycache__"):
        _readable_as_parent(cache)
    if not done:
        log.debug("grader bytecode under %s not (all) written: those modules compile at every start", directory)
    return bool(done)


def _readable_as_parent(cache: Path) -> None:
    """The ``__pycache__`` as readable as the directory it is in (a restrictive umask made it private to labctl, and
    graders run as another uid)."""
    try:
        cache.chmod(cache.parent.stat().st_mode & 0o777)
    except OSError as exc:
        log.debug("could not open %s to graders: %s", cache, exc)
