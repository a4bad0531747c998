"""Runtime hook of the CPU-only bundle (``make package-cpu``): torch runs on the CPU, its CUDA parts are stubs.

The CPU-only bundle replaces torch's CUDA libraries by stand-ins (see ``packaging/cuda_stubs.py``) that satisfy
the dynamic loader but do nothing. This hook, run before the app's code, keeps torch off every path that would
call into them:

* ``CUDA_VISIBLE_DEVICES=""``: the CUDA runtime (real, small) reports no device even on a machine with a GPU,
  so ``torch.cuda.is_available()`` is False and the app picks the CPU;
* ``torch.distributed`` is reported unavailable (as in a torch built without it): its initialisation builds
  NCCL objects in ``libtorch_cuda``;
* ``torch._native`` does not register its Python overrides for CUDA kernels, which ask the dispatcher for
  CUDA kernels that a stubbed ``libtorch_cuda`` never registered.
"""

import importlib.abc
import importlib.machinery
import os
import sys


def _install() -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ["ANOMALYAPP_BUILD_VARIANT"] = "cpu"
    os.environ.setdefault("TORCH_DISABLE_NATIVE_JIT", "1")

    class _PatchedLoader(importlib.abc.Loader):
        def __init__(self, loader, after):
            self._loader = loader
            self._after = after

        def create_module(self, spec):
            return self._loader.create_module(spec)

        def exec_module(self, module):
            self._loader.exec_module(module)
            self._after(module)

        def __getattr__(self, name):  # get_code, get_source, is_package... as the wrapped loader has them
            return getattr(self._loader, name)

    def _no_cuda_overrides(module):
        module._register_all_overrides = lambda: None

    class _CpuOnlyTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch.distributed":
                torch_c = sys.modules.get("torch._C")
                for attr in ("_c10d_init", "_rpc_init", "_dist_autograd_init"):
                    if torch_c is not None and hasattr(torch_c, attr):
                        delattr(torch_c, attr)
                return None
            if name == "torch._native.registry":
                for finder in sys.meta_path:
                    if finder is self or not hasattr(finder, "find_spec"):
                        continue
                    spec = finder.find_spec(name, path, target)
                    if spec is not None and spec.loader is not None:
                        spec.loader = _PatchedLoader(spec.loader, _no_cuda_overrides)
                        return spec
            return None

    sys.meta_path.insert(0, _CpuOnlyTorch())


_install()
del _install
