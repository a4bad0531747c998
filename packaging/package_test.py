"""Check a packaged build against the source install (``make package-test`` / ``make package-cpu-test``).

    .venv/bin/python packaging/package_test.py [--dist dist/anomalyapp] [--work runs/package-test]

Steps (each prints one line; the exit code is 0 only when all pass):

1. layout: both executables, the bundled Lite0 weights under ``_internal/models/``, ``resources/``, the
   ``models/`` folder beside the executables, and none of what the build leaves out (triton, Qt translations,
   tkinter, ...); for the CPU variant, that the CUDA libraries are stubs;
2. ``anomalyapp-gui --self-test`` (``anomalyapp.exe`` on Windows) headless (``QT_QPA_PLATFORM=offscreen``)
   exits 0;
3. a demo line is generated and a model trained on it with the source install (``python -m anomalyapp
   train``); the source CLI and the packaged CLI both ``predict`` its test images into two folders, and the two
   ``results.csv`` must be byte-identical (the overlay PNGs are compared too);
4. the packaged CLI's ``bench`` for Lite0, whose measurement runs in a worker that multiprocessing starts
   with the spawn method, i.e. by running the executable again (this needs ``freeze_support()``);
5. every packaged run happens with an empty HOME and empty XDG folders, without any ANOMALYAPP_*/TORCH_*
   variables, and (where ``strace`` exists) under ``strace`` watching ``connect()``: any attempt to open an
   IPv4/IPv6 connection fails the test (Unix sockets, e.g. to a session bus, are allowed);
6. time to the first window: the packaged GUI and ``python packaging/entry.py`` from the source install are
   started 4 times each with ``ANOMALYAPP_STARTUP_PROBE=exit`` (offscreen); the probe prints the seconds from
   process start to the main window's first paint; the launcher also times launch -> that line. The first
   start (empty data folder) also writes the demo line; the median of the later starts is the figure to quote.
   Reported, not judged.

A summary is written to ``<work>/package_test.json``.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_config as cfg  # noqa: E402

IS_WINDOWS = sys.platform.startswith("win")
EXE_SUFFIX = ".exe" if IS_WINDOWS else ""
PROBE_LINE = re.compile(r"startup-probe: main window painted ([0-9.]+) s after process start")


class Failed(Exception):
    pass


def say(message: str) -> None:
    print(f"package-test: {message}", flush=True)


def clean_env(root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A bare environment: empty HOME and XDG folders, no app, torch or proxy variables."""
    home = root / "home"
    for sub in ("", "config", "data", "cache", "state"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    runtime = root / "run"
    runtime.mkdir(parents=True, exist_ok=True)
    if not IS_WINDOWS:
        os.chmod(runtime, 0o700)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_STATE_HOME": str(home / "state"),
        "XDG_RUNTIME_DIR": str(runtime),
        "QT_QPA_PLATFORM": "offscreen",
    }
    if IS_WINDOWS:
        for key in ("SYSTEMROOT", "SYSTEMDRIVE", "TEMP", "TMP", "COMSPEC", "PATHEXT"):
            if key in os.environ:
                env[key] = os.environ[key]
        env["USERPROFILE"] = str(home)
        env["LOCALAPPDATA"] = str(home / "data")
        env["APPDATA"] = str(home / "config")
    env.update(extra or {})
    return env


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


class NetworkWatch:
    """Runs commands under strace (Linux) and collects IPv4/IPv6 connect() attempts."""

    def __init__(self, work: Path):
        self.strace = shutil.which("strace") if sys.platform.startswith("linux") else None
        self.work = work
        self.count = 0
        self.attempts: list[str] = []

    def wrap(self, command: list[str]) -> tuple[list[str], Path | None]:
        if not self.strace:
            return command, None
        self.count += 1
        log = self.work / f"strace-{self.count}.log"
        return [self.strace, "-f", "-qq", "--seccomp-bpf", "-e", "trace=connect", "-o", str(log)] + command, log

    def check(self, log: Path | None, label: str) -> None:
        if log is None or not log.exists():
            return
        for line in log.read_text(errors="replace").splitlines():
            if "connect(" in line and ("AF_INET" in line or "AF_INET6" in line):
                self.attempts.append(f"{label}: {line.strip()}")
        log.unlink()


def run(command: list[str], env: dict[str, str], label: str, watch: NetworkWatch | None = None,
        timeout: float = 900, cwd: Path | None = None) -> subprocess.CompletedProcess:
    log = None
    if watch is not None:
        command, log = watch.wrap(command)
    started = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    elapsed = time.monotonic() - started
    if watch is not None:
        watch.check(log, label)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
        raise Failed(f"{label} exited {result.returncode} after {elapsed:.1f} s:\n{tail}")
    say(f"{label}: ok ({elapsed:.1f} s)")
    return result


def check_layout(dist: Path, variant: str) -> dict:
    gui_name, cli_name = cfg.executable_names()
    internal = dist / "_internal"
    problems = []
    for name in (gui_name, cli_name):
        if not (dist / f"{name}{EXE_SUFFIX}").is_file():
            problems.append(f"missing executable {name}{EXE_SUFFIX}")
    expected = [internal / cfg.MODELS_DEST / cfg.LITE0_WEIGHTS_FILE, internal / "resources" / "icons" / "anomalyapp.svg",
                dist / "models" / "README.txt"]
    problems += [f"missing {p.relative_to(dist)}" for p in expected if not p.is_file()]
    for relative in ("triton", "tkinter", "matplotlib", "scipy", "sklearn", "skimage", "PySide6/Qt/translations",
                     "PySide6/Qt/qml", "_tkinter"):
        if (internal / relative).exists():
            problems.append(f"{relative} should not be in the bundle")
    stubs = {}
    if variant == "cpu":
        import cuda_stubs

        for name in cuda_stubs.STUBBED_SONAMES:
            found = list(internal.rglob(name))
            for path in found:
                size = path.stat().st_size
                stubs[str(path.relative_to(dist))] = size
                if size > 1_000_000:
                    problems.append(f"{path.relative_to(dist)} is {size} bytes: not a stub")
    if problems:
        raise Failed("layout: " + "; ".join(problems))
    say(f"layout: ok ({gui_name}, {cli_name}, bundled weights, resources, models/ beside the executables)")
    return {"stubs": stubs}


def predict_and_compare(dist: Path, work: Path, python: str, watch: NetworkWatch) -> dict:
    source_env = clean_env(work / "source-env")
    data = work / "demo_line"
    run([python, "-c", "import sys; from anomalyapp.data.demo import generate_demo; "
         "generate_demo(sys.argv[1], n_train=16, n_test_good=4, n_test_per_defect=4, size=128)", str(data)],
        source_env, "demo line (source install)", cwd=ROOT)
    model = work / "model"
    if model.exists():
        shutil.rmtree(model)
    run([python, "-m", "anomalyapp", "train", str(data), "--out", str(model), "--device", "cpu", "--image-size", "128"],
        source_env, "train (source install)", cwd=ROOT)
    outputs = {}
    for label, command, env, watched in (
        ("source", [python, "-m", "anomalyapp"], source_env, None),
        ("packaged", [str(dist / f"{cfg.executable_names()[1]}{EXE_SUFFIX}")], clean_env(work / "packaged-env"), watch),
    ):
        out = work / f"predict-{label}"
        if out.exists():
            shutil.rmtree(out)
        inputs = [str(folder) for folder in sorted((data / "test").iterdir()) if folder.is_dir()]
        run(command + ["predict", str(model), *inputs, "--out", str(out), "--device", "cpu"], env,
            f"predict ({label})", watched, cwd=work)
        outputs[label] = out
    source_csv = (outputs["source"] / "results.csv").read_bytes()
    packaged_csv = (outputs["packaged"] / "results.csv").read_bytes()
    rows = source_csv.decode().count("\n") - 1
    if source_csv != packaged_csv:
        raise Failed(f"results.csv differ between {outputs['source']} and {outputs['packaged']}")
    source_files = files_under(outputs["source"])
    packaged_files = files_under(outputs["packaged"])
    if source_files != packaged_files:
        raise Failed(f"different output files: {sorted(set(source_files) ^ set(packaged_files))[:5]}")
    _, mismatch, errors = filecmp.cmpfiles(outputs["source"], outputs["packaged"], source_files, shallow=False)
    if mismatch or errors:
        raise Failed(f"overlays differ: {(mismatch + errors)[:5]}")
    say(f"predict: results.csv identical ({rows} images), {len(source_files)} files byte-identical")
    return {"images": rows, "files_identical": len(source_files)}


def startup_times(command: list[str], env: dict[str, str], runs: int, label: str) -> dict:
    inside, outside = [], []
    for _ in range(runs):
        launched = time.monotonic()
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seen = None
        for line in proc.stderr:
            match = PROBE_LINE.search(line)
            if match:
                seen = time.monotonic() - launched
                inside.append(float(match.group(1)))
                break
        proc.stderr.read()
        proc.wait(timeout=120)
        if seen is None:
            raise Failed(f"startup probe ({label}): no probe line (exit code {proc.returncode})")
        outside.append(seen)
    # The first start with an empty data folder also writes the demo line (no recent project: the window opens
    # the demo project); the later ones find it.
    warm = inside[1:] or inside
    result = {
        "runs": runs,
        "since_process_start_s": [round(v, 2) for v in inside],
        "launch_to_line_s": [round(v, 2) for v in outside],
        "first_launch_s": round(inside[0], 2),
        "warm_median_s": round(statistics.median(warm), 2),
    }
    say(f"first window ({label}): {result['warm_median_s']:.2f} s from process start (median of later starts), "
        f"{result['first_launch_s']:.2f} s on the very first start (it writes the demo line); runs "
        f"{', '.join(f'{v:.2f}' for v in inside)}; launcher saw {', '.join(f'{v:.2f}' for v in outside)}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist" / "anomalyapp")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "package-test")
    parser.add_argument("--python", default=sys.executable, help="the source install's interpreter")
    parser.add_argument("--startup-runs", type=int, default=4)
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument("--xvfb", action="store_true",
                        help="time the first window on a real X server (xvfb-run) instead of offscreen")
    args = parser.parse_args(argv)
    dist = args.dist.resolve()
    work = args.work.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    variant = "cpu" if dist.name.endswith("-cpu") else "full"
    gui = dist / f"{cfg.executable_names()[0]}{EXE_SUFFIX}"
    summary: dict = {"dist": str(dist), "variant": variant}
    watch = NetworkWatch(work)
    try:
        if not dist.is_dir():
            raise Failed(f"{dist} does not exist: run make package first")
        summary["layout"] = check_layout(dist, variant)
        env = clean_env(work / "selftest-env")
        result = run([str(gui), "--self-test"], env, "self-test (packaged, empty HOME, offscreen)", watch, timeout=600)
        summary["self_test"] = [line for line in result.stdout.splitlines() if line.startswith("self-test:")]
        for line in summary["self_test"]:
            say(f"  {line}")
        summary["home_after_self_test"] = files_under(Path(env["HOME"]))[:50]
        summary["predict"] = predict_and_compare(dist, work, args.python, watch)
        # multiprocessing's spawn method (the benchmark's worker) re-runs the executable: freeze_support()
        bench = work / "bench"
        run([str(dist / f"{cfg.executable_names()[1]}{EXE_SUFFIX}"), "bench", "--data", str(work / "demo_line"),
             "--backbones", "efficientnet_lite0", "--repeats", "2", "--no-scale", "--json", str(bench / "bench.json"),
             "--markdown", str(bench / "bench.md")], clean_env(work / "bench-env"), "bench in a spawned worker (packaged)",
            watch, cwd=work)
        summary["bench"] = json.loads((bench / "bench.json").read_text())["backbones"]
        summary["network_watch"] = "strace connect()" if watch.strace else "not available (no strace)"
        if watch.attempts:
            raise Failed("network access attempted:\n" + "\n".join(watch.attempts[:10]))
        say(f"network: no IPv4/IPv6 connect() in any packaged run ({summary['network_watch']})")
        if not args.skip_startup:
            probe = {"ANOMALYAPP_STARTUP_PROBE": "exit"}
            prefix, platform = [], "offscreen"
            if args.xvfb:
                if not shutil.which("xvfb-run"):
                    raise Failed("--xvfb needs xvfb-run")
                prefix, platform = ["xvfb-run", "-a"], "xcb"
            probe["QT_QPA_PLATFORM"] = platform
            summary["startup_platform"] = platform
            summary["startup_packaged"] = startup_times(
                prefix + [str(gui)], clean_env(work / "startup-packaged", probe), args.startup_runs,
                f"packaged, {platform}")
            summary["startup_source"] = startup_times(
                prefix + [args.python, str(ROOT / "packaging" / "entry.py")], clean_env(work / "startup-source", probe),
                args.startup_runs, f"source install, {platform}")
    except (Failed, subprocess.TimeoutExpired) as error:
        summary["failed"] = str(error)
        (work / "package_test.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        say(f"FAILED: {error}")
        return 1
    (work / "package_test.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    say(f"all checks passed; summary in {work / 'package_test.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
