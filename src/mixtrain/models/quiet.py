"""Keep native-library noise out of the user's terminal and a run's log while a model loads.

Why: loading a model makes torch/torchao/bitsandbytes write warnings and progress bars straight to
file descriptor 2, past Python's ``sys.stderr``. ``model run``, ``model export`` and the eval job all
load models; they share this one guard. The captured text is shown only if the load fails (then it is
the explanation). ``MIXTRAIN_VERBOSE=1`` turns it off.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def quiet_native_stderr():
    if os.environ.get("MIXTRAIN_VERBOSE"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            tmp.seek(0)
            sys.stderr.buffer.write(tmp.read()[-4000:])
            sys.stderr.flush()
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
