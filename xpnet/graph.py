"""Computational graphs drawn from a live run: forward values and gradients on every edge.

:func:`record` watches some node instances (``Mul``, ``Add``, layers, anything with
``forward`` and ``backward``) for the length of a ``with`` block. Each ``forward`` call
notes its inputs (before it runs, which may write into them) and output, each
``backward`` call the gradient it got (before it runs) and the ones it returned, for its
node's latest forward call not yet answered (a node used twice is answered in reverse
order, as backpropagation runs); parameters named in a node's
``params`` (``("W", "b")``) are noted with their gradients ``dW``, ``db``, and so are those
of the layers inside a node made of layers (``sublayers``) that are not recorded
themselves. A forward call made inside a recorded node's forward belongs to that node
(a block): the block is drawn as a Graphviz cluster of the calls inside it. While a block
runs, copies of its inputs and of its inner calls' outputs are kept (one array each: the
cost of seeing what the block's own code changes in place, ``y += x``), and dropped when
it returns. Values are kept as Python numbers for scalars and 0-D arrays, and as shape,
norm, min and max for larger arrays.

The edges come from the computation itself: an input of one call that *is* (``is``)
the output of an earlier call is an edge between the two nodes; any other input is a
leaf, named by the ``inputs`` given to :func:`record` (matched by identity too; a
value with no name is drawn as its value; a named Python number that may be an equal
constant Python shared with it is warned about). :meth:`Recording.dot` writes Graphviz DOT
text as the book draws its graphs: left to right, the forward value above each edge
in black, the backward value below it in red and dashed (for greyscale prints); :func:`write`
renders it to a file.

Recording costs nothing when off: :func:`record` shadows ``forward`` and ``backward``
with recording wrappers on the given *instances* only (instance attributes) and
deletes them when the block ends, so classes, other instances and every run outside
the block are untouched.

The named graphs (:data:`NAMED`) are the book's and CS231n's examples, computed here
node by node: ``apple``, ``apple-orange`` and ``sigmoid-neuron``; :func:`record_network`
draws any network with ``layers``, ``last_layer`` and ``params`` (a ``Sequential``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import operator
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from xpnet.backend import namespace_of, to_device, to_numpy
from xpnet.checks import bad_argument, is_real
from xpnet.files import atomic_file
from xpnet.held import copy_of, held, layers_of, same_values
from xpnet.layers import Add, Exp, Mul, Reciprocal, inner_layers, own_params, walk

FORMATS = ("dot", "svg", "png", "pdf")
BINARY_FORMATS = ("png", "pdf")  # not text: no terminal shows them
SVG_MIME = "image/svg+xml"
INSTALL_HINT = (
    "install Graphviz's dot program: apt-get install graphviz (Debian, Ubuntu), "
    "brew install graphviz (macOS), or see https://graphviz.org/download/"
)
# Each edge is drawn twice, as the book does: forward in black, backward in red, pointing back;
# dashed too, so that a greyscale print tells them apart.
BACKWARD_EDGE = "dir=back, style=dashed, color=red3, fontcolor=red3"
TIMES = "\N{MULTIPLICATION SIGN}"
SYMBOLS = {Mul: TIMES, Add: "+", Exp: "exp", Reciprocal: "1/x"}
NUMBER_FORMAT = "{:.4g}"  # numbers that are not integers, unless a Recording sets its own
# A float holding an integer is drawn as one below this: 123456.0 reads 123456, 1e20 1e+20.
WHOLE_BELOW = 1e6


class GraphvizUnavailableError(RuntimeError):
    """Graphviz (the ``graphviz`` package or its ``dot`` program) is missing."""


@dataclass(frozen=True)
class Value:
    """A recorded value: ``number`` for a scalar (or 0-D array), else ``shape`` and summary.

    ``norm``, ``min`` and ``max`` are given for floating-point arrays only, and their
    ``elements`` (in order) for those of at most ``SMALL`` elements. ``exact`` is a scalar
    in its own dtype (the Python number, or a 0-D array read back as a NumPy scalar), so
    that gradients summed over uses are summed as that dtype sums them.
    """

    SMALL: ClassVar[int] = 3  # a gradient this small is drawn element by element

    number: float | None = None
    shape: tuple[int, ...] | None = None
    norm: float | None = None
    min: float | None = None
    max: float | None = None
    elements: tuple[float, ...] | None = None
    exact: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, x: Any) -> Value | None:
        """The record of ``x`` (None stays None); reads arrays back to the host."""
        if x is None:
            return None
        if isinstance(x, (int, float)):
            if type(x) in (int, float):
                return cls(number=x, exact=x)
            number = int(x) if isinstance(x, SharedInt) else float(x)  # np.float64
            return cls(number=number, exact=x)
        if not hasattr(x, "shape"):
            raise TypeError(f"cannot record a {type(x).__name__}: expected a number or an array")
        xp = namespace_of(x)
        if x.ndim == 0:
            host = to_numpy(x)[()]
            if xp.isdtype(x.dtype, "real floating"):
                return cls(number=_shortest(host), exact=host)
            integral = xp.isdtype(x.dtype, "integral")
            return cls(number=int(host) if integral else float(host), exact=host)
        shape = tuple(x.shape)
        if not xp.isdtype(x.dtype, "real floating") or math.prod(shape) == 0:
            return cls(shape=shape)
        norm = float(xp.sqrt(xp.sum(x * x)))
        flat = xp.reshape(x, (-1,))
        elements = (
            tuple(float(flat[i]) for i in range(flat.shape[0]))
            if flat.shape[0] <= cls.SMALL
            else None
        )
        return cls(
            shape=shape,
            norm=norm,
            min=float(xp.min(x)),
            max=float(xp.max(x)),
            elements=elements,
        )

    def forward_label(self, number_format: str | None) -> str:
        """A number (see :func:`format_number`), or an array's shape (forward edges show
        what flows)."""
        if self.number is not None:
            return format_number(self.number, number_format)
        return str(self.shape)

    def backward_label(self, number_format: str | None) -> str:
        """A number, a small array's elements (its signs matter), or an array's norm (a
        gradient has the shape of its value)."""
        if self.number is not None or self.norm is None:
            return self.forward_label(number_format)
        if self.elements is not None:
            return f"[{', '.join(format_number(e, number_format) for e in self.elements)}]"
        return f"‖·‖ {self.norm:.3g}"

    def summary(self) -> str:
        """Everything recorded: the number to 12 significant digits (110, not the
        110.00000000000001 of 100 * 1.1), or shape, norm, min and max."""
        if self.number is not None:
            return str(self.number) if isinstance(self.number, int) else f"{self.number:.12g}"
        if self.norm is None:
            return f"shape {self.shape}"
        return f"shape {self.shape}, norm {self.norm:.6g}, min {self.min:.6g}, max {self.max:.6g}"


def format_number(x: float, number_format: str | None) -> str:
    """``x`` in ``number_format``, or by default (None) as written when it is an integer
    (12345, not 1.234e+04), a float that holds one exactly below :data:`WHOLE_BELOW` in
    magnitude too (12345.0 reads 12345), and any other number in :data:`NUMBER_FORMAT`."""
    if number_format is not None:
        return number_format.format(x)
    if isinstance(x, int):
        return str(int(x))
    if x.is_integer() and abs(x) < WHOLE_BELOW:
        return f"{x:.0f}"  # -0.0 reads -0, as in NUMBER_FORMAT
    return NUMBER_FORMAT.format(x)


def _shortest(x: Any) -> float:
    """A floating-point NumPy scalar as the Python float that reads as it does in its own
    dtype: a float32's 2.2, where ``float()`` gives 2.200000047683716."""
    return float(str(x))


@dataclass
class Call:
    """One ``forward`` call of a node and the ``backward`` call that answered it.

    Backward calls answer forward calls in reverse order, per node: a backward call
    answers its node's latest forward call that no backward call has answered yet.
    """

    node: int  # index into Recording.nodes
    inputs: tuple[Any, ...]  # the objects themselves, to find edges by identity
    output: Any
    input_values: list[Value | None]
    output_value: Value | None
    dout: Value | None = None  # the gradient backward got
    dinputs: list[Value | None] = field(default_factory=list)  # one per input, or empty
    params: dict[str, tuple[Value | None, Value | None]] = field(default_factory=dict)
    train_flg: bool | None = None  # the mode of a node whose forward takes it (Dropout)
    # A node made of recorded nodes (a block): the call whose forward made this one, the
    # calls its own forward made, and what its output is the sum of (see _join).
    parent: int | None = None  # index into Recording.calls
    children: list[int] = field(default_factory=list)
    join: Join | None = field(default=None, repr=False, compare=False)
    # Copies kept while the block holding (or being) this call runs, to see what its own
    # code changes in place: the output as returned, and a block's inputs as given.
    returned: Any = field(default=None, repr=False, compare=False)
    given: tuple[Any, ...] | None = field(default=None, repr=False, compare=False)
    # The inputs that the enclosing block's code changed in place after they came out of
    # (or into) a call: what flowed is no call's output, so no edge is drawn from one.
    altered: set[int] = field(default_factory=set, repr=False, compare=False)
    # The inputs that the enclosing block's code added up (``relu(x + inner(x))``), by index.
    fed: dict[int, Join] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class Join:
    """How a block's output, or an input of a call inside it, came out of the calls inside
    the block, when it is no inner call's output (or one that the block's code changed in
    place after the call returned it): the sum (``add``) of ``terms``, inner outputs, and,
    for a skip path, of the block's ``inputs`` (their indices); or, not ``add``, a
    computation of the block's own code that the recording cannot see, fed by the inner
    outputs."""

    terms: list[Any]
    add: bool
    inputs: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Edge:
    """``source`` feeds call ``target``; ``source`` is a call or a leaf.

    ``main`` edges (between calls, and outputs) are the lines the drawing keeps straight.
    """

    source: int | str  # a call's index, or a leaf's or a block's join id ("join:3")
    target: int | str | None  # a call's index, a join id; None for the graph's output
    forward: Value | None
    backward: Value | None
    main: bool = False


class Recording:
    """What the nodes did inside a :func:`record` block: their calls, in order.

    ``nodes`` is the list of node instances, ``labels`` their drawn labels, ``calls``
    the :class:`Call` of each ``forward``. ``edges()`` joins them; ``dot()`` draws them,
    numbers (and unnamed leaves, the constants, drawn only when ``constants``) in
    ``number_format``: by default (None) integers as written and other numbers in
    :data:`NUMBER_FORMAT` (:func:`format_number`); a format set here applies to every number.
    ``note`` is drawn under the title: what the drawing leaves out (:func:`record_network`
    sets it for weight decay).
    """

    number_format: str | None = None
    constants = True
    note: str | None = None

    def __init__(
        self,
        nodes: list[Any],
        labels: list[str],
        inputs: Mapping[str, Any],
        param_names: Mapping[str, tuple[Any, str]],
    ) -> None:
        self.nodes, self.labels = nodes, labels
        self.inputs = dict(inputs)
        self.param_names = {(id(node), attr): name for name, (node, attr) in param_names.items()}
        self.calls: list[Call] = []
        # A block's cluster reads its class and this path (record_network: "layers[1]").
        self.paths: dict[int, str] = {}  # node index -> path
        # Per node, its forward calls that no backward has answered yet, latest last.
        self._unanswered: list[list[Call]] = [[] for _ in nodes]
        self._running: list[Call] = []  # the forward calls begun and not returned, latest last
        self._recorded = {id(node) for node in nodes}
        self._blocks = {
            k
            for k, node in enumerate(nodes)
            if any(id(inner) in self._recorded for _, inner in inner_layers(node))
        }

    # Recording (the wrappers call these).

    def _start_forward(self, node: int, args: tuple[Any, ...], train_flg: bool | None) -> Call:
        """The call of ``node``'s forward on ``args``, its inputs and parameters noted
        before it runs: a forward may write into them (``x += 1``). A block (a node whose
        ``sublayers`` are recorded) keeps a copy of its inputs until it returns."""
        values = [self._value(node, f"input {i}", a) for i, a in enumerate(args)]
        call = Call(node, args, None, values, None, train_flg=train_flg)
        if node in self._blocks:
            call.given = tuple(copy_of(a) for a in args)
        if self._running:
            block = self._running[-1]
            call.altered = {i for i, a in enumerate(args) if self._altered(block, a)}
            call.fed = self._fed(block, args, call.altered)
        for owner, attr in _parameters_in(self.nodes[node], self._recorded):
            value = self._value(node, f"parameter {attr}", getattr(owner, attr))
            call.params[self._param_name(owner, attr)] = (value, None)
        self._running.append(call)
        return call

    def _forward(self, call: Call, output: Any) -> None:
        self._running.pop()
        call.output, call.output_value = output, self._value(call.node, "output", output)
        k = len(self.calls)
        if self._running:  # made by a block's forward: drawn inside its cluster
            self._running[-1].children.append(k)
            call.returned = copy_of(output)
        for child in call.children:
            self.calls[child].parent = k
        if call.children:
            call.join = self._join(call)
        for child in call.children:
            self.calls[child].returned = None
        call.given = None
        self.calls.append(call)
        self._unanswered[call.node].append(call)

    def _join(self, call: Call) -> Join | None:
        """How the output of a block's ``call`` came out of its inner calls: None where it
        is an inner call's output, unchanged since that call returned it (a chain, as
        Sequential's). The sum is checked on the values as the calls returned them and the
        block got them: ``y += x`` changes the inner output ``y`` in place. Its terms are the
        inner outputs no inner call used, and, where those do not add up to it, one that an
        inner call used too (``h + inner(h)``, ``h`` the output of an inner activation)."""
        children = [self.calls[c] for c in call.children]
        # Parameters of the block's own (a layer scale) act in its code: a join shows them.
        own = bool(call.params)
        if not own and any(
            c.output is call.output and _same(c.output, c.returned) for c in children
        ):
            return None
        unused = _unused(children)
        if not own:
            # An inner output that an inner call used too may be a term: h + inner(h).
            shared = [c for c in reversed(children) if c not in unused]
            for extra in [[], *([c] for c in shared)]:
                join = _added(call, call.output, unused + extra)
                if join is not None:
                    return join
        return Join([c.output for c in unused], add=False)

    def _fed(self, block: Call, args: tuple[Any, ...], altered: set[int]) -> dict[int, Join]:
        """The adds made by ``block``'s code that feed ``args`` of a call inside it, by input
        index: an input that is neither a call's output nor ``block``'s input, as they were,
        but to rounding the sum of the inner outputs that no inner call used yet and, for a
        skip path, of ``block``'s inputs (``relu(x + inner(x))``)."""
        unused = _unused([self.calls[c] for c in block.children])
        fed = {}
        for i, x in enumerate(args):
            if x is None:
                continue
            given = any(x is a for a in block.inputs)
            if i not in altered and (given or self._producer(len(self.calls), x) is not None):
                continue
            join = _added(block, x, unused)
            if join is not None:
                fed[i] = join
        return fed

    def _altered(self, block: Call, x: Any) -> bool:
        """Whether ``block``'s own code changed ``x`` in place after ``x`` came into
        ``block`` or out of a call inside it (the latest such)."""
        kept = [g for a, g in zip(block.inputs, block.given or block.inputs, strict=True) if a is x]
        kept += [self.calls[c].returned for c in block.children if self.calls[c].output is x]
        return bool(kept) and not _same(x, kept[-1])

    def _backward(self, node: int, dout: Value | None, grads: Any) -> None:
        # Backward passes run in reverse: each answers its node's latest unanswered forward.
        unanswered = self._unanswered[node]
        if not unanswered:
            kind = type(self.nodes[node]).__name__
            raise RuntimeError(
                f"{kind}.backward was called with no forward call of its node left to answer "
                "while recording: each backward answers one forward"
            )
        call = unanswered.pop()
        call.dout = dout
        _require_a_gradient_per_input(type(self.nodes[node]).__name__, node, call, grads)
        grads = list(grads) if isinstance(grads, tuple) else [grads]
        call.dinputs = [self._value(node, f"gradient of input {i}", g) for i, g in enumerate(grads)]
        call.dinputs += [None] * (len(call.inputs) - len(grads))
        for owner, attr in _parameters_in(self.nodes[node], self._recorded):
            name = self._param_name(owner, attr)
            grad = self._value(node, f"gradient d{attr}", getattr(owner, "d" + attr, None))
            call.params[name] = (call.params[name][0], grad)

    def _value(self, node: int, what: str, x: Any) -> Value | None:
        """:meth:`Value.of` ``x``, an error naming the node and ``what`` ``x`` is."""
        try:
            return Value.of(x)
        except TypeError as exc:
            kind = type(self.nodes[node]).__name__
            raise TypeError(
                f"{kind} node {node}, {what}: {exc} (a recorded node takes and returns "
                "numbers and arrays, one output per forward call)"
            ) from None

    def _param_name(self, node: Any, attr: str) -> str:  # node: the layer holding attr
        return self.param_names.get((id(node), attr), attr)

    # Reading the run.

    def __repr__(self) -> str:
        nodes, calls = len(self.nodes), len(self.calls)
        answered = calls - sum(len(u) for u in self._unanswered)
        labels = f" ({_listed(self.labels)})" if nodes else ""
        return (
            f"<Recording: {nodes} node{'s' * (nodes != 1)}{labels}, "
            f"{calls} forward call{'s' * (calls != 1)}, {answered} answered by backward; "
            f"inputs: {_listed(list(self.inputs)) or 'none named'}>"
        )

    def _repr_mimebundle_(
        self, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None
    ) -> dict[str, str] | None:
        """IPython's and Jupyter's display: the drawing as SVG, titled with the forward
        calls that backward did not answer, if any (a notebook shows only the drawing, not
        the ``repr`` that counts them); without Graphviz, or with nothing recorded, the
        ``repr`` and why (a display that raised would print a traceback)."""
        if (include is not None and SVG_MIME not in include) or SVG_MIME in (exclude or ()):
            return None
        if not self.calls:
            nothing = "Nothing to draw: no node's forward ran inside the block"
            return {"text/plain": f"{self!r}\n{nothing}"}
        unanswered = sum(len(u) for u in self._unanswered)
        title = None
        if unanswered:
            calls = len(self.calls)
            title = (
                f"{unanswered} of {calls} forward call{'s' * (calls != 1)} not answered by "
                "backward: call backward inside the with block for the gradients"
            )
        try:
            return {SVG_MIME: render(self.dot(title=title), "svg").decode()}
        except GraphvizUnavailableError as exc:
            return {"text/plain": f"{self!r}\nNot drawn: {exc}"}

    @property
    def output(self) -> Any:
        """The output of the last ``forward`` call: the graph's result."""
        if not self.calls:
            raise ValueError("nothing was recorded: no node's forward ran inside the block")
        return self.calls[-1].output

    def _leaf_names(self, calls: Iterable[int]) -> Iterator[tuple[int, int, str | None]]:
        """(call, input index, name or None) for every input of ``calls`` (indices) that no
        earlier call produced.

        A value named by several names (Python may share equal constants) gives its
        names to its uses in order; later uses keep the last name.
        """
        names_of: dict[int, list[str]] = {}
        for name, value in self.inputs.items():
            names_of.setdefault(id(value), []).append(name)
        uses: dict[int, int] = {}
        for k in calls:
            for i, x in enumerate(self.calls[k].inputs):
                if self._source(k, i) is not None or i in self.calls[k].fed:
                    continue
                names = names_of.get(id(x))
                if names is None:
                    yield k, i, None
                    continue
                used = uses.get(id(x), 0)
                uses[id(x)] = used + 1
                yield k, i, names[min(used, len(names) - 1)]

    def _constants_taken_for_names(self) -> list[tuple[list[str], int]]:
        """(names, uses) of each named Python number that inputs of several calls used
        more often than it has names: CPython shares equal constants (``x = 1.0`` and a
        later ``+ 1.0`` are one object), so some of those uses may be constants."""
        names_of: dict[int, list[str]] = {}
        for name, value in self.inputs.items():
            if type(value) in (int, float):
                names_of.setdefault(id(value), []).append(name)
        calls_of: dict[int, list[int]] = {}
        for k, i, _ in self._leaf_names(self._outermost()):
            key = id(self.calls[k].inputs[i])
            if key in names_of:
                calls_of.setdefault(key, []).append(k)
        return [
            (names_of[key], len(calls))
            for key, calls in calls_of.items()
            if len(calls) > len(names_of[key]) and len(set(calls)) > 1
        ]

    def _producer(self, k: int, x: Any) -> int | None:
        """The latest call before call ``k`` whose output is ``x``, if any."""
        return next((j for j in range(k - 1, -1, -1) if self.calls[j].output is x), None)

    def _source(self, k: int, i: int) -> int | None:
        """The call whose output flowed into input ``i`` of call ``k``, if any: none where
        the code of the block holding call ``k`` changed it in place after that call."""
        if i in self.calls[k].altered:
            return None
        return self._producer(k, self.calls[k].inputs[i])

    def _outermost(self) -> list[int]:
        """The calls no recorded block made: their input gradients are the whole ones."""
        return [k for k, call in enumerate(self.calls) if call.parent is None]

    def _drawn(self, k: int) -> int | str:
        """What is drawn for the output of call ``k``: the call, or for a block the inner
        call whose output it is, or its join (``"join:k"``)."""
        call = self.calls[k]
        while call.children:
            if call.join is not None:
                return f"join:{k}"
            k = next(c for c in reversed(call.children) if self.calls[c].output is call.output)
            call = self.calls[k]
        return k

    def edges(self) -> tuple[dict[str, str], list[Edge]]:
        """The leaves (id -> label) and the edges of the graph, in call order.

        Named leaves are drawn once however often they are used; unnamed ones (constants)
        once per use. Parameters are leaves named as in ``param_names`` (or by attribute).
        A block whose inner layers were recorded is drawn as them: its calls' inputs are
        edges into the inner calls, and a join (``"join:k"``: the add of a residual block)
        gets the inner outputs and the skip path. Outermost calls whose output no later
        call used end in an output edge (``target`` None).
        """
        leaves: dict[str, str] = {}
        edges: list[Edge] = []
        drawn = [k for k, call in enumerate(self.calls) if not call.children]
        leaf_of = {(k, i): name for k, i, name in self._leaf_names(drawn)}
        consumed: set[int] = set()
        for k in drawn:
            call = self.calls[k]
            # Parameters first: drawn above the data, their edges cross nothing.
            for name, (value, grad) in call.params.items():
                leaves[f"param:{name}"] = name
                edges.append(Edge(f"param:{name}", k, value, grad))
            for i, x in enumerate(call.inputs):
                if x is None:  # an optional argument left out: no value flows along it
                    continue
                backward = call.dinputs[i] if call.dinputs else None
                producer = self._source(k, i)
                if i in call.fed:
                    source: int | str = f"join:{k}:{i}"
                elif producer is not None:
                    consumed.add(producer)
                    source = self._drawn(producer)
                elif leaf_of[k, i] is not None:
                    source = f"in:{leaf_of[k, i]}"
                    leaves[source] = leaf_of[k, i]
                elif not self.constants:
                    continue
                else:
                    source = f"const:{k}:{i}"
                    leaves[source] = call.input_values[i].forward_label(self.number_format)
                main = producer is not None or i in call.fed
                edges.append(Edge(source, k, call.input_values[i], backward, main=main))
        for k, call in enumerate(self.calls):
            for i in call.fed:
                edges += self._join_edges(k, i, leaves, consumed)
            if call.join is not None:
                edges += self._join_edges(k, None, leaves, consumed)
        for k in self._outermost():
            if k not in consumed:
                call = self.calls[k]
                edges.append(Edge(self._drawn(k), None, call.output_value, call.dout, main=True))
        return leaves, edges

    def _join_edges(
        self, k: int, i: int | None, leaves: dict[str, str], consumed: set[int]
    ) -> list[Edge]:
        """The edges into the join of block call ``k`` (``i`` None), or into the add feeding
        input ``i`` of call ``k``: from the block's own parameters, from the inner outputs,
        each with its value as its call returned it, and, for an add, from the block's inputs
        (the skip path), each with its value as the block got it. An add passes on the
        gradient it got (the block's, or the one call ``k`` returned for input ``i``) to each;
        an inner output into a block's forward carries the gradient its call got."""
        call, edges = self.calls[k], []
        if i is None:
            b, join, target, dout = k, call.join, f"join:{k}", call.dout
            for name, (value, grad) in call.params.items():  # the block's own (see _join)
                leaves[f"param:{name}"] = name
                edges.append(Edge(f"param:{name}", target, value, grad))
        else:
            b, join, target = call.parent, call.fed[i], f"join:{k}:{i}"
            dout = call.dinputs[i] if call.dinputs else None
        block = self.calls[b]
        names = {id(value): name for name, value in self.inputs.items()}
        for term in join.terms:
            j = self._producer(k, term)  # the inner call whose output the term is
            consumed.add(j)
            inner = self.calls[j]
            grad = dout if join.add else inner.dout
            edges.append(Edge(self._drawn(j), target, inner.output_value, grad, main=True))
        for n in join.inputs:
            producer = self._source(b, n)
            if producer is not None:
                consumed.add(producer)
                source: int | str = self._drawn(producer)
            else:
                value = block.input_values[n]
                name = names.get(id(block.inputs[n]), value.forward_label(self.number_format))
                source = f"in:{name}"
                leaves[source] = name
            edges.append(Edge(source, target, block.input_values[n], dout))
        return edges

    def input_gradients(self) -> dict[str, float | None]:
        """``name -> gradient`` of every named input, summed over its uses, as a number.

        The sum is taken in the gradients' dtype, as backpropagation sums them, and read as
        that dtype prints it (float32's 0.1 + 0.2 is 0.3). None where a use got no number:
        no backward call, a backward that returned none for it (a network's first layer
        computes none for its data, the input ``x`` of :func:`record_network`), or an
        array gradient (its summary is on the edges; the recording keeps no arrays: the
        array is what the node's ``backward`` returned); and for a name no node used.
        """
        sums: dict[str, Any] = dict.fromkeys(self.inputs)
        used: set[str] = set()
        for k, i, name in self._leaf_names(self._outermost()):
            if name is None:
                continue
            dinputs = self.calls[k].dinputs
            value = dinputs[i] if dinputs else None
            grad = value.exact if value is not None and value.number is not None else None
            if name not in used:
                used.add(name)
                sums[name] = grad
            elif sums[name] is not None:
                sums[name] = None if grad is None else sums[name] + grad
        return {name: None if g is None else Value.of(g).number for name, g in sums.items()}

    def dot(self, *, title: str | None = None) -> str:
        """Graphviz DOT text: nodes left to right, on each edge the forward value above
        (black) and the backward value below (red, dashed); a block whose inner nodes were
        recorded as a cluster of them; ``title`` above them, and the recording's ``note``
        under it."""
        leaves, edges = self.edges()
        number_format = self.number_format
        lines = [
            "digraph computational_graph {",
            "  rankdir=LR; ordering=in; nodesep=0.5; ranksep=1.1;",
            '  node [fontname="Helvetica"]; edge [fontname="Helvetica", arrowsize=0.7];',
        ]
        lines_above = (title, self.note, *self._gate_notes())
        heading = "\\n".join(_escape(line) for line in lines_above if line)
        if heading:
            lines.append(f'  labelloc=t; label="{heading}"; fontname="Helvetica";')
        # Each node is declared in the cluster of the block holding it, a leaf in that of
        # the node it feeds, so that Graphviz draws it inside the block's box.
        inside: dict[int | None, list[str]] = {}
        for edge in edges:
            if isinstance(edge.source, str) and edge.source in leaves:
                statement = _plaintext(edge.source, leaves.pop(edge.source))
                inside.setdefault(self._cluster(edge.target), []).append(statement)
        for k, call in enumerate(self.calls):
            if call.join is not None:
                label = "+" if call.join.add else f"{type(self.nodes[call.node]).__name__}.forward"
                inside.setdefault(k, []).append(f'"join:{k}" [{_shape(label)}, label="{label}"];')
            for i in call.fed:
                inside.setdefault(call.parent, []).append(
                    f'"join:{k}:{i}" [{_shape("+")}, label="+"];'
                )
            if call.children:
                continue
            label = _escape(self.labels[call.node])
            shape = _shape(self.labels[call.node])
            if call.train_flg is not None and not call.train_flg:  # else eval looks as training
                label += "\\ntrain_flg=False"
                shape = "shape=box, style=rounded"
            inside.setdefault(call.parent, []).append(f'"call:{k}" [{shape}, label="{label}"];')
        lines += self._cluster_lines(None, inside, "  ")
        for j, edge in enumerate(edges):
            source = f"call:{edge.source}" if isinstance(edge.source, int) else _escape(edge.source)
            target = f"call:{edge.target}" if isinstance(edge.target, int) else edge.target
            if edge.target is None:
                target = f"out:{j}"
                lines.append(f'  "{target}" [shape=plaintext, label=""];')
            # Labels show the gist; tooltips (SVG) everything recorded.
            forward = "" if edge.forward is None else edge.forward.forward_label(number_format)
            tooltip = "" if edge.forward is None else edge.forward.summary()
            weight = "weight=8, " if edge.main else ""
            lines.append(
                f'  "{source}" -> "{target}" [{weight}label="{_escape(forward)}", '
                f'tooltip="{_escape(tooltip)}"];'
            )
            if edge.backward is not None:
                backward = _escape(edge.backward.backward_label(number_format))
                tooltip = _escape(f"gradient: {edge.backward.summary()}")
                lines.append(
                    f'  "{source}" -> "{target}" [{BACKWARD_EDGE}, label="{backward}", '
                    f'tooltip="{tooltip}"];'
                )
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _gate_notes(self) -> list[str]:
        """A line for each block drawn as its ``forward`` node (a gate, ``x * inner(x)``):
        the paths its own code takes from its inputs are not drawn, so the gradients drawn
        into it are its inner layers' shares only."""
        gates = [
            self._block_label(k)
            for k, c in enumerate(self.calls)
            if c.join is not None and not c.join.add
        ]
        return [
            f"{label}: its own code between its layers is not drawn; gradients drawn into it "
            "are its inner layers' shares"
            for label in dict.fromkeys(gates)
        ]

    def _block_label(self, k: int) -> str:
        """Block call ``k``'s class and path (``Residual layers[1]``)."""
        node = self.calls[k].node
        return " ".join([type(self.nodes[node]).__name__, *filter(None, [self.paths.get(node)])])

    def _cluster(self, target: int | str | None) -> int | None:
        """The block call whose cluster holds a leaf feeding ``target``; None: none."""
        if isinstance(target, str):  # a join, inside its own block's (or its call's) cluster
            k, *fed = target.removeprefix("join:").split(":")
            return self.calls[int(k)].parent if fed else int(k)
        return None if target is None else self.calls[target].parent

    def _cluster_lines(self, block: int | None, inside: dict[int | None, list[str]], indent: str):
        """The node statements of ``block``'s cluster (None: the top level), its inner
        blocks' clusters nested in it, labelled by class and path (``Residual
        layers[1]``)."""
        lines = [indent + statement for statement in inside.get(block, [])]
        for k, call in enumerate(self.calls):
            if call.parent != block or not call.children:
                continue
            lines.append(f"{indent}subgraph cluster_{k} {{")
            label = self._block_label(k)
            lines.append(f'{indent}  label="{_escape(label)}"; labeljust=l; fontname="Helvetica";')
            lines.append(f"{indent}  style=rounded; color=grey40;")
            lines += self._cluster_lines(k, inside, indent + "  ")
            lines.append(f"{indent}}}")
        return lines


def _listed(names: list[str], most: int = 6) -> str:
    """``names`` joined by commas, the middle ones elided beyond ``most``: a repr stays short."""
    if len(names) > most:
        names = [*names[: most - 2], "...", *names[-2:]]
    return ", ".join(names)


def _plaintext(key: str, label: str) -> str:
    return f'"{_escape(key)}" [shape=plaintext, label="{_escape(label)}"];'


def _shape(label: str) -> str:
    """A circle for a short label (a gate: ×, exp, 1/x, +; a layer too), else a box."""
    return (
        "shape=circle, width=0.55, fixedsize=true"
        if len(label) <= 3
        else "shape=box, style=rounded"
    )


def _same(x: Any, kept: Any) -> bool:
    """Whether ``x`` holds what ``kept``, a :func:`~xpnet.held.copy_of` it (``x`` itself for
    a number, which nothing changes in place), holds: nothing wrote into it since."""
    return x is kept or same_values(namespace_of(x), kept, x)


def _unused(children: list[Call]) -> list[Call]:
    """The ``children`` (inner calls of a block) whose output neither an inner call nor an
    add feeding one used."""
    used = [x for child in children for x in child.inputs]
    used += [t for child in children for join in child.fed.values() for t in join.terms]
    return [c for c in children if not any(c.output is x for x in used)]


def _added(block: Call, value: Any, terms: list[Call]) -> Join | None:
    """The add of the outputs of ``terms`` (inner calls of ``block``), and, for a skip path,
    of ``block``'s inputs, where ``value`` is their sum to rounding (on the values as the
    calls returned them and ``block`` got them); None where it is not."""
    returned = [c.returned for c in terms]
    outputs = [c.output for c in terms]
    if _is_sum(value, returned):  # inner(x) + ...
        return Join(outputs, add=True)
    given = block.given or block.inputs
    inputs = [i for i, x in enumerate(block.inputs) if x is not None]
    if _is_sum(value, returned + [given[i] for i in inputs]):  # + x: a skip
        return Join(outputs, add=True, inputs=inputs)
    return None


def _is_sum(output: Any, terms: list[Any]) -> bool:
    """Whether the floating-point array ``output`` is, to rounding, the sum of ``terms``,
    two or more arrays of its shape and dtype."""
    arrays = [output, *terms]
    if len(terms) < 2 or not all(hasattr(a, "shape") and a.ndim for a in arrays):
        return False
    xp = namespace_of(output)
    alike = all(a.shape == output.shape and a.dtype == output.dtype for a in terms)
    if not alike or not xp.isdtype(output.dtype, "real floating"):
        return False
    total = functools.reduce(operator.add, terms)
    size = functools.reduce(operator.add, [xp.abs(a) for a in terms])
    tolerance = len(terms) * xp.finfo(output.dtype).eps * size
    return bool(xp.all(xp.abs(output - total) <= tolerance))


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


@contextlib.contextmanager
def record(
    nodes: Iterable[Any] | Mapping[Any, str],
    *,
    inputs: Mapping[str, Any] | None = None,
    param_names: Mapping[str, tuple[Any, str]] | None = None,
) -> Iterator[Recording]:
    """Record the forward and backward calls of ``nodes`` inside the ``with`` block.

    ``nodes`` are node instances, or a mapping ``node -> label`` (default labels: ``×``,
    ``+``, ``exp``, ``1/x`` or the class name). ``inputs`` names the leaf values (``{"apple":
    apple}``), matched by identity. ``param_names`` names parameters as a network's
    ``params.slot`` does (``{"W1": (affine, "W")}``; default: the attribute name).
    Only positional arguments are inputs (``None`` draws no edge), and ``train_flg`` is
    none (given by position or keyword): a node run with ``train_flg=False`` (Dropout,
    BatchNorm in eval mode) says so under its label.
    A network is refused (:func:`record_network` records one).
    """
    if hasattr(nodes, "layers") and hasattr(nodes, "last_layer"):
        # Iterating a Sequential gives its layers: the loss, the parameters' names and
        # record_network's held state would be silently left out.
        raise TypeError(
            f"record takes nodes, got a {type(nodes).__name__} network: record_network(net, "
            "x, t) records its gradient (the loss and the parameters' names included), or "
            "pass its layers, record([*net, net.last_layer])"
        )
    labelled = dict(nodes) if isinstance(nodes, Mapping) else {n: None for n in nodes}
    instances = list(labelled)
    labels = [label or SYMBOLS.get(type(n), type(n).__name__) for n, label in labelled.items()]
    recording = Recording(instances, labels, inputs or {}, param_names or {})
    for k, node in enumerate(instances):
        missing = [m for m in ("forward", "backward") if not callable(getattr(node, m, None))]
        if missing:
            raise TypeError(
                f"{type(node).__name__} node {k} has no {' and no '.join(missing)} method: "
                "a recorded node needs forward and backward"
            )
        if not hasattr(node, "__dict__"):
            raise TypeError(
                f"{type(node).__name__} node {k} has __slots__ and no __dict__: recording "
                "wraps a node's forward and backward on the instance; add '__dict__' to its "
                "__slots__"
            )
        for method in ("forward", "backward"):
            if method in vars(node):
                raise ValueError(
                    f"{type(node).__name__} node {k} already has an instance attribute "
                    f"{method!r} (recorded twice, or listed twice?)"
                )
    try:
        for k, node in enumerate(instances):
            node.forward = _recording_forward(recording, k, node.forward)
            node.backward = _recording_backward(recording, k, node.backward)
        yield recording
        for names, uses in recording._constants_taken_for_names():
            value = recording.inputs[names[0]]
            warnings.warn(
                f"{' = '.join(names)} = {value!r} was drawn for {uses} inputs of several nodes: "
                f"Python shares equal constants, so a {value!r} written elsewhere in the code "
                f"may be this object, and is drawn as {names[0]} (with its gradient summed "
                f"in). Name a 0-D array instead (np.float64({value!r})) to tell them apart; "
                f"if every one of those uses is {names[0]}, ignore this warning",
                stacklevel=3,
            )
    finally:
        for node in instances:
            for method in ("forward", "backward"):
                vars(node).pop(method, None)


class SharedInt(int):
    """An ``int`` that is its own object: CPython shares the ints -5 to 256, so ``1 + 2``
    *is* the ``3`` of ``z = 3``, and edges found by identity would join them."""

    __repr__ = int.__repr__


def _own_object(output: Any, args: tuple[Any, ...]) -> Any:
    """``output``, or a :class:`SharedInt` of it where CPython may share it with a leaf."""
    if type(output) is int and -5 <= output <= 256 and not any(a is output for a in args):
        return SharedInt(output)
    return output


def _recording_forward(recording: Recording, k: int, forward: Callable) -> Callable:
    parameters = list(inspect.signature(forward).parameters.values())
    names = [p.name for p in parameters]
    flag = names.index("train_flg") if "train_flg" in names else None

    @functools.wraps(forward)  # keeps the signature (Sequential looks for train_flg)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        inputs, train_flg = args, None
        if flag is not None:  # the mode, given by keyword or by position, is no input
            train_flg = kwargs.get("train_flg", parameters[flag].default)
            if len(args) > flag:
                inputs, train_flg = args[:flag] + args[flag + 1 :], args[flag]
        call = recording._start_forward(k, inputs, train_flg)
        output = _own_object(forward(*args, **kwargs), inputs)
        recording._forward(call, output)
        return output

    return wrapper


def _require_a_gradient_per_input(kind: str, node: int, call: Call, grads: Any) -> None:
    """Refuse one gradient returned for a ``call`` of several inputs, which would be drawn
    as the first input's and none for the others (the book's ``MulLayer`` returns ``dx,
    dy``), unless ``call`` computed a loss, whose targets get none: a 0-D output of arrays."""
    several = len(call.inputs) > 1 and not isinstance(grads, (tuple, list))
    loss = getattr(call.output, "ndim", 0) == 0 and any(
        getattr(x, "ndim", 0) > 0 for x in call.inputs
    )
    if grads is None or not several or loss:
        return
    raise ValueError(
        f"{kind} node {node}: backward returned one gradient for its {len(call.inputs)} "
        "inputs: return one for each, as a tuple (dx, dy), with None for an input that needs none"
    )


def _recording_backward(recording: Recording, k: int, backward: Callable) -> Callable:
    signature = inspect.signature(backward)

    @functools.wraps(backward)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        # Noted before backward runs, which may write into it (the book's Relu does).
        dout = recording._value(k, "backward's dout", next(iter(bound.arguments.values()), None))
        grads = backward(*args, **kwargs)
        recording._backward(k, dout, grads)
        return grads

    return wrapper


# The named graphs: the book's (section 5.4) and CS231n's, computed node by node.


def apple() -> Recording:
    """Buying apples: 100 yen x 2 apples x 1.1 tax = 220; backward from 1."""
    apple, apple_num, tax = 100, 2, 1.1
    mul_apple, mul_tax = Mul(), Mul()
    inputs = {"apple": apple, "apple_num": apple_num, "tax": tax}
    with record([mul_apple, mul_tax], inputs=inputs) as run:
        apple_price = mul_apple.forward(apple, apple_num)
        mul_tax.forward(apple_price, tax)

        dapple_price, _dtax = mul_tax.backward(1)
        mul_apple.backward(dapple_price)
    return run


def apple_orange() -> Recording:
    """Buying apples and oranges: (100 x 2 + 150 x 3) x 1.1 = 715; backward from 1."""
    apple, apple_num = 100, 2
    orange, orange_num = 150, 3
    tax = 1.1
    mul_apple, mul_orange, add_fruit, mul_tax = Mul(), Mul(), Add(), Mul()
    nodes = [mul_apple, mul_orange, add_fruit, mul_tax]
    inputs = {"apple": apple, "apple_num": apple_num, "orange": orange}
    inputs |= {"orange_num": orange_num, "tax": tax}
    with record(nodes, inputs=inputs) as run:
        apple_price = mul_apple.forward(apple, apple_num)
        orange_price = mul_orange.forward(orange, orange_num)
        all_price = add_fruit.forward(apple_price, orange_price)
        mul_tax.forward(all_price, tax)

        dall_price, _dtax = mul_tax.backward(1)
        dapple_price, dorange_price = add_fruit.backward(dall_price)
        mul_orange.backward(dorange_price)
        mul_apple.backward(dapple_price)
    return run


def sigmoid_neuron(device: str | None = None) -> Recording:
    """CS231n's neuron ``1 / (1 + exp(-(w0*x0 + w1*x1 + w2)))`` at w = (2, -3, -3),
    x = (-1, -2), gate by gate (every intermediate node), on 0-D float64 arrays."""
    w0, w1, w2, x0, x1 = (to_device(v, dtype="float64", device=device) for v in (2, -3, -3, -1, -2))
    mul0, mul1, add0, add1 = Mul(), Mul(), Add(), Add()
    negate, exp, add_one, reciprocal = Mul(), Exp(), Add(), Reciprocal()
    labels = {mul0: TIMES, mul1: TIMES, add0: "+", add1: "+"}
    labels |= {negate: f"{TIMES}-1", exp: "exp", add_one: "+1", reciprocal: "1/x"}
    inputs = {"w0": w0, "x0": x0, "w1": w1, "x1": x1, "w2": w2}
    with record(labels, inputs=inputs) as run:
        dot = add0.forward(mul0.forward(w0, x0), mul1.forward(w1, x1))
        z = add1.forward(dot, w2)
        reciprocal.forward(add_one.forward(exp.forward(negate.forward(z, -1.0)), 1.0))

        dexp_plus_one, _ = add_one.backward(reciprocal.backward(1.0))
        dz, _ = negate.backward(exp.backward(dexp_plus_one))
        ddot, _dw2 = add1.backward(dz)
        dw0x0, dw1x1 = add0.backward(ddot)
        mul0.backward(dw0x0)
        mul1.backward(dw1x1)
    run.constants = False  # the constants are in the labels: ×-1, +1
    run.number_format = "{:.2f}"  # as CS231n draws it
    return run


def _parameters_in(node: Any, recorded: set[int]) -> list[tuple[Any, str]]:
    """``(layer, attribute)`` for each parameter of ``node`` and of the layers inside it
    (``sublayers``) not ``recorded`` (ids) themselves: a layer made of layers whose inner
    layers are not recorded is one node, its inner parameters its leaves."""
    found = [(node, attr) for attr in own_params(node)]
    for _, inner in inner_layers(node):
        if id(inner) not in recorded:
            found += _parameters_in(inner, recorded)
    return found


def record_network(
    net: Any, x: Any, t: Any, *, train_flg: bool = True, inside: bool = True
) -> Recording:
    """One ``net.gradient(x, t)`` (forward, then backward), recorded layer by layer: in
    training mode, or with ``train_flg=False`` in evaluation mode, as ``net.predict(x)``
    runs (BatchNorm's running statistics, Dropout's scaling instead of a mask), through
    ``net.gradient(x, t, train_flg=False)``.

    ``net`` is any network with ``layers``, ``last_layer``, ``params`` (a mapping with
    ``slot(name) -> (layer, attribute)``) and ``gradient(x, t)`` returning the gradients
    by name, e.g. :class:`xpnet.Sequential`. ``x`` (as the first layer got it: a network
    converts it to its parameters' dtype) and ``t`` are the leaves ``x`` and ``t``; each
    parameter is a leaf named as in ``net.params``.

    A layer made of layers (a nested Sequential, a residual block: ``sublayers``) is
    drawn as a box, a Graphviz cluster labelled with its class and path (``Residual
    layers[1]``), holding its inner layers as nodes, their parameters as leaves and the
    values and gradients between them, at any depth. Where a block's output is no inner
    layer's, the cluster holds a join: ``+`` where the output is, to rounding, the sum of
    the inner outputs no inner layer used (or one an inner layer used too: ``h + inner(h)``)
    and, for a skip path, of the block's inputs (``x + inner(x)``, or ``y += x`` in place),
    and a ``+`` feeding an inner layer where its input is such a sum (``relu(x +
    inner(x))``); else, or where the block has parameters of
    its own (a layer scale: ``x + alpha * inner(x)``), a ``Residual.forward`` node for what
    the block's own code computes, which the recording does not see, its own parameters its
    leaves, with a line under the title saying that the gradients drawn into it are its
    inner layers' shares. Blocks keep copies of their inputs and inner outputs while they
    run, to see in-place changes. With ``inside=False`` each block is one node, its inner
    layers' parameters its leaves, as is a block of one's own whose ``sublayers`` names no
    layers.

    The drawing is the graph the layers compute: the loss layer's loss, and each
    parameter's gradient as its layer's ``backward`` stored it. What ``gradient`` adds to
    those and no layer computes, weight decay, is not drawn: the drawing's ``note`` (under
    its title) says so, with the decay term that ``net.loss`` adds where ``net`` has a
    ``decay_rate(name)``, as :class:`xpnet.Sequential` has.

    Recording changes the network as the recorded pass does, and no more: the layers keep
    what that pass cached (the gradients drawn, Dropout's mask, None in evaluation mode as
    after ``net.gradient(x, t, train_flg=False)``), and, as a gradient check does
    (:func:`xpnet.held.held`), BatchNorm's running statistics are put back and Dropout's
    masks are drawn from a stream of the recording's own, so its generator does not move.
    """
    if getattr(net, "last_layer", True) is None:
        raise TypeError(
            "record_network(net, x, t) records net.gradient(x, t), and this "
            f"{type(net).__name__} has no loss: built without loss= (or a slice, net[1:3]), it "
            "is a stack of layers; record the network it is part of, or build it with loss="
        )
    if not train_flg and "train_flg" not in inspect.signature(net.gradient).parameters:
        raise TypeError(
            f"record_network(train_flg=False): {type(net).__name__}.gradient(x, t) takes no "
            "train_flg, so it has no evaluation mode to record; give it one, as "
            "xpnet.Sequential.gradient(x, t, train_flg=True) does, or record in training mode"
        )
    slots = {name: net.params.slot(name) for name in net.params}
    walked = (
        walk(net.layers) if inside else ((f"layers[{k}]", la) for k, la in enumerate(net.layers))
    )
    found: dict[int, tuple[str, Any]] = {}  # a layer held twice is one node
    for path, layer in walked:
        found.setdefault(id(layer), (path, layer))
    layers = [*(layer for _, layer in found.values()), net.last_layer]
    with (
        held(layers_of(net)),
        record(layers, inputs={"x": x, "t": t}, param_names=slots) as run,
    ):
        # (A network of the user's may take gradient(x, t) only, as the book's.)
        grads = net.gradient(x, t) if train_flg else net.gradient(x, t, train_flg=False)
    outermost = [call for call in run.calls if call.parent is None]
    if outermost and outermost[0].inputs:  # x, or its copy in the parameters' dtype
        run.inputs["x"] = outermost[0].inputs[0]
    run.paths = {k: path for k, (path, _) in enumerate(found.values())}
    run.note = _not_drawn(net, run, grads)
    return run


def _not_drawn(net: Any, run: Recording, grads: Mapping[str, Any]) -> str | None:
    """What ``net.gradient`` added to its layers' gradients (weight decay), which the
    drawing of ``run`` leaves out; None when it added nothing."""
    params = {name: pair for call in run.calls for name, pair in call.params.items()}
    added = [name for name, (_, grad) in params.items() if Value.of(grads[name]) != grad]
    if not added:
        return None
    names, cls = _listed(added), type(net).__name__
    rates = {getattr(net, "decay_rate", lambda _: None)(name) for name in added}
    rate = rates.pop() if len(rates) == 1 else None
    loss = run.calls[-1].output_value
    known = bool(rate) and loss is not None and loss.number is not None
    if not known or any(params[name][0].norm is None for name in added):
        return f"not drawn: what {cls}.gradient adds to {names}, drawn as their layers' own"
    term = sum(0.5 * rate * params[name][0].norm ** 2 for name in added)
    drawn, total = (format_number(v, None) for v in (loss.number, loss.number + term))
    return (
        f"weight decay (λ = {rate:g}) not drawn: {cls}.loss = the loss drawn + 0.5·λ·ΣW² = "
        f"{drawn} + {format_number(term, None)} = {total}; {cls}.gradient adds λ·W to "
        f"{names}, drawn as their layers' own gradients"
    )


NAMED: dict[str, Callable[[], Recording]] = {
    "apple": apple,
    "apple-orange": apple_orange,
    "sigmoid-neuron": sigmoid_neuron,
}


def render(dot: str, format: str, *, dpi: float | None = None) -> bytes:
    """DOT text as ``format`` (``dot``, ``svg``, ``png`` or ``pdf``, in any case) bytes; all
    but ``dot`` need Graphviz.

    ``dpi`` (a positive number) is a PNG's resolution in dots per inch, Graphviz's ``dpi``
    graph attribute, which it overrides in ``dot``: 192 draws twice as many pixels each way
    as Graphviz's default 96. SVG and PDF are vector drawings, drawn at any size without
    loss, and DOT text is text: none of them changes.

    Raises :class:`GraphvizUnavailableError` saying how to install what is missing, and
    ``ValueError`` with Graphviz's own message for DOT text that ``dot`` cannot read.
    """
    kind = format.lower() if isinstance(format, str) else format
    if kind not in FORMATS:
        raise ValueError(f"unknown format {format!r}: expected one of {', '.join(FORMATS)}")
    if dpi is not None and not (is_real(dpi) and 0 < dpi <= sys.float_info.max):  # 10**400 too
        raise bad_argument(is_real(dpi))(
            f"dpi must be a positive number (dots per inch; Graphviz draws 96), got {dpi!r}"
        )
    if kind == "dot":
        return dot.encode()
    require_graphviz(kind)
    import graphviz

    if dpi is not None and kind == "png":
        dot = _with_graph_attribute(dot, f"dpi={float(dpi)!r}")
    try:
        return graphviz.Source(dot).pipe(format=kind, quiet=True)
    except subprocess.CalledProcessError as exc:
        said = exc.stderr.decode(errors="replace").strip() if exc.stderr else ""
        raise ValueError(f"Graphviz's dot cannot draw this DOT text as {kind}: {said}") from None


def _with_graph_attribute(dot: str, attribute: str) -> str:
    """``dot`` with ``attribute`` (``"dpi=300"``) set on its graph, as the last statement of
    the graph's body, so that it wins over one the text sets (Graphviz's command-line ``-G``
    would lose, and its Python package passes no other arguments to ``dot``)."""
    end = dot.rfind("}")
    if end < 0:  # no graph: Graphviz's message says what is wrong
        return dot
    return f"{dot[:end]}  {attribute};\n{dot[end:]}"


def require_graphviz(kind: str) -> None:
    """Raise :class:`GraphvizUnavailableError`, saying how to install what is missing, unless
    drawing ``kind`` (``svg``, ``png``, ``pdf``) can run: the ``graphviz`` package and the ``dot``
    program on ``PATH``. The command line asks before it loads any data."""
    try:
        import graphviz  # noqa: F401
    except ImportError:
        raise GraphvizUnavailableError(
            f"drawing {kind} needs the graphviz package: pip install graphviz, and {INSTALL_HINT}"
        ) from None
    if shutil.which("dot") is None:
        raise GraphvizUnavailableError(
            f"drawing {kind} needs Graphviz's dot program, which is not on PATH: {INSTALL_HINT}"
        )


def suffix_format(path: str | os.PathLike[str]) -> str:
    """The suffix of ``path`` in lower case, without its dot (``"png"``; ``""`` for none)."""
    return Path(path).suffix.lstrip(".").lower()


def write(
    dot: str,
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    dpi: float | None = None,
) -> None:
    """Render ``dot`` to ``path`` atomically; ``format`` (in any case) defaults to the
    file's suffix, and may not contradict it (SVG text in ``g.png`` opens nowhere).
    ``dpi`` is a PNG's resolution in dots per inch (default: Graphviz's 96), as in
    :func:`render`."""
    if Path(path).is_dir():
        raise IsADirectoryError(f"cannot write {os.fspath(path)}: it is a directory")
    suffix = suffix_format(path)
    if format is None:
        format = suffix
        if format not in FORMATS:
            raise ValueError(
                f"cannot tell the format of {path} from its suffix: expected one of "
                f"{', '.join('.' + f for f in FORMATS)}, or give the format"
            )
    elif suffix in FORMATS and isinstance(format, str) and format.lower() != suffix:
        raise ValueError(
            f"format {format!r} contradicts the suffix of {path}: give format={suffix!r}, "
            f"or a path ending in .{format.lower()}"
        )
    data = render(dot, format, dpi=dpi)
    with atomic_file(path) as f:
        f.write(data)
