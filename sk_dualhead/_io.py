"""Files for the command line: atomic outputs, model files, tables as people have them.

Everything the command line writes goes through :func:`atomic_write`, every
model it reads through :func:`load_model` and every table through
:func:`read_table` or :func:`iter_table`. Problems the user can fix raise
:class:`UserError` with a message that names the file, the column and the
fix.
"""

# Authors: sk_dualhead developers
# SPDX-License-Identifier: BSD-3-Clause

import contextlib
import os
import pathlib
import sys
import tempfile


class UserError(Exception):
    """A problem the user can fix; reported in one line, without a traceback."""


def note(message):
    """Tell the user something on stderr, as the command line does."""
    print(f"note: {message}", file=sys.stderr)


def _umask():
    # The process umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path, mode="wb", **open_kwargs):
    """Open a temporary file beside ``path``, renamed to ``path`` once complete.

    On any exception, a Ctrl-C included, the temporary file is removed and
    ``path`` is left as it was: the previous file, or none.

    Parameters
    ----------
    path : str or path-like
        The file to write.
    mode : {"wb", "w"}, default="wb"
        Mode of the temporary file.
    **open_kwargs
        Passed to :func:`open` (``encoding``, ``newline``).

    Yields
    ------
    file : file object
        The temporary file, to write to.
    """
    path = pathlib.Path(path)
    # In the target folder: a rename within one file system is atomic.
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".part"
    )
    try:
        with os.fdopen(descriptor, mode, **open_kwargs) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        # mkstemp creates the file readable by its owner only.
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
