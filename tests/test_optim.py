"""Optimizers: three steps on tiny arrays against the book's formulas written out in plain
Python floats (one element at a time), plus the mapping, dtype and state behaviour."""

import copy
import json
import math

import array_api_compat
import array_api_strict
import numpy as np
import pytest

from xpnet import MultiLayerNet, TwoLayerNet
from xpnet.backend import BackendMismatchError, namespace, to_device, to_numpy
from xpnet.optim import (
    OPTIMIZERS,
    SGD,
    AdaGrad,
    Adam,
    Momentum,
    Nesterov,
    RMSprop,
    make_optimizer,
)

P0 = {"W": [[1.0, -2.0], [0.5, 3.0]], "b": [0.25, -0.75]}
GRADS = [
    {"W": [[0.5, -1.0], [2.0, 0.0]], "b": [0.1, -0.3]},
    {"W": [[0.2, 0.3], [-1.5, 0.4]], "b": [-0.2, 0.6]},
    {"W": [[-0.4, 0.1], [0.7, -0.9]], "b": [0.05, 0.0]},
]


def flat(nested):
    return [v for row in nested for v in row] if isinstance(nested[0], list) else list(nested)


def reference(kind, hyper, steps):
    """The book's update rules on Python floats, element by element; returns the trajectory."""
    p = {k: flat(v) for k, v in P0.items()}
    s1 = {k: [0.0] * len(v) for k, v in p.items()}  # v or h or m
    s2 = {k: [0.0] * len(v) for k, v in p.items()}  # Adam's v
    out = []
    for t, g_all in enumerate(GRADS[:steps], start=1):
        for k in p:
            g = flat(g_all[k])
            for i in range(len(p[k])):
                lr = hyper["lr"]
                if kind == "sgd":
                    p[k][i] -= lr * g[i]
                elif kind == "momentum":
                    s1[k][i] = hyper["momentum"] * s1[k][i] - lr * g[i]
                    p[k][i] += s1[k][i]
                elif kind == "nesterov":
                    m = hyper["momentum"]
                    s1[k][i] = m * s1[k][i] - lr * g[i]
                    p[k][i] += m * m * s1[k][i] - (1 + m) * lr * g[i]
                elif kind == "adagrad":
                    s1[k][i] += g[i] ** 2
                    p[k][i] -= lr * g[i] / (math.sqrt(s1[k][i]) + 1e-7)
                elif kind == "rmsprop":
                    d = hyper["decay_rate"]
                    s1[k][i] = d * s1[k][i] + (1 - d) * g[i] ** 2
                    p[k][i] -= lr * g[i] / (math.sqrt(s1[k][i]) + 1e-7)
                elif kind == "adam":
                    b1, b2 = hyper["beta1"], hyper["beta2"]
                    lr_t = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
                    s1[k][i] += (1 - b1) * (g[i] - s1[k][i])
                    s2[k][i] += (1 - b2) * (g[i] ** 2 - s2[k][i])
                    p[k][i] -= lr_t * s1[k][i] / (math.sqrt(s2[k][i]) + 1e-7)
        out.append({k: list(v) for k, v in p.items()})
    return out


CASES = [
    (SGD, "sgd", {"lr": 0.1}),
    (Momentum, "momentum", {"lr": 0.1, "momentum": 0.9}),
    (Nesterov, "nesterov", {"lr": 0.1, "momentum": 0.8}),
    (AdaGrad, "adagrad", {"lr": 0.5}),
    (RMSprop, "rmsprop", {"lr": 0.05, "decay_rate": 0.9}),
    (Adam, "adam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.95}),
]


def device_dict(nested, xp, dtype="float64"):
    return {k: to_device(v, dtype=dtype, xp=xp) for k, v in nested.items()}


@pytest.mark.parametrize(("cls", "kind", "hyper"), CASES, ids=[c[1] for c in CASES])
def test_three_steps_match_the_books_formulas(xp, cls, kind, hyper):
    opt = cls(**hyper)
    params = device_dict(P0, xp)
    expected = reference(kind, hyper, 3)
    for step, grads in enumerate(GRADS):
        opt.update(params, device_dict(grads, xp))
        for k in params:
            np.testing.assert_allclose(
                to_numpy(params[k]).ravel(), expected[step][k], rtol=1e-12, atol=1e-15
            )
    assert opt.iterations == 3


@pytest.mark.parametrize("cls", [Momentum, Nesterov, AdaGrad, RMSprop, Adam])
def test_an_optimizer_with_state_names_a_python_float_parameter(cls):
    # The book's optimizer_compare_naive.py keeps its parameters x and y as Python floats.
    with pytest.raises(
        TypeError, match=r"parameter 'x' is float -7.0, expected an array.*numpy.float64\(-7.0\)"
    ):
        cls().update({"x": -7.0}, {"x": -0.7})


@pytest.mark.parametrize(("cls", "kind", "hyper"), CASES, ids=[c[1] for c in CASES])
def test_numpy_scalar_parameters_step_as_the_books_python_floats(cls, kind, hyper):
    opt = cls(**hyper)
    params = {f"{k}{i}": np.float64(v) for k, vs in P0.items() for i, v in enumerate(flat(vs))}
    expected = reference(kind, hyper, 3)
    for step, grads in enumerate(GRADS):
        opt.update(params, {f"{k}{i}": g for k in P0 for i, g in enumerate(flat(grads[k]))})
        want = [v for k in P0 for v in expected[step][k]]
        np.testing.assert_allclose(list(params.values()), want, rtol=1e-12, atol=1e-15)


class BookSGD:
    """The book's ``common/optimizer.py`` (oreilly-japan/deep-learning-from-scratch, MIT
    License) rewritten in NumPy statement for statement, as the independent reference (its
    classes create their state for every parameter at the first update and change it in
    place)."""

    def __init__(self, lr=0.01):
        self.lr = lr

    def update(self, params, grads):
        for key in params:
            params[key] -= self.lr * grads[key]


class BookMomentum:
    def __init__(self, lr=0.01, momentum=0.9):
        self.lr, self.momentum, self.v = lr, momentum, None

    def update(self, params, grads):
        if self.v is None:
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            self.v[key] = self.momentum * self.v[key] - self.lr * grads[key]
            params[key] += self.v[key]


class BookNesterov(BookMomentum):
    def update(self, params, grads):
        if self.v is None:
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            self.v[key] *= self.momentum
            self.v[key] -= self.lr * grads[key]
            params[key] += self.momentum * self.momentum * self.v[key]
            params[key] -= (1 + self.momentum) * self.lr * grads[key]


class BookAdaGrad:
    def __init__(self, lr=0.01):
        self.lr, self.h = lr, None

    def update(self, params, grads):
        if self.h is None:
            self.h = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            self.h[key] += grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


class BookRMSprop:
    def __init__(self, lr=0.01, decay_rate=0.99):
        self.lr, self.decay_rate, self.h = lr, decay_rate, None

    def update(self, params, grads):
        if self.h is None:
            self.h = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            self.h[key] *= self.decay_rate
            self.h[key] += (1 - self.decay_rate) * grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


class BookAdam:
    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.iter, self.m, self.v = 0, None, None

    def update(self, params, grads):
        if self.m is None:
            self.m = {key: np.zeros_like(val) for key, val in params.items()}
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)
        for key in params:
            self.m[key] += (1 - self.beta1) * (grads[key] - self.m[key])
            self.v[key] += (1 - self.beta2) * (grads[key] ** 2 - self.v[key])
            params[key] -= lr_t * self.m[key] / (np.sqrt(self.v[key]) + 1e-7)


BOOK = {
    "sgd": BookSGD,
    "momentum": BookMomentum,
    "nesterov": BookNesterov,
    "adagrad": BookAdaGrad,
    "rmsprop": BookRMSprop,
    "adam": BookAdam,
}


def random_run(steps=20, seed=0):
    """Float64 parameters (a matrix and a vector) and ``steps`` gradients for them."""
    rng = np.random.default_rng(seed)
    params = {"W": rng.standard_normal((5, 4)), "b": rng.standard_normal(4)}
    grads = [{k: rng.standard_normal(v.shape) for k, v in params.items()} for _ in range(steps)]
    return params, grads


@pytest.mark.parametrize("name", list(BOOK))
def test_twenty_steps_with_the_default_hyperparameters_follow_the_books_code(xp, name):
    """Equal to rounding: Nesterov adds its two terms before updating the parameter (the
    book updates it twice), Adam scales the squared gradient before adding it to ``v``."""
    params, grads = random_run()
    book, ours = {k: v.copy() for k, v in params.items()}, device_dict(params, xp)
    book_optimizer, optimizer = BOOK[name](), OPTIMIZERS[name]()
    for g in grads:
        book_optimizer.update(book, g)
        optimizer.update(ours, device_dict(g, xp))
    for k in book:
        np.testing.assert_allclose(to_numpy(ours[k]), book[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_state_dict_taken_mid_run_resumes_the_uninterrupted_trajectory(name):
    params, grads = random_run()
    straight, optimizer = {k: v.copy() for k, v in params.items()}, OPTIMIZERS[name]()
    for g in grads[:10]:
        optimizer.update(straight, g)
    state, halfway = optimizer.state_dict(), {k: v.copy() for k, v in straight.items()}
    for g in grads[10:]:  # the state dict holds the optimizer's arrays: they must not move
        optimizer.update(straight, g)
    resumed = OPTIMIZERS[name](lr=0.5)  # its hyperparameters are the state's
    resumed.load_state_dict(state)
    for g in grads[10:]:
        resumed.update(halfway, g)
    assert resumed.iterations == optimizer.iterations == 20
    for k in straight:
        np.testing.assert_array_equal(halfway[k], straight[k])


def test_hand_computed_first_steps():
    """A few values worked out on paper, so the reference above is not the only check."""
    p = {"w": np.array([1.0])}
    SGD(lr=0.1).update(p, {"w": np.array([0.5])})
    assert p["w"][0] == pytest.approx(0.95)

    p, opt = {"w": np.array([1.0])}, Momentum(lr=0.1, momentum=0.9)
    opt.update(p, {"w": np.array([0.5])})  # v = -0.05, w = 0.95
    opt.update(p, {"w": np.array([0.5])})  # v = 0.9 * -0.05 - 0.05 = -0.095, w = 0.855
    assert p["w"][0] == pytest.approx(0.855)

    p, opt = {"w": np.array([1.0])}, AdaGrad(lr=0.1)
    opt.update(p, {"w": np.array([2.0])})  # h = 4, w = 1 - 0.1 * 2 / (2 + 1e-7)
    assert p["w"][0] == pytest.approx(1 - 0.2 / (2 + 1e-7), abs=1e-15)

    p, opt = {"w": np.array([1.0])}, Adam(lr=0.001)
    opt.update(p, {"w": np.array([3.0])})  # first Adam step moves by ~lr whatever the gradient
    lr_t = 0.001 * math.sqrt(1 - 0.999) / (1 - 0.9)
    assert p["w"][0] == pytest.approx(1 - lr_t * 0.3 / (math.sqrt(0.001 * 9) + 1e-7))
    assert p["w"][0] == pytest.approx(1 - 0.001, rel=1e-6)


def test_adam_counts_each_parameters_steps_so_one_updated_first_later_starts_at_step_1(xp):
    """A parameter left out of 50 updates (frozen), then updated: its first step is Adam's
    first, about lr, as PyTorch's per-parameter step count makes it; with the optimizer's
    count it would be sqrt(1 - 0.9) / sqrt(1 - 0.999) ~ 3.2 times that."""
    params = {name: to_device([1.0], dtype="float64", xp=xp) for name in ("a", "b")}
    grads = {name: to_device([0.5], dtype="float64", xp=xp) for name in ("a", "b")}
    opt = Adam(lr=0.001)
    for _ in range(50):
        opt.update({"a": params["a"]}, grads)
    opt.update(params, grads)
    assert opt.steps == {"a": 51, "b": 1}
    m, v = 0.1 * 0.5, 0.001 * 0.25  # the book's first step, by hand
    lr_t = 0.001 * math.sqrt(1 - 0.999) / (1 - 0.9)
    assert to_numpy(params["b"])[0] == pytest.approx(1 - lr_t * m / (math.sqrt(v) + 1e-7))


def test_adam_state_without_steps_continues_the_optimizers_count(cpu_xp):
    """State from a file of an older xpnet (no steps): its parameters go on at the
    optimizer's step, as they were updated at every one."""
    params = {"w": to_device([1.0], dtype="float64", xp=cpu_xp)}
    grads = {"w": to_device([0.5], dtype="float64", xp=cpu_xp)}
    opt = Adam(lr=0.001)
    for _ in range(4):
        opt.update(params, grads)
    state = opt.state_dict()
    del state["steps"]
    resumed = Adam(lr=0.001)
    resumed.load_state_dict(state)
    resumed.update(params, grads)
    assert resumed.steps == {"w": 5}


@pytest.mark.parametrize("steps", [{"w": 0}, {"w": 1.5}, [1]])
def test_adam_refuses_steps_that_are_not_counts(steps):
    with pytest.raises(ValueError, match=r"'steps' must map parameter names to integers >= 1"):
        Adam().load_state_dict({"iterations": 1, "steps": steps})


def test_adam_steps_as_in_float64_on_a_float32_gradient_whose_square_overflows(xp):
    """1e20 has no float32 square (above 1.8e19); the steps are still the book's, as its
    formulas give them in float64 (and PyTorch's Adam in float32)."""
    opt, params = Adam(lr=0.001), {"w": to_device([1.0], dtype="float32", xp=xp)}
    g, p, m, v = float(np.float32(1e20)), 1.0, 0.0, 0.0  # the book's Adam on Python floats
    for t in range(1, 4):
        opt.update(params, {"w": to_device([g], dtype="float32", xp=xp)})
        m += 0.1 * (g - m)
        v += 0.001 * (g * g - v)
        p -= 0.001 * math.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (math.sqrt(v) + 1e-7)
    np.testing.assert_allclose(to_numpy(params["w"]), [p], rtol=1e-6)


def test_adam_keeps_parameters_finite_on_the_largest_float32_gradients(xp):
    """Even (1 - beta2) * g**2 overflows for g above 5.8e20: v is then inf and the step 0,
    never the NaN of inf - inf."""
    opt, params = Adam(), {"w": to_device([1.0], dtype="float32", xp=xp)}
    with np.errstate(over="ignore"):  # NumPy's warning of the overflow this test makes
        for _ in range(3):
            opt.update(params, {"w": to_device([3e38], dtype="float32", xp=xp)})
    assert np.isfinite(to_numpy(params["w"])).all()


def test_the_books_default_hyperparameters():
    assert SGD().lr == 0.01
    assert (Momentum().lr, Momentum().momentum) == (0.01, 0.9)
    assert (Nesterov().lr, Nesterov().momentum) == (0.01, 0.9)
    assert AdaGrad().lr == 0.01
    assert (RMSprop().lr, RMSprop().decay_rate) == (0.01, 0.99)
    assert (Adam().lr, Adam().beta1, Adam().beta2) == (0.001, 0.9, 0.999)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_updates_a_networks_live_params_and_keeps_dtype(xp, name):
    net = MultiLayerNet(4, [3], 2, seed=0, xp=xp)  # float32
    x = to_device(np.random.default_rng(0).standard_normal((5, 4)), dtype="float32", xp=xp)
    t = to_device([0, 1, 1, 0, 1], dtype="int64", xp=xp)
    before = {k: to_numpy(v).copy() for k, v in net.params.items()}
    held = net.params["W1"]
    opt = make_optimizer(name)
    for _ in range(2):
        opt.update(net.params, net.gradient(x, t))
    assert all(v.dtype == xp.float32 for v in net.params.values())
    assert all(not np.array_equal(to_numpy(net.params[k]), before[k]) for k in before)
    for slot in opt.state.values():
        assert all(a.dtype == xp.float32 for a in slot.values())
    # Parameters are trained in place, as in the book and PyTorch: no new arrays per step.
    assert net.params["W1"] is held


def test_make_optimizer_names_and_errors():
    assert isinstance(make_optimizer("Adam", lr=0.1), Adam)
    assert make_optimizer("sgd", lr=None).lr == 0.01  # None means "the default"
    assert set(OPTIMIZERS) == {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"}
    with pytest.raises(ValueError, match=r"unknown optimizer 'lbfgs'.*sgd, momentum"):
        make_optimizer("lbfgs")


@pytest.mark.parametrize("name", [None, 3, Adam])
def test_make_optimizer_refuses_a_name_that_is_not_a_string(name):
    with pytest.raises(TypeError) as info:
        make_optimizer(name)
    assert str(info.value) == (
        "make_optimizer: name must be a string, one of sgd, momentum, nesterov, adagrad, "
        f"rmsprop, adam; got {name!r} ({type(name).__name__})"
    )


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("sgd", {"momentum": 0.9}, "sgd takes lr, not momentum"),
        ("Adam", {"lr": 0.1, "momentum": 0.9}, "adam takes lr, beta1, beta2, not momentum"),
        ("rmsprop", {"rho": 0.9, "eps": 1e-8}, "rmsprop takes lr, decay_rate, not rho, eps"),
    ],
)
def test_make_optimizer_names_the_hyperparameters_an_optimizer_takes(name, kwargs, message):
    with pytest.raises(TypeError) as info:
        make_optimizer(name, **kwargs)
    assert str(info.value) == message


def test_make_optimizer_says_weight_decay_is_the_networks_setting():
    with pytest.raises(TypeError) as info:
        make_optimizer("sgd", weight_decay=1e-4)
    assert str(info.value) == (
        "sgd takes lr, not weight_decay; weight_decay is a setting of the network "
        "(weight_decay= of MultiLayerNet or Sequential, --weight-decay of xpnet train), "
        "not of the optimizer"
    )


def test_config_and_state_dict_round_trip():
    opt = Adam(lr=0.01, beta1=0.8)
    assert opt.config() == {"name": "adam", "lr": 0.01, "beta1": 0.8, "beta2": 0.999}
    assert repr(opt) == "Adam(lr=0.01, beta1=0.8, beta2=0.999)"
    params = {"w": np.array([1.0, 2.0])}
    opt.update(params, {"w": np.array([0.5, -0.5])})
    other = Adam(lr=0.01, beta1=0.8)
    other.load_state_dict(opt.state_dict())
    p1, p2 = params, {"w": params["w"].copy()}  # opt goes on with its own parameters
    opt.update(p1, {"w": np.array([0.1, 0.2])})
    other.update(p2, {"w": np.array([0.1, 0.2])})
    np.testing.assert_array_equal(p1["w"], p2["w"])
    with pytest.raises(ValueError, match="no state buffer"):
        SGD().load_state_dict({"iterations": 1, "buffers": {"v": {}}})


# Hyperparameter checks: (optimizer, argument, bad value, error, the valid range)
LR, UNIT = "a finite number >= 0", "a number in [0, 1)"
BAD_HYPERPARAMETERS = [
    (SGD, "lr", -1, ValueError, LR),
    (SGD, "lr", -1e-9, ValueError, LR),
    (SGD, "lr", 10**400, ValueError, LR),  # no float holds it
    (SGD, "lr", math.nan, ValueError, LR),
    (AdaGrad, "lr", math.inf, ValueError, LR),
    (SGD, "lr", "0.1", TypeError, LR),
    (SGD, "lr", None, TypeError, LR),
    (Adam, "lr", True, TypeError, LR),
    (Momentum, "momentum", 1.5, ValueError, UNIT),
    (Momentum, "momentum", 1, ValueError, UNIT),
    (Nesterov, "momentum", -0.1, ValueError, UNIT),
    (Nesterov, "momentum", False, TypeError, UNIT),
    (Adam, "beta1", 1.0, ValueError, UNIT),
    (Adam, "beta2", 1.0, ValueError, UNIT),
    (Adam, "beta2", math.nan, ValueError, UNIT),
    (RMSprop, "decay_rate", 1.5, ValueError, UNIT),
    (RMSprop, "decay_rate", "0.9", TypeError, UNIT),
]
MAKE_BAD = [case for case in BAD_HYPERPARAMETERS if case[2] is not None]  # None: the default


def hyper_ids(cases):
    return [f"{cls.__name__}-{arg}={value!r:.12}" for cls, arg, value, *_ in cases]


def invalid(arg, value, error, expected):
    """The message: the argument, its value, the valid range (and the type, if not a number)."""
    got = f", got {type(value).__name__}" if error is TypeError else ""
    return f"Invalid {arg}: {value!r} (expected {expected}{got})"


@pytest.mark.parametrize(
    ("cls", "arg", "value", "error", "expected"),
    BAD_HYPERPARAMETERS,
    ids=hyper_ids(BAD_HYPERPARAMETERS),
)
def test_constructors_reject_a_bad_hyperparameter_naming_it_its_value_and_range(
    cls, arg, value, error, expected
):
    with pytest.raises(error) as info:
        cls(**{arg: value})
    assert str(info.value) == invalid(arg, value, error, expected)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("given", ["mapping", "iterator", "list"])
def test_parameters_given_as_pytorch_gives_them_point_to_update(name, given):
    net = TwoLayerNet(4, 3, 2, seed=0)
    params = {
        "mapping": net.params,
        "iterator": iter(net.params.values()),
        "list": list(net.params.values()),
    }[given]
    cls = type(OPTIMIZERS[name]())
    expected = rf"{cls.__name__} takes its settings, not the parameters.*opt\.update\(net\.params"
    with pytest.raises(TypeError, match=expected):
        cls(params)


@pytest.mark.parametrize(
    ("cls", "arg", "value", "error", "expected"), MAKE_BAD, ids=hyper_ids(MAKE_BAD)
)
def test_make_optimizer_checks_hyperparameters_as_the_constructors_do(
    cls, arg, value, error, expected
):
    with pytest.raises(error) as info:
        make_optimizer(cls.name, **{arg: value})
    assert str(info.value) == invalid(arg, value, error, expected)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (SGD, {"lr": 0.0}),
        (Momentum, {"momentum": 0.0}),
        (Nesterov, {"momentum": 0}),
        (RMSprop, {"decay_rate": 0.0}),
        (Adam, {"beta1": 0.0, "beta2": 0.0}),
        (Adam, {"lr": 1e6, "beta1": 0.999999}),
    ],
    ids=["lr=0", "momentum=0", "nesterov-momentum=0", "decay_rate=0", "betas=0", "large-lr"],
)
def test_the_ends_of_the_valid_ranges_are_accepted(cls, kwargs):
    assert cls(**kwargs).config() == {"name": cls.name, **cls().config(), **kwargs}


def test_lr_zero_moves_no_parameter_but_advances_the_state():
    params, opt = {"w": np.array([1.0, -2.0])}, Momentum(lr=0.0)
    opt.update(params, {"w": np.array([0.5, 0.5])})
    np.testing.assert_array_equal(params["w"], [1.0, -2.0])
    assert opt.iterations == 1


def test_hyperparameters_are_stored_as_python_floats():
    """NumPy scalars and ints become floats, so config() stays JSON-serialisable."""
    opt = Adam(lr=np.float32(0.5), beta1=np.float64(0.5), beta2=0)
    assert all(type(v) is float for k, v in opt.config().items() if k != "name")
    assert json.loads(json.dumps(opt.config())) == opt.config()


BAD_STATES = [
    (None, TypeError, r"Momentum.load_state_dict expects a mapping .* got NoneType"),
    ([("iterations", 1)], TypeError, r"expects a mapping .* got list"),
    (
        {"foo": 1},
        ValueError,
        r"unexpected key\(s\) 'foo'; expected 'iterations', 'buffers', 'hyperparameters'",
    ),
    ({"iterations": 1, "buffers": {}, "lr": 0.1}, ValueError, r"unexpected key\(s\) 'lr'"),
    ({"iterations": -1}, ValueError, r"Invalid iterations: -1 \(expected an integer >= 0\)"),
    (
        {"iterations": "3"},
        TypeError,
        r"Invalid iterations: '3' \(expected an integer >= 0, got str",
    ),
    ({"iterations": 2.0}, TypeError, r"Invalid iterations: 2.0 .* got float"),
    ({"iterations": True}, TypeError, r"Invalid iterations: True .* got bool"),
    ({"buffers": None}, TypeError, r"'buffers' must map buffer names to mappings"),
    ({"buffers": {"v": None}}, TypeError, r"'buffers' must map buffer names to mappings"),
    ({"buffers": {"m": {}}}, ValueError, r"Momentum has no state buffer\(s\) m; expected v"),
    (
        {"buffers": {"v": {"w": [0.5]}}},
        TypeError,
        r"Momentum.load_state_dict: state 'v' of 'w' is a list, expected an array",
    ),
    ({"buffers": {"v": {"w": 0.5}}}, TypeError, r"state 'v' of 'w' is a float, expected an array"),
    ({"hyperparameters": None}, TypeError, r"'hyperparameters' must map names to numbers"),
    ({"hyperparameters": [0.5]}, TypeError, r"'hyperparameters' must map names to numbers"),
    ({"hyperparameters": "lr"}, TypeError, r"'hyperparameters' must map names to numbers"),
    (
        {"hyperparameters": {"beta1": 0.5}},
        ValueError,
        r"Momentum has no hyperparameter\(s\) beta1; expected lr, momentum",
    ),
    (
        {"iterations": 2, "hyperparameters": {"lr": 0.5, "momentum": 1.5}},
        ValueError,
        r"Invalid momentum: 1.5 \(expected a number in \[0, 1\)\)",
    ),
    ({"hyperparameters": {"lr": "0.5"}}, TypeError, r"Invalid lr: '0.5' .* got str"),
]


@pytest.mark.parametrize(
    ("state", "error", "message"), BAD_STATES, ids=[repr(s) for s, _, _ in BAD_STATES]
)
def test_load_state_dict_rejects_a_bad_state_and_changes_nothing(state, error, message):
    opt, params = Momentum(), {"w": np.array([1.0])}
    opt.update(params, {"w": np.array([0.5])})
    before = opt.state_dict()
    with pytest.raises(error, match=message):
        opt.load_state_dict(state)
    assert opt.iterations == before["iterations"] == 1
    assert opt.state["v"]["w"] is before["buffers"]["v"]["w"]
    assert opt.config() == Momentum().config()


def test_load_state_dict_accepts_numpy_integer_iterations():
    opt = SGD()
    opt.load_state_dict({"iterations": np.int64(7), "buffers": {}})
    assert opt.iterations == 7 and type(opt.iterations) is int


def test_load_state_dict_copies_the_buffer_mappings():
    """Training after a load leaves the loaded mapping as it was, so it can be loaded again."""
    saved = {"iterations": 1, "buffers": {"v": {"w": np.array([0.5])}}}
    held = saved["buffers"]["v"]["w"]
    opt = Momentum(lr=0.1, momentum=0.9)
    opt.load_state_dict(saved)
    opt.update(
        {"w": np.array([1.0]), "b": np.array([0.0])}, {"w": np.array([1.0]), "b": np.array([1.0])}
    )
    # Momentum stores a new v per step and a new slot for "b": neither lands in `saved`.
    assert list(saved["buffers"]["v"]) == ["w"] and saved["buffers"]["v"]["w"] is held
    np.testing.assert_array_equal(held, [0.5])


def test_loaded_state_replaces_the_state_an_optimizer_already_has():
    opt = Momentum(lr=0.1, momentum=0.9)
    opt.update({"w": np.array([0.0])}, {"w": np.array([1.0])})  # its own v: [-0.1]
    opt.load_state_dict({"iterations": 7, "buffers": {"v": {"w": np.array([0.5])}}})
    params = {"w": np.array([1.0])}
    opt.update(params, {"w": np.array([1.0])})
    # from the loaded v: v = 0.9 * 0.5 - 0.1 * 1 = 0.35, w = 1.35
    np.testing.assert_allclose(params["w"], [1.35])


def test_loading_a_state_without_buffers_starts_from_zeros():
    opt = Momentum(lr=0.1, momentum=0.9)
    opt.update({"w": np.array([0.0])}, {"w": np.array([1.0])})
    opt.load_state_dict({"iterations": 0})
    params = {"w": np.array([1.0])}
    opt.update(params, {"w": np.array([1.0])})
    np.testing.assert_allclose(params["w"], [0.9])  # v = 0.9 * 0 - 0.1 * 1


def test_state_dict_holds_the_hyperparameters():
    state = Adam(lr=0.001, beta1=0.8).state_dict()
    assert state["hyperparameters"] == {"lr": 0.001, "beta1": 0.8, "beta2": 0.999}


def test_load_state_dict_restores_the_hyperparameters_as_pytorch_does():
    opt = Adam(lr=0.5)
    opt.load_state_dict(Adam(lr=0.001, beta1=0.8).state_dict())
    assert (opt.lr, opt.beta1, opt.beta2) == (0.001, 0.8, 0.999)


def test_a_state_without_hyperparameters_keeps_the_optimizers_own():
    opt = Adam(lr=0.5)
    opt.load_state_dict({"iterations": 2, "buffers": {}})
    assert (opt.lr, opt.iterations) == (0.5, 2)


def test_loaded_state_of_another_shape_is_refused_at_its_first_use():
    opt = Momentum(lr=0.1)
    opt.load_state_dict({"buffers": {"v": {"w": np.array([0.5])}}})
    params = {"w": np.array([1.0, 2.0, 3.0])}
    with pytest.raises(ValueError) as info:
        opt.update(params, {"w": np.ones(3)})
    assert str(info.value) == (
        "Momentum state 'v' of parameter 'w' has shape (1,), but the parameter has shape (3,)"
    )
    np.testing.assert_array_equal(params["w"], [1.0, 2.0, 3.0])


def test_loaded_state_takes_the_parameters_dtype_and_namespace(xp):
    """As PyTorch's load_state_dict casts floating state to each parameter's dtype."""
    opt = Momentum(lr=0.1, momentum=0.9)
    opt.load_state_dict({"buffers": {"v": {"w": np.array([0.5, -0.5])}}})  # NumPy float64
    params = {"w": to_device([1.0, 2.0], dtype="float32", xp=xp)}
    opt.update(params, {"w": to_device([1.0, 1.0], dtype="float32", xp=xp)})
    v = opt.state_dict()["buffers"]["v"]["w"]
    assert type(v) is type(params["w"]) and v.dtype == xp.float32
    # v = 0.9 * [0.5, -0.5] - 0.1 * 1 = [0.35, -0.55]; w = [1.35, 1.45]
    np.testing.assert_allclose(to_numpy(v), [0.35, -0.55], rtol=1e-6)
    np.testing.assert_allclose(to_numpy(params["w"]), [1.35, 1.45], rtol=1e-6)


def test_state_loaded_but_not_yet_used_is_in_the_state_dict():
    saved = {"iterations": 4, "buffers": {"m": {"w": np.array([0.1])}, "v": {"w": np.array([0.2])}}}
    opt = Adam()
    opt.load_state_dict(saved)
    state = opt.state_dict()
    assert state["iterations"] == 4
    assert state["buffers"]["m"]["w"] is saved["buffers"]["m"]["w"]
    assert state["buffers"]["v"]["w"] is saved["buffers"]["v"]["w"]


# Gradients that do not fit their parameters: refused by update, before any parameter moves.
W = [[1.0, -2.0, 0.5], [0.5, 3.0, -1.0]]  # a (2, 3) parameter


def another_library(xp):
    """A namespace whose arrays ``xp``'s are not, and its name: array_api_strict for NumPy,
    else NumPy."""
    if array_api_compat.is_numpy_namespace(xp):
        return array_api_strict, "array_api_strict"
    return namespace("cpu"), "numpy"


@pytest.mark.parametrize(
    ("param_dtype", "grad_dtype"),
    [("float32", "float64"), ("float64", "float32"), ("float32", "int64")],
)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_gradient_of_another_dtype_is_refused_naming_both(xp, name, param_dtype, grad_dtype):
    cls = OPTIMIZERS[name]
    params = {"W": to_device(W, dtype=param_dtype, xp=xp)}
    with pytest.raises(ValueError) as info:
        cls().update(params, {"W": to_device(W, dtype=grad_dtype, xp=xp)})
    assert str(info.value) == (
        f"{cls.__name__}.update: the gradient of parameter 'W' has dtype {grad_dtype}, but the "
        f"parameter {param_dtype}: a gradient has its parameter's dtype (convert it with "
        "xp.astype), as PyTorch requires of a .grad"
    )


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_an_integer_parameter_is_refused_naming_it_and_how_to_make_it_float(xp, name):
    cls = OPTIMIZERS[name]
    xy = to_device([-7, 2], dtype="int64", xp=xp)  # optimizer_compare_naive.py's, as integers
    with pytest.raises(
        ValueError,
        match=rf"{cls.__name__}\.update: parameter 'xy' has dtype int64, expected a real "
        r"floating one.*numpy\.array\(\[-7\.0, 2\.0\]\).*x\.astype\('float64'\)",
    ):
        cls().update({"xy": xy}, {"xy": to_device([1, 1], dtype="int64", xp=xp)})
    assert to_numpy(xy).tolist() == [-7, 2]


NOT_BROADCAST = ": a gradient has its parameter's shape, and is not broadcast to it"
WRONG_SHAPES = [  # parameter, gradient, the end of the message
    ((2, 3), (3, 2), ": transposed (a product's factors swapped, as dout.T @ x for x.T @ dout?)"),
    ((1, 3), (3,), NOT_BROADCAST),
    ((3,), (1,), NOT_BROADCAST),
    ((3,), (2, 3), ": one row per sample of a batch of 2; sum over the batch (axis=0)"),
]


@pytest.mark.parametrize(("shape", "grad_shape", "end"), WRONG_SHAPES)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_gradient_of_another_shape_is_refused_broadcastable_or_not(
    xp, name, shape, grad_shape, end
):
    cls = OPTIMIZERS[name]
    params = {"W": to_device(np.ones(shape), dtype="float32", xp=xp)}
    with pytest.raises(ValueError) as info:
        cls().update(params, {"W": to_device(np.ones(grad_shape), dtype="float32", xp=xp)})
    assert str(info.value) == (
        f"{cls.__name__}.update: the gradient of parameter 'W' has shape {grad_shape}, but the "
        f"parameter {shape}{end}"
    )


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_python_float_gradient_of_an_array_parameter_is_refused(xp, name):
    params = {"W": to_device(W, dtype="float32", xp=xp)}
    with pytest.raises(TypeError) as info:
        OPTIMIZERS[name]().update(params, {"W": 0.5})
    message = str(info.value)
    assert message.startswith(
        f"{OPTIMIZERS[name].__name__}.update: the gradient of parameter 'W' is float 0.5, "
        "expected an array of "
    )
    assert message.endswith(", of shape (2, 3) and dtype float32, as the parameter")


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_gradient_of_another_library_is_refused_naming_both(xp, name):
    other, library = another_library(xp)
    params = {"W": to_device(W, dtype="float32", xp=xp)}
    grads = {"W": to_device(W, dtype="float32", xp=other)}
    with pytest.raises(
        BackendMismatchError,
        match=rf"the gradient of parameter 'W' is an array of {library}, but the parameter of "
        rf"(?!{library})\w+: a gradient lives where its parameter does",
    ):
        OPTIMIZERS[name]().update(params, grads)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_gradient_on_another_device_is_refused_naming_both(name):
    """array_api_strict's two devices, as a CPU gradient meets a CUDA parameter in PyTorch."""
    strict = array_api_strict
    params = {"W": to_device(W, dtype="float32", xp=strict, device=strict.Device("device1"))}
    grads = {"W": to_device(W, dtype="float32", xp=strict)}
    with pytest.raises(BackendMismatchError) as info:
        OPTIMIZERS[name]().update(params, grads)
    assert str(info.value) == (
        f"{OPTIMIZERS[name].__name__}.update: the gradient of parameter 'W' is on device "
        "array_api_strict.Device('CPU_DEVICE'), but the parameter on "
        "array_api_strict.Device('device1'): a gradient lives where its parameter does "
        "(xpnet.backend.to_like(grad, param))"
    )


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_parameter_without_a_gradient_is_refused_naming_it(xp, name):
    params = {
        "W": to_device(W, dtype="float32", xp=xp),
        "b": to_device([0.0], dtype="float64", xp=xp),
    }
    with pytest.raises(ValueError) as info:
        OPTIMIZERS[name]().update(params, {"W": to_device(W, dtype="float32", xp=xp)})
    assert str(info.value) == (
        f"{OPTIMIZERS[name].__name__}.update: grads has no gradient for parameter(s) 'b'; "
        "expected one for every name in params (to train some parameters only, pass params "
        "without the others)"
    )


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_gradient_of_none_is_refused_not_skipped_as_in_pytorch(xp, name):
    params = {"W": to_device(W, dtype="float32", xp=xp)}
    with pytest.raises(ValueError) as info:
        OPTIMIZERS[name]().update(params, {"W": None})
    assert str(info.value).startswith(
        f"{OPTIMIZERS[name].__name__}.update: the gradient of parameter 'W' is None (a layer's "
        "backward that stored none?), expected an array of "
    )
    assert str(info.value).endswith(
        ", of shape (2, 3) and dtype float32, as the parameter (to train some parameters only, "
        "pass params without the others)"
    )


def test_gradients_of_names_not_in_params_are_ignored(xp):
    """Training part of a network: ``grads`` of the whole, ``params`` of the part."""
    params = {"b": to_device([1.0, -2.0], dtype="float64", xp=xp)}
    grads = {
        "W": to_device(W, dtype="float32", xp=xp),
        "b": to_device([0.5, 1.0], dtype="float64", xp=xp),
    }
    SGD(lr=0.1).update(params, grads)
    np.testing.assert_allclose(to_numpy(params["b"]), [1.0 - 0.05, -2.0 - 0.1], rtol=1e-15)


def w_and_b(xp, dtype):
    """Parameters ``W`` (the module's) and ``b`` (1,) in ``dtype``."""
    return {"W": to_device(W, dtype=dtype, xp=xp), "b": to_device([0.5], dtype=dtype, xp=xp)}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_refused_update_moves_no_parameter_and_counts_no_iteration(xp, name):
    params = w_and_b(xp, "float64")
    opt = OPTIMIZERS[name]()
    with pytest.raises(ValueError):  # W's gradient fits, b's (2,) does not, and comes after
        opt.update(
            params, {"W": params["W"] * 2, "b": to_device([1.0, 1.0], dtype="float64", xp=xp)}
        )
    np.testing.assert_array_equal(to_numpy(params["W"]), W)
    assert opt.iterations == 0 and all(not slot for slot in opt.state.values())


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_gradient_missing_after_updates_that_fit_is_refused(xp, name):
    """The check is skipped while the mapping and the counts stay as checked, not after."""
    params = w_and_b(xp, "float32")
    opt = OPTIMIZERS[name]()
    for _ in range(2):
        opt.update(params, {key: value * 1 for key, value in params.items()})
    with pytest.raises(ValueError, match=r"grads has no gradient for parameter.*'b'"):
        opt.update(params, {"W": params["W"] * 1})
    assert opt.iterations == 2


STATEFUL = [name for name in OPTIMIZERS if OPTIMIZERS[name].buffers]
REPLACEMENTS = [  # the parameter's new shape and dtype, what the message says of them
    ((5,), "float32", "has shape (3,), but the parameter (5,)"),
    ((3,), "float64", "has dtype float32, but the parameter float64"),
]


@pytest.mark.parametrize("updates_before", [0, 2])
@pytest.mark.parametrize("name", STATEFUL)
def test_loaded_state_of_another_shape_is_refused_before_any_parameter_moves(
    xp, name, updates_before
):
    # b's loaded state (1,) does not fit b (2,); W comes first and fits. Loaded after
    # updates, the gradients' shapes unchanged, it is checked all the same.
    cls = OPTIMIZERS[name]
    params = {
        "W": to_device(W, dtype="float32", xp=xp),
        "b": to_device([0.5, 1.0], dtype="float32", xp=xp),
    }
    grads = {key: value * 0 + 1 for key, value in params.items()}
    opt = cls()
    for _ in range(updates_before):
        opt.update(params, grads)
    before = {key: to_numpy(value).copy() for key, value in params.items()}
    opt.load_state_dict({"buffers": {buffer: {"b": np.ones(1)} for buffer in cls.buffers}})
    with pytest.raises(ValueError) as info:
        opt.update(params, grads)
    assert str(info.value) == (
        f"{cls.__name__} state {cls.buffers[0]!r} of parameter 'b' has shape (1,), but the "
        "parameter has shape (2,)"
    )
    for key, value in before.items():
        np.testing.assert_array_equal(to_numpy(params[key]), value)
    assert opt.iterations == 0 and all(not slot for slot in opt.state.values())


@pytest.mark.parametrize(("shape", "dtype", "says"), REPLACEMENTS, ids=["shape", "dtype"])
@pytest.mark.parametrize("name", STATEFUL)
def test_a_parameter_replaced_by_another_shape_or_dtype_no_longer_fits_its_state(
    xp, name, shape, dtype, says
):
    cls = OPTIMIZERS[name]
    params, opt = {"w": to_device(np.ones(3), dtype="float32", xp=xp)}, cls()
    opt.update(params, {"w": to_device(np.ones(3), dtype="float32", xp=xp)})
    params = {"w": to_device(np.ones(shape), dtype=dtype, xp=xp)}  # a new mapping: checked
    with pytest.raises(ValueError) as info:
        opt.update(params, {"w": to_device(np.ones(shape), dtype=dtype, xp=xp)})
    assert str(info.value) == (
        f"{cls.__name__} state {cls.buffers[0]!r} of parameter 'w' {says}: the parameter was "
        "replaced since the state was made; a new optimizer starts afresh"
    )


def test_a_parameter_added_between_updates_starts_from_zero_velocity(xp):
    """As a parameter added to a PyTorch optimizer starts without state."""
    params, opt = {"w": to_device([1.0], dtype="float64", xp=xp)}, Momentum(lr=0.1, momentum=0.9)
    opt.update(params, {"w": to_device([1.0], dtype="float64", xp=xp)})
    params["u"] = to_device([2.0, -1.0], dtype="float64", xp=xp)
    opt.update(
        params,
        {
            "w": to_device([1.0], dtype="float64", xp=xp),
            "u": to_device([0.5, -0.5], dtype="float64", xp=xp),
        },
    )
    # u: v = 0.9 * 0 - 0.1 * g = [-0.05, 0.05]; w: v = 0.9 * -0.1 - 0.1 = -0.19, w = 0.71
    np.testing.assert_allclose(to_numpy(params["u"]), [1.95, -0.95], rtol=1e-15)
    np.testing.assert_allclose(to_numpy(params["w"]), [0.71], rtol=1e-15)


def test_sgd_refuses_an_array_gradient_for_a_python_float_parameter(xp):
    with pytest.raises(TypeError) as info:
        SGD().update({"x": -7.0}, {"x": to_device([0.5, 0.5], dtype="float64", xp=xp)})
    message = str(info.value)
    assert message.startswith("SGD.update: the gradient of parameter 'x' is an array of ")
    assert message.endswith(", of shape (2,), expected a number, as the parameter is -7.0")


def _two_networks(xp):
    """Two networks' parameters of the same names, and a gradient of one step."""
    net1 = {"W1": to_device([1.0, 2.0], dtype="float64", xp=xp)}
    net2 = {"W1": to_device([5.0, 6.0], dtype="float64", xp=xp)}
    return net1, net2, {"W1": to_device([1.0, -1.0], dtype="float64", xp=xp)}


@pytest.mark.parametrize("name", STATEFUL)
def test_an_optimizer_with_state_refuses_a_second_networks_parameters(xp, name):
    """PyTorch binds an optimizer to its parameters; here the state is kept by name."""
    net1, net2, grads = _two_networks(xp)
    opt = OPTIMIZERS[name]()
    opt.update(net1, grads)
    with pytest.raises(ValueError) as info:
        opt.update(net2, grads)
    buffer = OPTIMIZERS[name].buffers[0]
    assert str(info.value) == (
        f"{OPTIMIZERS[name].__name__}.update: parameter 'W1' is not the array whose state "
        f"{buffer!r} this optimizer holds: params are another network's (or this one's, "
        "replaced by new arrays), and the state, kept by name, would mix them; make one "
        "optimizer per network (or load_state_dict to start this one on other parameters)"
    )
    np.testing.assert_array_equal(to_numpy(net2["W1"]), [5.0, 6.0])
    assert opt.iterations == 1


def test_sgd_without_state_may_step_two_networks(xp):
    net1, net2, grads = _two_networks(xp)
    opt = SGD(lr=0.5)
    opt.update(net1, grads)
    opt.update(net2, grads)
    np.testing.assert_array_equal(to_numpy(net2["W1"]), [4.5, 6.5])


def test_a_new_mapping_of_the_same_arrays_keeps_the_velocity(xp):
    net, _, grads = _two_networks(xp)
    opt = Momentum(lr=0.1, momentum=0.9)
    opt.update(net, grads)
    opt.update(dict(net), grads)  # v = 0.9 * -0.1 - 0.1 = -0.19 for W1[0]
    np.testing.assert_allclose(to_numpy(net["W1"]), [0.71, 2.29], rtol=1e-15)


def test_arrays_replaced_in_the_mapping_updated_last_keep_their_state(xp):
    """As load_params replaces an array it cannot write into, in the network's mapping."""
    net, _, grads = _two_networks(xp)
    opt = Momentum(lr=0.1, momentum=0.9)
    opt.update(net, grads)
    net["W1"] = to_device([1.0, 2.0], dtype="float64", xp=xp)
    opt.update(dict(net), grads)
    np.testing.assert_allclose(to_numpy(net["W1"]), [0.81, 2.19], rtol=1e-15)


def test_load_state_dict_moves_the_state_to_the_next_updates_parameters(xp):
    """A checkpoint restored into a new network (load_network(path, optimizer=opt))."""
    net1, net2, grads = _two_networks(xp)
    opt = Momentum(lr=0.1, momentum=0.9)
    opt.update(net1, grads)
    opt.load_state_dict(opt.state_dict())
    opt.update(net2, grads)
    np.testing.assert_allclose(to_numpy(net2["W1"]), [4.81, 6.19], rtol=1e-15)


def test_a_copy_of_an_optimizer_updates_a_copy_of_its_network(xp):
    """Copied apart, as a network is copied to a Dask worker: the copy is bound to neither."""
    net, _, grads = _two_networks(xp)
    opt = Momentum(lr=0.1, momentum=0.9)
    opt.update(net, grads)
    net_copy, opt_copy = copy.deepcopy(net), copy.deepcopy(opt)
    opt_copy.update(net_copy, grads)
    opt.update(net, grads)
    np.testing.assert_allclose(to_numpy(net_copy["W1"]), [0.71, 2.29], rtol=1e-15)
    np.testing.assert_array_equal(to_numpy(net_copy["W1"]), to_numpy(net["W1"]))


def test_a_network_sharing_one_array_with_the_stepped_one_is_refused(xp):
    """A new head on a shared layer: W1 is the stepped array, W2 another network's, which
    would take the first head's velocity. By identity it is the same as this network's W2
    replaced in a copy of its mapping, which is refused too (load_state_dict moves on)."""
    shared = to_device([1.0, 2.0], dtype="float64", xp=xp)
    first = {"W1": shared, "W2": to_device([3.0], dtype="float64", xp=xp)}
    second = {"W1": shared, "W2": to_device([7.0], dtype="float64", xp=xp)}
    grads = {
        "W1": to_device([1.0, -1.0], dtype="float64", xp=xp),
        "W2": to_device([0.5], dtype="float64", xp=xp),
    }
    opt = Momentum(lr=0.1, momentum=0.9)
    opt.update(first, grads)
    with pytest.raises(ValueError, match="parameter 'W2' is not the array whose state 'v'"):
        opt.update(second, grads)
    np.testing.assert_array_equal(to_numpy(second["W2"]), [7.0])


@pytest.mark.parametrize(
    ("cls", "name", "use"),
    [
        (Adam, "iter", "opt.iterations"),
        (Momentum, "v", r"opt.state\['v'\]"),
        (AdaGrad, "h", r"opt.state\['h'\]"),
    ],
)
def test_the_books_optimizer_attributes_name_xpnets(cls, name, use):
    with pytest.raises(
        AttributeError, match=rf"no attribute '{name}'; for the book's {name}, use {use}"
    ):
        getattr(cls(), name)


@pytest.mark.parametrize(
    ("name", "use"),
    [
        ("step", r"opt\.update\(net\.params, grads\), with grads = net\.gradient\(x, t\)"),
        ("zero_grad", r"nothing: net\.gradient\(x, t\) returns new gradients"),
        ("param_groups", r"opt\.lr, one for every parameter"),
    ],
)
def test_pytorchs_optimizer_attributes_name_xpnets(name, use):
    with pytest.raises(
        AttributeError,
        match=rf"'Momentum' object has no attribute '{name}'; for PyTorch's {name}, use {use}",
    ):
        getattr(Momentum(), name)
