"""Checks of plain arguments that several modules share (counts, sizes, seeds, scales):
NumPy's integer and float scalars are numbers here as Python's are; a ``bool`` is not.
:func:`refuses_book_keywords` names xpnet's keyword for one of the book's,
:class:`BookName` and :class:`TorchName` xpnet's way for a book's or PyTorch's attribute;
:func:`shape_mistake` says what a gradient of the wrong shape most likely forgot."""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable
from typing import Any

# The book's keyword -> xpnet's, which takes the book's values as they are (docs/book.md).
BOOK_KEYWORDS = {
    "hidden_size_list": "hidden_sizes",
    "weight_init_std": "weight_init",  # 'relu'/'he', 'sigmoid'/'xavier' or a std, in both
    "weight_decay_lambda": "weight_decay",
    "dropout_ration": "dropout_ratio",
    "mini_batch_size": "batch_size",
    "evaluate_sample_num_per_epoch": "eval_samples",
    "optimizer_param": "optimizer",  # the book's Trainer makes one from optimizer's name
}


class BookName:
    """A class attribute under one of the book's names that xpnet spells otherwise
    (``lastLayer = BookName("net.last_layer")``): read from an instance, it raises the
    ``AttributeError`` Python would, saying what to use. A descriptor, not ``__getattr__``,
    which would slow every attribute read of the class (CPython then looks attributes up
    through a Python-level hook, and specializes none of them)."""

    def __init__(self, use: str) -> None:
        self.use = use

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    source = "the book's"
    doc = "docs/book.md"

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:  # on the class: help() and inspect see the descriptor
            return self
        raise AttributeError(
            f"{type(obj).__name__!r} object has no attribute {self.name!r}; for "
            f"{self.source} {self.name}, use {self.use} ({self.doc})",
            name=self.name,
            obj=obj,
        )


# What torch's zero_grad() is in xpnet, on a network and on an optimizer alike.
NO_ACCUMULATED_GRADIENTS = "nothing: net.gradient(x, t) returns new gradients, none accumulate"


class TorchName(BookName):
    """A :class:`BookName` for one of PyTorch's names (``step = TorchName("opt.update(...)")``),
    pointing to docs/pytorch.md; for a name xpnet has no exact equivalent of, not an alias."""

    source = "PyTorch's"
    doc = "docs/pytorch.md"


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a string or a float for a count): a ``TypeError``, as
    NumPy and PyTorch raise for one, and a ``ValueError`` too, the type of xpnet's other
    argument errors, so that ``except ValueError`` still catches every bad argument (as
    NumPy's ``AxisError`` is both a ``ValueError`` and an ``IndexError``)."""


def bad_argument(valid_type: bool) -> type[ValueError]:
    """The error for an argument that failed its check: ``ValueError`` when it has a valid
    type (``valid_type``) but a bad value, :class:`ArgumentTypeError` when its type is wrong."""
    return ValueError if valid_type else ArgumentTypeError


def is_integer(value: Any) -> bool:
    """Whether ``value`` is an integer (``int`` or a NumPy integer), not a ``bool``."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number (``int``, ``float`` or a NumPy one), not a ``bool``."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_count(value: Any, least: int) -> bool:
    """Whether ``value`` is an integer >= ``least``."""
    return is_integer(value) and value >= least


def require_count(name: str, value: Any, least: int) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an integer >= ``least``
    (:class:`ArgumentTypeError`, a ``TypeError``, when it is no integer)."""
    if not is_count(value, least):
        message = f"{name} must be an integer >= {least}, got {value!r}"
        raise bad_argument(is_integer(value))(message)


def is_finite_at_least(value: Any, least: float) -> bool:
    """Whether ``value`` is a finite real number >= ``least``."""
    return is_real(value) and least <= value < math.inf


#: What a transposed gradient most likely comes from, as a parenthesis in a message.
TRANSPOSED_PRODUCT = "a product's factors swapped, as dout.T @ x for x.T @ dout?"


def shape_mistake(got: tuple[int, ...], want: tuple[int, ...]) -> str:
    """What a gradient of shape ``got`` for an array of shape ``want`` most likely forgot,
    as a clause to end a message with (empty when no usual mistake fits): a transposed
    product (``dout.T @ x`` for ``x.T @ dout``), a kernel's (FN, C, FH, FW) gradient left
    as the matrix im2col's product gives, the sum over the batch axis, or that sum's
    ``keepdims=True``."""
    if len(got) >= 2 and got == want[::-1]:
        return f": transposed ({TRANSPOSED_PRODUCT})"
    if len(want) == 4 and got == (math.prod(want[1:]), want[0]):
        return (
            ": the (C * FH * FW, FN) of col.T @ dout, a kernel's gradient before the book's "
            f"transpose(1, 0).reshape{want}"
        )
    if len(want) == 4 and got == (want[0], math.prod(want[1:])):
        return f": the filters' rows (FN, C * FH * FW), not yet reshaped to {want}"
    if got == (1, *want):
        return ": an axis of size 1 too many (keepdims=True, or a batch of 1 not summed over)"
    if got[1:] == want:
        return f": one row per sample of a batch of {got[0]}; sum over the batch (axis=0)"
    return ""


def _in_xpnet_terms(book: str, given: dict[str, Any]) -> str:
    """What xpnet takes for the book's keyword ``book`` given among ``given``."""
    value = given[book]
    if book == "optimizer_param":
        hyper = [f"{k}={v!r}" for k, v in value.items()] if isinstance(value, dict) else []
        arguments = ", ".join([repr(given.get("optimizer", "sgd")), *hyper])
        made = f"xpnet.optim.make_optimizer({arguments})"
        return f"the optimizer second, Trainer(network, {made}, x_train, ...)"
    return f"{BOOK_KEYWORDS[book]}={value!r}"


def refuses_book_keywords(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` (a class's ``__init__``) raising a ``TypeError`` that names xpnet's keyword
    for each of the book's it is given (:data:`BOOK_KEYWORDS`, those whose xpnet name it
    takes), where Python would say only "unexpected keyword argument"."""
    taken = inspect.signature(init).parameters
    renamed = {b for b, x in BOOK_KEYWORDS.items() if b not in taken and x in taken}

    @functools.wraps(init)  # help() and inspect.signature show init's own signature
    def checked(self: Any, *args: Any, **kwargs: Any) -> None:
        book = [name for name in kwargs if name in renamed]
        if book:
            raise TypeError(
                f"{type(self).__name__}() takes xpnet's names for the book's keywords: "
                + ", ".join(f"{_in_xpnet_terms(name, kwargs)} (not {name})" for name in book)
                + ", with the book's values; docs/book.md maps the book's names"
            )
        init(self, *args, **kwargs)

    return checked
