"""Entry point: no arguments (or GUI options) open the window; a subcommand runs the CLI."""

from __future__ import annotations

import sys

GUI_OPTIONS = {"--self-test", "--project", "--demo"}


def main(argv: list[str] | None = None) -> int:
    # A packaged (PyInstaller) executable is also what multiprocessing's spawn start method runs for a worker
    # (the benchmark uses spawn): freeze_support() turns such a start into the worker and never returns there.
    # A no-op for a normal interpreter.
    import multiprocessing

    multiprocessing.freeze_support()
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in GUI_OPTIONS:
        try:
            from anomalyapp.gui.app import main as gui_main
        except ImportError as exc:
            print(f"anomalyapp: the desktop window is not available ({exc}); use a subcommand, see --help", file=sys.stderr)
            return 2
        return gui_main(args)
    from anomalyapp.cli.main import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
