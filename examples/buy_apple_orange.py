"""Buying apples and oranges (book, section 5.4.2): multiply and add nodes.

(100 x 2 + 150 x 3) x 1.1 = 715 yen
backward: dApple 2.2, dApple_num 110, dOrange 3.3, dOrange_num 165, dTax 650
"""

from xpnet.layers import Add, Mul


def main() -> dict[str, float]:
    apple, apple_num = 100, 2
    orange, orange_num = 150, 3
    tax = 1.1
    mul_apple, mul_orange, add_fruit, mul_tax = Mul(), Mul(), Add(), Mul()

    apple_price = mul_apple.forward(apple, apple_num)
    orange_price = mul_orange.forward(orange, orange_num)
    all_price = add_fruit.forward(apple_price, orange_price)
    price = mul_tax.forward(all_price, tax)

    dall_price, dtax = mul_tax.backward(1)
    dapple_price, dorange_price = add_fruit.backward(dall_price)
    dorange, dorange_num = mul_orange.backward(dorange_price)
    dapple, dapple_num = mul_apple.backward(dapple_price)

    result = {
        "price": price,
        "dApple": dapple,
        "dApple_num": dapple_num,
        "dOrange": dorange,
        "dOrange_num": dorange_num,
        "dTax": dtax,
    }
    for name, value in result.items():
        print(f"{name}: {value:g}")
    return result


if __name__ == "__main__":
    main()
