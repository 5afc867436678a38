"""Buying apples (book, section 5.4): forward and backward through two multiply nodes.

apple 100 yen x 2 apples x 1.1 tax = 220 yen
backward: dApple 2.2, dApple_num 110, dTax 200
"""

from xpnet.layers import Mul


def main() -> dict[str, float]:
    apple, apple_num, tax = 100, 2, 1.1
    mul_apple, mul_tax = Mul(), Mul()

    apple_price = mul_apple.forward(apple, apple_num)
    price = mul_tax.forward(apple_price, tax)

    dapple_price, dtax = mul_tax.backward(1)
    dapple, dapple_num = mul_apple.backward(dapple_price)

    result = {
        "price": price,
        "dApple": dapple,
        "dApple_num": dapple_num,
        "dTax": dtax,
    }
    for name, value in result.items():
        print(f"{name}: {value:g}")
    return result


if __name__ == "__main__":
    main()
