"""Buying apples and oranges (book, section 5.4.2): multiply and add nodes.

(100 x 2 + 150 x 3) x 1.1 = 715 yen
backward: dapple 2.2, dapple_num 110, dorange 3.3, dorange_num 165, dtax 650

The computation is ``xpnet.graph.apple_orange``, recorded node by node as it runs;
draw it with ``xpnet graph apple-orange -o apple-orange.png``.
"""

import argparse

from xpnet import graph


def main() -> dict[str, float]:
    run = graph.apple_orange()
    result = {"price": run.output, **{f"d{n}": g for n, g in run.input_gradients().items()}}
    for name, value in result.items():
        print(f"{name}: {value:g}")
    return result


if __name__ == "__main__":
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()  # --help, and no other argument
    main()
