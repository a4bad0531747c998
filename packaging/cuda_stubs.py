"""Stand-in libraries for the CUDA parts of a CUDA build of torch, for the CPU-only bundle (Linux only).

The torch wheel on PyPI for Linux is a CUDA build: ``libtorch_cpu.so`` and ``libtorch_python.so`` name CUDA
libraries (``libtorch_cuda.so``, cuBLAS, cuDNN, NCCL, cuFFT, ...) as DT_NEEDED, so simply leaving them out of
the bundle makes ``import torch`` fail in the dynamic loader. They are about 2.4 GB. This module writes, for
each of them, a tiny shared library with the same soname that defines only the symbols the kept libraries
actually import (with the same symbol versions), so the loader is satisfied. No stub is ever meant to run:

* the CPU bundle's runtime hook sets ``CUDA_VISIBLE_DEVICES=""`` and keeps the real, small ``libcudart`` and
  ``libc10_cuda``, so ``torch.cuda.is_available()`` is False and the app picks the CPU;
* ``libtorch_cuda.so`` is a stub, so its static initialisers never register torch's CUDA hooks;
* should a stub be called after all, a C entry point returns an error status (non-zero) and a C++ one prints
  the symbol's name and aborts, instead of running on garbage. The exceptions are the two C++ functions in
  ``RETURN_SCRATCH``, which torch calls while it is imported.

Needs ``readelf`` (binutils) and a C compiler (``cc``) at build time. Used by ``packaging/anomalyapp.spec``
for ``make package-cpu``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

# Libraries replaced by stubs (their sonames). libcudart and libc10_cuda stay real: they are small, and the
# CUDA device count is asked through them (0 with CUDA_VISIBLE_DEVICES="" or without a driver).
STUBBED_SONAMES = (
    "libtorch_cuda.so",
    "libtorch_nvshmem.so",
    "libcublas.so.13",
    "libcublasLt.so.13",
    "libcudnn.so.9",
    "libcufft.so.12",
    "libcufile.so.0",
    "libcupti.so.13",
    "libcurand.so.10",
    "libcusparse.so.12",
    "libcusparseLt.so.0",
    "libnccl.so.2",
    "libnvJitLink.so.13",
    "libnvrtc.so.13",
    "libnvshmem_host.so.3",
)

# Only loaded with dlopen() when CUDA work runs (cuDNN's engines, linear algebra, NVRTC builtins, profiler
# and multi-node helpers): the CPU bundle leaves them out.
DLOPEN_ONLY_PATTERNS = (
    "libcudnn_*.so*",
    "libcusolver*.so*",
    "libcufftw.so*",
    "libnvblas.so*",
    "libnvrtc-builtins*.so*",
    "libnvrtc.alt.so*",
    "libnvperf_*.so",
    "libpcsamplingutil.so",
    "libcheckpoint.so",
    "libcufile_rdma.so*",
    "libnvtx3interop.so*",
    "nvshmem_bootstrap_*.so*",
    "nvshmem_transport_*.so*",
    "libtorch_cuda_linalg.so",
    "libcaffe2_nvrtc.so",
)

# C++ functions of libtorch_cuda that libtorch_python calls while torch is imported, each returning a reference
# to a global that it then assigns (e.g. ``c10d::get_gil_checker() = &acquire_gil``): their stubs hand out a
# zeroed scratch buffer instead of aborting. Every other C++ stub aborts with its name.
RETURN_SCRATCH = frozenset({
    "_ZN4c10d15get_gil_checkerEv",  # c10d::get_gil_checker()
    "_ZN4c10d16ProcessGroupNCCL7OptionsC1Eb",  # ProcessGroupNCCL::Options(bool): a default argument's value
})

CLASS_TYPE_INFO_VTABLE = "_ZTVN10__cxxabiv117__class_type_infoE"  # libstdc++'s vtable of __class_type_info

_SYMBOL_ROW = re.compile(
    r"^\s*\d+:\s+[0-9a-fA-F]+\s+(?P<size>\d+|0x[0-9a-fA-F]+)\s+(?P<type>\w+)\s+(?P<bind>\w+)\s+\w+\s+"
    r"(?P<ndx>\w+)\s+(?P<name>\S+)"
)


@dataclass(frozen=True)
class Symbol:
    name: str
    version: str  # "" when unversioned
    kind: str  # "FUNC" or "OBJECT"
    size: int


def _dynamic_symbols(path: Path) -> list[tuple[str, str, str, int, bool]]:
    """(name, version, type, size, defined) of each dynamic symbol of ``path``."""
    out = subprocess.run(["readelf", "--dyn-syms", "--wide", str(path)], capture_output=True, text=True, check=True)
    rows = []
    for line in out.stdout.splitlines():
        match = _SYMBOL_ROW.match(line)
        if not match:
            continue
        full = match["name"]
        name, _, version = full.replace("@@", "@").partition("@")
        size_text = match["size"]
        size = int(size_text, 16) if size_text.startswith("0x") else int(size_text)
        rows.append((name, version, match["type"], size, match["ndx"] != "UND"))
    return rows


def soname(path: Path) -> str:
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    found = re.search(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", out)
    return found.group(1) if found else path.name


def needed_symbols(kept: list[Path], stubbed: dict[str, Path]) -> dict[str, list[Symbol]]:
    """For each stubbed soname, the symbols it defines that one of the ``kept`` libraries imports."""
    defined: dict[str, dict[str, tuple[str, str, int]]] = {}
    for name, path in stubbed.items():
        defined[name] = {
            sym: (version, kind, size) for sym, version, kind, size, is_def in _dynamic_symbols(path)
            if is_def and kind in ("FUNC", "OBJECT", "IFUNC")
        }
    wanted: dict[str, dict[str, Symbol]] = defaultdict(dict)
    for path in kept:
        for sym, version, _kind, _size, is_def in _dynamic_symbols(path):
            if is_def:
                continue
            for lib, table in defined.items():
                if sym not in table:
                    continue
                def_version, kind, size = table[sym]
                # A versioned reference names its library's version node; an unversioned one may bind anywhere,
                # so it is stubbed only where the symbol is the library's own (not a copy of libstdc++'s).
                if version and version != def_version:
                    continue
                if not version and def_version and not def_version.startswith(lib.split(".so")[0]):
                    continue
                if not version and _is_runtime_symbol(sym):
                    continue
                wanted[lib][sym] = Symbol(sym, def_version, "OBJECT" if kind == "OBJECT" else "FUNC", size)
    return {lib: sorted(symbols.values(), key=lambda s: s.name) for lib, symbols in wanted.items()}


def _is_runtime_symbol(name: str) -> bool:
    """C++ runtime symbols that some CUDA libraries carry statically linked; the real ones come from libstdc++."""
    return name.startswith(("_ZNSt", "_ZNKSt", "_ZSt", "_ZdlPv", "_ZdaPv", "_Znwm", "_Znam", "_ZTVSt", "_ZTISt",
                            "_ZTSSt", "_ZNSs", "_ZNKSs", "__cxa", "__gxx", "_ZTVN10__cxxabiv", "_ZGTt"))


def needed_libraries(path: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def write_stub(lib: str, symbols: list[Symbol], out_dir: Path, cc: str = "cc", needed: tuple[str, ...] = ()) -> Path:
    """Compile ``out_dir/lib``: a shared library with soname ``lib`` defining ``symbols``.

    ``needed`` are other stubs (already in ``out_dir``) to name as DT_NEEDED, as the real library does: a kept
    library may import a symbol that only arrives through such an indirect dependency.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    source = [
        "/* generated by packaging/cuda_stubs.py: a stand-in for a CUDA library in the CPU-only bundle */",
        "#include <stdio.h>",
        "#include <stdlib.h>",
        "static void anomalyapp_cuda_stub_called(const char *name) {",
        '    fprintf(stderr, "anomalyapp CPU-only build: CUDA function %s was called; this build has no CUDA\\n", name);',
        "    abort();",
        "}",
    ]
    source.append(f"extern char {CLASS_TYPE_INFO_VTABLE}[];")
    uses_typeinfo = False
    versions: dict[str, list[str]] = defaultdict(list)
    for index, symbol in enumerate(symbols):
        label = symbol.name.replace('"', "")
        if symbol.kind == "OBJECT" and symbol.name.startswith("_ZTI"):
            # A class's std::type_info: pybind11 registers the Python classes of CUDA types by it when torch is
            # imported and hashes its name, so it must be a real (base-less) type_info with the right name.
            uses_typeinfo = True
            words = max(symbol.size // 8, 2)
            source.append(f'const void *s{index}[{words}] __asm__("{label}");')
            source.append(f'const void *s{index}[{words}] = {{ {CLASS_TYPE_INFO_VTABLE} + 16, "{label[4:]}" }};')
        elif symbol.kind == "OBJECT":
            size = max(symbol.size, 8)
            source.append(f'__attribute__((aligned(16))) unsigned char s{index}[{size}] __asm__("{label}");')
            source.append(f"unsigned char s{index}[{size}] = {{0}};")
        elif symbol.name in RETURN_SCRATCH:
            source.append(f"static unsigned char scratch{index}[4096] __attribute__((aligned(64)));")
            source.append(f'void *s{index}(void) __asm__("{label}");')
            source.append(f"void *s{index}(void) {{ return scratch{index}; }}")
        elif symbol.name.startswith("_Z"):
            source.append(f'void s{index}(void) __asm__("{label}");')
            source.append(f'void s{index}(void) {{ anomalyapp_cuda_stub_called("{label}"); }}')
        else:  # a C entry point of a CUDA library: every one returns a status where 0 means success
            source.append(f'int s{index}(void) __asm__("{label}");')
            source.append(f"int s{index}(void) {{ return 999; }}")
        versions[symbol.version].append(symbol.name)
    c_file = out_dir / f"{lib}.c"
    c_file.write_text("\n".join(source) + "\n", encoding="utf-8")
    # Symbol versions as the real library defines them (the loader checks the version nodes at load time);
    # symbols named in no node stay global and unversioned.
    script = [
        f'{version} {{ global: {" ".join(name + ";" for name in names)} }};'
        for version, names in versions.items() if version
    ]
    command = [cc, "-shared", "-fPIC", "-O1", "-o", str(out_dir / lib), str(c_file), f"-Wl,-soname,{lib}"]
    if needed:
        command += ["-Wl,--no-as-needed", f"-L{out_dir}"] + [f"-l:{name}" for name in needed]
    if uses_typeinfo:
        command += ["-Wl,--no-as-needed", "-lstdc++"]
    if script:
        version_file = out_dir / f"{lib}.map"
        version_file.write_text("\n".join(script) + "\n", encoding="utf-8")
        command.append(f"-Wl,--version-script,{version_file}")
    subprocess.run(command, check=True)
    return out_dir / lib


def build_stubs(kept: list[Path], stubbed: dict[str, Path], out_dir: Path) -> dict[str, Path]:
    """Write a stub for every library in ``stubbed`` (soname -> real file) into ``out_dir``."""
    if not stubbed:
        return {}
    if shutil.which("readelf") is None or shutil.which("cc") is None:
        raise RuntimeError("the CPU-only bundle needs readelf (binutils) and a C compiler (cc) to build")
    wanted = needed_symbols(kept, stubbed)
    # First without dependencies, then again naming the stubbed libraries the real one needs.
    for lib in stubbed:
        write_stub(lib, wanted.get(lib, []), out_dir)
    made = {}
    for lib, real in stubbed.items():
        deps = tuple(name for name in needed_libraries(real) if name in stubbed and name != lib)
        made[lib] = write_stub(lib, wanted.get(lib, []), out_dir, needed=deps)
    return made
