"""Write the shared high-resolution set: the demo washers at 2048 x 2048 with defects 4-10 px across.

    .venv/bin/python tools/make_highres_set.py [OUT] [--size 2048] [--train 12] [--test 6]

MVTec layout (train/good, test/good, test/scratch, test/spot, ground_truth/<kind>/<stem>_mask.png), the same
bytes on every machine for the same settings (each image is drawn from the seed alone). The counts are kept
small so that a tiled model trains on two CPU cores in a few minutes. docs/accuracy.md reports the tiled and
the squeezed models on it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomalyapp.data.demo import SMALL_DEFECT_PX, generate_demo  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="data/highres_washers", help="folder to write (default %(default)s)")
    parser.add_argument("--size", type=int, default=2048, help="image side in pixels (default %(default)s)")
    parser.add_argument("--train", type=int, default=12, help="good training images (default %(default)s)")
    parser.add_argument("--test", type=int, default=6, help="test images per class (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    root = generate_demo(args.out, seed=args.seed, n_train=args.train, n_test_good=args.test,
                         n_test_per_defect=args.test, size=args.size, small_defects=True)
    low, high = SMALL_DEFECT_PX
    print(f"{root}: {args.size}x{args.size}, {args.train} train, {args.test} per test class, defects {low}-{high} px "
          f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
