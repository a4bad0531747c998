"""What every command of the command line shares: exit codes and the argument parser's rules."""

from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130
EXIT_TAMPERED = 3  # records verify: the records were changed outside the app
EXIT_NOT_SENT = 4  # line test: the test verdict did not reach every sink in time (it stays queued)


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own exit code is 2 as well; keep its one-line style
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def command_line_user(records):
    """The project account a command-line run acts as (``RecordsService.auth.local_user``): the one named by
    ANOMALYAPP_USER, else the OS login name."""
    import getpass
    import os

    return records.auth.local_user(os.environ.get("ANOMALYAPP_USER") or getpass.getuser())


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_number(unit: str):
    """An argparse type: a number above 0, its errors naming ``unit`` ("seconds", "megapixels")."""

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number of {unit}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0 {unit}, not {text}")
        return value

    return convert
