"""Making a run or sweep directory: a folder of its own, locked, never silently shared.

A new run's folder is ``output_dir/run_name``, or a fresh name (``-2``, ``-3``
... added when it exists: two runs started in the same second each get their
own). A named folder that holds a run (or a sweep) is refused, with the
command that continues it, unless ``overwrite`` replaces the run's own files
(never the user's). The folder's lock is taken before anything is checked or
written, so a folder another process writes is refused, ``overwrite`` or not.

    >>> lock = claim_run_dir("runs", None, fresh_name="CartPole-v1-seed0")  # doctest: +SKIP
    >>> lock.directory, lock.held                                           # doctest: +SKIP
    (PosixPath('runs/CartPole-v1-seed0'), True)
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import shutil
from pathlib import Path

from raymanager.rundir.layout import RUN_FILES, RUNS_DIR, SPEC_FILE
from raymanager.rundir.lock import DirectoryLock

__all__ = ["claim_run_dir", "claim_sweep_dir", "remove_run_files", "resume_command"]


def resume_command(command: str, directory: str | os.PathLike[str]) -> str:
    """The command line that continues a run (``"train"``) or sweep, ready to paste.

    >>> resume_command("sweep", "runs/my sweep")
    "raymanager sweep --resume 'runs/my sweep'"
    """
    return f"raymanager {command} --resume {shlex.quote(os.fspath(directory))}"


def _output_folder(output_dir: str | os.PathLike[str]) -> Path:
    output = Path(output_dir)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(error.errno, f"cannot create the output directory ({error.strerror})",
                      str(output)) from None
    return output


def claim_run_dir(output_dir: str | os.PathLike[str], run_name: str | None, *,
                  fresh_name: str, overwrite: bool = False) -> DirectoryLock:
    """Create (or, with ``overwrite``, empty) a run's folder; return its lock, held.

    ``run_name`` None: ``fresh_name``, suffixed until it is new. A named folder
    holding a run raises FileExistsError unless ``overwrite``; one another
    process writes raises RunLockedError.
    """
    output = _output_folder(output_dir)
    if run_name is None:
        return _claim_fresh(output, fresh_name)
    run_dir = output / run_name
    run_dir.mkdir(exist_ok=True)
    lock = DirectoryLock(run_dir).acquire()  # a live run in it is refused, overwrite or not
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if existing and not overwrite:
        lock.release()
        raise FileExistsError(
            f"run directory {run_dir} already holds a run ({', '.join(existing)}); continue it "
            f"with `{resume_command('train', run_dir)}`, or add --overwrite to replace it"
        )
    remove_run_files(run_dir, remove_dir=False)
    return lock


def _claim_fresh(output: Path, fresh_name: str) -> DirectoryLock:
    """The first of ``fresh_name``, ``fresh_name-2``, ... that does not exist, made and locked."""
    for number in itertools.count(1):
        run_dir = output / (fresh_name if number == 1 else f"{fresh_name}-{number}")
        try:
            run_dir.mkdir()  # atomic: of two runs racing for a name, one gets it
        except FileExistsError:
            continue
        return DirectoryLock(run_dir).acquire()
    raise AssertionError("unreachable")  # pragma: no cover - count() never ends


def claim_sweep_dir(output_dir: str | os.PathLike[str], name: str) -> DirectoryLock:
    """Create a sweep's folder ``output_dir/name`` and its ``runs/``; return its lock, held.

    One that holds a sweep raises FileExistsError; one another process writes,
    RunLockedError.
    """
    sweep_dir = _output_folder(output_dir) / name
    sweep_dir.mkdir(exist_ok=True)
    lock = DirectoryLock(sweep_dir, what="sweep").acquire()
    if (sweep_dir / SPEC_FILE).exists():
        lock.release()
        raise FileExistsError(f"{sweep_dir} already holds a sweep; continue it with "
                              f"`{resume_command('sweep', sweep_dir)}`")
    (sweep_dir / RUNS_DIR).mkdir(exist_ok=True)
    return lock


def remove_run_files(run_dir: Path, *, remove_dir: bool = True,
                     lock: DirectoryLock | None = None) -> None:
    """Remove what a run writes in ``run_dir`` (and the folder, if that empties it).

    ``lock``, the directory's lock held by the caller, is released, and its
    file removed with the folder.
    """
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    if lock is not None:
        lock.release(remove_file=remove_dir)
    if remove_dir:
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only if empty: never the user's own files
