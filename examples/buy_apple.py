"""Buying apples (book, section 5.4): forward and backward through two multiply nodes.

apple 100 yen x 2 apples x 1.1 tax = 220 yen
backward: dapple 2.2, dapple_num 110, dtax 200

The computation is ``xpnet.graph.apple``, recorded node by node as it runs; draw it
with ``xpnet graph apple -o apple.png``.
"""

import argparse

from xpnet import graph


def main() -> dict[str, float]:
    run = graph.apple()
    result = {"price": run.output, **{f"d{n}": g for n, g in run.input_gradients().items()}}
    for name, value in result.items():
        print(f"{name}: {value:g}")
    return result


if __name__ == "__main__":
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()  # --help, and no other argument
    main()
