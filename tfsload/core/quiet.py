"""Keep TensorFlow's native start-up lines (CUDA probing, oneDNN, CPU features) off the terminal.

TensorFlow's C++ runtime writes them straight to file descriptor 2 while it is imported and
while it looks for devices, before ``TF_CPP_MIN_LOG_LEVEL`` has any effect, so the commands
that import it (the stand-in, the exporter) would bury their own lines under dozens of these.
:func:`import_tensorflow_quietly` sends descriptor 2 to a temporary file for that moment only;
``TFSLOAD_TF_LOGS=1`` keeps them, and an import that fails shows what was written.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

SHOW_ENV = "TFSLOAD_TF_LOGS"


@contextlib.contextmanager
def native_stderr_hidden() -> Iterator[None]:
    """Hide what native code writes to descriptor 2 inside the block (shown again on error)."""
    if os.environ.get(SHOW_ENV, "") not in ("", "0"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow_quietly() -> ModuleType:
    """``import tensorflow`` and its device discovery, without the native start-up lines."""
    with native_stderr_hidden():
        import tensorflow as tf

        tf.config.list_physical_devices()
    return tf
