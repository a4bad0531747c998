"""Runtime hook of the packaged anomalyapp: runs in the frozen executable before the app's own code.

* Standard streams: a windowed executable (``anomalyapp.exe`` on Windows, an app bundle on macOS) starts with
  ``sys.stdin``, ``sys.stdout`` and ``sys.stderr`` set to None; a ``print`` or a library writing a warning
  would then raise. They become the null device (the GUI's log and error dialogs are unaffected).
* torch: the bundle has no triton (torch.compile is not used), so torch's optional JIT kernels stay off.
* The app never downloads anything by itself (ResNet weights only with ``--allow-download``); nothing here
  changes that.
"""

import os
import sys


def _install() -> None:
    for name, mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
        if getattr(sys, name, None) is None:
            setattr(sys, name, open(os.devnull, mode, encoding="utf-8"))
    # The dunder copies too: faulthandler, multiprocessing and some libraries fall back on them.
    for name in ("__stdin__", "__stdout__", "__stderr__"):
        if getattr(sys, name, None) is None:
            setattr(sys, name, getattr(sys, name.strip("_")))
    os.environ.setdefault("TORCH_DISABLE_NATIVE_JIT", "1")
    os.environ.setdefault("ANOMALYAPP_BUILD_VARIANT", "full")


_install()
del _install
