"""The claims of docs/pytorch.md, each checked against PyTorch (float64, CPU).

xpnet's side runs on every backend of the ``xp`` fixture; PyTorch's is the reference,
its gradients from autograd. Skipped, saying so, where PyTorch is not installed.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import xpnet
from xpnet import optim
from xpnet.backend import to_device, to_numpy
from xpnet.layers import (
    Affine,
    BatchNormalization,
    Dropout,
    MeanSquaredError,
    ReLU,
    Sigmoid,
    SigmoidWithLoss,
    SoftmaxWithLoss,
    Tanh,
)

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
nn = torch.nn


def host(a):
    return to_numpy(a) if not isinstance(a, torch.Tensor) else a.detach().numpy()


def close(a, b):
    np.testing.assert_allclose(host(a), host(b), rtol=1e-12, atol=1e-14)


def rng(seed=0):
    return np.random.default_rng(seed)


def on(xp, a):
    return to_device(a, dtype="float64", xp=xp)


def torch_linear(W, b):
    """``nn.Linear`` holding xpnet's ``Affine(W, b)``: torch's weight is (out, in), ``W.T``."""
    layer = nn.Linear(*W.shape, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W.T))
        layer.bias.copy_(torch.from_numpy(b))
    return layer


def test_affine_W_is_the_transpose_of_linear_weight(xp):
    g = rng()
    W, b, x = g.standard_normal((3, 4)), g.standard_normal(4), g.standard_normal((5, 3))
    linear, affine = torch_linear(W, b), Affine(on(xp, W), on(xp, b))
    dout = g.standard_normal((5, 4))
    out = linear(torch.from_numpy(x))
    out.backward(torch.from_numpy(dout))
    close(affine.forward(on(xp, x)), out)
    affine.backward(on(xp, dout))
    close(affine.dW, linear.weight.grad.T)
    close(affine.db, linear.bias.grad)


def test_initialized_layers_have_the_shapes_of_linear_and_conv2d_weights():
    assert Affine.initialized(6, 4, rng=0, xp=np).W.shape == nn.Linear(6, 4).weight.T.shape
    conv = xpnet.conv.Convolution.initialized(3, 8, 5, rng=0, xp=np)
    assert conv.W.shape == nn.Conv2d(3, 8, 5).weight.shape
    bn = BatchNormalization.initialized(7, xp=np)
    torch_bn = nn.BatchNorm1d(7)
    close(bn.gamma, torch_bn.weight.double())
    close(bn.beta, torch_bn.bias.double())


def test_linear_draws_weight_and_bias_uniform_within_one_over_sqrt_in():
    torch.manual_seed(0)
    linear = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    weight, bias = (host(p) for p in (linear.weight, linear.bias))
    for p in (weight, bias):
        assert 0.99 * bound < np.abs(p).max() <= bound  # spread over the whole interval
    assert abs(weight.std() - math.sqrt(1 / (3 * 400))) < 0.01 * bound


def two_layer_nets(xp, seed):
    """The same 4-5-3 ReLU network in xpnet (on ``xp``, softmax loss) and in torch, from
    one seed's weights, and a batch of 6: ``(net, model, x, labels)`` (``x``, ``labels``
    NumPy)."""
    g = rng(seed)
    W1, b1 = g.standard_normal((4, 5)), g.standard_normal(5)
    W2, b2 = g.standard_normal((5, 3)), g.standard_normal(3)
    x, labels = g.standard_normal((6, 4)), g.integers(0, 3, 6)
    net = xpnet.Sequential(
        [Affine(on(xp, W1), on(xp, b1)), ReLU(), Affine(on(xp, W2), on(xp, b2))],
        loss=SoftmaxWithLoss(),
    )
    model = nn.Sequential(torch_linear(W1, b1), nn.ReLU(), torch_linear(W2, b2))
    return net, model, x, labels


@pytest.mark.parametrize("onehot", [False, True], ids=["labels", "probabilities"])
def test_a_two_layer_net_has_torchs_loss_and_gradients(xp, onehot):
    net, model, x, labels = two_layer_nets(xp, 1)
    t = np.eye(3)[labels] if onehot else labels
    loss = nn.CrossEntropyLoss()(model(torch.from_numpy(x)), torch.from_numpy(t))
    loss.backward()
    t_xp = to_device(t, xp=xp) if not onehot else on(xp, t)
    close(net.loss(on(xp, x), t_xp), loss)
    grads = net.gradient(on(xp, x), t_xp)
    torch_grads = dict(zip(["W1", "b1", "W2", "b2"], model.parameters(), strict=True))
    for name, p in torch_grads.items():
        close(grads[name], p.grad.T if name.startswith("W") else p.grad)


def test_gradient_of_some_parameters_is_torchs_autograd_grad_of_those(xp):
    net, model, x, labels = two_layer_nets(xp, 2)
    loss = nn.CrossEntropyLoss()(model(torch.from_numpy(x)), torch.from_numpy(labels))
    dW2, db2 = torch.autograd.grad(loss, [model[2].weight, model[2].bias])
    grads = net.gradient(on(xp, x), to_device(labels, xp=xp), params=["W2", "b2"])
    assert list(grads) == ["W2", "b2"]
    close(grads["W2"], dW2.T)
    close(grads["b2"], db2)


def test_frozen_trains_as_torch_with_requires_grad_false_and_the_others_in_the_optimizer(xp):
    net, model, x, labels = two_layer_nets(xp, 3)
    model[0].requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(3):  # full batches: the shuffled order leaves the mean gradient alone
        opt.zero_grad()
        nn.CrossEntropyLoss()(model(torch.from_numpy(x)), torch.from_numpy(labels)).backward()
        opt.step()
    data = (on(xp, x), to_device(labels, xp=xp))
    trainer = xpnet.training.Trainer(
        net, optim.SGD(0.5), *data, *data, epochs=3, batch_size=6, frozen="layers[0]"
    )
    trainer.fit()
    close(net.params["W1"], model[0].weight.T)
    close(net.params["b1"], model[0].bias)
    close(net.params["W2"], model[2].weight.T)
    close(net.params["b2"], model[2].bias)


LOSSES = {
    "SoftmaxWithLoss": (SoftmaxWithLoss, nn.CrossEntropyLoss, "labels"),
    "SigmoidWithLoss": (SigmoidWithLoss, nn.BCEWithLogitsLoss, "probabilities"),
    "MeanSquaredError": (MeanSquaredError, nn.MSELoss, "values"),
}


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_each_loss_is_torchs_with_the_same_reduction(xp, name, reduction):
    ours, theirs, targets = LOSSES[name]
    g = rng(2)
    y = g.standard_normal((5, 3))
    t = {
        "labels": g.integers(0, 3, 5),
        "probabilities": g.random((5, 3)),
        "values": g.standard_normal((5, 3)),
    }[targets]
    y_torch = torch.tensor(y, requires_grad=True)
    loss = theirs(reduction=reduction)(y_torch, torch.from_numpy(t))
    loss.backward()
    layer = ours(reduction=reduction)
    t_xp = to_device(t, xp=xp) if targets == "labels" else on(xp, t)
    close(layer.forward(on(xp, y), t_xp), loss)
    close(layer.backward(), y_torch.grad)


@pytest.mark.parametrize(
    ("ours", "theirs"), [(ReLU, nn.ReLU), (Sigmoid, nn.Sigmoid), (Tanh, nn.Tanh)]
)
def test_activations_are_torchs_forward_and_backward_at_zero_too(xp, ours, theirs):
    x = np.array([[-2.0, -0.5, 0.0], [0.0, 0.5, 2.0]])
    dout = rng(3).standard_normal(x.shape)
    x_torch = torch.tensor(x, requires_grad=True)
    out = theirs()(x_torch)
    out.backward(torch.from_numpy(dout))
    layer = ours()
    close(layer.forward(on(xp, x)), out)
    close(layer.backward(on(xp, dout)), x_torch.grad)


def test_pooling_is_max_pool2d_unpadded_and_pads_with_zeros_where_torch_pads_with_minus_inf(xp):
    from xpnet.conv import Pooling

    x = rng(5).standard_normal((2, 3, 6, 6))
    dout = rng(6).standard_normal((2, 3, 3, 3))
    x_torch = torch.tensor(x, requires_grad=True)
    out = nn.MaxPool2d(2, 2)(x_torch)
    out.backward(torch.from_numpy(dout))
    layer = Pooling(2, 2, 2)
    close(layer.forward(on(xp, x)), out)
    close(layer.backward(on(xp, dout)), x_torch.grad)
    negative = -1.0 - rng(7).random((1, 1, 2, 2))  # every value below 0
    padded = host(Pooling(2, 2, 2, pad=1).forward(on(xp, negative)))
    torch_padded = nn.MaxPool2d(2, 2, padding=1)(torch.from_numpy(negative)).numpy()
    assert np.all(padded == 0.0) and np.all(torch_padded < -1.0)
    np.testing.assert_array_equal(torch_padded.ravel(), negative.ravel())


def test_dropout_keeps_or_zeroes_in_training_and_scales_by_1_minus_p_in_evaluation(xp):
    p, x = 0.3, rng(4).standard_normal((200, 50)) + 5.0  # no zeros of its own
    layer, torch_layer = Dropout(p, seed=0), nn.Dropout(p)
    trained = host(layer.forward(on(xp, x), train_flg=True))
    assert np.all((trained == 0) | (trained == x))  # kept as they are: no 1 / (1 - p)
    torch_trained = torch_layer.train()(torch.from_numpy(x)).numpy()
    assert np.all((torch_trained == 0) | np.isclose(torch_trained, x / (1 - p), rtol=1e-15))
    close(layer.forward(on(xp, x), train_flg=False), (1 - p) * x)
    close(torch_layer.eval()(torch.from_numpy(x)), x)


def test_batchnorm_in_training_is_batchnorm1d_with_eps_1e_6(xp):
    g = rng(5)
    x, dout = g.standard_normal((8, 3)) * 3 + 1, g.standard_normal((8, 3))
    gamma, beta = g.standard_normal(3), g.standard_normal(3)
    bn = nn.BatchNorm1d(3, eps=1e-6, dtype=torch.float64)
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(gamma))
        bn.bias.copy_(torch.from_numpy(beta))
    x_torch = torch.tensor(x, requires_grad=True)
    out = bn.train()(x_torch)
    out.backward(torch.from_numpy(dout))
    layer = BatchNormalization(on(xp, gamma), on(xp, beta))
    close(layer.forward(on(xp, x), train_flg=True), out)
    close(layer.backward(on(xp, dout)), x_torch.grad)
    close(layer.dgamma, bn.weight.grad)
    close(layer.dbeta, bn.bias.grad)


def test_batchnorm_running_statistics_follow_their_stated_formulas(xp):
    g = rng(6)
    x1, x2 = g.standard_normal((8, 3)), g.standard_normal((8, 3)) + 2
    layer = BatchNormalization(on(xp, np.ones(3)), on(xp, np.zeros(3)), momentum=0.9)
    bn = nn.BatchNorm1d(3, eps=1e-6, momentum=0.1, dtype=torch.float64).train()
    mean, var, torch_mean, torch_var = np.zeros(3), np.zeros(3), np.zeros(3), np.ones(3)
    for x in (x1, x2):
        layer.forward(on(xp, x), train_flg=True)
        bn(torch.from_numpy(x))
        mean = 0.9 * mean + 0.1 * x.mean(axis=0)
        var = 0.9 * var + 0.1 * x.var(axis=0)  # biased, from 0
        torch_mean = 0.9 * torch_mean + 0.1 * x.mean(axis=0)
        torch_var = 0.9 * torch_var + 0.1 * x.var(axis=0, ddof=1)  # unbiased, from 1
    close(layer.running_mean, mean)
    close(layer.running_var, var)
    close(bn.running_mean, torch_mean)
    close(bn.running_var, torch_var)
    close(layer.running_mean, bn.running_mean)  # the means agree, the variances do not
    assert not np.allclose(host(layer.running_var), host(bn.running_var))


def torch_steps(opt_cls, params, grads, steps, before_step=None, **kwargs):
    p = torch.tensor(params, requires_grad=True)
    opt = opt_cls([p], **kwargs)
    for t in range(1, steps + 1):
        if before_step is not None:
            before_step(opt, t)
        p.grad = torch.from_numpy(grads[t - 1])
        opt.step()
    return p.detach().numpy()


def xpnet_steps(xp, opt, params, grads, steps):
    state = {"W": on(xp, params)}
    for t in range(steps):
        opt.update(state, {"W": on(xp, grads[t])})
    return state["W"]


OPTIMIZERS = {
    "SGD": (optim.SGD(lr=0.1), torch.optim.SGD, {"lr": 0.1}),
    "Momentum": (optim.Momentum(0.1, 0.9), torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
    "AdaGrad": (optim.AdaGrad(0.1), torch.optim.Adagrad, {"lr": 0.1, "eps": 1e-7}),
    "RMSprop": (
        optim.RMSprop(0.01, 0.99),
        torch.optim.RMSprop,
        {"lr": 0.01, "alpha": 0.99, "eps": 1e-7},
    ),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizers_take_torchs_steps_with_the_stated_settings(xp, name):
    ours, theirs, kwargs = OPTIMIZERS[name]
    g = rng(7)
    params, grads = g.standard_normal(4), g.standard_normal((5, 4))
    expected = torch_steps(theirs, params, grads, 5, **kwargs)
    close(xpnet_steps(xp, type(ours)(**ours.hyperparameters()), params, grads, 5), expected)


@pytest.mark.parametrize(
    "grad", [np.ones(3, dtype=np.float32), np.ones(1)], ids=["float32-for-float64", "(1,)-for-(3,)"]
)
def test_a_gradient_torch_refuses_as_a_grad_update_refuses(xp, grad):
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError):  # "attempting to assign a gradient with dtype ..."
        p.grad = torch.from_numpy(grad)
    with pytest.raises(ValueError, match="the gradient of parameter 'W' has"):
        optim.SGD().update({"W": on(xp, np.zeros(3))}, {"W": to_device(grad, xp=xp)})


def test_torch_skips_a_parameter_whose_grad_is_none_where_update_refuses_it(xp):
    p, q = (torch.zeros(2, dtype=torch.float64, requires_grad=True) for _ in range(2))
    p.grad = torch.ones(2, dtype=torch.float64)
    torch.optim.SGD([p, q], lr=0.1).step()  # q.grad is None: q is left as it was
    close(q, np.zeros(2))
    params = {"W": on(xp, np.zeros(2)), "b": on(xp, np.zeros(2))}
    with pytest.raises(ValueError, match="the gradient of parameter 'b' is None"):
        optim.SGD(lr=0.1).update(params, {"W": on(xp, np.ones(2)), "b": None})


def test_adam_is_torchs_adam_only_with_eps_1e_7_over_sqrt_1_minus_beta2_t(xp):
    g = rng(8)
    params, grads = g.standard_normal(4), g.standard_normal((5, 4)) * 1e-6

    def book_eps(opt, t):
        opt.param_groups[0]["eps"] = 1e-7 / math.sqrt(1 - 0.999**t)

    ours = xpnet_steps(xp, optim.Adam(lr=0.001), params, grads, 5)
    close(ours, torch_steps(torch.optim.Adam, params, grads, 5, book_eps, lr=0.001))
    default = torch_steps(torch.optim.Adam, params, grads, 5, lr=0.001)  # eps=1e-8
    assert not np.allclose(host(ours) - params, default - params, rtol=0.1)


def test_adams_first_step_on_a_tiny_gradient_is_a_quarter_of_torchs(xp):
    params, grads = np.zeros(1), np.full((1, 1), 1e-6)
    ours = host(xpnet_steps(xp, optim.Adam(lr=1.0), params, grads, 1))
    theirs = torch_steps(torch.optim.Adam, params, grads, 1, lr=1.0)
    np.testing.assert_allclose([ours[0], theirs[0]], [-0.240, -0.990], atol=0.001)


def test_check_layer_passes_relu_at_its_kink_where_torch_gradcheck_fails(xp):
    x = np.array([[0.0, 1.0], [-1.0, 0.0]])
    assert not torch.autograd.gradcheck(
        torch.relu, torch.tensor(x, requires_grad=True), raise_exception=False
    )
    report = xpnet.check_layer(ReLU(), on(xp, x))
    assert report.passed
    assert report.params[0].kinks == 2


def test_sequential_is_counted_indexed_and_named_as_nn_sequential(on_the_host):
    g = rng(9)
    inner = xpnet.Sequential([Affine(g.standard_normal((5, 5)), np.zeros(5)), ReLU()])
    net = xpnet.Sequential(
        [
            Affine(g.standard_normal((4, 5)), np.zeros(5)),
            inner,
            Affine(np.ones((5, 3)), np.zeros(3)),
        ],
        loss=SoftmaxWithLoss(),
    )
    model = nn.Sequential(
        nn.Linear(4, 5), nn.Sequential(nn.Linear(5, 5), nn.ReLU()), nn.Linear(5, 3)
    )
    assert len(net) == len(model) == 3
    assert net[1] is inner and isinstance(model[1], nn.Sequential)
    assert isinstance(net[1:], xpnet.Sequential) and isinstance(model[1:], nn.Sequential)
    assert net[1:][0] is inner and model[1:][0] is model[1]
    assert net.num_parameters() == sum(p.numel() for p in model.parameters())
    assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert [path for path, _ in net.named_layers()] == [
        "layers[0]", "layers[1]", "layers[1].layers[0]", "layers[1].layers[1]", "layers[2]",
    ]  # fmt: skip
    assert [name for name, _ in model.named_modules()][1:] == ["0", "1", "1.0", "1.1", "2"]


def test_calling_a_network_is_predict_as_is_its_forward(on_the_host):
    net = xpnet.TwoLayerNet(4, 5, 3, dtype="float64", seed=0)
    x = rng(10).standard_normal((2, 4))
    close(net(x), net.predict(x))
    close(net.forward(x), net.predict(x))


def test_one_seed_gives_the_same_weights_on_every_backend(xp):
    ours = xpnet.TwoLayerNet(4, 5, 3, dtype="float64", seed=0, xp=xp)
    reference = xpnet.TwoLayerNet(4, 5, 3, dtype="float64", seed=0, xp=np)
    for name in reference.params:
        close(ours.params[name], reference.params[name])


def torch_net_and_batch():
    xp = xpnet.backend.namespace_of(torch.empty(0))
    net = xpnet.TwoLayerNet(4, 5, 3, dtype="float64", seed=0, xp=xp)
    return net, torch.tensor(rng(11).standard_normal((2, 4))), torch.tensor([0, 2])


def test_a_net_of_torch_tensors_builds_no_autograd_graph():
    net, x, t = torch_net_and_batch()
    grads = net.gradient(x, t)
    assert isinstance(grads["W1"], torch.Tensor)
    assert not any(g.requires_grad for g in grads.values())
    assert not any(p.requires_grad for p in net.params.values())


def test_an_input_that_requires_grad_makes_the_gradients_tracked_unless_detached():
    net, x, t = torch_net_and_batch()
    assert net.gradient(x.requires_grad_(), t)["W1"].requires_grad
    assert not net.gradient(x.detach(), t)["W1"].requires_grad


def test_a_checkpoint_reads_back_without_pickle(tmp_path, on_the_host):
    net = xpnet.TwoLayerNet(4, 5, 3, dtype="float64", seed=0)
    path = xpnet.checkpoint.save_params(tmp_path / "net.npz", net)
    with np.load(path, allow_pickle=False) as stored:
        assert {"W1", "b1", "W2", "b2"} <= set(stored.files)
    loaded, _ = xpnet.checkpoint.load_network(path)
    for name in net.params:
        close(loaded.params[name], net.params[name])


def test_a_deep_copy_is_an_independent_network_of_the_same_values(on_the_host):
    net = xpnet.MultiLayerNet(6, [5], 3, use_batchnorm=True, use_dropout=True, seed=0)
    twin = copy.deepcopy(net)
    x, t = np.linspace(-1, 1, 12, dtype=np.float32).reshape(2, 6), np.array([0, 2])
    for train_flg in (False, True):  # the same values, running statistics and next masks
        np.testing.assert_array_equal(twin.predict(x, train_flg), net.predict(x, train_flg))
    before = {name: np.copy(value) for name, value in net.params.items()}
    optim.SGD(lr=0.5).update(twin.params, twin.gradient(x, t))
    assert all(np.array_equal(net.params[name], value) for name, value in before.items())


def test_double_casts_in_place_as_torchs_and_refuses_an_integer_dtype_as_torch_does(xp):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))  # float32
    W1, b1, W2, b2 = (to_device(p.detach().numpy().T, xp=xp) for p in model.parameters())
    net = xpnet.Sequential([Affine(W1, b1), ReLU(), Affine(W2, b2)], loss=SoftmaxWithLoss())
    assert model.double() is model and net.double() is net
    x = rng(3).standard_normal((6, 4))
    close(net(on(xp, x)), model(torch.from_numpy(x)))
    with pytest.raises(TypeError, match="floating point"):
        model.to(torch.int32)
    with pytest.raises(ValueError, match="floating arrays only"):
        net.to("int32")


def test_predict_and_loss_evaluate_while_gradient_trains(on_the_host):
    net = xpnet.MultiLayerNet(4, [5], 3, use_dropout=True, dtype="float64", seed=0)
    x, t = rng(12).standard_normal((6, 4)), np.array([0, 1, 2, 0, 1, 2])
    dropout = net[2]
    close(net.predict(x), net.predict(x, train_flg=False))
    assert dropout.mask is None  # evaluation: scaled by 1 - p, no mask drawn
    net.gradient(x, t)
    assert dropout.mask is not None
