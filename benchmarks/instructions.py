"""What a step costs in machine instructions, which the machine's noise does not move:
xpnet's step, its layers alone, its arithmetic alone (as in ``spread.py``) and the
hand-written step, each counted by Valgrind's ``callgrind``::

    python -m benchmarks.instructions [network] [batch]     # default: course 100

Each step runs in a child process under ``callgrind`` twice, for ``FEW`` and for
``MANY`` steps after the same set-up; the difference of the two totals over the
difference of the step counts is one step's instructions. One BLAS thread and a fixed
hash seed, so that the count is the same from run to run. The difference between
xpnet's step and its arithmetic alone is the Python that xpnet adds around the
arithmetic; set against the time the two take side by side (``spread.py``), it says how
much of that time is instructions at all. The count is split by where the instructions
ran: the Python interpreter, NumPy, BLAS, the C library (``malloc``, ``memset``).
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks import _cli
from benchmarks.spread import ARITHMETIC, STEPS
from benchmarks.test_training_step import DTYPE, NETWORKS, numpy_step
from xpnet.datasets import load_mnist

FEW, MANY = 5, 25
KINDS = ("xpnet step", "layers alone", "arithmetic only", "hand-written numpy")


def make_step(kind: str, network: str, batch: int) -> Callable[[], Any]:
    """One ``kind`` of step of ``network`` on the first ``batch`` mnist-5k samples."""
    spec = NETWORKS[network]
    (x_all, t_all), _ = load_mnist(name="mnist-5k", one_hot_label=True, device="cpu")
    x, t = (np.asarray(a, dtype=DTYPE) for a in spec.targets(x_all[:batch], t_all[:batch]))
    if kind == "hand-written numpy":
        return numpy_step(spec, x, t)
    make = ARITHMETIC[network] if kind == "arithmetic only" else STEPS[kind]
    return make(spec.make(None), x, t, spec.lr(batch))


GROUPS = (  # (group, substrings of an object file's name), the first that matches
    ("Python interpreter", ("libpython", "/bin/python")),
    ("BLAS", ("blas",)),  # NumPy's OpenBLAS lies under numpy.libs/
    ("NumPy", ("numpy",)),
    ("C library", ("libc.so", "libm.so", "ld-linux")),
)


def group_of(path: str) -> str:
    """The group of an object file (``GROUPS``), else ``"other"``."""
    name = path.lower()
    return next((g for g, marks in GROUPS if any(m in name for m in marks)), "other")


def instructions_by_object(path: str) -> Counter:
    """Instructions executed in each object file (program, shared library), from a
    ``callgrind`` output file: the self cost of every function, summed by its ``ob=``."""
    names: dict[str, str] = {}
    totals: Counter = Counter()
    current, call_cost_next = "?", False
    with open(path) as lines:
        for line in lines:
            if line.startswith(("ob=", "cob=")):
                ref, _, name = line.split("=", 1)[1].strip().partition(" ")
                names.setdefault(ref, name or ref)
                if line.startswith("ob="):
                    current = names[ref]
            elif line.startswith("calls="):
                call_cost_next = True  # the next cost line is the callee's, not ours
            elif line[:1].isdigit() or line[:1] in "+-*":
                if not call_cost_next:
                    totals[current] += int(line.split()[1])
                call_cost_next = False
    return totals


def count(kind: str, network: str, batch: int, steps: int) -> Counter:
    """Instructions by group (``GROUPS``) for the set-up and ``steps`` steps of ``kind``,
    in a child process under ``callgrind``."""
    child = f"from benchmarks.instructions import run; run({kind!r}, {network!r}, {batch}, {steps})"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "callgrind.out")
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             sys.executable, "-c", child],
            capture_output=True, env=env, check=True,
        )  # fmt: skip
        totals: Counter = Counter()
        for obj, n in instructions_by_object(out).items():
            totals[group_of(obj)] += n
    return totals


def run(kind: str, network: str, batch: int, steps: int) -> None:
    """The child's work: the set-up, then ``steps`` steps, without the cyclic garbage
    collector (xpnet's step sets it off about once in 400 steps, so one more collection
    in the ``MANY`` run than in the ``FEW`` one would be charged to every step)."""
    step = make_step(kind, network, batch)
    gc.disable()
    for _ in range(steps):
        step()


def main(network: str = "course", batch: int = 100) -> None:
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    kinds = [k for k in KINDS if k != "arithmetic only" or network in ARITHMETIC]
    print(
        f"{network} batch {batch}, one BLAS thread: thousands of instructions a step "
        f"({FEW} and {MANY} steps counted)"
    )
    columns = [g for g, _ in GROUPS] + ["other", "all"]
    print(f"  {'':18s} " + "".join(f"{c:>20s}" for c in columns))
    for kind in kinds:
        few, many = (count(kind, network, batch, n) for n in (FEW, MANY))
        per_step = {g: (many[g] - few[g]) / (MANY - FEW) for g in columns[:-1]}
        per_step["all"] = sum(per_step.values())
        print(f"  {kind:18s} " + "".join(f"{per_step[c] / 1e3:20,.1f}" for c in columns))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: ``[network] [batch]``; ``--help`` prints this module's description."""
    return _cli.network_and_batch("benchmarks.instructions", __doc__, NETWORKS, argv)


if __name__ == "__main__":
    args = parse_args()
    main(args.network, args.batch)
