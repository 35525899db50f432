"""micrograd.py: a tiny, complete deep-learning engine in one file.

Read it top to bottom. The lesson comes first: the autograd engine (`Value`), neural
networks, losses, optimizers and their schedulers, datasets and training, each part using
only what came before it. The tools follow: model and data files, drawing, plots, teaching
tools (your own expression, backprop step by step, checks, a quiz, a network's health), the
benchmark and the command line.

    python micrograd.py expr                       # a small expression, its gradients, its graph
    python micrograd.py train --epochs 20 --optim adam
    python micrograd.py bench                      # speed and memory figures

Pure Python; matplotlib is needed for drawing only.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import collections
import contextlib
import errno
import gc
import inspect
import json
import math
import numbers
import operator
import os
import random
import stat
import statistics
import sys
import threading
import time
import tracemalloc
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from operator import attrgetter, mul
from threading import get_ident
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for type hints only: matplotlib is imported when something is drawn
    from matplotlib.figure import Figure

__version__ = "1.1.0"

# ---------------------------------------------------------------------------------------------
# Value: the autograd engine
# ---------------------------------------------------------------------------------------------
# Each op computes its result and, at the same moment, its local derivatives d result / d child,
# and stores both in the new node. backward() is then one loop over the graph in reverse
# topological order: child.grad += local * node.grad. No closures and no recursion, and a node
# points only at its children, so a graph has no reference cycles and is freed at once.


class Value:
    """A scalar that remembers how it was made, so that gradients can flow back through it.

    `data` is the number, `grad` is d root / d self after root.backward(), `label` a name for
    drawings. A Value made by an op also holds the Values it was made from (`_children`),
    the op's name (`_op`) and d self / d child for each child (`_local_grads`).
    """

    # Slots keep a node small; __dict__ takes a user's own attributes (p.m = 0.0)
    __slots__ = ("data", "grad", "label", "_children", "_local_grads", "_op", "__dict__")

    def __init__(self, data: float, children: tuple[Value, ...] | str = (), op: str = "",
                 local_grads: tuple[float, ...] | None = None, label: str = "") -> None:
        if type(children) is str:  # Value(2.0, "a"): a leaf and its label
            children, label = (), children
        elif _no_grad_threads and children and get_ident() in _no_grad_threads:
            children = ()  # inside no_grad(): a result is a leaf
        if label and type(label) is not str:
            raise TypeError(f"a Value's label must be a str, got {type(label).__name__}: "
                            f"{label!r}")
        self.data = data if type(data) is float else _to_float(data)
        self.grad = 0.0
        self.label = label
        self._children = children
        # None for a node made as the original micrograd makes them, Value(data, children,
        # op): it brings a _backward function of its own to pass gradients on
        self._local_grads = local_grads if children else ()
        self._op = op

    def __repr__(self) -> str:
        label = f", label={self.label!r}" if self.label else ""
        return f"Value(data={self.data!r}, grad={self.grad!r}{label})"

    def __float__(self) -> float:
        return self.data

    # -- arithmetic: each op states its value and its local derivatives together --------------

    def __add__(self, other: Value | float) -> Value:
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), "+", (1.0, 1.0))

    def __mul__(self, other: Value | float) -> Value:
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, (self, other), "*", (other.data, self.data))

    def __sub__(self, other: Value | float) -> Value:
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data - other.data, (self, other), "-", (1.0, -1.0))

    def __truediv__(self, other: Value | float) -> Value:
        other = other if isinstance(other, Value) else Value(other)
        a, b = self.data, other.data
        if b == 0.0:
            raise ZeroDivisionError(f"division by zero: {a!r} / {b!r}")
        out = a / b
        # d/db = -a / b**2, written -(a / b) / b: b * b may underflow to 0 where this is finite
        return Value(out, (self, other), "/", (1.0 / b, -out / b))

    def __neg__(self) -> Value:
        return Value(-self.data, (self,), "neg", (-1.0,))

    def __abs__(self) -> Value:
        x = self.data
        return Value(abs(x), (self,), "abs", (float((x > 0.0) - (x < 0.0)),))  # 0 at the kink

    def __pow__(self, other: Value | float) -> Value:
        """self ** other, the exponent a number or a Value, with PyTorch's slopes at zero."""
        x = self.data
        n = other.data if isinstance(other, Value) else _to_float(other)
        out = Value._power(x, n)
        if n == 0.0:
            dx = 0.0  # x ** 0 is 1 everywhere
        elif x == 0.0 and n < 1.0:
            dx = n * math.inf  # 0 ** (n - 1) is inf: the slope of x ** 0.5 at 0, say
        else:
            dx = n * Value._power(x, n - 1.0)
        if not isinstance(other, Value):
            return Value(out, (self,), f"**{other}", (dx,))
        if x == 0.0:  # d/dn = out * log x, with log 0 = -inf, and 0 where n >= 0 (as torch)
            dn = 0.0 if n >= 0.0 else out * -math.inf
        else:
            dn = out * math.log(x) if x > 0.0 else math.nan
        return Value(out, (self, other), "**", (dx, dn))

    @staticmethod
    def _power(x: float, n: float) -> float:
        """x ** n as a real float: inf on overflow, a clear error instead of a complex."""
        if x < 0.0 and math.isfinite(n) and not n.is_integer():
            raise ValueError(f"{x!r} ** {n!r} is a complex number: a negative base needs an "
                             "integer exponent")
        try:
            return x ** n
        except OverflowError:
            return -math.inf if x < 0 and n % 2 == 1 else math.inf
        except ZeroDivisionError:
            raise ZeroDivisionError(
                f"{x!r} ** {n!r}: zero cannot be raised to a negative power") from None

    def __rsub__(self, other: float) -> Value:
        return Value(other) - self

    def __rtruediv__(self, other: float) -> Value:
        return Value(other) / self

    def __rpow__(self, other: float) -> Value:
        return Value(other) ** self

    def __pos__(self) -> Value:
        return self

    __radd__ = __add__  # 2 + v is v + 2: both orders give the same float
    __rmul__ = __mul__

    # -- elementary functions and activations ---------------------------------------------------

    def exp(self) -> Value:
        try:
            out = math.exp(self.data)
        except OverflowError:
            out = math.inf
        return Value(out, (self,), "exp", (out,))  # the slope of exp is exp itself

    def log(self) -> Value:
        x = self.data
        if x <= 0.0:
            raise ValueError(f"log needs a positive number, got {x!r}")
        return Value(math.log(x), (self,), "log", (1.0 / x,))

    def sqrt(self) -> Value:
        x = self.data
        if x < 0.0:
            raise ValueError(f"sqrt needs a number >= 0, got {x!r}")
        out = math.sqrt(x)
        return Value(out, (self,), "sqrt", (0.5 / out if out else math.inf,))

    def sin(self) -> Value:
        x = self.data if math.isfinite(self.data) else math.nan  # sin(inf) is nan, as in torch
        return Value(math.sin(x), (self,), "sin", (math.cos(x),))

    def cos(self) -> Value:
        x = self.data if math.isfinite(self.data) else math.nan
        return Value(math.cos(x), (self,), "cos", (-math.sin(x),))

    # Each activation is a rule on floats that gives its value and its slope at x, beside the
    # method that makes a node of it; a neuron's fused node uses the same rule (see Neuron).

    def _activate(self, rule: Callable[..., tuple[float, float]], op: str,
                  *options: float) -> Value:
        out, slope = rule(self.data, *options)
        return Value(out, (self,), op, (slope,))

    @staticmethod
    def _tanh_at(x: float) -> tuple[float, float]:
        t = math.tanh(x)
        return t, (1.0 - t) * (1.0 + t)  # 1 - t*t, without losing digits as |t| nears 1

    def tanh(self) -> Value:
        return self._activate(Value._tanh_at, "tanh")

    @staticmethod
    def _sigmoid_at(x: float) -> tuple[float, float]:
        s = _sigmoid(x)
        return s, s * (1.0 - s)

    def sigmoid(self) -> Value:
        return self._activate(Value._sigmoid_at, "sigmoid")

    @staticmethod
    def _relu_at(x: float) -> tuple[float, float]:
        if x <= 0.0:
            return 0.0, 0.0  # PyTorch's convention at the kink: relu'(0) = 0
        return x, 1.0  # nan passes through, with slope 1, as in PyTorch

    def relu(self) -> Value:
        return self._activate(Value._relu_at, "relu")

    @staticmethod
    def _leaky_relu_at(x: float, negative_slope: float = 0.01) -> tuple[float, float]:
        slope = 1.0 if x > 0.0 else negative_slope
        return x * slope, slope

    def leaky_relu(self, negative_slope: float = 0.01) -> Value:
        slope = _option(negative_slope, "negative_slope")
        return self._activate(Value._leaky_relu_at, "leaky_relu", slope)

    @staticmethod
    def _elu_at(x: float, alpha: float = 1.0) -> tuple[float, float]:
        if not x <= 0.0:  # nan too, as in PyTorch: the value nan, the slope 1
            return x, 1.0
        return alpha * math.expm1(x), alpha * math.exp(x)

    def elu(self, alpha: float = 1.0) -> Value:
        return self._activate(Value._elu_at, "elu", _option(alpha, "alpha"))

    @staticmethod
    def _gelu_at(x: float) -> tuple[float, float]:
        cdf = 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))  # Phi(x), the normal CDF
        pdf = math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        return x * cdf, cdf + x * pdf

    def gelu(self) -> Value:
        """The exact GELU, x * Phi(x), with Phi the standard normal CDF."""
        return self._activate(Value._gelu_at, "gelu")

    @staticmethod
    def _silu_at(x: float) -> tuple[float, float]:
        s = _sigmoid(x)
        return x * s, s * (1.0 + x * (1.0 - s))

    def silu(self) -> Value:
        return self._activate(Value._silu_at, "silu")

    @staticmethod
    def _softplus_at(x: float) -> tuple[float, float]:
        if x > 20.0:  # as in PyTorch: the identity above 20
            return x, 1.0
        return math.log1p(math.exp(x)), _sigmoid(x)

    def softplus(self) -> Value:
        """log(1 + exp(x)); like PyTorch, the identity above x = 20."""
        return self._activate(Value._softplus_at, "softplus")

    # -- many inputs in one node, and your own ops ----------------------------------------------

    @staticmethod
    def sum(values: Iterable[Value | float]) -> Value:
        """The sum of many values as one node."""
        values = _as_values(values)
        return Value(sum([v.data for v in values], 0.0), values, "sum", (1.0,) * len(values))

    @staticmethod
    def dot(weights: Sequence[Value | float], inputs: Sequence[Value | float],
            bias: Value | float | None = None) -> Value:
        """sum(w * x for w, x in zip(weights, inputs)) (+ bias) as one node: the local
        gradient of each weight is its input, and of each input its weight."""
        weights, inputs = _as_values(weights), _as_values(inputs)
        if len(weights) != len(inputs):
            raise ValueError(
                f"dot needs as many weights as inputs, got {len(weights)} and {len(inputs)}")
        w, x = [v.data for v in weights], [v.data for v in inputs]
        total = sum(map(mul, w, x), 0.0)
        if bias is None:
            return Value(total, (*weights, *inputs), "dot", (*x, *w))
        bias = bias if isinstance(bias, Value) else Value(bias)
        return Value(total + bias.data, (*weights, *inputs, bias), "dot", (*x, *w, 1.0))

    @staticmethod
    def op(data: float, children: Sequence[Value], local_grads: Sequence[float],
           name: str) -> Value:
        """A new op, stated as the built-in ones are: its value, the Values it was made from,
        and d value / d child for each. It works with backward(), no_grad(), gradcheck() and
        the drawer. A cube: Value.op(x.data ** 3, (x,), (3 * x.data ** 2,), "cube")."""
        children, local_grads = tuple(children), tuple(local_grads)
        if not all(isinstance(c, Value) for c in children):
            raise TypeError("Value.op: children must be Values, got "
                            f"{[type(c).__name__ for c in children]}")
        if len(local_grads) != len(children):
            raise ValueError(f"Value.op: {len(children)} children need as many local "
                             f"gradients, got {len(local_grads)}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"Value.op: name the op with a non-empty str, got {name!r}")
        return Value(_to_float(data), children, name, tuple(map(_to_float, local_grads)))

    # -- backpropagation --------------------------------------------------------------------

    def backward(self) -> None:
        """Fill in v.grad = d self / d v for every v this Value was computed from.

        The chain rule, node by node from self down: each node passes its gradient to its
        children, times its local derivative by each; a value used twice collects from both
        uses. As in PyTorch, leaves accumulate across calls (zero them with zero_grad()): a
        pass's sum is added to what a leaf held, so two calls give twice one, exactly."""
        order = _topological_order(self)  # children before parents
        earlier = [(v, v.grad) for v in order if not v._children]
        for v in order:
            v.grad = 0.0
        self.grad = 1.0
        for node in reversed(order):
            if node._local_grads is None:  # a node made the original way runs its own code
                node._backward()
            elif not _only_zeros(node):
                for child, local in zip(node._children, node._local_grads):
                    child.grad += local * node.grad
        for leaf, grad in earlier:
            leaf.grad = grad + leaf.grad if leaf.requires_grad else grad

    def _backward(self) -> None:
        """Pass this node's gradient to its children. The original micrograd gives each node
        a closure for this (out._backward = fn); a node made that way runs its own."""
        for child, local in zip(self._children, self._local_grads or ()):
            child.grad += local * self.grad

    # -- the habits of a PyTorch tensor, for scalars -------------------------------------------

    requires_grad = True  # a leaf set to False gets no gradient and optimizers skip it

    def item(self) -> float:
        return self.data

    @property
    def is_leaf(self) -> bool:
        return not self._children

    def detach(self) -> Value:
        """A new leaf with this data, cut from the graph (it requires no gradient)."""
        out = Value(self.data)
        out.requires_grad = False
        return out

    def __lt__(self, other: Value | float) -> bool:  # comparisons read the data; == stays
        return self.data < _data_of(other)  # identity, as hashing a Value needs

    def __le__(self, other: Value | float) -> bool:
        return self.data <= _data_of(other)

    def __gt__(self, other: Value | float) -> bool:
        return self.data > _data_of(other)

    def __ge__(self, other: Value | float) -> bool:
        return self.data >= _data_of(other)

    @property
    def _prev(self) -> set[Value]:
        """The children as a set: the original micrograd's name for them."""
        return set(self._children)


# PyTorch's relu and clamp select rather than multiply: where they are flat they pass 0, even
# when the gradient from above is inf or nan (other ops multiply, and inf * 0 is nan)
_SELECTING_OPS = frozenset({"relu", "relu(dot)", "hinge"})


def _only_zeros(node: Value) -> bool:
    """Whether node passes only zeros: a zero grad (behind a dead relu, a met margin) times
    finite locals, or a dead unit's zero locals. Skipping such nodes takes a third off
    backward() in bench. sum() checks that every local is finite, at C speed (an overflow
    only skips the skip): inf * 0 is nan, which must flow on, as in PyTorch."""
    grad, local_grads = node.grad, node._local_grads
    if grad == 0.0:
        return math.isfinite(sum(local_grads))
    return not any(local_grads) and (math.isfinite(grad) or node._op in _SELECTING_OPS)


def _to_float(x: object) -> float:
    """The float in x, or a TypeError that names what x was."""
    if type(x) is int or (isinstance(x, numbers.Real) and not isinstance(x, Value)):
        return float(x)
    raise TypeError(
        f"Value needs a real number (int or float), got {type(x).__name__}: {x!r}")


def _data_of(x: Value | float) -> float:
    return x.data if isinstance(x, Value) else _to_float(x)


def _option(value: object, name: str) -> float:
    """An option (a slope, a rate) as a Python float: a Value or a str is refused, a numpy
    number converted, so that no other arithmetic leaks into the graph."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}: {value!r}")
    return float(value)


def _sigmoid(x: float) -> float:
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)  # never overflows here, unlike exp(-x)
    return e / (1.0 + e)


def _as_values(items: Iterable[Value | float]) -> tuple[Value, ...]:
    return tuple(v if isinstance(v, Value) else Value(v) for v in items)


def _check_root(root: object) -> None:
    if not isinstance(root, Value):
        raise TypeError(f"expected a Value, the root of a graph, got {type(root).__name__}: "
                        f"{root!r:.40}")


def _topological_order(root: Value) -> list[Value]:
    """Every node root depends on, children before parents: a depth-first search without
    recursion (a chain a million ops deep is fine), which keeps the node it is expanding and
    an iterator over its children, and stacks those of the nodes above it."""
    _check_root(root)
    order, seen, path, todo = [], {root}, [], []
    node, children = root, iter(root._children)
    while True:
        for child in children:
            if child not in seen:
                seen.add(child)
                path.append(node)
                todo.append(children)
                node, children = child, iter(child._children)
                break
        else:
            order.append(node)
            if not path:
                return order
            node, children = path.pop(), todo.pop()


# no_grad() holds per thread, as in PyTorch: the threads inside a no_grad() block, each with
# how many blocks deep it is. A Value tests this dict first, so that while it is empty (nobody
# is inside no_grad) an op pays one global lookup and nothing else.
_no_grad_threads: dict[int, int] = {}
_no_grad_lock = threading.Lock()


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Inside this block ops build no graph: every result is a leaf (as torch.no_grad). It
    holds for the thread that entered it only; other threads go on building graphs."""
    thread = get_ident()
    with _no_grad_lock:
        _no_grad_threads[thread] = _no_grad_threads.get(thread, 0) + 1
    try:
        yield
    finally:
        with _no_grad_lock:
            depth = _no_grad_threads.pop(thread) - 1
            if depth:
                _no_grad_threads[thread] = depth


def gradcheck(f: Callable[..., Value], inputs: Sequence[float], eps: float = 1e-6,
              tol: float = 1e-6) -> bool:
    """Compare backward() with central differences of f(*inputs); raise ValueError on a miss.
    The tolerance is relative to the larger of 1 and the finite-difference slope."""
    for name, value in (("eps", eps), ("tol", tol)):
        if not _option(value, name) > 0.0 or not math.isfinite(value):
            raise ValueError(f"gradcheck needs {name} to be a finite number above 0, "
                             f"got {value!r}")
    xs = [float(x) for x in inputs]
    values = [Value(x) for x in xs]
    out = f(*values)
    if not isinstance(out, Value):
        raise TypeError(f"gradcheck needs f to return a Value, got {type(out).__name__}")
    out.backward()
    for i, x in enumerate(xs):
        with no_grad():
            up = f(*[Value(x + eps if j == i else v) for j, v in enumerate(xs)]).data
            down = f(*[Value(x - eps if j == i else v) for j, v in enumerate(xs)]).data
        numeric = (up - down) / (2.0 * eps)
        analytic = values[i].grad
        if not abs(analytic - numeric) <= tol * max(1.0, abs(numeric)):
            raise ValueError(
                f"gradcheck failed for input {i} (x = {x!r}): backward() gives {analytic!r}, "
                f"central differences give {numeric!r}")
    return True


def _digits(x: float) -> str:
    """Four decimals, or four significant digits where decimals would hide the number."""
    return f"{x:.4f}" if x == 0 or 1e-4 <= abs(x) < 1e6 or not math.isfinite(x) else f"{x:.4g}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class Explanation(str):
    """explain()'s text; a notebook shows it as lines, not as a quoted string."""

    def _repr_pretty_(self, printer: object, cycle: bool) -> None:
        printer.text(str(self))


def _short_names(order: list[Value]) -> dict[Value, str]:
    """Each Value's label, or n1, n2, ... in the order given for the unlabelled, skipping
    any name a label has: the names explain() and the drawings use."""
    labels, names, unnamed = {v.label for v in order}, {}, 0
    for v in order:
        while not v.label and f"n{unnamed + 1}" in labels:
            unnamed += 1
        unnamed += not v.label
        names[v] = v.label or f"n{unnamed}"
    return names


def _rule(node: Value, names: dict[Value, str]) -> str:
    """The op that made node, written on the names of its children: 'a*b', 'tanh(n3)'."""
    args = [names[c] for c in node._children]
    if node._op in ("+", "-", "*", "/", "**") and len(args) == 2:
        return f"{args[0]}{node._op}{args[1]}"
    if node._op.startswith("**"):
        return f"{args[0]}{node._op}"
    if node._op == "neg":
        return f"-{args[0]}"
    shown = args if len(args) <= 3 else [args[0], "...", args[-1]]
    return f"{node._op}({', '.join(shown)})"


def explain(root: Value, full: bool = False, head: int = 35, tail: int = 15) -> Explanation:
    """The chain rule, spelled out: one line per node from root down, its gradient as the
    sum over the ops it feeds of d root/d op times the local derivative of that op's own rule,
    with the numbers backward() used and stored:

        dL/dd = dL/dL * d(d*f)/dd = 1.0000 * -2.0000 = -2.0000

    Nodes are named by their labels, else n1, n2, ... in the order of the lines (the drawing
    uses the same names). Past head + tail lines, the middle ones are counted instead of
    shown unless full."""
    order = _topological_order(root)[::-1]  # the root first, each node before its children
    if root.grad != 1.0:
        raise ValueError("explain() shows what backward() computed: call root.backward() "
                         "first")
    for name, count in (("head", head), ("tail", tail)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"explain needs {name} to be a whole number >= 0, got {count!r}")
    names = _short_names(order)
    parents: dict[Value, list[tuple[Value, float | None]]] = {v: [] for v in order}
    for v in order:
        locals_ = v._local_grads or [None] * len(v._children)
        for child, local in zip(v._children, locals_):
            parents[child].append((v, local))
    top = names[root]
    lines, stale = [f"d{top}/d{top} = {_digits(1.0)}"], []
    for v in order[1:]:
        name = names[v]
        paths = parents[v]
        if any(local is None for _, local in paths):
            users = ", ".join(names[p] for p, local in paths if local is None)
            lines.append(f"d{top}/d{name} = {_digits(v.grad)} (from the _backward code of "
                         f"{users})")
            continue
        symbols = " + ".join(f"d{top}/d{names[p]} * d({_rule(p, names)})/d{name}"
                             for p, _ in paths)
        numbers = " + ".join(f"{_digits(p.grad)} * {_digits(local)}" for p, local in paths)
        lines.append(f"d{top}/d{name} = {symbols} = {numbers} = {_digits(v.grad)}")
        this_pass = sum(p.grad * local for p, local in paths)
        if not v._children and not math.isclose(v.grad, this_pass, rel_tol=1e-9,
                                                 abs_tol=1e-12):
            stale.append(name)
    if not full and len(lines) > head + tail + 1:
        hidden = len(lines) - head - tail
        lines = [*lines[:head], f"... {hidden} more lines (explain(root, full=True) shows "
                 "them all) ...", *lines[len(lines) - tail:]]
    if stale:
        lines.append(f"note: {', '.join(stale)} also hold gradients from an earlier backward() "
                     "(leaves add up, as in PyTorch): call zero_grad() before backward() to "
                     "see this graph's alone")
    return Explanation("\n".join(lines))


ACTIVATIONS: dict[str, Callable[[Value], Value]] = {
    "linear": lambda v: v,
    "tanh": Value.tanh,
    "relu": Value.relu,
    "sigmoid": Value.sigmoid,
    "leaky_relu": Value.leaky_relu,
    "elu": Value.elu,
    "gelu": Value.gelu,
    "silu": Value.silu,
    "softplus": Value.softplus,
}

# name -> the rule on floats behind each activation: (value, slope) at x
ACTIVATION_RULES: dict[str, Callable[[float], tuple[float, float]]] = {
    "linear": lambda x: (x, 1.0),
    "tanh": Value._tanh_at,
    "relu": Value._relu_at,
    "sigmoid": Value._sigmoid_at,
    "leaky_relu": Value._leaky_relu_at,
    "elu": Value._elu_at,
    "gelu": Value._gelu_at,
    "silu": Value._silu_at,
    "softplus": Value._softplus_at,
}


# ---------------------------------------------------------------------------------------------
# Neural network: Module, Neuron, Layer, MLP
# ---------------------------------------------------------------------------------------------

def _inputs(x: Sequence[Value | float], expected: int, who: str) -> tuple[Value, ...]:
    """x as a tuple of Values (numbers become leaves labelled x0, x1, ...), or a ValueError
    when its length is not the expected one."""
    if isinstance(x, (str, bytes, Mapping, Set)) or not hasattr(x, "__len__"):
        raise TypeError(f"{who} needs a sequence of {expected} numbers or Values, got "
                        f"{type(x).__name__}: {x!r:.80}")
    if len(x) != expected:
        raise ValueError(f"{who} expects {_plural(expected, 'input')}, got {len(x)}")
    return tuple(v if isinstance(v, Value) else Value(v, f"x{i}") for i, v in enumerate(x))


class Module:
    """The base of every network part: parameters, gradients, state, saving and loading."""

    def parameters(self) -> list[Value]:
        return []

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = 0.0

    def config(self) -> dict:
        """The constructor arguments that rebuild this module's architecture."""
        return {}

    def named_values(self) -> dict[str, list]:
        """The parameters by name, in PyTorch's naming style, as (nested) lists of Values."""
        return {}

    def state_dict(self) -> dict[str, list]:
        """The parameters as plain JSON-able data: named_values() with numbers for Values."""
        return {key: _map_nested(attrgetter("data"), values)
                for key, values in self.named_values().items()}

    def load_state_dict(self, state: dict) -> None:
        own = self.named_values()
        if not isinstance(state, dict) or set(state) != set(own):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state_dict keys do not match: expected {sorted(own)}, got {got}")
        pairs = [pair for key, values in own.items()
                 for pair in _zip_nested(values, state[key], key)]
        for p, x in pairs:  # assign only once everything has been checked
            p.data = x

    def save(self, path: str, training: dict | None = None) -> None:
        """Write the architecture and parameters to path as JSON (never pickle), atomically;
        `training` adds what a run needs to resume. See "Model files" below."""
        _write_model(self, path, training)

    @classmethod
    def load(cls, path: str) -> Module:
        """Rebuild a module saved by save(); a bad file is a ValueError naming the problem."""
        return _read_model(cls, path)[0]

    @classmethod
    def load_with_training(cls, path: str) -> tuple[Module, dict | None]:
        """load(), and the `training` data saved with the model (None if there is none)."""
        return _read_model(cls, path)


def _first_non_finite(module: Module) -> str | None:
    """'name[i][j] = value' for the first nan or infinite parameter, or None."""
    for key, values in module.named_values().items():
        todo = [(key, values)]  # a stack, its next item last: linear in the model's size
        while todo:
            name, item = todo.pop()
            if isinstance(item, list):
                todo += [(f"{name}[{i}]", x) for i, x in reversed(list(enumerate(item)))]
            elif not math.isfinite(item.data):
                return f"{name} = {item.data}"
    return None


def _map_nested(f: Callable, items: list) -> list:
    return [_map_nested(f, x) if isinstance(x, list) else f(x) for x in items]


def _zip_nested(values: list, data: object, key: str) -> list[tuple[Value, float]]:
    """Pairs (parameter, number) from values and data, checking that both have one shape."""
    if not isinstance(data, list) or len(data) != len(values):
        size = len(data) if isinstance(data, list) else type(data).__name__
        raise ValueError(f"{key}: expected a list of {len(values)}, got {size}")
    pairs = []
    for v, d in zip(values, data):
        if isinstance(v, list):
            pairs.extend(_zip_nested(v, d, key))
        elif isinstance(d, bool) or not isinstance(d, (int, float)):
            raise ValueError(f"{key}: expected a number, got {d!r}")
        else:
            pairs.append((v, float(d)))
    return pairs


def _size(value: object, name: str, low: int = 1) -> int:
    """value as a count (a layer size, epochs): a whole number of at least `low` (numpy's
    integers too)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a whole number, got {type(value).__name__}: {value!r}")
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value!r}")
    return int(value)


def _activation_name(name: str, nonlin: bool | None = None) -> str:
    """The activation asked for: a name from ACTIVATIONS, or karpathy's nonlin flag."""
    if nonlin is not None:
        return "relu" if nonlin else "linear"
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")
    return name


class Neuron(Module):
    """activation(w . x + b), as one node: the product of a dot-product node and an
    activation node, in half the nodes. karpathy/micrograd's `nonlin=True` means relu,
    `nonlin=False` linear."""

    def __init__(self, nin: int, activation: str = "tanh", rng: random.Random | None = None,
                 nonlin: bool | None = None):
        nin = _size(nin, "nin")
        activation = _activation_name(activation, nonlin)
        uniform = (rng or random).uniform
        self.w = tuple(Value(uniform(-1.0, 1.0), f"w{i}") for i in range(nin))
        self.b = Value(0.0, "b")
        self.activation = activation
        self._op = "dot" if activation == "linear" else f"{activation}(dot)"

    def __call__(self, x: Sequence[Value | float]) -> Value:
        x = _inputs(x, len(self.w), "Neuron")
        return self._forward(x, [v.data for v in x])

    def _forward(self, x: tuple[Value, ...], x_data: list[float]) -> Value:
        """The node's local gradients are the dot product's (x for each w, w for each x, 1
        for b) times the activation's slope at w . x + b: the chain rule, done here."""
        w = [v.data for v in self.w]
        z = sum(map(mul, w, x_data), 0.0) + self.b.data
        out, slope = ACTIVATION_RULES[self.activation](z)
        if slope == 1.0:
            local = (*x_data, *w, 1.0)
        elif slope == 0.0 and math.isfinite(z):  # a dead unit: (every x and w) * 0 is 0
            local = (0.0,) * (2 * len(w) + 1)
        else:
            local = (*[v * slope for v in x_data], *[v * slope for v in w], slope)
        return Value(out, (*self.w, *x, self.b), self._op, local)

    def parameters(self) -> list[Value]:
        return [*self.w, self.b]

    def config(self) -> dict:
        return {"nin": len(self.w), "activation": self.activation}

    def named_values(self) -> dict[str, list]:
        return {"weight": list(self.w), "bias": [self.b]}

    def __repr__(self) -> str:
        return f"Neuron({len(self.w)}, activation={self.activation!r})"


class Layer(Module):
    """nout neurons that read the same inputs; calling it returns a list of Values."""

    def __init__(self, nin: int, nout: int, activation: str = "tanh",
                 rng: random.Random | None = None, nonlin: bool | None = None):
        nin, nout = _size(nin, "nin"), _size(nout, "nout")
        activation = _activation_name(activation, nonlin)
        self.neurons = [Neuron(nin, activation, rng) for _ in range(nout)]
        self.nin, self.activation = nin, activation
        for j, neuron in enumerate(self.neurons):  # where each parameter lives: N3.w2
            for p in neuron.parameters():
                p.label = f"N{j}.{p.label}"

    def __call__(self, x: Sequence[Value | float]) -> list[Value]:
        return self._forward(_inputs(x, self.nin, "Layer"))

    def _forward(self, x: tuple[Value, ...]) -> list[Value]:
        x_data = [v.data for v in x]  # read once for all the neurons
        return [n._forward(x, x_data) for n in self.neurons]

    def parameters(self) -> list[Value]:
        return [p for n in self.neurons for p in n.parameters()]

    def config(self) -> dict:
        return {"nin": self.nin, "nout": len(self.neurons), "activation": self.activation}

    def named_values(self) -> dict[str, list]:
        return {"weight": [list(n.w) for n in self.neurons],
                "bias": [n.b for n in self.neurons]}

    def __repr__(self) -> str:
        return f"Layer({self.nin}, {len(self.neurons)}, activation={self.activation!r})"


class MLP(Module):
    """A multi-layer perceptron: hidden layers with `activation`, the last with
    `output_activation`. Returns one Value when the last layer has one neuron, else a list.
    `seed` makes the initial weights reproducible (default: Python's global generator)."""

    def __init__(self, nin: int, nouts: Sequence[int], activation: str = "tanh",
                 output_activation: str = "tanh", seed: int | None = None):
        if isinstance(nouts, (str, bytes)) or not isinstance(nouts, Iterable):
            raise TypeError(f"nouts must be a list of layer sizes, got {nouts!r}")
        nin = _size(nin, "nin")
        nouts = [_size(n, f"nouts[{i}]") for i, n in enumerate(nouts)]
        if not nouts:
            raise ValueError("nouts must name at least one layer size, got []")
        sizes = [nin, *nouts]
        for name in (activation, output_activation):
            _activation_name(name)
        rng = random.Random(seed) if seed is not None else None
        last = len(nouts) - 1
        self.layers = [Layer(sizes[i], sizes[i + 1],
                             output_activation if i == last else activation, rng)
                       for i in range(len(nouts))]
        self.nin, self.nouts = nin, list(nouts)
        for k, layer in enumerate(self.layers):  # L1.N3.w2: layer 1, neuron 3, weight 2
            for p in layer.parameters():
                p.label = f"L{k}.{p.label}"
        self.activation, self.output_activation = activation, output_activation

    def __call__(self, x: Sequence[Value | float]) -> Value | list[Value]:
        x = _inputs(x, self.nin, "MLP")
        for layer in self.layers:
            x = tuple(layer._forward(x))
        return x[0] if len(x) == 1 else list(x)

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]

    def config(self) -> dict:
        return {"nin": self.nin, "nouts": self.nouts, "activation": self.activation,
                "output_activation": self.output_activation}

    def named_values(self) -> dict[str, list]:
        return {f"layers.{i}.{name}": values for i, layer in enumerate(self.layers)
                for name, values in layer.named_values().items()}

    def __repr__(self) -> str:
        sizes = " -> ".join(str(n) for n in [self.nin, *self.nouts])
        return (f"MLP({sizes}, activation={self.activation!r}, output_activation="
                f"{self.output_activation!r}, parameters={len(self.parameters())})")


# ---------------------------------------------------------------------------------------------
# Losses (the mean over the batch, as PyTorch's defaults)
# ---------------------------------------------------------------------------------------------

def _check_batch(outputs: Sequence, targets: Sequence, what: str) -> None:
    if len(outputs) != len(targets):
        raise ValueError(f"{what}: got {len(outputs)} predictions but {len(targets)} targets")
    if not outputs:
        raise ValueError(f"{what}: the batch is empty")


def _numbers(outputs: Sequence, targets: Sequence, what: str) -> list[float]:
    """The targets as floats, one per output; anything but a real number is a TypeError."""
    _check_batch(outputs, targets, what)
    for i, output in enumerate(outputs):
        if isinstance(output, (list, tuple)):
            raise TypeError(f"{what} needs one score per sample, got a list of "
                            f"{len(output)} at index {i}: a model with an output per class "
                            "needs cross entropy (ce)")
    out = []
    for i, t in enumerate(targets):
        if not isinstance(t, numbers.Real):
            raise TypeError(f"{what} needs numbers as targets, got {type(t).__name__} "
                            f"{t!r} at index {i}")
        out.append(float(t))
    return out


def _mean(losses: list[Value]) -> Value:
    return Value.sum(losses) / len(losses)


# Each loss makes one node per sample, with its derivative stated beside it, then two for
# the mean (a sum and a division): the numbers of the elementary ops, in a fraction of the nodes.

def _squared_error(p: Value, t: float) -> Value:
    diff = p.data - t
    return Value(diff * diff, (p,), "sq_err", (2.0 * diff,))


def mse_loss(preds: Sequence[Value], targets: Sequence[float]) -> Value:
    """Mean squared error."""
    targets = _numbers(preds, targets, "mse_loss")
    return _mean([_squared_error(p, t) for p, t in zip(_as_values(preds), targets)])


def _hinge(score: Value, y: float) -> Value:
    margin = 1.0 - y * score.data
    if margin <= 0.0:
        return Value(0.0, (score,), "hinge", (0.0,))  # as relu: no slope at the kink
    return Value(margin, (score,), "hinge", (-y,))  # a nan margin passes, as in relu


def hinge_loss(scores: Sequence[Value], labels: Sequence[float]) -> Value:
    """The SVM loss max(0, 1 - y * score), for labels -1 and +1."""
    ys = _numbers(scores, labels, "hinge_loss")
    for i, y in enumerate(ys):
        if y not in (-1, 1):
            raise ValueError(f"hinge_loss needs labels -1 or +1, got {labels[i]!r} at index {i}")
    return _mean([_hinge(s, y) for s, y in zip(_as_values(scores), ys)])


def _bce_with_logit(x: Value, y: float) -> Value:
    """-[y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))] in a form that never overflows."""
    z = x.data
    loss = max(z, 0.0) - z * y + math.log1p(math.exp(-abs(z)))
    return Value(loss, (x,), "bce", (_sigmoid(z) - y,))


def bce_with_logits_loss(logits: Sequence[Value], labels: Sequence[float]) -> Value:
    """Binary cross entropy on raw scores (logits), for labels 0 and 1."""
    ys = _numbers(logits, labels, "bce_with_logits_loss")
    for i, y in enumerate(ys):
        if not 0 <= y <= 1:
            raise ValueError(
                f"bce_with_logits_loss needs labels 0 or 1, got {labels[i]!r} at index {i}")
    return _mean([_bce_with_logit(x, y) for x, y in zip(_as_values(logits), ys)])


def _cross_entropy_one(logits: tuple[Value, ...], target: int) -> Value:
    """-log softmax(logits)[target], through log-sum-exp so that no exp overflows."""
    zs = [v.data for v in logits]
    top = max(zs)
    exps = [math.exp(z - top) for z in zs]
    total = sum(exps)
    loss = (top - zs[target]) + math.log(total)  # the difference first: exact at any size
    local = tuple(e / total - (i == target) for i, e in enumerate(exps))
    return Value(loss, logits, "ce", local)


def cross_entropy(logits: Sequence[Sequence[Value]], targets: Sequence[int]) -> Value:
    """Softmax cross entropy: logits holds one list of class scores per sample."""
    _check_batch(logits, targets, "cross_entropy")
    for i, row in enumerate(logits):
        if isinstance(row, (Value, str)) or not isinstance(row, Sequence):
            raise TypeError(f"cross_entropy needs a list of class scores per sample, got "
                            f"{type(row).__name__} at index {i}: a model with one output "
                            "scores two classes (use bce or hinge), or give its last layer "
                            "a neuron per class")
    rows = [_as_values(row) for row in logits]
    for i, (row, t) in enumerate(zip(rows, targets)):
        if isinstance(t, bool) or not isinstance(t, numbers.Integral) or not 0 <= t < len(row):
            raise ValueError(f"cross_entropy needs class indices 0..{len(row) - 1}, "
                             f"got {t!r} at index {i}")
    return _mean([_cross_entropy_one(row, int(t)) for row, t in zip(rows, targets)])


LOSSES: dict[str, Callable[..., Value]] = {
    "mse": mse_loss,
    "hinge": hinge_loss,
    "bce": bce_with_logits_loss,
    "ce": cross_entropy,
}


# ---------------------------------------------------------------------------------------------
# Optimizers and learning-rate schedulers (torch.optim's rules and defaults, to the last bit)
# ---------------------------------------------------------------------------------------------
# torch's CPU kernels round some steps once, as a fused multiply-add (fma): add(a, b, alpha)
# is fma(alpha, b, a) and addcmul(s, a, b, value) is fma(value*a, b, s); addcdiv(s, a, b,
# value) is plain s + value*a/b. The updates below are written with helpers of the same
# names, so that they read like torch's source and give the same numbers, bit for bit.

def _fma_exact(x: float, y: float, z: float) -> float:
    """x * y + z rounded once: exact integer arithmetic, then one correctly rounded division."""
    try:
        (xn, xd), (yn, yd), (zn, zd) = (
            x.as_integer_ratio(), y.as_integer_ratio(), z.as_integer_ratio())
    except (OverflowError, ValueError):  # an inf or a nan: there is nothing left to round
        if math.isfinite(x) and math.isfinite(y):
            return z  # x * y is finite, exactly, though it would overflow a float
        return x * y + z
    numerator = xn * yn * zd + zn * xd * yd
    if numerator == 0:  # an exact zero: its sign follows IEEE's rules, as math.fma's does
        return x * y + z if x == 0.0 or y == 0.0 else 0.0
    try:
        return numerator / (xd * yd * zd)
    except OverflowError:
        return math.inf if numerator > 0 else -math.inf


def _fma_native(x: float, y: float, z: float) -> float:
    """math.fma (Python 3.13 and later), with IEEE's inf or nan where it raises instead."""
    try:
        return math.fma(x, y, z)
    except (OverflowError, ValueError):
        return _fma_exact(x, y, z)


_fma = _fma_native if hasattr(math, "fma") else _fma_exact


def _add(a: float, b: float, alpha: float) -> float:
    return _fma(alpha, b, a)


def _addcmul(s: float, a: float, b: float, value: float) -> float:
    return _fma(value * a, b, s)


def _addcdiv(s: float, a: float, b: float, value: float) -> float:
    return s + value * a / b


def _lerp(start: float, end: float, weight: float) -> float:
    """start + weight * (end - start), computed as torch.lerp does."""
    if weight < 0.5:
        return _fma(weight, end - start, start)
    return _fma(-(1.0 - weight), end - start, end)


def _check_hyper(name: str, value: float, low: float = 0.0, high: float = math.inf,
                 high_open: bool = False, low_open: bool = False) -> float:
    """A setting as a float, which must be finite and in its range, or step() could not be
    trusted (a numpy float32 would leak its arithmetic into every update)."""
    value = _option(value, name)
    above = low < value if low_open else low <= value
    below = value < high if high_open else value <= high
    if not (math.isfinite(value) and above and below):
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"invalid {name}: {value!r}; it must be a finite number in "
                         f"{left}{low:g}, {high:g}{right}")
    return value


def _mapping(value: object, name: str) -> dict:
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a mapping, got {type(value).__name__}")
    return value


def _flag(value: object, name: str) -> bool:
    if isinstance(value, str) or value not in (True, False):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}: {value!r}")
    return bool(value)


class Optimizer:
    """Updates parameters from their gradients, in groups as torch.optim has them: `params`
    is a list of Values, or of dicts {"params": [...], "lr": ..., ...} whose settings override
    the constructor's for that group. `lr` reads the first group's rate and sets every
    group's; a scheduler sets each group's own."""

    decoupled_weight_decay = False  # AdamW shrinks the parameter instead of adding L2
    state_names: frozenset[str] = frozenset()  # what a parameter's state may hold
    # what a scheduler adds to a group: its starting rate, OneCycleLR's bounds
    SCHEDULE_KEYS = frozenset({"initial_lr", "max_lr", "min_lr", "base_momentum",
                               "max_momentum"})

    def __init__(self, params: Iterable[Value] | Iterable[dict], defaults: dict) -> None:
        if isinstance(params, (str, bytes, Value, dict)):
            raise TypeError(f"params must be a list of Values or of dicts, got "
                            f"{type(params).__name__}")
        groups = list(params)
        if not groups:
            raise ValueError("the optimizer got an empty parameter list")
        self.defaults = self._checked(defaults)
        self.param_groups: list[dict] = []
        self.params: list[Value] = []  # every group's, in order
        self.state: list[dict[str, float]] = []  # one for each of self.params
        for group in groups if isinstance(groups[0], dict) else [{"params": groups}]:
            self.add_param_group(group)

    def add_param_group(self, group: dict) -> None:
        """Add a group of parameters with settings of its own (the others as constructed);
        everything is checked first."""
        if not isinstance(group, dict) or "params" not in group:
            raise ValueError(f"a parameter group is a dict with 'params', got {group!r:.80}")
        params = group["params"]
        params = [params] if isinstance(params, Value) else list(params)
        for p in params:
            if not isinstance(p, Value):
                raise TypeError(f"parameters must be Values, got {type(p).__name__}: {p!r:.40}")
        known = {id(p) for p in self.params}
        if not params or len({id(p) for p in params}) < len(params) or \
                any(id(p) in known for p in params):
            raise ValueError("each parameter belongs to one group, once; got "
                             + ("no parameters" if not params else "one twice"))
        unknown = set(group) - {"params"} - set(self.defaults) - self.SCHEDULE_KEYS
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}; this {type(self).__name__}"
                             f" takes {', '.join(self.defaults)}")
        settings = {k: v for k, v in group.items() if k != "params"}
        self.param_groups.append({"params": params,
                                  **self._checked({**self.defaults, **settings})})
        self.params += params
        self.state += [{} for _ in params]

    def _checked(self, settings: dict) -> dict:
        """A group's settings, checked and as floats (each optimizer checks its own)."""
        return {**settings, "lr": _check_hyper("learning rate", settings["lr"]),
                "weight_decay": _check_hyper("weight_decay", settings["weight_decay"])}

    @property
    def lr(self) -> float:
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        value = _check_hyper("learning rate", value)
        for group in self.param_groups:
            group["lr"] = value

    @property
    def weight_decay(self) -> float:
        return self.param_groups[0]["weight_decay"]

    @weight_decay.setter
    def weight_decay(self, value: float) -> None:
        value = _check_hyper("weight_decay", value)
        for group in self.param_groups:
            group["weight_decay"] = value

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = 0.0

    def step(self) -> None:
        """Update every parameter from its gradient. All or nothing: the new values and
        states are computed first and stored only when every one of them has been."""
        new_values, new_states = [], []
        states = iter(self.state)
        for group in self.param_groups:
            for p, state in zip(group["params"], states):
                if not p.requires_grad:  # frozen, as torch skips a parameter without a grad
                    new_values.append(p.data)
                    new_states.append(state)
                    continue
                grad = p.grad
                if group["weight_decay"] and not self.decoupled_weight_decay:
                    grad = _add(grad, p.data, group["weight_decay"])  # L2 on the gradient
                new_state = state.copy()
                new_values.append(self._update(p.data, grad, new_state, group))
                new_states.append(new_state)
        for p, value in zip(self.params, new_values):
            p.data = value
        self.state = new_states

    def _update(self, param: float, grad: float, state: dict[str, float],
                group: dict) -> float:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """The settings and each parameter's state as plain JSON-able data, laid out as
        PyTorch lays out an optimizer's: {"state": {index: {...}}, "param_groups": [...]}."""
        groups, first = [], 0
        for group in self.param_groups:
            n = len(group["params"])
            groups.append({**{k: v for k, v in group.items() if k != "params"},
                           "params": list(range(first, first + n))})
            first += n
        return {"state": {i: dict(s) for i, s in enumerate(self.state) if s},
                "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Take settings and state from state_dict(); everything is checked first, so a bad
        one is a ValueError that names what is wrong and changes nothing."""
        try:
            groups = _mapping(state_dict, "state_dict")["param_groups"]
            if not isinstance(groups, list) or len(groups) != len(self.param_groups):
                raise ValueError(f"param_groups must be a list of {len(self.param_groups)}, "
                                 f"got {groups!r:.80}")
            settings = []
            for k, (group, own) in enumerate(zip(groups, self.param_groups)):
                saved = {key: v for key, v in _mapping(group, f"param_groups[{k}]").items()
                         if key != "params"}
                missing = set(self.defaults) - set(saved)
                if missing:
                    raise KeyError(sorted(missing)[0])
                if len(group["params"]) != len(own["params"]):
                    raise ValueError(f"group {k} holds {len(group['params'])} parameters, "
                                     f"this optimizer's {len(own['params'])}")
                unknown = set(saved) - set(self.defaults) - self.SCHEDULE_KEYS
                if unknown:
                    raise ValueError(f"unknown settings {sorted(unknown)}")
                settings.append(self._checked(saved))
            states = [{} for _ in self.params]
            for index, state in _mapping(state_dict["state"], "state").items():
                if not str(index).isdigit() or int(index) >= len(self.params):
                    raise ValueError(f"state {index!r} names no parameter (0 to "
                                     f"{len(self.params) - 1})")
                states[int(index)] = self._checked_state(state, f"state {index}")
        except (KeyError, TypeError, ValueError) as e:
            missing = f"{e} is missing" if isinstance(e, KeyError) else e
            raise ValueError(f"not a state_dict of this {type(self).__name__}: {missing}"
                             ) from None
        for group, saved in zip(self.param_groups, settings):
            group.update(saved)
        self.state = states

    # what a parameter's state may hold, and the least each value may be
    _STATE_LOWEST = {"step": 0.0, "exp_avg_sq": 0.0, "square_avg": 0.0, "sum": 0.0}

    def _checked_state(self, state: dict, where: str) -> dict[str, float]:
        if not set(_mapping(state, where)) <= self.state_names:
            raise ValueError(f"{where} holds {sorted(state)}, expected some of "
                             f"{sorted(self.state_names)}")
        for key, value in state.items():
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value)):
                raise ValueError(f"{where}: {key} is {value!r}, not a finite number")
            if value < self._STATE_LOWEST.get(key, -math.inf):
                raise ValueError(f"{where}: {key} is {value!r}; it cannot be negative")
        return {k: float(v) for k, v in state.items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.lr})"


class SGD(Optimizer):
    """Gradient descent with optional momentum, dampening and Nesterov momentum."""

    state_names = frozenset({"momentum_buffer"})

    def __init__(self, params: Iterable[Value] | Iterable[dict], lr: float = 0.001,
                 momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "nesterov": nesterov, "weight_decay": weight_decay})

    def _checked(self, settings: dict) -> dict:
        settings = {**super()._checked(settings),
                    "momentum": _check_hyper("momentum", settings["momentum"]),
                    "dampening": _check_hyper("dampening", settings["dampening"],
                                              low=-math.inf),
                    "nesterov": _flag(settings["nesterov"], "nesterov")}
        if settings["nesterov"] and (settings["momentum"] <= 0 or settings["dampening"]):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening = 0")
        return settings

    def _update(self, param: float, grad: float, state: dict[str, float],
                group: dict) -> float:
        momentum = group["momentum"]
        if momentum:
            if "momentum_buffer" in state:
                buf = _add(state["momentum_buffer"] * momentum, grad, 1 - group["dampening"])
            else:
                buf = grad
            state["momentum_buffer"] = buf
            grad = _add(grad, buf, momentum) if group["nesterov"] else buf
        return _add(param, grad, -group["lr"])


class Adam(Optimizer):
    """Adam: steps scaled by running averages of the gradient and of its square."""

    state_names = frozenset({"step", "exp_avg", "exp_avg_sq"})

    def __init__(self, params: Iterable[Value] | Iterable[dict], lr: float = 0.001,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay})

    def _checked(self, settings: dict) -> dict:
        betas = settings["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair of numbers, got {betas!r}")
        return {**super()._checked(settings),
                "betas": (_check_hyper("beta1", betas[0], high=1.0, high_open=True),
                          _check_hyper("beta2", betas[1], high=1.0, high_open=True)),
                # eps = 0 would make a zero gradient 0 / 0
                "eps": _check_hyper("eps", settings["eps"], low_open=True)}

    def _update(self, param: float, grad: float, state: dict[str, float],
                group: dict) -> float:
        beta1, beta2 = group["betas"]
        step = state["step"] = state.get("step", 0.0) + 1.0
        m = state["exp_avg"] = _lerp(state.get("exp_avg", 0.0), grad, 1 - beta1)
        v = state["exp_avg_sq"] = _addcmul(state.get("exp_avg_sq", 0.0) * beta2, grad, grad,
                                           1 - beta2)
        step_size = group["lr"] / (1 - beta1 ** step)
        denom = math.sqrt(v) / (1 - beta2 ** step) ** 0.5 + group["eps"]
        return _addcdiv(param, m, denom, -step_size)


class AdamW(Adam):
    """Adam with decoupled weight decay: parameters shrink by lr * weight_decay each step."""

    decoupled_weight_decay = True

    def __init__(self, params: Iterable[Value] | Iterable[dict], lr: float = 0.001,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01):
        super().__init__(params, lr, betas, eps, weight_decay)

    def _update(self, param: float, grad: float, state: dict[str, float],
                group: dict) -> float:
        shrunk = param * (1 - group["lr"] * group["weight_decay"])
        return super()._update(shrunk, grad, state, group)


class RMSprop(Optimizer):
    """Steps scaled by a running average of the squared gradient."""

    state_names = frozenset({"square_avg", "grad_avg", "momentum_buffer"})

    def __init__(self, params: Iterable[Value] | Iterable[dict], lr: float = 0.01,
                 alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False):
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps,
                                  "weight_decay": weight_decay, "momentum": momentum,
                                  "centered": centered})

    def _checked(self, settings: dict) -> dict:
        return {**super()._checked(settings),
                # above 1 the average could turn negative
                "alpha": _check_hyper("alpha", settings["alpha"], high=1.0),
                "eps": _check_hyper("eps", settings["eps"], low_open=True),
                "momentum": _check_hyper("momentum", settings["momentum"]),
                "centered": _flag(settings["centered"], "centered")}

    def _update(self, param: float, grad: float, state: dict[str, float],
                group: dict) -> float:
        alpha, eps, momentum = group["alpha"], group["eps"], group["momentum"]
        square_avg = state["square_avg"] = _addcmul(state.get("square_avg", 0.0) * alpha,
                                                    grad, grad, 1 - alpha)
        if group["centered"]:
            grad_avg = state["grad_avg"] = _lerp(state.get("grad_avg", 0.0), grad, 1 - alpha)
            # max(): rounding may leave a variance a hair below zero
            variance = _addcmul(square_avg, grad_avg, grad_avg, -1.0)
            avg = math.sqrt(max(variance, 0.0)) + eps
        else:
            avg = math.sqrt(square_avg) + eps
        if momentum > 0:
            buf = state["momentum_buffer"] = _addcdiv(
                state.get("momentum_buffer", 0.0) * momentum, grad, avg, 1.0)
            return _add(param, buf, -group["lr"])
        return _addcdiv(param, grad, avg, -group["lr"])


class Adagrad(Optimizer):
    """Steps scaled by the root of the sum of all squared gradients so far."""

    state_names = frozenset({"step", "sum"})

    def __init__(self, params: Iterable[Value] | Iterable[dict], lr: float = 0.01,
                 lr_decay: float = 0.0, weight_decay: float = 0.0, eps: float = 1e-10):
        super().__init__(params, {"lr": lr, "lr_decay": lr_decay,
                                  "weight_decay": weight_decay, "eps": eps})

    def _checked(self, settings: dict) -> dict:
        return {**super()._checked(settings),
                "lr_decay": _check_hyper("lr_decay", settings["lr_decay"]),
                "eps": _check_hyper("eps", settings["eps"], low_open=True)}

    def _update(self, param: float, grad: float, state: dict[str, float],
                group: dict) -> float:
        step = state["step"] = state.get("step", 0.0) + 1.0
        clr = group["lr"] / (1 + (step - 1) * group["lr_decay"])
        total = state["sum"] = _addcmul(state.get("sum", 0.0), grad, grad, 1.0)
        return _addcdiv(param, grad, math.sqrt(total) + group["eps"], -clr)


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSprop,
    "adagrad": Adagrad,
}


# Learning-rate schedulers, as torch.optim.lr_scheduler has them: made after the optimizer,
# each sets every group's rate at epoch 0, then again at each step() (call it after the
# epoch's optimizer steps). Each rate follows from the last by torch's own recurrence, so that
# the rates are torch's to the bit.

class LRScheduler:
    """The base of the schedulers: step(), get_last_lr(), state_dict(), load_state_dict()."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"a scheduler needs an Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        for k, group in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise KeyError(f"param_groups[{k}] has no initial_lr to resume from")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch, self._step_count, self._initial = last_epoch, 0, True
        self.step()
        self._initial = False

    def step(self) -> None:
        self._step_count += 1
        self.last_epoch += 1
        try:  # a rate past the float range (a gamma above 1 for long) is refused
            rates = [_check_hyper("learning rate", lr) for lr in self.get_lr()]
        except ValueError as e:
            self._step_count -= 1  # and nothing changes
            self.last_epoch -= 1
            raise ValueError(f"{type(self).__name__}, step {self.last_epoch + 1}: {e}"
                             ) from None
        for group, lr in zip(self.optimizer.param_groups, rates):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_lr(self) -> list[float]:
        raise NotImplementedError

    def _rates(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """Everything but the optimizer, as plain JSON-able data."""
        return {k: v for k, v in vars(self).items() if k != "optimizer"}

    def load_state_dict(self, state: dict) -> None:
        """Take the state of state_dict(); a key this scheduler does not have, or a value of
        another kind, is a ValueError that changes nothing."""
        own = self.state_dict()
        if not isinstance(state, dict) or set(state) != set(own):
            raise ValueError(f"not a state_dict of this {type(self).__name__}: its keys are "
                             f"{sorted(own)}")
        for key, value in state.items():
            if type(value) is not type(own[key]) and not {type(value), type(own[key])} <= {
                    int, float, list, tuple}:
                raise ValueError(f"not a state_dict of this {type(self).__name__}: {key} is "
                                 f"{value!r:.40}")
        vars(self).update(state)


class StepLR(LRScheduler):
    """The rate times gamma every step_size epochs."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self.step_size = _size(step_size, "step_size")
        self.gamma = _check_hyper("gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size:
            return self._rates()
        return [lr * self.gamma for lr in self._rates()]


class MultiStepLR(LRScheduler):
    """The rate times gamma at each epoch in milestones (times gamma**n at one listed n
    times)."""

    def __init__(self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self.milestones = sorted(_size(m, "a milestone") for m in milestones)
        self.gamma = _check_hyper("gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        times = self.milestones.count(self.last_epoch)
        if not times:
            return self._rates()
        return [lr * self.gamma ** times for lr in self._rates()]


class ExponentialLR(LRScheduler):
    """The rate times gamma every epoch."""

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = _check_hyper("gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self._initial:
            return self._rates()
        return [lr * self.gamma for lr in self._rates()]


class CosineAnnealingLR(LRScheduler):
    """From the rate down to eta_min along half a cosine over T_max epochs (and back up)."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0,  # noqa: N803
                 last_epoch: int = -1) -> None:
        self.T_max, self.eta_min = _size(T_max, "T_max"), _check_hyper("eta_min", eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        t, period, low = self.last_epoch, self.T_max, self.eta_min
        if self._initial:
            return self._rates()
        if self._step_count == 1 and t > 0:  # resumed at t: the closed form
            return [low + (base - low) * (1 + math.cos(t * math.pi / period)) / 2
                    for base in self.base_lrs]
        if (t - 1 - period) % (2 * period) == 0:  # at the bottom: turn back up
            return [lr + (base - low) * (1 - math.cos(math.pi / period)) / 2
                    for lr, base in zip(self._rates(), self.base_lrs)]
        return [(1 + math.cos(math.pi * t / period)) / (1 + math.cos(math.pi * (t - 1) / period))
                * (lr - low) + low for lr in self._rates()]


class LinearLR(LRScheduler):
    """The rate times a factor that goes linearly from start_factor to end_factor over
    total_iters epochs."""

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3,
                 end_factor: float = 1.0, total_iters: int = 5, last_epoch: int = -1) -> None:
        self.start_factor = _option(start_factor, "start_factor")
        self.end_factor = _option(end_factor, "end_factor")
        if not 0 < self.start_factor <= 1 or not 0 <= self.end_factor <= 1:
            raise ValueError(f"LinearLR needs 0 < start_factor <= 1 and 0 <= end_factor <= 1, "
                             f"got {start_factor!r} and {end_factor!r}")
        self.total_iters = _size(total_iters, "total_iters")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in self._rates()]
        if self._initial or self.last_epoch > self.total_iters:
            return self._rates()
        change = self.end_factor - self.start_factor
        return [lr * (1.0 + change / (self.total_iters * self.start_factor
                                      + (self.last_epoch - 1) * change))
                for lr in self._rates()]


class OneCycleLR(LRScheduler):
    """Leslie Smith's one cycle: the rate up from max_lr / div_factor to max_lr over the first
    pct_start of total_steps, then down to the start / final_div_factor, along a cosine (or a
    line); the momentum (or Adam's beta1) the other way, between base_ and max_momentum.
    torch's rates at every step of the cycle; the step after its last (which sets a rate no
    step of the cycle uses) leaves the rate at the cycle's end."""

    def __init__(self, optimizer: Optimizer, max_lr: float, total_steps: int | None = None,
                 epochs: int | None = None, steps_per_epoch: int | None = None,
                 pct_start: float = 0.3, anneal_strategy: str = "cos",
                 cycle_momentum: bool = True, base_momentum: float = 0.85,
                 max_momentum: float = 0.95, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False,
                 last_epoch: int = -1) -> None:
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError("OneCycleLR needs total_steps, or epochs and steps_per_epoch")
            total_steps = _size(epochs, "epochs") * _size(steps_per_epoch, "steps_per_epoch")
        self.total_steps = _size(total_steps, "total_steps")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be 'cos' or 'linear', got "
                             f"{anneal_strategy!r}")
        pct_start = _check_hyper("pct_start", pct_start, high=1.0)
        max_lr = _check_hyper("max_lr", max_lr)
        div_factor = _check_hyper("div_factor", div_factor, low_open=True)
        final_div_factor = _check_hyper("final_div_factor", final_div_factor, low_open=True)
        cycle_momentum = _flag(cycle_momentum, "cycle_momentum")
        self.use_beta1 = "betas" in optimizer.defaults  # Adam's beta1 must stay below 1
        for name, value in (("base_momentum", base_momentum), ("max_momentum", max_momentum)):
            _check_hyper(name, value, high=1.0, high_open=self.use_beta1)
        self.anneal_strategy, self.cycle_momentum = anneal_strategy, cycle_momentum
        end = float(pct_start * self.total_steps) - 1  # as torch computes the phases
        if _flag(three_phase, "three_phase"):
            self.phases = [[end, "initial_lr", "max_lr", "max_momentum", "base_momentum"],
                           [float(2 * pct_start * self.total_steps) - 2, "max_lr",
                            "initial_lr", "base_momentum", "max_momentum"],
                           [self.total_steps - 1, "initial_lr", "min_lr", "max_momentum",
                            "max_momentum"]]
        else:
            self.phases = [[end, "initial_lr", "max_lr", "max_momentum", "base_momentum"],
                           [self.total_steps - 1, "max_lr", "min_lr", "base_momentum",
                            "max_momentum"]]
        groups = optimizer.param_groups
        if cycle_momentum and not self.use_beta1 and "momentum" not in optimizer.defaults:
            raise ValueError(f"{type(optimizer).__name__} has no momentum to cycle: give "
                             "cycle_momentum=False")
        if last_epoch == -1:
            for group in groups:
                group["initial_lr"] = max_lr / div_factor
                group["max_lr"] = max_lr
                group["min_lr"] = group["initial_lr"] / final_div_factor
                if cycle_momentum:
                    group["max_momentum"], group["base_momentum"] = max_momentum, base_momentum
                    self._set_momentum(group, max_momentum)
        super().__init__(optimizer, last_epoch)

    def _set_momentum(self, group: dict, value: float) -> None:
        if self.use_beta1:
            group["betas"] = (value, group["betas"][1])
        else:
            group["momentum"] = value

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"stepped past its total_steps, {self.total_steps}")
        rates = []
        for group in self.optimizer.param_groups:
            begin = 0.0
            for k, (end, lr_from, lr_to, m_from, m_to) in enumerate(self.phases):
                if step <= end or k == len(self.phases) - 1:
                    # at most 1: the step after the cycle (total_steps) stays at its end,
                    # where torch goes on along the last phase (below zero, if linear)
                    pct = min((step - begin) / (end - begin), 1.0)
                    rates.append(self._anneal(group[lr_from], group[lr_to], pct))
                    if self.cycle_momentum:
                        self._set_momentum(group, self._anneal(group[m_from], group[m_to], pct))
                    break
                begin = end
        return rates


class ReduceLROnPlateau(LRScheduler):
    """The rate times factor when a measured value (step(metric)) has not improved for
    patience epochs, down to min_lr."""

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                 cooldown: int = 0, min_lr: float = 0.0, eps: float = 1e-8) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"a scheduler needs an Optimizer, got {type(optimizer).__name__}")
        if mode not in ("min", "max") or threshold_mode not in ("rel", "abs"):
            raise ValueError(f"mode must be 'min' or 'max' and threshold_mode 'rel' or 'abs', "
                             f"got {mode!r} and {threshold_mode!r}")
        self.optimizer, self.mode, self.threshold_mode = optimizer, mode, threshold_mode
        self.factor = _check_hyper("factor", factor, high=1.0, high_open=True)
        self.patience = _size(patience, "patience", low=0)
        self.cooldown = _size(cooldown, "cooldown", low=0)
        self.threshold = _check_hyper("threshold", threshold)
        self.min_lrs = [_check_hyper("min_lr", min_lr)] * len(optimizer.param_groups)
        self.eps, self.last_epoch = _check_hyper("eps", eps), 0
        self.best = math.inf if mode == "min" else -math.inf
        self.cooldown_counter = self.num_bad_epochs = 0
        self._last_lr = self._rates()

    def step(self, metrics: float) -> None:  # type: ignore[override]
        current = float(metrics)
        self.last_epoch += 1
        if self._is_better(current):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in a cooldown do not count
        if self.num_bad_epochs > self.patience:
            for group, low in zip(self.optimizer.param_groups, self.min_lrs):
                new = max(group["lr"] * self.factor, low)
                if group["lr"] - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = self._rates()

    def _is_better(self, value: float) -> bool:
        if self.threshold_mode == "rel":
            scale = 1.0 - self.threshold if self.mode == "min" else self.threshold + 1.0
            return value < self.best * scale if self.mode == "min" else value > self.best * scale
        if self.mode == "min":
            return value < self.best - self.threshold
        return value > self.best + self.threshold


SCHEDULERS: dict[str, type[LRScheduler]] = {
    "step": StepLR, "multistep": MultiStepLR, "exponential": ExponentialLR,
    "cosine": CosineAnnealingLR, "linear": LinearLR, "onecycle": OneCycleLR,
    "plateau": ReduceLROnPlateau,
}


# ---------------------------------------------------------------------------------------------
# Datasets (pure Python, each seeded with its own generator, nothing downloaded)
# ---------------------------------------------------------------------------------------------
# Each maker returns (X, y): X a list of samples (lists of floats), y a list of labels. The
# classification sets label classes 0, 1, ...; the classic toy set has targets +1 and -1.

def _linspace(start: float, stop: float, n: int, endpoint: bool = True) -> list[float]:
    steps = (n - 1 if endpoint else n) or 1
    return [start + (stop - start) * i / steps for i in range(n)]


def _shuffled(X: list, y: list, rng: random.Random) -> tuple[list, list]:
    order = list(range(len(X)))
    rng.shuffle(order)
    return [X[i] for i in order], [y[i] for i in order]


def _jitter(points: list[list[float]], noise: float, rng: random.Random) -> list[list[float]]:
    jittered = [[c + rng.gauss(0.0, noise) for c in p] for p in points]
    if not all(math.isfinite(c) for p in jittered for c in p):
        raise ValueError(f"noise {noise!r} is too large: the data overflow to inf")
    return jittered


def _check_size(n: int, noise: float, minimum: int = 2) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < minimum:
        raise ValueError(f"the number of samples must be an integer >= {minimum}, got {n!r}")
    if not 0 <= noise < math.inf:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")


def make_toy() -> tuple[list[list[float]], list[float]]:
    """The four samples of three inputs from the classic demo, with targets +1 and -1."""
    X = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
    return X, [1.0, -1.0, -1.0, 1.0]


def make_xor() -> tuple[list[list[float]], list[int]]:
    """The four corners of the unit square; class 1 where exactly one input is 1."""
    X = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    return X, [0, 1, 1, 0]


def make_moons(n: int = 100, noise: float = 0.1,
               seed: int = 0) -> tuple[list[list[float]], list[int]]:
    """Two interleaving half circles: class 0 the upper moon, class 1 the lower."""
    _check_size(n, noise)
    rng = random.Random(seed)
    n_upper = n // 2
    upper = [[math.cos(t), math.sin(t)] for t in _linspace(0.0, math.pi, n_upper)]
    lower = [[1.0 - math.cos(t), 0.5 - math.sin(t)] for t in _linspace(0.0, math.pi, n - n_upper)]
    X = _jitter(upper + lower, noise, rng)
    return _shuffled(X, [0] * n_upper + [1] * (n - n_upper), rng)


def make_circles(n: int = 100, noise: float = 0.05, factor: float = 0.5,
                 seed: int = 0) -> tuple[list[list[float]], list[int]]:
    """Two circles around the origin: class 0 the outer, class 1 the inner (radius factor)."""
    _check_size(n, noise)
    if not 0 < factor < 1:
        raise ValueError(f"factor must lie between 0 and 1, got {factor!r}")
    rng = random.Random(seed)
    n_outer = n // 2
    outer = [[math.cos(t), math.sin(t)]
             for t in _linspace(0.0, 2 * math.pi, n_outer, endpoint=False)]
    inner = [[factor * math.cos(t), factor * math.sin(t)]
             for t in _linspace(0.0, 2 * math.pi, n - n_outer, endpoint=False)]
    X = _jitter(outer + inner, noise, rng)
    return _shuffled(X, [0] * n_outer + [1] * (n - n_outer), rng)


def make_spiral(n: int = 150, classes: int = 3, noise: float = 0.2,
                seed: int = 0) -> tuple[list[list[float]], list[int]]:
    """`classes` arms of a spiral, one class each; noise jitters the angle."""
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise ValueError(f"classes must be an integer >= 2, got {classes!r}")
    _check_size(n, noise, minimum=classes)
    rng = random.Random(seed)
    X, y = [], []
    for k in range(classes):
        count = n // classes + (k < n % classes)
        for r, t in zip(_linspace(0.0, 1.0, count), _linspace(4.0 * k, 4.0 * (k + 1), count)):
            t += rng.gauss(0.0, noise)
            if not math.isfinite(t):
                raise ValueError(f"noise {noise!r} is too large: the angles overflow to inf")
            X.append([r * math.sin(t), r * math.cos(t)])
            y.append(k)
    return _shuffled(X, y, rng)


DATASETS: dict[str, Callable[..., tuple[list, list]]] = {
    "toy": make_toy,
    "xor": make_xor,
    "moons": make_moons,
    "circles": make_circles,
    "spiral": make_spiral,
}


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

class TrainingError(RuntimeError):
    """Training cannot go on: the loss turned nan or inf."""


class History:
    """What train() measured, one entry per epoch."""

    def __init__(self) -> None:
        self.loss: list[float] = []
        self.accuracy: list[float | None] = []
        self.val_loss: list[float] = []
        self.val_accuracy: list[float | None] = []
        self.seconds: list[float] = []
        self.loss_name = ""  # what train() was given, for titles: 'hinge', 'Adam (lr 0.05)'
        self.optimizer = ""

    def __len__(self) -> int:
        return len(self.loss)

    def state_dict(self) -> dict:
        """The measurements as plain JSON-able data (seconds left out: they are no result)."""
        return {"loss": self.loss, "accuracy": self.accuracy, "val_loss": self.val_loss,
                "val_accuracy": self.val_accuracy, "loss_name": self.loss_name,
                "optimizer": self.optimizer}

    def extend(self, other: History) -> None:
        """Append the epochs of a later run of the same training (a resumed one)."""
        for name in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds"):
            getattr(self, name).extend(getattr(other, name))
        self.loss_name = other.loss_name or self.loss_name
        self.optimizer = other.optimizer or self.optimizer

    def __repr__(self) -> str:
        last = f", last loss {self.loss[-1]:.6g}" if self.loss else ""
        return f"History({_plural(len(self), 'epoch')}{last})"


# Learning rates for train() that suit the small problems here (the classes keep torch's).
DEFAULT_LR = {"sgd": 0.1, "adam": 0.05, "adamw": 0.05, "rmsprop": 0.01, "adagrad": 0.1}


def _loss_function(loss: str | Callable) -> Callable[..., Value]:
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(LOSSES)}")
    return LOSSES[loss]


def _make_optimizer(optimizer: str | Optimizer, params: list[Value], lr: float | None,
                    weight_decay: float | None) -> Optimizer:
    if isinstance(optimizer, Optimizer):
        if lr is not None or weight_decay is not None:
            raise ValueError("lr and weight_decay are for an optimizer given by name: set "
                             "them on your optimizer")
        own = set(params)
        if not any(p in own for p in optimizer.params):
            raise ValueError("the optimizer holds none of the model's parameters: make it on "
                             "model.parameters()")
        return optimizer
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    lr = DEFAULT_LR[optimizer] if lr is None else lr
    decay = {} if weight_decay is None else {"weight_decay": weight_decay}
    return OPTIMIZERS[optimizer](params, lr=lr, **decay)


def _scores(outputs: list) -> list:
    """Plain numbers from model outputs: a float per sample, or a list of floats per sample."""
    return [[v.data for v in out] if isinstance(out, list) else out.data for out in outputs]


def accuracy(scores: list, labels: Sequence, threshold: float = 0.0) -> float | None:
    """The share of samples classified right, or None when the labels are not classes. One
    score per sample: above `threshold` is the positive class (label +1 or 1); a list of
    scores per sample: the largest picks the class index."""
    if len(scores) != len(labels):
        raise ValueError(f"accuracy needs a label for each score, got "
                         f"{_plural(len(scores), 'score')} and {_plural(len(labels), 'label')}")
    if not scores:
        return None
    if isinstance(scores[0], list):
        # a row with a nan in it picks no class: max() and index() would pick one at random
        hits = sum(row.index(max(row)) == t for row, t in zip(scores, labels)
                   if not any(map(math.isnan, row)))
    elif all(t in (-1, 0, 1) for t in labels):
        # written so that a nan score is wrong for both classes
        hits = sum(s > threshold if t > 0 else s <= threshold for s, t in zip(scores, labels))
    else:
        return None
    return int(hits) / len(labels)  # int(): numpy labels would make hits a numpy number


def _threshold(loss: str | Callable, labels: Sequence) -> float:
    """Where one score splits two classes: 0.5 when squared error fits 0/1 labels (the score
    then estimates the label), else 0 (the sign of a -1/+1 target, of a logit, of a margin)."""
    squared_error = loss == "mse" or loss is mse_loss
    return 0.5 if squared_error and all(t in (0, 1) for t in labels) else 0.0


def predict(model: Callable, X: Sequence[Sequence[float]]) -> list:
    """The model's outputs as plain numbers, computed without building a graph."""
    with no_grad():
        return _scores([model(x) for x in X])


def evaluate(model: Callable, X: Sequence, y: Sequence, loss: str | Callable = "mse",
             threshold: float | None = None) -> tuple[float, float | None]:
    """(mean loss, accuracy) of the model on X, y, computed without building a graph. A
    single score is split at `threshold` (by default as _threshold reads the loss and y)."""
    with no_grad():
        outputs = [model(x) for x in X]
        value = _loss_function(loss)(outputs, list(y)).data
    threshold = _threshold(loss, y) if threshold is None else threshold
    return value, accuracy(_scores(outputs), y, threshold)


def _loss(value: float) -> str:
    """A loss for people: six decimals, or six digits in %g form when it is huge."""
    return f"{value:.6f}" if abs(value) < 1e6 else f"{value:.6g}"


def _percent(share: float | None) -> str:
    return "" if share is None else f"{100 * share:.1f}%"


def _metrics(loss: float, accuracy: float | None, val: tuple | None, sep: str) -> str:
    """'loss 0.120000, accuracy 95.0%, val_loss ...': a progress line's or a summary's."""
    parts = [f"loss {_loss(loss)}"]
    parts += [f"accuracy {_percent(accuracy)}"] if accuracy is not None else []
    if val is not None:
        parts.append(f"val_loss {_loss(val[0])}")
        parts += [f"val_accuracy {_percent(val[1])}"] if val[1] is not None else []
    return sep.join(parts)


class _Progress:
    """Prints a line per epoch. A long run (over 50 epochs) rewrites one line in place on a
    terminal, and elsewhere prints about 50 lines spread over the run."""

    def __init__(self, epochs: int, enabled: bool) -> None:
        self.epochs, self.enabled = epochs, enabled
        self.tty = (enabled and epochs > 50 and sys.stdout.isatty()
                    and os.environ.get("TERM") != "dumb")  # a dumb terminal cannot erase
        self.every = max(1, math.ceil(epochs / 50))

    def epoch(self, n: int, history: History) -> None:
        if not self.enabled:
            return
        val = (history.val_loss[-1], history.val_accuracy[-1]) if history.val_loss else None
        line = (f"epoch {n:>{len(str(self.epochs))}}/{self.epochs}  "
                + _metrics(history.loss[-1], history.accuracy[-1], val, "  "))
        if self.tty:
            end = "\n" if n == self.epochs else ""
            print(f"\r{line}\x1b[K", end=end, flush=True)
        elif n == 1 or n == self.epochs or n % self.every == 0:
            print(line, flush=True)


def _check_data(X: Sequence, y: Sequence, what: str) -> None:
    """Data must be rows of one length, as many as the labels, of finite numbers: a bad
    sample met in the middle of a run would leave the model half-trained."""
    if len(X) == 0 or len(X) != len(y):
        raise ValueError(f"train needs as many labels as samples in its {what} data, got "
                         f"{len(X)} and {len(y)}")
    x_name, y_name = ("X", "y") if what == "training" else ("val X", "val y")
    for i, (x, t) in enumerate(zip(X, y)):
        if len(x) != len(X[0]):
            raise ValueError(f"{x_name}[{i}] has {_plural(len(x), 'input')}, {x_name}[0] "
                             f"{len(X[0])}")
        for j, v in enumerate(x):
            if not isinstance(v, numbers.Real):
                raise TypeError(f"{x_name}[{i}][{j}] is {v!r}: training needs numbers")
            if not math.isfinite(v):
                raise ValueError(f"{x_name}[{i}][{j}] is {v}: training needs finite inputs")
        if isinstance(t, numbers.Real) and not math.isfinite(t):
            raise ValueError(f"{y_name}[{i}] is {t}: training needs finite targets")


def _divergence(what: str, epoch: int, opt: Optimizer, before_any_step: bool) -> str:
    """The message for a run that cannot go on: what happened, when, and what to change."""
    if before_any_step:
        return (f"{what} in epoch {epoch}, before any step: check the data, the loss and "
                "the initial weights")
    hint = f"try a lower learning rate than {opt.lr:g}"
    if opt.weight_decay * opt.lr >= 1:
        hint += f" or a lower weight decay than {opt.weight_decay:g}"
    return f"{what} in epoch {epoch}: training diverged; {hint}"


class _CollectorPause:
    """`with _gc_paused:` turns Python's cyclic garbage collector off while train() runs. A
    graph has no cycles for it to find, yet it would scan the nodes as they are made (bench:
    W2's step takes half again as long with it on). Pauses nest and overlap across threads:
    the last to end turns it back on if it was on when the first began."""

    def __init__(self) -> None:
        self.lock, self.count, self.was_enabled = threading.Lock(), 0, False

    def __enter__(self) -> None:
        with self.lock:
            if self.count == 0:
                self.was_enabled = gc.isenabled()
                gc.disable()
            self.count += 1

    def __exit__(self, *exc_info: object) -> None:
        with self.lock:
            self.count -= 1
            if self.count == 0 and self.was_enabled:
                gc.enable()


_gc_paused = _CollectorPause()


def train(model: Module, X: Sequence[Sequence[float]], y: Sequence, loss: str | Callable = "mse",
          optimizer: str | Optimizer = "sgd", lr: float | None = None, epochs: int = 20,
          batch_size: int | None = None, shuffle: bool = True, seed: int | None = None,
          val: tuple[Sequence, Sequence] | None = None, verbose: bool = True,
          weight_decay: float | None = None,
          generator: random.Random | None = None,
          on_epoch: Callable[[int, Module, History], None] | None = None,
          on_step: Callable[[int, Module], None] | None = None,
          scheduler: LRScheduler | None = None) -> History:
    """Fit the model with mini-batch gradient descent; return what each epoch measured.

    Each epoch shuffles the samples with its own generator (seeded by `seed`, or `generator`
    to go on where a run stopped) into batches of `batch_size` (None: all); each batch's
    mean loss is backpropagated and the optimizer steps. The same seed, the same run, bit
    for bit. `optimizer`: a name from OPTIMIZERS (`lr` defaults to DEFAULT_LR) or an
    Optimizer. `scheduler`, made on that optimizer, steps after each epoch (a
    ReduceLROnPlateau on the validation loss, else the training loss). `on_epoch(epoch, model,
    history)` is called after each epoch, and `on_step(step, model)` after each step."""
    if get_ident() in _no_grad_threads:
        raise RuntimeError("train() cannot learn inside no_grad(): no graph is built there, "
                           "so no gradient flows; call it outside the with block")
    n = len(X)
    epochs = _size(epochs, "epochs")
    batch_size = n if batch_size is None else _size(batch_size, "batch_size")
    _check_data(X, y, "training")
    if val is not None and (not isinstance(val, (tuple, list)) or len(val) != 2):
        raise TypeError(f"val must be a pair (X_val, y_val), got {type(val).__name__} of "
                        f"{len(val) if hasattr(val, '__len__') else 'no'} items")
    if val is not None:
        _check_data(val[0], val[1], "validation")
        if len(val[0][0]) != len(X[0]):
            raise ValueError(f"validation samples have {_plural(len(val[0][0]), 'input')}, "
                             f"training samples {len(X[0])}")
    # one cut-off between two classes for training and validation alike (see _threshold)
    threshold = _threshold(loss, list(y) + (list(val[1]) if val is not None else []))
    history, progress = History(), _Progress(epochs, verbose)
    loss_fn = _loss_function(loss)
    opt = _make_optimizer(optimizer, model.parameters(), lr, weight_decay)
    if scheduler is not None and not isinstance(scheduler, LRScheduler):
        raise TypeError(f"scheduler must be an LRScheduler, got {type(scheduler).__name__}: "
                        f"{scheduler!r:.40}")
    if scheduler is not None and scheduler.optimizer is not opt:
        raise ValueError("the scheduler steps another optimizer than train()'s: make the "
                         "optimizer, give it as train(optimizer=opt), and make the scheduler "
                         "on it")
    if generator is not None and seed is not None:
        raise ValueError("give seed or generator, not both: the generator decides the order")
    bad = _first_non_finite(model) if isinstance(model, Module) else None
    if bad is not None:
        raise ValueError(f"the model has a non-finite parameter before training: {bad}")
    rng = generator or random.Random(seed)
    steps = 0
    order = list(range(n))
    history.loss_name = loss if isinstance(loss, str) else getattr(loss, "__name__", "custom")
    history.optimizer = f"{type(opt).__name__} (lr {opt.lr:g})"
    with _gc_paused:
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            if shuffle:  # from the same start each epoch: the generator alone decides
                order = list(range(n))
                rng.shuffle(order)
            total, scores, labels = 0.0, [], []
            for first in range(0, n, batch_size):
                batch = order[first:first + batch_size]
                outputs = [model(X[i]) for i in batch]
                targets = [y[i] for i in batch]
                batch_loss = loss_fn(outputs, targets)
                if not math.isfinite(batch_loss.data):
                    raise TrainingError(_divergence(
                        f"the loss became {batch_loss.data}", epoch, opt, steps == 0))
                opt.zero_grad()
                batch_loss.backward()
                opt.step()
                steps += 1
                if on_step is not None:
                    on_step(steps, model)
                if not all(math.isfinite(p.data) for p in opt.params):
                    bad = _first_non_finite(model) if isinstance(model, Module) else None
                    raise TrainingError(_divergence(
                        f"a step made a parameter non-finite ({bad or 'nan or inf'})",
                        epoch, opt, False))
                total += batch_loss.data * len(batch)
                scores += _scores(outputs)
                labels += targets
            history.loss.append(total / n)
            history.accuracy.append(accuracy(scores, labels, threshold))
            if val is not None:
                val_loss, val_accuracy = evaluate(model, val[0], val[1], loss_fn, threshold)
                history.val_loss.append(val_loss)
                history.val_accuracy.append(val_accuracy)
            if isinstance(scheduler, ReduceLROnPlateau):
                scheduler.step((history.val_loss or history.loss)[-1])
            elif scheduler is not None:
                scheduler.step()
            history.seconds.append(time.perf_counter() - start)
            progress.epoch(epoch, history)
            if on_epoch is not None:
                on_epoch(epoch, model, history)
        # the checks above see each step's loss before the step: the last step's result
        # is seen only here
        final_loss = evaluate(model, X, y, loss_fn, threshold)[0]
        if not math.isfinite(final_loss):
            raise TrainingError(_divergence(
                f"after the last step the loss is {final_loss}", epochs, opt, False))
    return history


# ---------------------------------------------------------------------------------------------
# Model files: written atomically, read strictly (JSON, never pickle)
# ---------------------------------------------------------------------------------------------
# Module.save() and Module.load() come here. A save writes a temporary file beside the target
# and renames it over the target only when it is complete, so that a reader never sees half a
# file and a failed save leaves the old one as it was. A load checks everything before it
# builds anything: strict JSON, a known format, sizes that match.

MODEL_FORMAT = "micrograd.py model"
MODEL_VERSION = 2  # 1: the model alone; 2: and what a training run needs to resume
MAX_PARAMETERS = 1_000_000  # what a model file may hold; more would take gigabytes to build
MAX_MODEL_BYTES = 64 * MAX_PARAMETERS  # a JSON number takes about 25 bytes


def _save_target(path: str) -> tuple[str, os.stat_result | None]:
    """The file a save to path replaces (through a symlink, what it points to) and its
    status, or None if it does not exist yet. Anything but a writable regular file is an
    OSError that says what it is, and is left as it was."""
    if path.endswith(("/", os.sep)):  # as open() and cp refuse it
        raise IsADirectoryError(errno.EISDIR, "the name ends in a slash, as a folder's does")
    target = os.path.realpath(path)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return target, None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "it is a folder")
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "it is not a regular file (a FIFO, socket or device); "
                                    "save to a regular file")
    if not st.st_mode & 0o222 or not os.access(target, os.W_OK):
        raise PermissionError(errno.EACCES, f"the file is read-only (mode "
                                            f"{stat.S_IMODE(st.st_mode):04o}); make it "
                                            "writable or choose another name")
    return target, st


@contextlib.contextmanager
def _replacing(path: str) -> Iterator[typing.BinaryIO]:
    """A new file beside path, renamed onto it when the block succeeds.

    A reader never sees half a file, and a failure leaves any earlier file untouched. The new
    file keeps the old one's permission bits (a new one gets what the umask gives, as with
    open()); its data reaches the disk before the rename. A save killed half-way leaves its
    temporary file, which the next save to that target removes.
    """
    target, old = _save_target(path)
    folder, name = os.path.split(target)
    _remove_stale_temporaries(folder, name)
    # a name of its own for each save, so that two saves at once do not write one file
    tmp = os.path.join(folder, f".{name}.{os.getpid()}-{threading.get_ident()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            if old is not None:
                os.chmod(tmp, stat.S_IMODE(old.st_mode))
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_folder(folder)


def _remove_stale_temporaries(folder: str, name: str) -> None:
    """Remove the temporary files left beside name by saves whose process has died."""
    prefix = f".{name}."
    for entry in os.listdir(folder or "."):
        pid = entry[len(prefix):].split("-")[0]
        if entry.startswith(prefix) and entry.endswith(".tmp") and pid.isdigit() and \
                not _running(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, entry))


def _running(pid: int) -> bool:
    if os.name != "posix":  # elsewhere os.kill(pid, 0) would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it runs, as someone else
        return True
    return True


def _sync_folder(folder: str) -> None:
    """Make a rename in folder durable (where the system allows opening a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number in strict JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large for a float")
    return value


def _short_int(text: str) -> int:
    if len(text.lstrip("-")) > 20:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits is too large")
    return int(text)


def _strict_json(raw: bytes, path: str) -> object:
    """Parse a model file as strict JSON: no NaN, no Infinity, no number that overflows."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant,
                          parse_float=_finite_float, parse_int=_short_int)
    except RecursionError:
        raise ValueError(f"{path} is not a model file: its JSON is nested too deeply") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not JSON ({e})") from None
    except ValueError as e:
        raise ValueError(f"{path} is not strict JSON: {e}") from None


def _count_leaves(data: object) -> int:
    """How many numbers (or other non-list items) nested lists and dicts hold."""
    count, todo = 0, [data]
    while todo:
        item = todo.pop()
        if isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, dict):
            todo.extend(item.values())
        else:
            count += 1
    return count


def _write_model(module: Module, path: str, training: dict | None) -> None:
    """Module.save: with `training` (plain JSON-able data), format version 2.

    A nan or infinite parameter is a ValueError that names it, and nothing is written:
    strict JSON has no such numbers, and such a model predicts nothing useful.
    """
    bad = _first_non_finite(module)
    if bad is not None:
        raise ValueError(f"cannot save a model with a non-finite parameter: {bad}")
    document = {"format": MODEL_FORMAT, "version": 1 if training is None else MODEL_VERSION,
                "model": type(module).__name__, "config": module.config(),
                "state_dict": module.state_dict()}
    if training is not None:
        document["training"] = training
    text = json.dumps(document, indent=1, allow_nan=False) + "\n"
    with _replacing(path) as f:
        f.write(text.encode("utf-8"))


def _read_model(cls: type[Module], path: str) -> tuple[Module, dict | None]:
    """Module.load_with_training. The file is checked before anything is built: strict
    JSON, a known format, and a config whose size matches the parameters the file holds (at
    most MAX_PARAMETERS)."""
    with open(path, "rb") as f:
        raw = f.read(MAX_MODEL_BYTES + 1)
    if len(raw) > MAX_MODEL_BYTES:
        raise ValueError(f"{path} is larger than {MAX_MODEL_BYTES:,} bytes, more than a "
                         f"model of {MAX_PARAMETERS:,} parameters needs")
    document = _strict_json(raw, path)
    if not isinstance(document, dict) or document.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a micrograd.py model file")
    if document.get("version") not in (1, MODEL_VERSION):
        raise ValueError(f"{path} has format version {document.get('version')!r}; "
                         f"this micrograd.py reads versions 1 and {MODEL_VERSION}")
    if document.get("model") != cls.__name__:
        raise ValueError(f"{path} holds a {document.get('model')!r}, not a {cls.__name__}")
    config, state = document.get("config"), document.get("state_dict")
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise ValueError(f"{path}: config and state_dict must be JSON objects")
    try:
        expected = _parameter_count(cls, config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: bad config: {e}") from None
    held = _count_leaves(state)
    if expected != held:
        raise ValueError(f"{path}: the config asks for {expected:,} parameters but the "
                         f"state_dict holds {held:,} numbers")
    if expected > MAX_PARAMETERS:
        raise ValueError(f"{path}: {expected:,} parameters is more than the "
                         f"{MAX_PARAMETERS:,} this file loads")
    try:
        model = cls(**config)
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
    training = document.get("training")
    if training is not None and not isinstance(training, dict):
        raise ValueError(f"{path}: training must be a JSON object")
    return model, training

def load_csv(path: str, target: str | None = None, labelled: bool = True,
             max_rows: int = 100_000) -> tuple[list[list[float]], list, list[str]]:
    """(X, y, names) from a CSV file of numbers separated by commas, with an optional header
    line: the label in the last column, or in the column named `target`; with labelled
    False, every column is an input and y is empty. Labels are classes: -1 and 1, or 0, 1,
    ... A bad cell, a ragged row, an empty file or too many rows is a ValueError naming the
    row and column (rows counted from 1, the header included)."""
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"{path} holds no rows")
    first = [cell.strip() for cell in rows[0]]
    header = not all(_is_number(cell) for cell in first)
    names = first if header else [f"x{i}" for i in range(len(first))]
    body = rows[1:] if header else rows
    if not body:
        raise ValueError(f"{path} holds a header and no rows")
    if len(body) > max_rows:
        raise ValueError(f"{path} holds {len(body):,} rows; at most {max_rows:,} are read")
    if labelled and len(names) < 2:
        separated = ";" in rows[0][0] or "\t" in rows[0][0]
        raise ValueError(f"{path} has one column: " + ("separate the cells by commas"
                         if separated else "a label needs inputs beside it"))
    column = len(names) - 1
    if target is not None:
        if not header or target not in names:
            raise ValueError(f"{path} has no column named {target!r}" + (
                f"; its columns: {', '.join(names)}" if header else " (it has no header)"))
        column = names.index(target)
    X, y = [], []
    for r, row in enumerate(body, 2 if header else 1):
        if len(row) != len(names):
            raise ValueError(f"{path} row {r} has {_plural(len(row), 'cell')}, the first row "
                             f"{len(names)}")
        numbers = []
        for c, cell in enumerate(row, 1):
            try:
                value = float(cell)
            except ValueError:
                hint = "; separate the cells by commas" if ";" in cell or "\t" in cell else ""
                raise ValueError(f"{path} row {r}, column {c}: {cell.strip()!r} is not a "
                                 f"number{hint}") from None
            if not math.isfinite(value):
                raise ValueError(f"{path} row {r}, column {c}: {cell.strip()} is not finite")
            numbers.append(value)
        if labelled:
            label = numbers.pop(column)
            if not label.is_integer():
                raise ValueError(f"{path} row {r}, column {column + 1}: the label {label!r} "
                                 "is not a class (a whole number)")
            y.append(int(label))
        X.append(numbers)
    if labelled:
        names.pop(column)
        _check_classes(y, path)
    return X, y, names


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_classes(y: list[int], path: str) -> None:
    classes = sorted(set(y))
    if len(classes) < 2:
        raise ValueError(f"{path}: every row has the label {classes[0]}: a model needs two "
                         "classes or more")
    if classes != [-1, 1] and classes != list(range(len(classes))):
        raise ValueError(f"{path}: the labels are {', '.join(map(str, classes[:10]))}; give "
                         "classes as 0, 1, ... (or -1 and 1)")


def save_csv(path: str, X: Sequence[Sequence[float]], y: Sequence | None = None,
             names: Sequence[str] | None = None, target: str = "label") -> None:
    """Write X (and the labels y, as the last column) as CSV with a header, atomically;
    what load_csv could not read back (ragged rows, a nan, labels short) is refused."""
    if not X or (y is not None and len(y) != len(X)):
        raise ValueError(f"save_csv needs samples and as many labels, got {len(X)} and "
                         f"{len(y) if y is not None else 'none'}")
    names = list(names or [f"x{i}" for i in range(len(X[0]))])
    for i, x in enumerate(X):
        if len(x) != len(names) or not all(map(math.isfinite, x)):
            raise ValueError(f"X[{i}] is {list(x)!r:.60}: save_csv writes "
                             f"{_plural(len(names), 'finite number')} a row (one a name)")
    lines = [",".join([*names, *([target] if y is not None else [])])]
    for i, x in enumerate(X):
        cells = [repr(float(v)) for v in x] + ([str(y[i])] if y is not None else [])
        lines.append(",".join(cells))
    with _replacing(path) as f:
        f.write(("\n".join(lines) + "\n").encode("utf-8"))


def _parameter_count(cls: type[Module], config: dict) -> int:
    """How many parameters cls(**config) would have, computed without building it."""
    if cls not in (Neuron, Layer, MLP):
        raise ValueError(f"this file loads a Neuron, a Layer or an MLP, not a {cls.__name__}")
    nin = _size(config.get("nin"), "nin")
    if cls is MLP:
        nouts = config.get("nouts")
        if not isinstance(nouts, list) or not nouts:
            raise ValueError(f"nouts must be a list of layer sizes, got {nouts!r}")
        sizes = [nin, *(_size(n, f"nouts[{i}]") for i, n in enumerate(nouts))]
    else:
        sizes = [nin, _size(config.get("nout"), "nout") if cls is Layer else 1]
    return sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))


def _history_from(state: dict) -> History:
    """A History from its state_dict(), as a saved run holds it, checked."""
    _mapping(state, "history")
    history = History()
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        values = state.get(name, [])
        if not isinstance(values, list) or not all(
                v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                for v in values):
            raise ValueError(f"history.{name} must be a list of numbers")
        setattr(history, name, [None if v is None else float(v) for v in values])
    history.seconds = [0.0] * len(history.loss)
    history.loss_name = str(state.get("loss_name", ""))
    history.optimizer = str(state.get("optimizer", ""))
    return history


# ---------------------------------------------------------------------------------------------
# Drawing: the computation graph (matplotlib only)
# ---------------------------------------------------------------------------------------------
# layout_graph() is pure Python: a layered drawing in the manner of graphviz's dot. Ranks give
# the least total edge length (network simplex), long edges pass through virtual points, and
# sweeps reorder each rank to cut crossings. draw_graph() paints that layout with matplotlib,
# which is imported only here, so everything above works where matplotlib is missing.

_FONT_SIZE = 10.0  # points; the drawing's unit is the point, so boxes are sized from text
_FONT_FAMILY = "DejaVu Sans Mono"  # matplotlib's own: present wherever matplotlib is
_CHAR_WIDTH = 0.602 * _FONT_SIZE  # the advance of one character of DejaVu Sans Mono
_LINE_PITCH = 1.2 * _FONT_SIZE  # from one line of a box's text to the next
_PAD_X, _PAD_Y = 8.0, 5.0  # inside a box, around its text
_RANK_GAP, _NODE_GAP = 32.0, 14.0  # between ranks, and between neighbours in a rank
_MARGIN = 12.0


def _graph_nodes(root: Value, fold: bool = False) -> tuple[list, list, dict]:
    """The keys to draw (Values, and ("op", v) for each v made by an op), the edges
    child -> op -> result in a fixed order, and what each op folds: with fold, a leaf that
    feeds exactly one op (a neuron's weights and bias, a constant) is written inside it."""
    order = _topological_order(root)
    uses: dict[Value, int] = {}
    if fold:
        for v in order:
            for child in set(v._children):
                if not child._children:
                    uses[child] = uses.get(child, 0) + 1
    keys, edges, folded = [], [], {}
    for v in order:
        if v._children:
            op = ("op", v)
            for child in dict.fromkeys(v._children):  # a + a draws one arrow
                if uses.get(child) == 1:
                    folded.setdefault(op, []).append(child)
                else:
                    edges.append((child, op))
            keys.append(op)
            edges.append((op, v))
        if uses.get(v) != 1 or v is root:
            keys.append(v)
    return keys, edges, folded


def _is_virtual(key: object) -> bool:
    return isinstance(key, tuple) and key[0] == "virtual"


def _fold_summary(leaves: list[Value]) -> str:
    """'16 w + b': an op's folded leaves counted by kind ('w' for 'L1.N3.w2'; a number for
    a leaf without a label), in the order they come."""
    counts: dict[str, int] = {}
    for leaf in leaves:
        name = leaf.label.rsplit(".", 1)[-1].rstrip("0123456789") or leaf.label
        kind = name if leaf.label else f"{leaf.data:g}"
        counts[kind] = counts.get(kind, 0) + 1
    return " + ".join(kind if n == 1 else f"{n} {kind}" for kind, n in counts.items())


def _box_text(key: object, folded: Sequence[Value] = (), stacked: bool = False,
              name: str = "") -> str:
    """The text of a box: an op's name (and what it folds), a Value's label (or the short
    name explain() gives it), data and grad; stacked, each part on a line of its own (a
    folded network's ranks stay narrow)."""
    if isinstance(key, tuple):
        if not folded:
            return key[1]._op
        return f"{key[1]._op}{chr(10) if stacked else ' '}\u00b7 {_fold_summary(folded)}"
    parts = [key.label or name] if key.label or name else []
    parts += [f"data {_digits(key.data)}", f"grad {_digits(key.grad)}"]
    return ("\n" if stacked else " | ").join(parts)


def _box_size(text: str, is_op: bool) -> tuple[float, float]:
    """(width, height) in points of the box that shows text (one or more lines)."""
    lines = text.split("\n")
    width = max(map(len, lines)) * _CHAR_WIDTH + 2 * _PAD_X
    height = 1.25 * _FONT_SIZE + _LINE_PITCH * (len(lines) - 1) + 2 * _PAD_Y
    if is_op and len(lines) > 1:  # an ellipse around a block of text: room at its corners
        return width * 1.15, height * 1.2
    if is_op:  # an ellipse around a short word
        width = max(width + _PAD_X, height)
    return width, height


class _Graph:
    """A drawing's graph, built once and used by ranking, ordering and placing: nodes 0..n-1,
    keys[i] what node i draws (a Value, ("op", v), or a virtual point that a long edge passes
    through), its edges (a, b) in order, and for each node up[i], the nodes its edges come
    from, and down[i], the nodes they go to."""

    def __init__(self, keys: list, edges: list) -> None:
        index = {k: i for i, k in enumerate(keys)}
        self.keys = list(keys)
        self.edges: list[tuple[int, int]] = []
        self.up: list[list[int]] = [[] for _ in keys]
        self.down: list[list[int]] = [[] for _ in keys]
        for a, b in edges:
            self.add_edge(index[a], index[b])

    def add_edge(self, a: int, b: int) -> None:
        self.edges.append((a, b))
        self.down[a].append(b)
        self.up[b].append(a)

    def add_node(self, key: object) -> int:
        self.keys.append(key)
        self.up.append([])
        self.down.append([])
        return len(self.keys) - 1


def _first_ranks(g: _Graph) -> list[int]:
    """A first guess at ranks: each node as late as it can be (a leaf right before its first
    use), then nodes with more inputs than outputs moved back toward their inputs, which
    shortens more edges than it stretches. The nodes come children first."""
    rank = [0] * len(g.keys)
    for v, preds in enumerate(g.up):  # longest path from the sources fixes the number of ranks
        rank[v] = max((rank[p] + 1 for p in preds), default=0)
    for v in reversed(range(len(g.keys))):  # then as late as possible
        if g.down[v]:
            rank[v] = min(rank[s] for s in g.down[v]) - 1
    for v, preds in enumerate(g.up):
        if preds and len(preds) > len(g.down[v]):
            rank[v] = max(rank[p] for p in preds) + 1
    return rank


def _rank_nodes(g: _Graph) -> list[int]:
    """Ranks with the least total edge length, every edge pointing forward at least one rank:
    network simplex (Gansner, Koutsofios, North and Vo, "A technique for drawing directed
    graphs", 1993, section 2), started from _first_ranks, then balanced, the first rank 0."""
    rank = _first_ranks(g)
    if g.edges:
        _network_simplex(len(rank), g.edges, rank)
    _balance(g, rank)
    low = min(rank, default=0)
    return [r - low for r in rank]


def _network_simplex(n: int, ends: list[tuple[int, int]], rank: list[int]) -> None:
    """Move the feasible ranks of nodes 0..n-1 (edges `ends`, tail before head) to ones of the
    least total edge length, in place. A spanning tree of tight edges (one rank long) fixes
    the ranks; a tree edge's cut value says how the total length changes per rank that the
    two parts it joins move apart. While one is negative, that edge leaves the tree and the
    non-tree edge of least slack across the same cut enters it."""
    incident: list[list[int]] = [[] for _ in range(n)]
    for e, (t, h) in enumerate(ends):
        incident[t].append(e)
        incident[h].append(e)
    in_tree = _tight_tree(n, ends, incident, rank)
    tree: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for e, (t, h) in enumerate(ends):
        if in_tree[e]:
            tree[t].append((e, h))
            tree[h].append((e, t))
    # each exchange costs a pass over the graph: the bound keeps a graph of thousands of boxes
    # within a second or two (it stops with feasible ranks, shorter than the first ones)
    for _ in range(min(10 * n, 4_000_000 // (n + len(ends)))):
        par, lim, low, order = _tree_postorder(n, tree)
        cut = _cut_values(n, ends, par, order)
        leaving = min(cut, key=lambda e: (cut[e], e))  # the most negative cut value
        if cut[leaving] >= 0:
            return  # optimal
        t, h = ends[leaving]
        side = t if lim[t] < lim[h] else h  # the part of the tree below the leaving edge
        below = [low[side] <= lim[v] <= lim[side] for v in range(n)]
        # the entering edge crosses the cut the other way: from the head's part to the tail's
        crossing = [e for e, (a, b) in enumerate(ends) if not in_tree[e]
                    and (below[b] and not below[a] if side == t else below[a] and not below[b])]
        entering = min(crossing, key=lambda e: (rank[ends[e][1]] - rank[ends[e][0]], e))
        a, b = ends[entering]
        slack = rank[b] - rank[a] - 1
        shift = slack if below[a] else -slack  # move the part below so that it is tight
        for v in range(n):
            if below[v]:
                rank[v] += shift
        in_tree[leaving], in_tree[entering] = False, True
        tree[t].remove((leaving, h))
        tree[h].remove((leaving, t))
        tree[a].append((entering, b))
        tree[b].append((entering, a))


def _tight_tree(n: int, ends: list, incident: list, rank: list[int]) -> list[bool]:
    """A spanning tree of tight edges (each one rank long), shifting the ranks of the tree
    grown so far to make the nearest edge tight whenever the tree cannot grow."""
    in_tree, reached = [False] * len(ends), [False] * n
    reached[0], size, stack = True, 1, [0]
    while True:
        while stack:  # grow along tight edges
            v = stack.pop()
            for e in incident[v]:
                t, h = ends[e]
                w = h if t == v else t
                if not reached[w] and rank[h] - rank[t] == 1:
                    reached[w], in_tree[e], size = True, True, size + 1
                    stack.append(w)
        if size == n:
            return in_tree
        nearest = min((e for e, (t, h) in enumerate(ends) if reached[t] != reached[h]),
                      key=lambda e: rank[ends[e][1]] - rank[ends[e][0]])
        t, h = ends[nearest]
        delta = rank[h] - rank[t] - 1
        shift = delta if reached[t] else -delta
        for v in range(n):
            if reached[v]:
                rank[v] += shift
        stack.append(h if reached[t] else t)
        reached[stack[-1]], in_tree[nearest], size = True, True, size + 1


def _tree_postorder(n: int, tree: list[list[tuple[int, int]]]) -> tuple[list, list, list, list]:
    """Root the tree (tree[v]: v's tree edges and the nodes at their other ends) at node 0:
    each node's edge to its parent, its postorder number lim, the least lim below it (low),
    and the nodes in postorder; without recursion."""
    par, lim, low, order = [-1] * n, [0] * n, [0] * n, []
    seen = [False] * n
    seen[0], low[0] = True, 1
    stack = [(0, iter(tree[0]))]
    while stack:
        v, edges_left = stack[-1]
        for e, w in edges_left:
            if not seen[w]:
                seen[w], par[w], low[w] = True, e, len(order) + 1  # the first lim below w
                stack.append((w, iter(tree[w])))
                break
        else:
            stack.pop()
            order.append(v)
            lim[v] = len(order)
    return par, lim, low, order


def _cut_values(n: int, ends: list, par: list, order: list) -> dict[int, int]:
    """The cut value of each tree edge: the edges from the part of the tree holding its tail
    to the part holding its head, less those the other way. Edges within a part cancel, so
    for the part below an edge it is the sum, over its nodes, of edges out less edges in."""
    below = [0] * n  # the edges out less the edges in, summed over each node's subtree
    for t, h in ends:
        below[t] += 1
        below[h] -= 1
    cut: dict[int, int] = {}
    for v in order:  # children before parents
        f = par[v]
        if f >= 0:
            t, h = ends[f]
            cut[f] = below[v] if t == v else -below[v]
            below[h if t == v else t] += below[v]
    return cut


def _balance(g: _Graph, rank: list[int]) -> None:
    """Move each node with as many edges in as out to the rank, of those it may take, that
    holds the fewest nodes: the total edge length stays the same and ranks even out."""
    count: dict[int, int] = {}
    for r in rank:
        count[r] = count.get(r, 0) + 1
    for v, preds in enumerate(g.up):
        if preds and len(preds) == len(g.down[v]):
            first = max(rank[p] for p in preds) + 1
            last = min(rank[s] for s in g.down[v]) - 1
            best = min(range(first, last + 1), key=lambda r: (count.get(r, 0), r))
            if count.get(best, 0) < count[rank[v]] - 1:
                count[rank[v]] -= 1
                rank[v] = best
                count[best] = count.get(best, 0) + 1


def _add_virtual_points(g: _Graph, rank: list[int]) -> tuple[list[list[int]], dict]:
    """Split each edge of g that spans several ranks into a chain through virtual points, one
    a rank, in g itself (rank grows with them); return the nodes of each rank and the route
    of each edge. The long edges out of one value share one chain (dot's edge concentration),
    branching off to each head in turn: a value used all along a graph (the x of Horner's
    rule) is one line with a branch per use, not a line per use."""
    routes, chains = {}, {}  # chains: value -> its virtual point at each rank
    edges = g.edges
    g.edges, g.up, g.down = [], [[] for _ in g.keys], [[] for _ in g.keys]  # made anew
    for a, b in edges:
        route = [a]
        chain = chains.setdefault(a, {})
        for r in range(rank[a] + 1, rank[b]):
            if r not in chain:
                chain[r] = g.add_node(("virtual", a, r))
                rank.append(r)
                g.add_edge(route[-1], chain[r])
            route.append(chain[r])
        g.add_edge(route[-1], b)
        routes[(a, b)] = [*route, b]
    layers: list[list[int]] = [[] for _ in range(max(rank, default=0) + 1)]
    for v, r in enumerate(rank):
        layers[r].append(v)
    return layers, routes


def _count_crossings(upper: list, lower: list, down: list) -> int:
    """Crossings between two adjacent ranks: the inversions among edge endpoints, counted
    with a Fenwick tree in O(E log V)."""
    where = {k: i for i, k in enumerate(lower)}
    ends = [where[b] for a in upper for b in sorted(down[a], key=where.__getitem__)]
    tree = [0] * (len(lower) + 1)
    crossings = 0
    for seen, e in enumerate(ends):
        i, below = e + 1, 0
        while i:  # how many earlier ends are at most e
            below += tree[i]
            i -= i & -i
        crossings += seen - below
        i = e + 1
        while i <= len(lower):
            tree[i] += 1
            i += i & -i
    return crossings


def _total_crossings(layers: list, down: list) -> int:
    return sum(_count_crossings(layers[r], layers[r + 1], down) for r in range(len(layers) - 1))


def _median(values: list[float]) -> float:
    """dot's weighted median: with an even count, the middle pair weighted toward the side
    where the neighbours sit closer together."""
    values = sorted(values)
    mid = len(values) // 2
    if len(values) % 2:
        return values[mid]
    left, right = values[mid - 1] - values[0], values[-1] - values[mid]
    if left + right == 0:
        return (values[mid - 1] + values[mid]) / 2
    return (values[mid - 1] * right + values[mid] * left) / (left + right)


def _first_order(layers: list, up: list, down: list, from_sinks: bool) -> list:
    """One of dot's two first orders: each rank in the order in which a breadth-first search
    of the whole graph meets its nodes, along the edges and against them, started from each
    source in turn (or from each sink)."""
    rank = {k: r for r, layer in enumerate(layers) for k in layer}
    first, then = (up, down) if from_sinks else (down, up)
    ordered: list[list] = [[] for _ in layers]
    seen: set = set()
    for start in (k for layer in layers for k in layer if not then[k]):
        if start in seen:
            continue
        seen.add(start)
        queue = collections.deque([start])
        while queue:
            k = queue.popleft()
            ordered[rank[k]].append(k)
            for n in first[k] + then[k]:
                if n not in seen:
                    seen.add(n)
                    queue.append(n)
    return ordered


def _median_sweep(layers: list, neighbours: list, ranks: range, reverse: bool) -> None:
    """Sort each rank by the weighted median position of its neighbours in the rank before;
    a node with no neighbours there keeps its place. With reverse, equal medians swap order,
    which lets a later sweep try the other way round."""
    for r in ranks:
        before = {k: i for i, k in enumerate(layers[r - ranks.step])}
        layer, median = layers[r], {}
        for i, k in enumerate(layer):
            if neighbours[k]:
                median[k] = (_median([before[n] for n in neighbours[k]]), -i if reverse else i)
        movable = iter(sorted(median, key=median.__getitem__))
        layers[r] = [next(movable) if k in median else k for k in layer]


def _swap_crossings(a: list, b: list, where: dict) -> tuple[int, int]:
    """The crossings among the edges of two neighbours u and v to one adjacent rank, given
    the nodes there that u's edges (a) and v's (b) reach: (with u first, with v first)."""
    if len(a) == 1 and len(b) == 1:  # most often: virtual points, a chain's single edges
        x, y = where[a[0]], where[b[0]]
        return int(x > y), int(x < y)
    u_first = v_first = 0
    for x in [where[n] for n in a]:
        for y in [where[n] for n in b]:
            u_first += x > y
            v_first += x < y
    return u_first, v_first


def _transpose(layers: list, up: list, down: list, equal_swaps: bool = False) -> None:
    """dot's local swaps: exchange neighbours in a rank while that removes crossings,
    revisiting only ranks beside a change; with equal_swaps, also swaps that leave the
    crossings equal, which can open a way to fewer. Each point may be looked at 8 times
    (and 5,000 more in all): enough for every graph of the tests to settle, and a bound on
    graphs whose long edges cross thousands of times, where swaps took over a minute."""
    where = {k: i for layer in layers for i, k in enumerate(layer)}
    todo = [True] * len(layers)
    budget = 8 * len(where) + 5_000  # rank visits, counted in points
    improved = True
    while improved and budget > 0:
        improved = False
        for r, layer in enumerate(layers):
            if not todo[r]:
                continue
            todo[r] = False
            budget -= len(layer)
            for i in range(len(layer) - 1):
                u, v = layer[i], layer[i + 1]
                now, swapped = _swap_crossings(up[u], up[v], where)
                if r + 1 < len(layers):
                    c, d = _swap_crossings(down[u], down[v], where)
                    now, swapped = now + c, swapped + d
                if swapped < now or (equal_swaps and swapped == now and now > 0):
                    layer[i], layer[i + 1] = v, u
                    where[u], where[v] = i + 1, i
                    todo[max(r - 1, 0):r + 2] = [True] * len(todo[max(r - 1, 0):r + 2])
                    improved = improved or swapped < now


# dot's ordering is a heuristic whose result turns on the order the graph comes in (30
# shuffled copies of one random graph of 150 values: 118 to 135 crossings). So it runs again
# from shuffled copies while this much work (points, summed over the runs) allows: up to 8
# more times up to 166 points, none past 750. A run that ties the best ends the search: the
# count is most likely forced by the graph (in a fused MLP, every order crosses the same).
_RESTART_WORK, _RESTARTS = 1_500, 8


def _order_ranks(layers: list, up: list, down: list) -> list:
    """Orders inside ranks with few crossings: dot's ordering (_dot_order), then the same
    from shuffled copies of the graph as _RESTART_WORK allows; the best is kept. Seeded: the
    same graph, the same order."""
    best = _dot_order(layers, up, down)
    fewest = _total_crossings(best, down)
    rng = random.Random(0)
    for _ in range(min(_RESTARTS, _RESTART_WORK // max(1, sum(map(len, layers))) - 1)):
        if fewest == 0:
            break
        shuffled = [rng.sample(layer, len(layer)) for layer in layers]
        order = _dot_order(shuffled, _shuffled_lists(up, layers, rng),
                           _shuffled_lists(down, layers, rng))
        crossings = _total_crossings(order, down)
        if crossings == fewest:
            break
        if crossings < fewest:
            best, fewest = order, crossings
    return best


def _shuffled_lists(near: list, layers: list, rng: random.Random) -> list:
    """A copy of near (each node's neighbours) with every list shuffled, rank by rank."""
    copy = list(near)
    for v in (v for layer in layers for v in layer):
        copy[v] = rng.sample(near[v], len(near[v]))
    return copy


def _dot_order(layers: list, up: list, down: list) -> list:
    """Orders inside ranks with few crossings, as graphviz dot finds them (Gansner et al.,
    section 3): from each of two first orders, four sweeps; then, from the better, up to 24
    more, until 8 in a row bring no real gain; the best order seen is kept. A sweep sorts
    each rank by the weighted median of its neighbours' positions, down and up in turn, then
    makes local swaps."""
    given, best, best_crossings = layers, layers, math.inf
    for start in range(3):
        if start < 2:
            layers = _first_order(given, up, down, from_sinks=start == 1)
            _transpose(layers, up, down)
        else:
            layers = [list(layer) for layer in best]
        crossings = _total_crossings(layers, down)
        if crossings <= best_crossings:
            best, best_crossings = [list(layer) for layer in layers], crossings
        tries = 0
        for sweep in range(4 if start < 2 else 24):
            if tries >= 8 or crossings == 0:
                break
            tries += 1
            if sweep % 2 == 0:
                _median_sweep(layers, up, range(1, len(layers)), sweep % 4 < 2)
            else:
                _median_sweep(layers, down, range(len(layers) - 2, -1, -1), sweep % 4 < 2)
            _transpose(layers, up, down, equal_swaps=sweep % 4 >= 2)
            crossings = _total_crossings(layers, down)
            if crossings <= best_crossings:
                if crossings < 0.995 * best_crossings:
                    tries = 0
                best, best_crossings = [list(layer) for layer in layers], crossings
        if best_crossings == 0:
            break
    if best_crossings > 0:
        _transpose(best, up, down)
    return best


def _pack(desired: list[float], sizes: list[float], weights: list[float]) -> list[float]:
    """Positions as close as possible to `desired` (least squares, each node's error counted
    `weight` times) that keep the given order and leave neighbours (size_i + size_j) / 2 +
    _NODE_GAP apart: pool adjacent violators, in linear time."""
    offsets = [0.0]
    for a, b in zip(sizes, sizes[1:]):
        offsets.append(offsets[-1] + (a + b) / 2 + _NODE_GAP)
    blocks: list[list[float]] = []  # [mean, weight, count] of runs of nodes that must touch
    for d, off, weight in zip(desired, offsets, weights):
        blocks.append([d - off, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, weight, count = blocks.pop()
            prev = blocks[-1]
            prev[0] = (prev[0] * prev[1] + mean * weight) / (prev[1] + weight)
            prev[1] += weight
            prev[2] += count
    flat = [mean for mean, _, count in blocks for _ in range(count)]
    return [q + off for q, off in zip(flat, offsets)]


def _cross_positions(g: _Graph, layers: list, cross_size: list[float]) -> list[float]:
    """Positions across the ranks, in the spirit of dot's priority method: eight passes,
    alternately down and up the ranks, draw each node toward the median of its neighbours
    in the rank just visited (both ranks in the last pass), then pack each rank without
    overlap, a virtual point weighing eight times a box, so that long edges run straight and
    boxes make room for them; a last pass lays each long edge level. Linear time a pass."""
    virtual = [_is_virtual(k) for k in g.keys]
    sizes = [[cross_size[v] for v in layer] for layer in layers]
    weights = [[8.0 if virtual[v] else 1.0 for v in layer] for layer in layers]
    pos = [0.0] * len(g.keys)

    def pack(r: int, desired: list[float], weights: list[float]) -> None:
        for v, at in zip(layers[r], _pack(desired, sizes[r], weights)):
            pos[v] = at

    for r, layer in enumerate(layers):
        pack(r, [0.0] * len(layer), [1.0] * len(layer))
    for p in range(8):
        for r in range(len(layers)) if p % 2 == 0 else range(len(layers) - 1, -1, -1):
            near = [g.up[v] + g.down[v] if p == 7 else g.up[v] if p % 2 == 0 else g.down[v]
                    for v in layers[r]]
            pack(r, [_median([pos[n] for n in ns]) if ns else pos[v]
                     for v, ns in zip(layers[r], near)], weights[r])
    # then each value's line of virtual points drawn to one level, their median, so that it
    # runs straight and bends only near its ends (or where another line needs the level)
    chains: dict[int, list[float]] = {}
    for v, key in enumerate(g.keys):
        if virtual[v]:
            chains.setdefault(key[1], []).append(pos[v])  # key[1]: the value it comes from
    line = {value: _median(points) for value, points in chains.items()}
    for r, layer in enumerate(layers):
        pack(r, [line[g.keys[v][1]] if virtual[v] else pos[v] for v in layer], weights[r])
    return pos


def layout_graph(root: Value, rankdir: str = "LR", fold: bool = False) -> tuple[dict, list]:
    """Positions for drawing the graph of root: (pos, edges). pos maps each Value to the
    centre (x, y) of its box, and ("op", v) to the centre of the op that made v, in points,
    y up; edges lists (from_key, to_key): child -> op -> result. Deterministic, and without
    recursion. With fold, each leaf that feeds exactly one op is left out (draw_graph
    writes it inside that op)."""
    pos, edges, _, _, _ = _layout(root, rankdir, fold)
    return {k: xy for k, xy in pos.items() if not _is_virtual(k)}, edges


def _layout(root: Value, rankdir: str, fold: bool = False, text: dict | None = None,
            rank_gap: float = _RANK_GAP) -> tuple[dict, list, dict, dict, dict]:
    """layout_graph() with the virtual points: (pos, edges, the route of each edge, the size
    of each box, the text of each box), all by key; `text` sizes the boxes instead of their
    own. A virtual point spans its rank, so that an edge crosses a rank straight, in the
    clear lane between two boxes."""
    if rankdir not in ("LR", "TB"):
        raise ValueError(f"rankdir must be 'LR' or 'TB', got {rankdir!r}")
    keys, edges, folded = _graph_nodes(root, fold)
    g = _Graph(keys, edges)
    layers, routes = _add_virtual_points(g, _rank_nodes(g))
    layers = _order_ranks(layers, g.up, g.down)
    names = _short_names(_topological_order(root)[::-1])  # as explain() names them
    text = text or {k: _box_text(k, folded.get(k, ()), fold, names.get(k, "")) for k in keys}
    size = {k: _box_size(text[k], isinstance(k, tuple)) for k in keys}
    along, across = (0, 1) if rankdir == "LR" else (1, 0)
    cross = _cross_positions(g, layers, [size[k][across] if k in size else 0.0
                                         for k in g.keys])
    at, place = 0.0, {}  # at: where the current rank starts, along the ranks
    for layer in layers:
        extent = max((size[g.keys[v]][along] for v in layer if g.keys[v] in size), default=0.0)
        for v in layer:
            key = g.keys[v]
            place[key] = (at + extent / 2, cross[v])
            if key not in size:  # a virtual point
                size[key] = (extent, 0.0) if rankdir == "LR" else (0.0, extent)
        at += extent + rank_gap
    pos = {k: (a, -c) if rankdir == "LR" else (c, -a) for k, (a, c) in place.items()}
    left = min(x - size[k][0] / 2 for k, (x, y) in pos.items())  # to the margin
    bottom = min(y - size[k][1] / 2 for k, (x, y) in pos.items())
    pos = {k: (x + _MARGIN - left, y + _MARGIN - bottom) for k, (x, y) in pos.items()}
    keyed = {(g.keys[a], g.keys[b]): [g.keys[v] for v in route]
             for (a, b), route in routes.items()}
    return pos, edges, keyed, size, text


_IMAGE_FORMATS = ("png", "svg", "pdf")
_LEAF_FILL, _PARAM_FILL, _RESULT_FILL, _OP_COLOR = "#f1f3f5", "#d0e4ff", "#ffffff", "#d62728"


def _image_format(path: str) -> str:
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in _IMAGE_FORMATS:
        raise ValueError(f"cannot tell the image format of {path!r}: end it in "
                         f"{', '.join('.' + f for f in _IMAGE_FORMATS)}")
    return ext


def _figure(width_pt: float, height_pt: float) -> Figure:
    """A matplotlib Figure (no pyplot, no window) that a notebook shows as a PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_pt / 72.0, height_pt / 72.0))
    fig._repr_png_ = lambda: _notebook_png(fig)  # a bare Figure shows only as text in Jupyter
    return fig


# Pixels. matplotlib's Agg renderer refuses more than 2**16 a side: a huge figure gets fewer
# dots per inch. A notebook shows a figure at twice its pixels, sharp on any screen, but at
# most _NOTEBOOK_PIXELS in all (an MLP 2-12-12-1's unfolded graph, 3004 x 8531 shown: 6 s at
# twice, 1.5 s at once). A large PNG is written with zlib's fastest level (25 million pixels:
# 1.45 s at level 6, the default, 0.9 s at level 1, for a file a fifth larger).
_AGG_LIMIT, _NOTEBOOK_PIXELS, _FAST_PNG_PIXELS = 30000.0, 16e6, 4e6


def _dpi(fig: Figure) -> float:
    return min(100.0, _AGG_LIMIT / max(fig.get_size_inches()))


def _save(fig: Figure, file: object, ext: str, dpi: float) -> None:
    width, height = fig.get_size_inches() * dpi
    level = 1 if width * height > _FAST_PNG_PIXELS else 6
    fig.savefig(file, format=ext, dpi=dpi,
                **({"pil_kwargs": {"compress_level": level}} if ext == "png" else {}))


def _notebook_png(fig: Figure) -> tuple[bytes, dict]:
    import io

    dpi = _dpi(fig)
    width, height = fig.get_size_inches() * dpi
    within = dpi * math.sqrt(_NOTEBOOK_PIXELS / (width * height))
    buffer = io.BytesIO()
    sharp = max(dpi, min(2 * dpi, within, _AGG_LIMIT / max(fig.get_size_inches())))
    _save(fig, buffer, "png", sharp)
    return buffer.getvalue(), {"width": round(width), "height": round(height)}


def _finish(fig: Figure, path: str | None, show: bool) -> Figure:
    """Save fig to path (format from its extension, written atomically) and show it."""
    if path is not None:
        from matplotlib import rc_context

        ext = _image_format(path)
        # svg.fonttype 'none': an SVG's text stays text, to search and select
        with _replacing(path) as f, rc_context({"svg.fonttype": "none"}):
            _save(fig, f, ext, _dpi(fig))
    if show:
        import matplotlib.pyplot as plt

        # borrow a window from pyplot, of this figure's size, so that text fits its boxes
        manager = plt.figure(figsize=fig.get_size_inches()).canvas.manager
        manager.canvas.figure = fig
        fig.set_canvas(manager.canvas)
        plt.show()
    return fig


def _count_nodes(root: Value, limit: int) -> int:
    """How many Values root depends on, counting no further than limit + 1."""
    _check_root(root)
    seen, stack = {root}, [root]
    while stack and len(seen) <= limit:
        for child in stack.pop()._children:
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return len(seen)


def _drawn_values(root: Value, limit: int, fold: bool) -> int:
    """How many value boxes the drawing of root would have, counting no further than about
    limit + 1 (folded, a graph may hold many more Values than it draws)."""
    count = _count_nodes(root, limit if not fold else 50 * limit)
    if not fold or count > 50 * limit:
        return count
    return sum(not isinstance(k, tuple) for k in _graph_nodes(root, fold=True)[0])


def _gradient_scale(values: list[Value]) -> object:
    """A diverging colour scale for the gradients of values, symmetric about zero."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import TwoSlopeNorm

    finite = [abs(v.grad) for v in values if math.isfinite(v.grad)]
    # capped: a scale reaching the largest float overflows the colour bar's arithmetic
    reach = min(max(finite, default=0.0) or 1.0, 1e300)
    return ScalarMappable(TwoSlopeNorm(0.0, -reach, reach), "coolwarm")


def _colour_bar(fig: Figure, scale: object, width: float, bar: float) -> None:
    """The colour bar of scale, in the strip `bar` points wide right of the graph."""
    total = width + bar
    bar_height = min(0.8, max(0.3, 160.0 / (fig.get_size_inches()[1] * 72.0)))
    cax = fig.add_axes(((width + 14) / total, (1 - bar_height) / 2, 12 / total, bar_height))
    fig.colorbar(scale, cax=cax, label="gradient")


def draw_graph(root: Value, path: str | None = None, show: bool = False, rankdir: str = "LR",
               max_nodes: int = 300, params: Iterable[Value] = (), fold: bool = False,
               color: str | None = None, fills: Mapping[Value, str] | None = None,
               title: str = "") -> Figure:
    """Draw the computation graph of root: a box per Value (label, data, grad), a red ellipse
    per op, an arrow per dependency. Values in `params` are filled blue, other leaves grey.
    With fold, a leaf that feeds exactly one op is written inside that op (a neuron's
    weights and bias: 'relu(dot) · 16 w + b'), which makes a network's graph readable.
    color="grad" fills each box by the sign and size of its gradient (blue below zero, red
    above, white at zero; a colour bar gives the scale; grey for nan or inf).
    Edges into a neuron are coloured by the sign of their weight (blue above zero, red below)
    and widened by its size. Saves to path (.png, .svg or .pdf) when given; returns the
    matplotlib Figure."""
    if color not in (None, "grad"):
        raise ValueError(f"color must be None or 'grad', got {color!r}")
    count = _drawn_values(root, _size(max_nodes, "max_nodes"), fold)
    if count > max_nodes:
        raise ValueError(
            f"the graph has more than {max_nodes} values to draw ({count} counted before "
            "stopping): draw a smaller part, such as one neuron or the loss of one sample"
            + ("" if fold else ", fold it (fold=True)") + ", or raise max_nodes")
    layout = _layout(root, rankdir, fold)
    params = set(params)
    scale = _gradient_scale([k for k in layout[0] if isinstance(k, Value)]) if color else None

    def fill(v: Value) -> object:
        if fills and v in fills:
            return fills[v]
        if scale is not None:  # a little transparent: black text stays readable
            return scale.to_rgba(v.grad, alpha=0.8) if math.isfinite(v.grad) else "#bbbbbb"
        return _PARAM_FILL if v in params else _RESULT_FILL if v._children else _LEAF_FILL

    fig, _, width = _paint(layout, rankdir, fill, bar=90.0 if color else 0.0, title=title)
    if scale is not None:
        _colour_bar(fig, scale, width, 90.0)
    return _finish(fig, path, show)


def _paint(layout: tuple, rankdir: str, fill: Callable[[Value], object], bar: float = 0.0,
           text: dict | None = None, marked: Iterable = (),
           notes: Iterable[tuple[tuple, str]] = (),
           title: str = "") -> tuple[Figure, object, float]:
    """The figure of a layout: boxes filled by fill(value), their text (or `text`'s), ops in
    red (those in `marked` filled yellow), edges and arrowheads, `notes`, (point, text) pairs
    written in blue, and a title above. Leaves `bar` points on the right for a colour bar."""
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.patches import Ellipse, FancyBboxPatch

    pos, edges, routes, size, box_text = layout
    text = text or box_text
    notes = list(notes)
    reach = [(note.count("\n") + 1) * _LINE_PITCH / 2 for _, note in notes]  # half heights
    width = max(x + size[k][0] / 2 for k, (x, y) in pos.items()) + _MARGIN
    height = max([y + size[k][1] / 2 for k, (x, y) in pos.items()]
                 + [y + r for ((x, y), _), r in zip(notes, reach)]) + _MARGIN
    low = min([0.0] + [y - r - _MARGIN for ((x, y), _), r in zip(notes, reach)])
    top = 2 * _LINE_PITCH if title else 0.0
    fig = _figure(width + bar, height - low + top)
    ax = fig.add_axes((0, 0, width / (width + bar), 1))
    ax.set_xlim(0, width)
    ax.set_ylim(low, height + top)
    if title:
        ax.text(width / 2, height + top / 2, title, ha="center", va="center",
                fontsize=_FONT_SIZE * 1.2, parse_math=False)
    ax.set_axis_off()
    # parse_math off: a label is a name, and "$" in it is a dollar sign
    text_style = {"ha": "center", "va": "center", "fontsize": _FONT_SIZE,
                  "family": _FONT_FAMILY, "zorder": 3, "parse_math": False}
    marked = set(marked)
    for key, (w, h) in size.items():
        x, y = pos[key]
        if _is_virtual(key):
            continue
        # add_artist, not add_patch: the limits are set above, and add_patch would grow
        # them box by box, which took most of the time of a large drawing
        if isinstance(key, tuple):
            ax.add_artist(Ellipse((x, y), w, h, edgecolor=_OP_COLOR, zorder=2,
                                  facecolor="#ffe066" if key in marked else "#fde8e8",
                                  linewidth=2.4 if key in marked else 1.2))
            ax.text(x, y, text[key], color=_OP_COLOR, **text_style)
            continue
        ax.add_artist(FancyBboxPatch((x - w / 2 + 3, y - h / 2 + 3), w - 6, h - 6,
                                     boxstyle="round,pad=3", facecolor=fill(key),
                                     edgecolor="#333333", linewidth=1.0, zorder=2))
        ax.text(x, y, text[key], **text_style)
    for (x, y), note in notes:
        ax.text(x, y, note, color="#1f4e99", **{**text_style, "zorder": 4})
    lines, heads = [], []
    for points, head in _edge_lines(pos, size, routes, edges, 0 if rankdir == "LR" else 1):
        base, triangle = _arrowhead(points[-2], points[-1], head)
        lines.append([*points[:-1], base])
        heads.append(triangle)
    colours, widths = zip(*map(_edge_style, edges)) if edges else ((), ())
    # all edges as one collection and all arrowheads as another: drawn in one go each
    ax.add_collection(LineCollection(lines, colors=colours, linewidths=widths, zorder=1),
                      autolim=False)
    ax.add_collection(PolyCollection(heads, facecolors=colours, edgecolors=colours,
                                     linewidths=0.5, zorder=1), autolim=False)
    return fig, ax, width


def _edge_style(edge: tuple) -> tuple[tuple, float]:
    """An edge's colour and width: into a neuron (a dot product), by its weight's sign (blue
    above zero, red below) and size, a little transparent, so that a layer's many edges do
    not merge into a black band; others grey."""
    child, head = edge
    if isinstance(head, tuple) and head[1]._op.endswith(("dot", "dot)")):
        node = head[1]
        n = len(node._children) // 2  # (*w, *x) or (*w, *x, b)
        at = node._children.index(child)
        if n <= at < 2 * n:  # an input: its weight is the child n places before
            w = node._children[at - n].data
            strength = min(1.0, abs(w))
            colour = (0.13, 0.4, 0.67) if w >= 0 else (0.7, 0.09, 0.17)
            return (*colour, 0.25 + 0.45 * strength), 0.3 + 1.2 * strength
    return (0.33, 0.33, 0.33, 1.0), 1.0


def _arrowhead(start: tuple, end: tuple, size: float) -> tuple[tuple, list]:
    """The arrowhead of a segment that ends at `end`: where its line stops (the head's base)
    and the head's corners. size is its length over 0.4, as matplotlib's '-|>' takes it."""
    dx, dy = end[0] - start[0], end[1] - start[1]
    norm = math.hypot(dx, dy) or 1.0
    ux, uy = dx / norm, dy / norm
    length, half_width = 0.4 * size, 0.2 * size
    base = (end[0] - ux * length, end[1] - uy * length)
    left = (base[0] - uy * half_width, base[1] + ux * half_width)
    right = (base[0] + uy * half_width, base[1] - ux * half_width)
    return base, [left, end, right]


def _edge_lines(pos: dict, size: dict, routes: dict, edges: list,
                along: int) -> list[tuple[list, float]]:
    """Each edge as a polyline and the size of its arrowhead. An edge runs level from its box
    to the edge of the box's rank (never across a wider box of the rank), crosses the gap to
    the next rank and every rank it passes in the lane kept for it, and enters its box level
    from the rank's edge. Edges into one box end at points spread along its side, in the
    order their sources come, so that their arrowheads stay apart (smaller when crowded)."""
    half = {}  # the half-extent of each rank, by its position along the ranks
    for k, centre in pos.items():
        c = round(centre[along], 6)
        half[c] = max(half.get(c, 0.0), size[k][along] / 2)

    def rank_edge(key: object, side: int) -> tuple[float, float]:
        point = list(_port(pos[key], size[key], along, side))
        c = pos[key][along]
        step = half[round(c, 6)]
        point[along] = c + side * step if along == 0 else c - side * step
        return point[0], point[1]

    incoming: dict[object, list] = {}
    for a, b in edges:
        incoming.setdefault(b, []).append(routes[(a, b)][-2])
    across = 1 - along
    lines = []
    for a, b in edges:
        points = [_port(pos[a], size[a], along, +1), rank_edge(a, +1)]
        for k in routes[(a, b)][1:-1]:  # across each rank it passes, straight through its lane
            points += [_port(pos[k], size[k], along, -1), _port(pos[k], size[k], along, +1)]
        sources = sorted(incoming[b], key=lambda k: -pos[k][across] if along == 0
                         else pos[k][across])
        slot, count = sources.index(routes[(a, b)][-2]), len(sources)
        entry = list(_port(pos[b], size[b], along, -1))
        span = size[b][across] * 0.6  # the middle of the side, clear of an ellipse's ends
        offset = 0.0 if count == 1 else span * (0.5 - slot / (count - 1))
        entry[across] += offset if along == 0 else -offset
        start = list(rank_edge(b, -1))
        start[across] = entry[across]
        points += [tuple(start), tuple(entry)]
        head = 10.0 if count == 1 else max(4.0, min(10.0, 2.5 * span / (count - 1)))
        lines.append((_without_repeats(points), head))
    return lines


def _without_repeats(points: list) -> list:
    """The polyline without a point equal to the one before (a zero-length arrow has no
    direction), at least two points."""
    kept = [points[0]]
    for p in points[1:]:
        if math.dist(p, kept[-1]) > 1e-6:
            kept.append(p)
    return kept if len(kept) > 1 else [points[0], points[-1]]


def _port(centre: tuple, size: tuple, along: int, side: int) -> tuple[float, float]:
    """Where an edge leaves (side +1) or enters (side -1) a box: the middle of the side
    that faces the next rank (right or left for LR; bottom or top for TB)."""
    x, y = centre
    if along == 0:
        return (x + side * size[0] / 2, y)
    return (x, y - side * size[1] / 2)


# ---------------------------------------------------------------------------------------------
# Plots: training curves, decision boundaries, training as an animation
# ---------------------------------------------------------------------------------------------

def _epoch_axis(ax: object) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 2.5
    ax.grid(alpha=0.3)


def plot_history(history: History | Mapping[str, History], path: str | None = None,
                 show: bool = False, title: str | None = None) -> Figure:
    """Loss per epoch beside accuracy per epoch (when the labels are classes); validation
    dashed; titled with the loss and the optimizer that train() used. Several runs, given
    as {name: history}, are overlaid, a colour each."""
    runs = dict(history) if isinstance(history, Mapping) else {"": history}
    has_accuracy = any(a is not None for h in runs.values() for a in h.accuracy)
    fig = _figure(720 if has_accuracy else 432, 324)
    panels = fig.subplots(1, 2) if has_accuracy else [fig.subplots(1, 1)]
    for k, (name, h) in enumerate(runs.items()):
        epochs = list(range(1, len(h) + 1))
        curves = [h.loss, h.val_loss]
        if has_accuracy:
            curves += [[100 * (a or 0.0) for a in h.accuracy],
                       [100 * (a or 0.0) for a in h.val_accuracy]]
        colour = "#1f77b4" if len(runs) == 1 else _CLASS_COLOURS[k % 10]
        for ax, train_values, val_values in zip(panels, curves[::2], curves[1::2]):
            ax.plot(epochs, train_values, color=colour, marker="." if len(epochs) < 30 else "",
                    label=name or "training")
            if val_values:
                ax.plot(epochs, val_values, color="#ff7f0e" if len(runs) == 1 else colour,
                        linestyle="--", label=f"{name} validation".strip())
    for ax, name in zip(panels, ("loss", "accuracy (%)")):
        _epoch_axis(ax)
        ax.set_ylabel(name)
        ax.legend(loc="best", frameon=True, framealpha=0.9, fontsize="small")
    losses = [v for h in runs.values() for v in h.loss + h.val_loss if math.isfinite(v)]
    if max(map(abs, losses), default=0) > 1e100:
        panels[0].set_yscale("log")  # near the float limit a linear axis overflows
    if has_accuracy:
        panels[1].set_ylim(-2, 102)
    last = list(runs.values())[-1]
    loss_name = f"{last.loss_name} loss" if last.loss_name else "loss"
    optimizer = last.optimizer if len(runs) == 1 else ""
    fig.suptitle(title or ", ".join(filter(None, [loss_name, optimizer])))
    fig.tight_layout()
    return _finish(fig, path, show)


_CLASS_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                  "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
_SCORE_COLOURS = ("#2166ac", "#b2182b")  # the two ends of the score shading, RdBu_r


def _softmax(row: list[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(v - top) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def _classes_of(labels: list) -> list[int]:
    """Class indices of labels: -1/+1 and 0/1 become 0 and 1, indices stay as they are."""
    if set(labels) <= {-1, 1}:
        return [1 if t > 0 else 0 for t in labels]
    return [int(t) for t in labels]


def _grid(X: list, n: int) -> tuple[list[float], list[float]]:
    """n points along each axis of the samples' box, half a unit wider on every side."""
    xs, ys = [p[0] for p in X], [p[1] for p in X]
    return (_linspace(min(xs) - 0.5, max(xs) + 0.5, n),
            _linspace(min(ys) - 0.5, max(ys) + 0.5, n))


def _shade_plane(scores: list, n: int, split: float, colours: list) -> tuple[object, object]:
    """The picture of the plane (an n x n array of colours) from the model's scores at its
    grid points, for the boundary plot and the animation alike, and the score's scale (None
    for classes). One score per point: blue below the split, red above, white at it; the
    colours reach their ends where most of the plane's scores end (the 90th percentile), so
    shades near the decision line differ. Several (one per class): the likeliest class's
    colour over white, paler where the model is less sure (its softmax probability)."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import TwoSlopeNorm

    if isinstance(scores[0], list):
        probs = [_softmax(row) for row in scores]
        best = np.array([p.index(max(p)) for p in probs]).reshape(n, n)
        sure = np.array([max(p) for p in probs]).reshape(n, n)
        return 1.0 - (1.0 - np.asarray(colours)[best]) * (0.15 + 0.45 * sure)[..., None], None
    grid = np.array(scores).reshape(n, n)
    reach = max(float(np.quantile(np.abs(grid - split), 0.9)), 1e-9)
    scale = TwoSlopeNorm(split, split - reach, split + reach)
    return colormaps["RdBu_r"](scale(np.clip(grid, split - reach, split + reach))), scale


def _class_colours(scores: list, labels: list) -> list:
    """An RGB colour per class: the two ends of the score shading for one output, else the
    class palette."""
    from matplotlib.colors import to_rgb

    if not isinstance(scores[0], list):
        return [to_rgb(c) for c in _SCORE_COLOURS]
    count = max(len(scores[0]), max(_classes_of(labels)) + 1)
    return [to_rgb(_CLASS_COLOURS[k % 10]) for k in range(count)]


def _scatter_samples(ax: object, X: list, y: list, colours: list, size: float = 26,
                     hollow: bool = False) -> list:
    """The samples on top of the plane, coloured by class (hollow diamonds for validation
    samples); a legend entry per class."""
    from matplotlib.lines import Line2D

    classes, handles = _classes_of(y), []
    for k, colour in enumerate(colours):
        points = [p for p, c in zip(X, classes) if c == k]
        style = ({"facecolors": "white", "edgecolors": colour, "marker": "D",
                  "linewidths": 1.6} if hollow else
                 {"color": colour, "edgecolors": "black", "linewidths": size / 45})
        if points:
            ax.scatter(*zip(*points), s=size, zorder=3, **style)
        handles.append(Line2D([], [], marker="o", linestyle="", color=colour,
                              markeredgecolor="black", label=f"class {k}"))
    return handles


def _boundary_lines(ax: object, gx: list, gy: list, scores: list, split: float) -> list:
    """Black lines where the model's decision changes: where one score crosses the split, or
    where a class's probability passes the largest of the others. Returns them."""
    if isinstance(scores[0], list):
        curves = [([p[k] - max(p[:k] + p[k + 1:]) for p in map(_softmax, scores)], 0.0)
                  for k in range(len(scores[0]))]
    else:
        curves = [(scores, split)]
    drawn, n = [], len(gx)
    for values, level in curves:
        if min(values) < level < max(values):
            grid = [values[i:i + n] for i in range(0, len(values), n)]
            drawn.append(ax.contour(gx, gy, grid, levels=[level], colors="black",
                                    linewidths=1.2))
    return drawn


def _plane_samples(X: Sequence, y: Sequence, name: str, empty: bool = False
                   ) -> tuple[list[list[float]], list]:
    """X and y as lists (numpy arrays too), each sample 2 finite inputs, as many labels as
    samples: what a plot of the input plane needs, or a ValueError that names the fault."""
    X, y = [list(map(float, p)) for p in X], list(y)
    if len(X) != len(y) or not (X or empty):
        raise ValueError(f"{name} holds {len(X)} samples and {len(y)} labels: a plot of the "
                         "plane needs as many labels as samples, at least one")
    for i, p in enumerate(X):
        if len(p) != 2:
            raise ValueError(f"{name}[{i}] has {_plural(len(p), 'input')}: a plot of the "
                             "plane needs 2 inputs")
        for j, v in enumerate(p):
            if not math.isfinite(v):
                raise ValueError(f"{name}[{i}][{j}] is {v}: a plot of the plane needs finite "
                                 "inputs")
    return X, y


def plot_decision_boundary(model: Callable, X: Sequence[Sequence[float]], y: Sequence,
                           path: str | None = None, show: bool = False,
                           resolution: int = 100, val: tuple[Sequence, Sequence] | None = None,
                           dataset: str | None = None,
                           loss: str | Callable | None = None) -> Figure:
    """The plane as a 2-input model sees it, with the samples on top (validation samples,
    `val`, hollow) and the accuracy in the title; the grid is scored by predict(), without
    building a graph. One output: the plane shaded by the score and a black line where it
    crosses the split: 0 (a margin, a logit, a tanh output for -1/+1), or 0.5 when `loss`,
    the loss the model was trained with, is squared error and the labels are 0 and 1, as
    train() counts accuracy. Several outputs: each class's region in its colour, with lines
    where the class changes."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.lines import Line2D

    X, y = _plane_samples(X, y, "X")
    val_X, val_y = _plane_samples(*val, "val X", empty=True) if val else ([], [])
    split = 0.0 if loss is None else _threshold(loss, y + val_y)
    gx, gy = _grid(X + val_X, resolution)
    scores = predict(model, [[a, b] for b in gy for a in gx])
    colours = _class_colours(scores, y + val_y)
    fig = _figure(468, 396)
    ax = fig.add_subplot()
    image, scale = _shade_plane(scores, resolution, split, colours)
    ax.imshow(image, origin="lower", extent=(gx[0], gx[-1], gy[0], gy[-1]),
              interpolation="bilinear", aspect="auto", alpha=0.85)
    if scale is not None:
        fig.colorbar(ScalarMappable(scale, "RdBu_r"), ax=ax, label="model score", shrink=0.85)
    _boundary_lines(ax, gx, gy, scores, split)
    handles = _scatter_samples(ax, X, y, colours)
    if val_X:
        _scatter_samples(ax, val_X, val_y, colours, size=30, hollow=True)
        handles.append(Line2D([], [], marker="D", linestyle="", markerfacecolor="white",
                              markeredgecolor="black", label="validation"))
    handles.append(Line2D([], [], color="black", label="decision boundary"))
    ax.legend(handles=handles, loc="best", fontsize="small", framealpha=0.9)
    ax.set_xlim(gx[0], gx[-1])
    ax.set_ylim(gy[0], gy[-1])
    ax.set_xlabel("x0 (first input)")
    ax.set_ylabel("x1 (second input)")
    parts = [f"accuracy {_percent(accuracy(predict(model, X), y, split))}"]
    if val_X:
        parts.append(f"validation {_percent(accuracy(predict(model, val_X), val_y, split))}")
    ax.set_title(f"{dataset + ': ' if dataset else ''}{', '.join(parts)}")
    fig.tight_layout()
    return _finish(fig, path, show)


def plot_boundaries(models: Mapping[str, Callable], X: Sequence[Sequence[float]],
                    y: Sequence, path: str | None = None, show: bool = False,
                    loss: str | Callable | None = None, resolution: int = 60) -> Figure:
    """The decision boundaries of several 2-input models on the same samples, side by side,
    each shaded as plot_decision_boundary shades one, its accuracy in its title."""
    if not models:
        raise ValueError("plot_boundaries needs at least one model")
    X, y = _plane_samples(X, y, "X")
    split = 0.0 if loss is None else _threshold(loss, y)
    gx, gy = _grid(X, resolution)
    fig = _figure(260 * len(models), 280)
    for ax, (name, model) in zip(fig.subplots(1, len(models), squeeze=False)[0],
                                 models.items()):
        scores = predict(model, [[a, b] for b in gy for a in gx])
        colours = _class_colours(scores, y)
        ax.imshow(_shade_plane(scores, resolution, split, colours)[0], origin="lower",
                  extent=(gx[0], gx[-1], gy[0], gy[-1]), interpolation="bilinear",
                  aspect="auto", alpha=0.85)
        _boundary_lines(ax, gx, gy, scores, split)
        _scatter_samples(ax, X, y, colours, size=14)
        ax.set_title(f"{name}: {_percent(accuracy(predict(model, X), y, split))}",
                     fontsize="medium")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return _finish(fig, path, show)


def _unit_outputs(model: MLP, points: list[list[float]]) -> list[list[list[float]]]:
    """Each layer's outputs at each point, computed by the model's own layers without a
    graph: [layer][unit][point]."""
    if not isinstance(model, MLP):
        raise TypeError(f"the units of an MLP are drawn and checked, got {type(model).__name__}")
    layers: list[list[list[float]]] = [[[] for _ in layer.neurons] for layer in model.layers]
    with no_grad():
        for point in points:
            x = _inputs(point, model.nin, "MLP")
            for k, layer in enumerate(model.layers):
                x = tuple(layer._forward(x))
                for unit, v in enumerate(x):
                    layers[k][unit].append(v.data)
    return layers


def unit_health(model: MLP, X: Sequence[Sequence[float]]) -> list[list[str]]:
    """For each layer's units: 'dead' (a relu never positive on X), 'saturated' (a tanh or
    sigmoid beyond 0.97 of its range on most of X), or ''."""
    marks, layer_outputs = [], _unit_outputs(model, [list(x) for x in X])
    for layer, outputs in zip(model.layers, layer_outputs):
        row = []
        for out in outputs:
            if layer.activation == "relu" and max(out) <= 0.0:
                row.append("dead")
            elif layer.activation in ("tanh", "sigmoid"):
                far = [abs(2 * v - 1 if layer.activation == "sigmoid" else v) > 0.97
                       for v in out]
                row.append("saturated" if sum(far) > len(far) / 2 else "")
            else:
                row.append("")
        marks.append(row)
    return marks


def plot_neurons(model: MLP, X: Sequence[Sequence[float]], y: Sequence,
                 path: str | None = None, show: bool = False, resolution: int = 24) -> Figure:
    """The network as TensorFlow Playground draws it: the inputs, then each unit as a small
    map of its output over the input plane (blue low, red high), the edges between units
    coloured by their weight's sign and as wide as its size, each unit's bias under it, and a
    badge on a unit that is dead or saturated on the samples X (y colours nothing here: the
    maps are the model's)."""
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    X = [list(map(float, p)) for p in X]
    if not isinstance(model, MLP) or model.nin != 2:
        raise ValueError("plot_neurons draws an MLP of 2 inputs over the input plane")
    gx, gy = _grid(X, resolution)
    grid = [[a, b] for b in gy for a in gx]
    columns = [[[p[0] for p in grid], [p[1] for p in grid]], *_unit_outputs(model, grid)]
    health = [["", ""], *unit_health(model, X)]
    side, gap, across, legend = 52.0, 22.0, 120.0, 64.0  # points
    tallest = max(map(len, columns))
    width, height = len(columns) * (side + across) - across + 40, tallest * (side + gap) + legend
    fig = _figure(width, height)
    board = fig.add_axes((0, 0, 1, 1))
    board.set_xlim(0, width)
    board.set_ylim(0, height)
    board.set_axis_off()
    centres = []
    for c, units in enumerate(columns):
        top = (height - legend + len(units) * (side + gap) - gap) / 2
        centres.append([(20 + c * (side + across) + side / 2, top - u * (side + gap) - side / 2)
                        for u in range(len(units))])
    for c, layer in enumerate(model.layers, 1):  # edges first, under the maps
        ws = [[w.data for w in n.w] for n in layer.neurons]
        strongest = max(abs(w) for row in ws for w in row) or 1.0
        for j, row in enumerate(ws):
            for i, w in enumerate(row):
                (x0, y0), (x1, y1) = centres[c - 1][i], centres[c][j]
                board.plot([x0 + side / 2, x1 - side / 2], [y0, y1], zorder=1, alpha=0.6,
                           color="#1f63a8" if w >= 0 else "#c2410c",
                           linewidth=0.3 + 3.0 * abs(w) / strongest)
    for c, units in enumerate(columns):
        for u, values in enumerate(units):
            x, y0 = centres[c][u]
            ax = fig.add_axes(((x - side / 2) / width, (y0 - side / 2) / height, side / width,
                               side / height))
            centre = 0.5 if c and model.layers[c - 1].activation == "sigmoid" else 0.0
            reach = max(abs(v - centre) for v in values) or 1.0
            ax.imshow([values[r * resolution:(r + 1) * resolution] for r in range(resolution)],
                      origin="lower", cmap="RdBu_r", interpolation="bilinear",
                      norm=TwoSlopeNorm(centre, centre - reach, centre + reach))
            ax.set_xticks([])
            ax.set_yticks([])
            below = f"x{u}" if c == 0 else f"b {model.layers[c - 1].neurons[u].b.data:+.2f}"
            board.text(x, y0 - side / 2 - 3, below, ha="center", va="top", fontsize=7.5)
            if health[c][u]:  # on the map itself: the maps are drawn over the board
                ax.text(0.96, 0.94, health[c][u], ha="right", va="top", fontsize=6.5,
                        color="white", transform=ax.transAxes,
                        bbox={"boxstyle": "round,pad=0.2", "linewidth": 0,
                              "facecolor": "black" if health[c][u] == "dead" else "#b45309"})
    board.legend(handles=[
        Line2D([], [], color="#1f63a8", linewidth=2, label="weight > 0 (wider: larger)"),
        Line2D([], [], color="#c2410c", linewidth=2, label="weight < 0"),
        Patch(facecolor="#2166ac", label="unit's output: low"),
        Patch(facecolor="#b2182b", label="high (maps over the input plane)"),
        Patch(facecolor="black", label="dead: a relu never positive on the data"),
        Patch(facecolor="#b45309", label="saturated: beyond 0.97 of its range on most"),
        Line2D([], [], linestyle="", marker="$b$", color="black", label="b: the unit's bias")],
        loc="upper center", ncol=4, fontsize=7, frameon=False)
    return _finish(fig, path, show)


MAX_FRAMES = 60  # an animation samples long runs down to about this many frames


class _Frames:
    """The frames of a training run, taken by train()'s on_epoch: at each sampled epoch, the
    model's scores on a coarse grid of the plane (a few hundred points: a frame must be
    cheap) and the losses so far."""

    def __init__(self, X: list, epochs: int, split: float = 0.0, resolution: int = 24) -> None:
        X = [list(map(float, p)) for p in X]
        if not X or len(X[0]) != 2:
            raise ValueError("an animation draws the decision boundary: it needs samples "
                             f"with 2 inputs, got {len(X[0]) if X else 0}")
        step = max(1.0, (epochs - 1) / (MAX_FRAMES - 1))
        self.wanted = sorted({min(epochs, round(1 + i * step)) for i in range(MAX_FRAMES)})
        self.gx, self.gy = _grid(X, resolution)
        self.frames: list[tuple[int, list, list[float]]] = []
        self.split = split  # where one score divides the classes (see _threshold)

    def __call__(self, epoch: int, model: Module, history: History) -> None:
        if epoch in self.wanted:
            scores = predict(model, [[a, b] for b in self.gy for a in self.gx])
            self.frames.append((epoch, scores, list(history.loss), history.accuracy[-1]))

    def save(self, path: str, X: list, y: list, title: str = "",
             say: Callable[[str], None] = lambda line: None) -> bytes:
        """Write the frames as an animated GIF, 1000 pixels wide: the plane shaded as
        plot_decision_boundary shades it, with its decision line, the samples and a legend,
        beside the loss so far; the epoch and the accuracy above."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.lines import Line2D
        from PIL import Image  # Pillow comes with matplotlib

        fig = _figure(720, 324)
        canvas = FigureCanvasAgg(fig)  # frames straight from the renderer, no PNG between
        board, curve = fig.subplots(1, 2)
        epochs, n = self.frames[-1][0], len(self.gx)
        colours = _class_colours(self.frames[0][1], list(y))
        picture = board.imshow(_shade_plane(self.frames[0][1], n, self.split, colours)[0],
                               origin="lower", extent=(self.gx[0], self.gx[-1], self.gy[0],
                                                       self.gy[-1]),
                               aspect="auto", interpolation="bilinear")
        handles = _scatter_samples(board, list(X), list(y), colours, size=18)
        handles.append(Line2D([], [], color="black", label="decision boundary"))
        legend = board.legend(handles=handles, loc="upper right", fontsize="x-small",
                              framealpha=0.8)
        board.set_xlabel("x0 (first input)")
        board.set_ylabel("x1 (second input)")
        line, = curve.plot([], [], color="#1f77b4", marker=".")  # a point shows at epoch 1
        curve.set_xlim(0.5, max(epochs, 2) + 0.5)
        curve.set_ylim(0, 1.05 * max(max(loss) for _, _, loss, _ in self.frames))
        _epoch_axis(curve)
        curve.set_ylabel("loss")
        label = fig.text(0.5, 0.95, "", ha="center", fontsize="large")
        moving = [picture, *board.collections, legend, line, label]  # over the plane
        for artist in moving:  # drawn anew on each frame, over a background drawn once
            artist.set_animated(True)
        fig.tight_layout(rect=(0, 0, 1, 0.92))
        canvas.draw()
        background = canvas.copy_from_bbox(fig.bbox)
        images = []
        for k, (epoch, scores, losses, share) in enumerate(self.frames, 1):
            canvas.restore_region(background)
            picture.set_data(_shade_plane(scores, n, self.split, colours)[0])
            line.set_data(range(1, len(losses) + 1), losses)
            accuracy_text = f", accuracy {_percent(share)}" if share is not None else ""
            label.set_text(f"{title}epoch {epoch}/{epochs}{accuracy_text}")
            fig.draw_artist(picture)
            contours = _boundary_lines(board, self.gx, self.gy, scores, self.split)
            for artist in [*contours, *moving[1:]]:
                fig.draw_artist(artist)
            for contour in contours:
                contour.remove()
            frame = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba())
            # a GIF holds 256 colours: octree quantizing picks them ten times faster than
            # the median cut Pillow uses by default, with no difference to see here
            images.append(frame.convert("RGB").quantize(method=Image.Quantize.FASTOCTREE))
            if k % 20 == 0 or k == len(self.frames):
                say(f"frame {k}/{len(self.frames)}")
        return _write_gif(path, images, 120)


def _write_gif(path: str, images: list, duration: int) -> bytes:
    """Write an animated GIF atomically; return its bytes (a notebook shows them)."""
    import io

    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=duration, loop=0)
    with _replacing(path) as f:
        f.write(buffer.getvalue())
    return buffer.getvalue()


def _gif_html(gif: bytes) -> str:
    import base64

    return f'<img src="data:image/gif;base64,{base64.b64encode(gif).decode()}"/>'


def animate_training(model: Module, X: Sequence, y: Sequence, path: str,
                     epochs: int = 20, **train_options: object) -> History:
    """Train as train() does and write the run as an animated GIF to path: the decision
    boundary and the loss curve growing, a frame per epoch (at most about MAX_FRAMES). The
    History returned shows the GIF in a notebook."""
    if not str(path).lower().endswith(".gif"):
        raise ValueError(f"{path!r}: an animation is written as a GIF: end the name in .gif")
    frames = _Frames(list(X), epochs, _threshold(train_options.get("loss", "mse"), list(y)))
    history = train(model, X, y, epochs=epochs, on_epoch=frames, **train_options)
    return AnimatedHistory(history, frames.save(path, list(X), list(y)))


class AnimatedHistory(History):
    """animate_training()'s History: the same measurements, and the GIF, which a notebook
    shows when it is a cell's last expression."""

    def __init__(self, history: History, animation: bytes) -> None:
        super().__init__()
        vars(self).update(vars(history))
        self.animation = animation

    def _repr_html_(self) -> str:
        return _gif_html(self.animation)


# ---------------------------------------------------------------------------------------------
# Teaching tools: your own expression, gradients checked by nudging, a quiz, backprop by steps
# ---------------------------------------------------------------------------------------------

class ExpressionError(ValueError):
    """An expression that cannot be built: it names what is wrong."""


class _NoValue(ExpressionError):
    """A name in an expression that has no value: `name`."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} has no value")
        self.name = name


# What an expression may call: the Value functions of one argument
EXPRESSION_FUNCTIONS: dict[str, Callable[[Value], Value]] = {
    name: getattr(Value, name) for name in ("exp", "log", "sqrt", "sin", "cos", "tanh",
                                            "sigmoid", "relu", "gelu", "silu", "softplus")}
EXPRESSION_FUNCTIONS["abs"] = abs
_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: operator.truediv, ast.Pow: operator.pow, ast.USub: operator.neg,
              ast.UAdd: operator.pos}


def parse_expression(text: str, values: Mapping[str, float]) -> Value:
    """The graph of an expression in Python's syntax over names, numbers, + - * / **, unary
    minus and EXPRESSION_FUNCTIONS, each name a labelled leaf with its value from `values`.
    It is read through a whitelist of syntax, never eval(): anything else (an attribute, a
    call of another function, a lambda, a string) is an ExpressionError, before any of it
    is computed."""
    build = compile_expression(text, values)
    root = build({name: Value(value, name) for name, value in values.items()})
    root.label = root.label or "out"
    return root


def compile_expression(text: str, names: Iterable[str]) -> Callable[[Mapping], Value]:
    """The expression checked once (see parse_expression), as a function that builds its
    graph on the leaves given for its names: build({"x": x, "y": y})."""
    names = set(names)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ExpressionError(f"{text!r:.80} is not an expression: {e.msg}") from None
    except (RecursionError, MemoryError):  # Python's own parser gives up
        raise ExpressionError("the expression is nested too deeply") from None
    if isinstance(tree.body, (ast.Name, ast.Constant)):
        raise ExpressionError(f"{text!r} has no op on a name: nothing to differentiate")
    todo: list[ast.AST] = [tree]
    while todo:  # every node checked before anything is computed
        node = todo.pop()
        _allowed(node, names)
        todo += node.args if isinstance(node, ast.Call) else ast.iter_child_nodes(node)

    def build(leaves: Mapping[str, Value]) -> Value:
        def grow(node: ast.AST) -> Value | float:
            if isinstance(node, ast.Constant):
                return float(node.value)
            if isinstance(node, ast.Name):
                return leaves[node.id]
            if isinstance(node, ast.UnaryOp):
                return _OPERATORS[type(node.op)](grow(node.operand))
            if isinstance(node, ast.BinOp):
                return _OPERATORS[type(node.op)](grow(node.left), grow(node.right))
            return EXPRESSION_FUNCTIONS[node.func.id](_as_value(grow(node.args[0])))

        try:
            root = grow(tree.body)
        except RecursionError:
            raise ExpressionError("the expression is nested too deeply") from None
        except (ValueError, ZeroDivisionError, OverflowError) as e:
            raise ExpressionError(f"{text!r} cannot be computed at these values: {e}"
                                  ) from None
        if not isinstance(root, Value):
            raise ExpressionError(f"{text!r} has no op on a name: nothing to differentiate")
        return root
    return build


def _as_value(x: Value | float) -> Value:
    return x if isinstance(x, Value) else Value(x)


def _allowed(node: ast.AST, names: set[str]) -> None:
    """Refuse a node outside the whitelist, naming it."""
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise _NoValue(node.id)
        return
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
        if name not in EXPRESSION_FUNCTIONS:
            raise ExpressionError(f"unknown function {name}(); the functions are "
                                  f"{', '.join(EXPRESSION_FUNCTIONS)}")
        if len(node.args) != 1 or node.keywords:
            raise ExpressionError(f"{ast.unparse(node)}: {name}() takes one argument")
        return
    if isinstance(node, ast.Constant) and type(node.value) not in (int, float):
        raise ExpressionError(f"{ast.unparse(node)} is not a number")
    if not isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Load,
                             *_OPERATORS)):
        shown = ast.unparse(node) if isinstance(node, ast.expr) else type(node).__name__
        raise ExpressionError(f"{shown} is not allowed in an expression: use names, numbers, "
                              "+ - * / **, and one-argument functions")


def _kink_sides(root: Value) -> list[bool]:
    """For each op of root's graph whose slope jumps (relu, a relu neuron, a hinge, abs),
    which side of its kink it is on, in the graph's order."""
    sides = []
    for v in _topological_order(root):
        if v._op == "abs":
            sides.append(v._children[0].data > 0)
        elif v._op in ("relu", "relu(dot)", "hinge"):
            sides.append(v.data > 0)  # zero on the flat side
    return sides


def _nudged(build: Callable[[dict[str, float]], Value], values: dict[str, float]
            ) -> Value | None:
    """build(values), or None where the values are outside its domain."""
    try:
        return build(values)
    except (ArithmeticError, ValueError):
        return None


def nudge_check(build: Callable[[dict[str, float]], Value], values: Mapping[str, float],
                h: float = 1e-6) -> list[dict]:
    """For each named input of the graph that build(values) makes: backward()'s gradient,
    the slopes from nudging that input by h (forward and central differences), their relative
    error, whether a kink (relu, abs) lies within the step, and a verdict in CS231n's bands:
    below 1e-7 right; below 1e-4 right near a kink; above 1e-2 wrong; between, suspect (where
    a kink lies within the step, the differences cannot tell). Where a nudge leaves the
    function's domain (sqrt at 0) or a value is not finite, the verdict says that instead."""
    root = build(dict(values))
    root.backward()
    leaves = {v.label: v for v in _topological_order(root) if v.label in values}
    rows = []
    for name, leaf in leaves.items():
        at = {step: _nudged(build, {**values, name: values[name] + step}) for step in (-h, h)}
        low, high = (r.data if r is not None else math.nan for r in at.values())
        forward, central = (high - root.data) / h, (high - low) / (2 * h)
        scale = max(abs(leaf.grad), abs(central))
        error = abs(leaf.grad - central) / scale if scale else 0.0
        kink = None not in at.values() and _kink_sides(at[-h]) != _kink_sides(at[h])
        outside = [f"{name} {sign} h" for sign, step in (("-", -h), ("+", h)) if at[step] is None]
        if outside:
            verdict = f"cannot tell: {' and '.join(outside)} is outside the function's domain"
        elif not all(map(math.isfinite, (root.data, low, high, leaf.grad))):
            verdict = "cannot tell: a value is not finite"
        elif error < 1e-7:
            verdict = "right"
        elif kink:  # the slope jumps inside the step: the differences, not backward(), err
            verdict = "right near a kink" if error < 1e-4 else "cannot tell: a kink"
        else:
            verdict = "suspect" if error <= 1e-2 else "WRONG"
        rows.append({"name": name, "grad": leaf.grad, "forward": forward, "central": central,
                     "error": error, "kink": kink, "verdict": verdict})
    return rows


def format_check(rows: list[dict]) -> str:
    if not rows:
        return "no named input to check"
    width = max(len(r["name"]) for r in rows)
    lines = [f"{'input':<{width}}  {'backward()':>12}  {'forward diff':>12}  "
             f"{'central diff':>12}  {'rel. error':>10}  verdict"]
    for r in rows:
        lines.append(f"{r['name']:<{width}}  {r['grad']:>12.8g}  {r['forward']:>12.8g}  "
                     f"{r['central']:>12.8g}  {r['error']:>10.2e}  {r['verdict']}"
                     + ("  (a kink within the step)" if r["kink"] else ""))
    return "\n".join(lines)


def _typed_answers() -> Iterator[str]:
    """Lines typed in answer, through input() (a box under the cell in a notebook), until
    the input ends."""
    while True:
        try:
            yield input()
        except (EOFError, NotImplementedError):  # the end, or a frontend that takes no input
            return


def quiz(root: Value, answers: Iterator[str] | None = None,
         say: Callable[[str], None] = print) -> dict[Value, bool]:
    """Ask for each gradient of root's graph from the root down, reading one answer a line
    (typed, unless `answers` is given); mark each right (within 1e-3, relative
    or absolute) or wrong, with a hint and the answer after a wrong one; end with
    'score K/N'. backward() is run first; returns each node asked and whether it was right."""
    _check_root(root)
    root.backward()
    order = _topological_order(root)[::-1]
    names = _short_names(order)
    parents: dict[Value, list[tuple[Value, float]]] = {v: [] for v in order}
    for v in order:
        for child, local in zip(v._children, v._local_grads or ()):
            parents[child].append((v, local))
    answers = answers if answers is not None else _typed_answers()
    top, marks = names[root], {}
    say(f"d{top}/d{top} = 1 (the root). Give each gradient, one a line:")
    for v in order[1:]:
        question = f"d{top}/d{names[v]}"
        say(f"{question} = ?")
        text = next(answers, "").strip()
        try:
            right = abs(float(text) - v.grad) <= 1e-3 * max(1.0, abs(v.grad))
        except ValueError:
            right = False
        marks[v] = right
        if right:
            say(f"right: {question} = {_digits(v.grad)}")
            continue
        terms = [f"d{top}/d{names[p]} * d({_rule(p, names)})/d{names[v]} = "
                 f"{_digits(p.grad)} * {_digits(local)}" for p, local in parents[v]]
        say(f"wrong ({text or 'no answer'}): hint: {' + '.join(terms) or 'its own code'}; "
            f"the answer is {_digits(v.grad)}")
    say(f"score {sum(marks.values())}/{len(marks)}")
    return marks


class Steps(list):
    """step_through()'s lines; a notebook shows its GIF, when one was made, else its lines."""

    animation: bytes | None = None

    def _repr_html_(self) -> str | None:
        return _gif_html(self.animation) if self.animation else None

    def _repr_pretty_(self, printer: object, cycle: bool) -> None:
        printer.text("\n".join(self))


def _too_many_steps(values: int, limit: int) -> str:
    return (f"the graph has {values} values, more than {limit}: its frames would take "
            "minutes and gigabytes; step through a smaller expression (the steps print for "
            "any size without a file)")


# step_through() draws two frames per op, each of the whole graph: here an expression of 36
# values takes 12 s and 0.7 GB for its 58 frames, one of 56 values 37 s and 2 GB for 90
STEPS_LIMIT = 40


def step_through(root: Value, path: str | None = None, rankdir: str = "LR",
                 say: Callable[[str], None] = print, max_nodes: int = STEPS_LIMIT) -> Steps:
    """Backpropagation played step by step over the drawn graph: the forward pass, an op at a
    time, each edge carrying its value; then an op at a time from the root down, the op
    marked, each of its incoming edges labelled with the op's local derivative and upstream
    x local, each child's gradient shown as its running sum ('3 + -6 = -3' for a value used
    twice). say() is told each step in a line; path, if given, gets the frames: a GIF, or a
    folder of numbered PNGs, for a graph of at most max_nodes values. Returns the lines."""
    order = _topological_order(root)
    if path is not None and len(order) > max_nodes:
        raise ValueError(_too_many_steps(len(order), max_nodes))
    if path is not None and os.path.splitext(path.rstrip("/" + os.sep))[1].lower() not in (
            "", ".gif"):
        raise ValueError(f"{path!r}: step_through writes a GIF (end the name in .gif) or a "
                         "folder of PNGs (a name without an extension)")
    if any(v._children and v._local_grads is None for v in order):
        raise ValueError("step_through() plays local gradients: a node made with a _backward "
                         "of its own has none to show")
    names = _short_names(order[::-1])
    top, ops = names[root], [v for v in order if v._children]
    frames, lines, got = [], [], {root: [1.0]}  # got: each value's contributions so far

    def box(v: Value, known: set, grads: bool) -> str:
        data = _digits(v.data) if v in known else "?"
        parts = got.get(v, []) if grads else []
        grad = "?" if not parts else _digits(parts[0]) if len(parts) == 1 else (
            " + ".join(map(_digits, parts)) + f" = {_digits(sum(parts))}")
        return f"{names[v]} | data {data} | grad {grad}"

    known = {v for v in order if not v._children}
    for v in ops:  # forward: each op's value from its children's
        known.add(v)
        lines.append(f"forward: {names[v]} = {_rule(v, names)} = {_digits(v.data)}")
        frames.append(({u: box(u, known, False) for u in order}, v,
                       [(c, _digits(c.data)) for c in dict.fromkeys(v._children)]))
    for v in reversed(ops):  # backward: from the root down, the chain rule at each op
        upstream, notes, parts = sum(got[v]), [], []
        for c, local in zip(v._children, v._local_grads):
            got.setdefault(c, []).append(upstream * local)
            notes.append((c, f"local {_digits(local)}\n{_digits(upstream)} x {_digits(local)}"
                             f" = {_digits(upstream * local)}"))
            parts.append(f"d{top}/d{names[c]} += {_digits(upstream)} * {_digits(local)} = "
                         f"{_digits(upstream * local)}")
        lines.append(f"backward: {names[v]} = {_rule(v, names)}: {'; '.join(parts)}")
        frames.append(({u: box(u, known, True) for u in order}, v, notes))
    for line in lines:
        say(line)
    steps = Steps(lines)
    if path is not None:
        steps.animation = _write_frames(root, frames, path, rankdir)
    return steps


def _write_frames(root: Value, frames: list, path: str, rankdir: str) -> bytes | None:
    """The frames of step_through() drawn on one layout, sized for the widest text each box
    and each note gets, into a GIF or a folder of PNGs."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image  # Pillow comes with matplotlib

    widest: dict = {}
    for texts, _, _ in frames:
        for v, text in texts.items():
            widest[v] = max(widest.get(v, ""), text, key=len)
    ops = {("op", v): v._op for _, v, _ in frames}
    note_width = max(len(line) for _, _, notes in frames for _, note in notes
                     for line in note.split("\n")) * _CHAR_WIDTH
    layout = _layout(root, rankdir, text={**widest, **ops}, rank_gap=note_width + 24.0)
    pos, size = layout[0], layout[3]
    along = 0 if rankdir == "LR" else 1
    gif = path.lower().endswith(".gif")
    if not gif:
        os.makedirs(path, exist_ok=True)
    images = []  # a GIF's frames, quantized as they come (a third of the memory of RGB)
    for k, (texts, op, notes) in enumerate(frames, 1):
        merged: dict[Value, list[str]] = {}  # a + a: both notes by the one edge
        for child, note in notes:
            merged.setdefault(child, []).append(note)
        placed = []
        for child, parts in merged.items():  # in the gap after the child, by its edge
            note = "\n".join(parts)
            start, end = _port(pos[child], size[child], along, +1), pos[("op", op)]
            lines = note.count("\n") + 1
            if along == 0:  # on the edge's outer side: above it if it falls to the op
                side = 1.0 if end[1] <= start[1] else -1.0
                x = start[0] + note_width / 2 + 12.0
                y = start[1] + side * (lines * _LINE_PITCH / 2 + 4.0)
            else:  # beside the edge, toward the outside
                side = 1.0 if end[0] <= start[0] else -1.0
                x = start[0] + side * (note_width / 2 + 8.0)
                y = start[1] - lines * _LINE_PITCH / 2 - 8.0
            placed.append(((x, y), note))
        fig, _, _ = _paint(layout, rankdir, lambda v: _RESULT_FILL,
                           text={**texts, **ops}, marked={("op", op)}, notes=placed)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        image = Image.frombuffer("RGBA", canvas.get_width_height(),
                                 canvas.buffer_rgba()).convert("RGB")
        if gif:
            images.append(image.quantize(method=Image.Quantize.FASTOCTREE))
        else:  # each PNG written as it is drawn
            with _replacing(os.path.join(path, f"step_{k:02d}.png")) as f:
                image.save(f, format="PNG")
    return _write_gif(path, images, 1500) if gif else None


def descend(text: str, start: tuple[float, float], optimizers: Sequence[tuple[str, float]],
            steps: int = 500) -> dict[str, list[tuple[float, float, float]]]:
    """Each optimizer's path down f(x, y), the expression `text`, from `start`: a list of
    (x, y, f) from the start and after each step, optimizers given as (name, lr) pairs from
    OPTIMIZERS, each stepping as its class does. A path stops where f turns non-finite or
    a step leaves its domain (f is nan there)."""
    build = compile_expression(text, ("x", "y"))
    at_start = build({"x": Value(start[0]), "y": Value(start[1])}).data
    if not math.isfinite(at_start):
        raise ExpressionError(f"{text!r} is {at_start} at x={start[0]:g}, y={start[1]:g}: "
                              "there is no slope to descend from")
    paths = {}
    for name, lr in optimizers:
        if name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
        x, y = Value(start[0], "x"), Value(start[1], "y")
        opt = OPTIMIZERS[name]([x, y], lr=lr)
        path = []
        for _ in range(steps + 1):
            try:
                value = build({"x": x, "y": y})
            except ExpressionError:  # a step left the domain of f (a log of a negative)
                if not path:
                    raise  # the start itself
                path.append((x.data, y.data, math.nan))
                break
            path.append((x.data, y.data, value.data))
            if len(path) > steps or not all(map(math.isfinite, path[-1])):
                break
            opt.zero_grad()
            value.backward()
            opt.step()
        paths[f"{name} (lr {lr:g})"] = path
    return paths


def plot_paths(text: str, paths: dict, path: str | None = None, show: bool = False) -> Figure:
    """The contours of f(x, y) around the paths that descend() found, and each path on them,
    from its start (a circle) to its end (a cross)."""
    import numpy as np

    build = compile_expression(text, ("x", "y"))
    points = [(x, y) for p in paths.values() for x, y, f in p if math.isfinite(f)]
    if not points:
        raise ValueError("no path has a point where f is finite: there is nothing to draw")
    xs, ys = [x for x, _ in points], [y for _, y in points]
    pad_x, pad_y = (max(xs) - min(xs)) * 0.15 or 1.0, (max(ys) - min(ys)) * 0.15 or 1.0
    gx = _linspace(min(xs) - pad_x, max(xs) + pad_x, 120)
    gy = _linspace(min(ys) - pad_y, max(ys) + pad_y, 120)
    with no_grad():
        grid = np.array([[_value_or_nan(build, a, b) for a in gx] for b in gy])
    fig = _figure(540, 432)
    ax = fig.add_subplot()
    finite = grid[np.isfinite(grid)]
    levels = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, 30))) if finite.size else []
    if len(levels) > 1:  # quantiles: as many lines near the bottom of a valley as on its walls
        ax.contour(gx, gy, grid, levels=levels, cmap="viridis", linewidths=0.7, alpha=0.8)
    for k, (label, p) in enumerate(paths.items()):
        colour = _CLASS_COLOURS[k % 10]
        ax.plot([q[0] for q in p], [q[1] for q in p], color=colour, linewidth=1.4,
                marker=".", markersize=3, label=f"{label}: f = {_digits(p[-1][2])}")
        ax.plot(*p[0][:2], "o", color=colour, markersize=7)
        ax.plot(*p[-1][:2], "x", color=colour, markersize=9, markeredgewidth=2)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"f(x, y) = {text}, {_plural(max(map(len, paths.values())) - 1, 'step')}",
                 fontsize="medium")
    ax.legend(loc="best", fontsize="small", framealpha=0.9)
    fig.tight_layout()
    return _finish(fig, path, show)


def _value_or_nan(build: Callable, x: float, y: float) -> float:
    try:
        return build({"x": Value(x), "y": Value(y)}).data
    except ExpressionError:  # outside the function's domain (a log of a negative, say)
        return math.nan


class HealthRecorder:
    """What a training run's health report needs, recorded as train() runs (pass its step and
    epoch methods as on_step and on_epoch): each layer's update-to-data ratio at each step
    (the spread of the step's changes over the spread of the parameters), its dead and
    saturated units after each epoch, and the first parameter that turned nan or inf."""

    def __init__(self, model: MLP, X: Sequence[Sequence[float]]) -> None:
        self.model, self.X = model, [list(x) for x in X]
        unit_health(model, self.X[:1])  # an MLP, and samples it takes: checked now
        self.before = [[p.data for p in layer.parameters()] for layer in model.layers]
        self.ratios: list[list[float]] = [[] for _ in model.layers]
        self.counts: list[list[tuple[int, int]]] = []  # per epoch: (dead, saturated) a layer
        self.first_bad: tuple[str, float, int] | None = None

    def step(self, step: int, model: MLP) -> None:
        for k, layer in enumerate(model.layers):
            now = [p.data for p in layer.parameters()]
            if self.first_bad is None:
                bad = next((p for p in layer.parameters() if not math.isfinite(p.data)), None)
                if bad is not None:
                    self.first_bad = (bad.label, bad.data, step)
            if all(map(math.isfinite, now)):
                spread = statistics.pstdev(now) or 1e-300
                change = [a - b for a, b in zip(now, self.before[k])]
                self.ratios[k].append(statistics.pstdev(change) / spread)
            self.before[k] = now

    def epoch(self, epoch: int, model: MLP, history: History) -> None:
        marks = unit_health(model, self.X)
        self.counts.append([(row.count("dead"), row.count("saturated")) for row in marks])


def _layer_signals(model: MLP, X: Sequence, y: Sequence, loss: str | Callable
                   ) -> tuple[list[list[float]], list[list[float]]]:
    """Each layer's outputs on X and their gradients from the mean loss: [layer][value]."""
    acts: list[list[Value]] = [[] for _ in model.layers]
    outputs = []
    for x in X:
        h = _inputs(x, model.nin, "MLP")
        for k, layer in enumerate(model.layers):
            h = tuple(layer._forward(h))
            acts[k] += h
        outputs.append(h[0] if len(h) == 1 else list(h))
    _loss_function(loss)(outputs, list(y)).backward()
    return [[v.data for v in a] for a in acts], [[v.grad for v in a] for a in acts]


def health_verdicts(model: MLP, recorder: HealthRecorder, grads: list[list[float]]
                    ) -> list[str]:
    """What the record says, in plain words, with what to change."""
    verdicts = []
    if recorder.first_bad is not None:
        name, value, step = recorder.first_bad
        verdicts.append(f"{name} turned {value} at step {step}: lower the learning rate")
    last = recorder.counts[-1] if recorder.counts else []
    for k, (layer, (dead, saturated)) in enumerate(zip(model.layers, last), 1):
        units = len(layer.neurons)
        if saturated and saturated >= units / 4:
            verdicts.append(f"layer {k}: {round(100 * saturated / units)}% of "
                            f"{layer.activation} units saturated: use smaller initial weights "
                            "(--init-scale) or relu")
        if dead and dead >= units / 4:
            verdicts.append(f"layer {k}: {round(100 * dead / units)}% of relu units dead: use "
                            "a lower learning rate, smaller initial weights (--init-scale) or "
                            "leaky_relu")
    for k, ratios in enumerate(recorder.ratios, 1):
        if ratios:
            recent = statistics.median(ratios[-10:])
            if recent > 1e-2:
                verdicts.append(f"update/data ratio {recent:.0e} in layer {k}: lower the "
                                "learning rate (near 1e-3 is healthy)")
            elif recent < 1e-5:
                verdicts.append(f"update/data ratio {recent:.0e} in layer {k}: raise the "
                                "learning rate (near 1e-3 is healthy)")
    spreads = [statistics.pstdev(g) if all(map(math.isfinite, g)) else math.nan
               for g in grads]
    if len(spreads) > 1 and spreads[-1] > 0 and spreads[0] < 1e-3 * spreads[-1]:
        verdicts.append(f"layer 1's gradients are {spreads[0] / spreads[-1]:.0e} times the "
                        "last layer's: they vanish on the way back; use smaller initial "
                        "weights (--init-scale) or relu")
    return verdicts or ["no problem found: no layer dead or saturated, update/data ratios "
                        "between 1e-5 and 1e-2, gradients reach the first layer"]


def plot_health(model: MLP, recorder: HealthRecorder, acts: list[list[float]],
                grads: list[list[float]], path: str | None = None,
                show: bool = False) -> Figure:
    """A layer a row: histograms of its outputs and of their gradients; then the update-to-
    data ratio of each layer at each step on a log scale, with the 1e-3 line, and each
    layer's dead and saturated units after each epoch."""
    rows = len(model.layers) + 1
    fig = _figure(720, 150 * rows + 30)
    panels = fig.subplots(rows, 2, squeeze=False)
    for k, (layer, a, g) in enumerate(zip(model.layers, acts, grads)):
        for ax, values, what in ((panels[k][0], a, "outputs"), (panels[k][1], g, "gradients")):
            finite = [v for v in values if math.isfinite(v)]
            ax.hist(finite, bins=40, color=_CLASS_COLOURS[k % 10])
            ax.set_title(f"layer {k + 1} ({layer.activation}): {what}", fontsize="small")
            ax.tick_params(labelsize="x-small")
    ratio_ax, count_ax = panels[-1]
    for k, ratios in enumerate(recorder.ratios):
        if ratios:
            ratio_ax.plot(range(1, len(ratios) + 1), ratios, color=_CLASS_COLOURS[k % 10],
                          label=f"layer {k + 1}")
    ratio_ax.axhline(1e-3, color="black", linestyle="--", linewidth=1, label="1e-3")
    if any(r > 0 for ratios in recorder.ratios for r in ratios):
        ratio_ax.set_yscale("log")
    ratio_ax.set_title("update / data ratio per step", fontsize="small")
    ratio_ax.set_xlabel("step", fontsize="small")
    ratio_ax.legend(fontsize="x-small")
    epochs = range(1, len(recorder.counts) + 1)
    for k in range(len(model.layers)):
        colour = _CLASS_COLOURS[k % 10]
        count_ax.plot(epochs, [c[k][0] for c in recorder.counts], color=colour,
                      label=f"layer {k + 1} dead")
        count_ax.plot(epochs, [c[k][1] for c in recorder.counts], color=colour,
                      linestyle="--", label=f"layer {k + 1} saturated")
    count_ax.set_title("dead and saturated units", fontsize="small")
    _epoch_axis(count_ax)
    count_ax.legend(fontsize="x-small", ncol=2)
    fig.tight_layout()
    return _finish(fig, path, show)


# ---------------------------------------------------------------------------------------------
# Benchmark: how close the engine comes to plain Python floats
# ---------------------------------------------------------------------------------------------
# Ways to take one full-batch SGD step on the moons demo (100 samples, MLP 2-16-16-1, relu
# hidden layers, linear output, hinge loss + 1e-4 * sum of squared parameters):
#   W0  the floor: forward and backward written by hand with floats and lists, no autograd;
#   W1  this file's MLP (one fused node per neuron), losses and SGD;
#   W2  the same network built from binary + and * only, to show the engine's cost per node;
#   U   W1's step as a user writes it in a notebook: Python's collector on, as it is there;
#   R2  W2's graph through the published closure design of micrograd (below), node for node.
# W0, W1 and W2 run with the collector paused, as train() runs them; W0, U, W2 and R2 run with
# it on, in a bare process and again beside a notebook-sized heap of live objects.

BENCH_LR, BENCH_REG = 0.1, 1e-4
NOTEBOOK_OBJECTS = 200_000


class _LectureValue(Value):
    """R2's ops, written as the lecture writes them: each node made as Value(data, children,
    op) with a _backward closure that passes its gradient on; backward() is this file's,
    which calls each node's closure. A closure refers to the node that holds it, so every
    graph is a web of reference cycles that only the collector can free."""

    __slots__ = ()

    def __add__(self, other: Value | float) -> Value:
        other = other if isinstance(other, Value) else _LectureValue(other)
        out = _LectureValue(self.data + other.data, (self, other), "+")

        def _backward() -> None:
            self.grad += out.grad
            other.grad += out.grad
        out._backward = _backward
        return out

    def __mul__(self, other: Value | float) -> Value:
        other = other if isinstance(other, Value) else _LectureValue(other)
        out = _LectureValue(self.data * other.data, (self, other), "*")

        def _backward() -> None:
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._backward = _backward
        return out

    def relu(self) -> Value:
        out = _LectureValue(self.data if self.data > 0 else 0.0, (self,), "relu")

        def _backward() -> None:
            self.grad += (out.data > 0) * out.grad
        out._backward = _backward
        return out

    __radd__, __rmul__ = __add__, __mul__


def _bench_setup(seed: int, samples: int = 100) -> tuple[MLP, list, list[float]]:
    X, y = make_moons(samples, noise=0.1, seed=seed)
    model = MLP(2, [16, 16, 1], activation="relu", output_activation="linear", seed=seed)
    return model, X, [2.0 * t - 1.0 for t in y]


def _w0_step(layers: list, X: list, labels: list[float]) -> float:
    """One step by hand. layers holds (weights, biases) as lists of floats, updated in place;
    every gradient is computed densely, zeros included."""
    n = len(X)
    grads = [([[0.0] * len(row) for row in W], [0.0] * len(b)) for W, b in layers]
    total = 0.0
    for x, t in zip(X, labels):
        acts, pre = [x], []  # each layer's input, and its pre-activations
        for i, (W, b) in enumerate(layers):
            z = [sum(w * a for w, a in zip(row, acts[-1])) + bi for row, bi in zip(W, b)]
            pre.append(z)
            acts.append(z if i == len(layers) - 1 else [zi if zi > 0 else 0.0 for zi in z])
        margin = 1.0 - t * acts[-1][0]
        total += margin if margin > 0 else 0.0
        delta = [(-t if margin > 0 else 0.0) / n]  # d loss / d output
        for i in range(len(layers) - 1, -1, -1):
            W, _ = layers[i]
            gW, gb = grads[i]
            for j, d in enumerate(delta):
                row = gW[j]
                for k, a in enumerate(acts[i]):
                    row[k] += d * a
                gb[j] += d
            if i:
                back = [sum(W[j][k] * d for j, d in enumerate(delta)) for k in range(len(W[0]))]
                delta = [g if z > 0 else 0.0 for g, z in zip(back, pre[i - 1])]
    squares = 0.0
    for (W, b), (gW, gb) in zip(layers, grads):
        for row, grow in zip(W + [b], gW + [gb]):
            for k, w in enumerate(row):
                squares += w * w
                grow[k] += 2.0 * BENCH_REG * w
                row[k] = w - BENCH_LR * grow[k]
    return total / n + BENCH_REG * squares


def _w1_loss(model: MLP, X: list, labels: list[float]) -> Value:
    params = model.parameters()
    return hinge_loss([model(x) for x in X], labels) + BENCH_REG * Value.dot(params, params)


def _binary_op_loss(layers: list, X: list, labels: list[float],
                    reg: float = BENCH_REG) -> object:
    """W2's loss from + and * alone, for any value class: layers holds (weights, biases)."""
    scores = []
    for x in X:
        for i, (W, b) in enumerate(layers):
            sums = [sum(w * xi for w, xi in zip(row, x)) + bias for row, bias in zip(W, b)]
            x = sums if i == len(layers) - 1 else [act.relu() for act in sums]
        scores.append(x[0])
    data_loss = sum((1 + -t * s).relu() for s, t in zip(scores, labels)) * (1.0 / len(X))
    return (data_loss + reg * sum(p * p for p in _layer_params(layers))) if reg else data_loss


def _layer_params(layers: list) -> list:
    """The parameters of (weights, biases) layers, in the model's order."""
    return [p for W, b in layers for p in (*(w for row in W for w in row), *b)]


def _value_layers(model: MLP, make: Callable = lambda v: v) -> list:
    """The model's (weights, biases) per layer, each parameter passed through make."""
    return [([[make(w) for w in n.w] for n in layer.neurons], [make(n.b) for n in layer.neurons])
            for layer in model.layers]


def _w2_loss(model: MLP, X: list, labels: list[float]) -> Value:
    return _binary_op_loss(_value_layers(model), X, labels)


def _graph_step(loss_of: Callable, model: MLP, X: list, labels: list[float],
                opt: SGD) -> float:
    loss = loss_of(model, X, labels)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.data  # the graph is freed on return: that is part of the step


def _closure_step(layers: list, X: list, labels: list[float]) -> float:
    """W2's step through the closure design, updated as the original demo does."""
    loss = _binary_op_loss(layers, X, labels)
    params = _layer_params(layers)
    for p in params:
        p.grad = 0.0
    loss.backward()
    for p in params:
        p.data -= BENCH_LR * p.grad
    return loss.data


def _bytes_per_node(loss_of: Callable, model: MLP, X: list,
                    labels: list[float]) -> tuple[float, float]:
    """Memory that one step's graph holds per node: as the forward pass built it, and after
    backward() has given every node a gradient of its own (24 more bytes: one float)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        loss = loss_of(model, X, labels)
        built = tracemalloc.get_traced_memory()[0] - before
        loss.backward()
        with_grads = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    nodes = len(_topological_order(loss))
    return built / nodes, with_grads / nodes


def _round_robin(steps: dict[str, Callable[[], float]], rounds: int) -> dict[str, dict]:
    """Run one step of each workload in turn, so that a slow spell of the machine weighs on
    all alike; the first round only warms up. Returns each one's median and losses."""
    times = {name: [] for name in steps}
    losses = {name: [] for name in steps}
    for _ in range(rounds + 1):
        for name, step in steps.items():
            start = time.perf_counter()
            losses[name].append(step())
            times[name].append(time.perf_counter() - start)
    return {name: {"ms_per_step": 1000 * statistics.median(times[name][1:]),
                   "losses": losses[name]} for name in steps}


def _collector_on_rows(seed: int, samples: int, steps: int, graph_steps: int,
                       say: Callable[[str], None], where: str) -> dict[str, dict]:
    """W0 and U round robin, then W2 and R2 each in a block of its own (R2's garbage is
    freed only by the collector: mixed in, it would slow the others down), collector on."""
    model0, X, labels = _bench_setup(seed, samples)
    floor = _value_layers(model0, attrgetter("data"))
    user, binary = _bench_setup(seed)[0], _bench_setup(seed)[0]
    user_opt, binary_opt = SGD(user.parameters(), lr=BENCH_LR), SGD(binary.parameters(),
                                                                    lr=BENCH_LR)
    closure = _value_layers(_bench_setup(seed)[0], lambda v: _LectureValue(v.data))
    gc.collect()
    say(f"W0 and U, collector on, {where}...")
    rows = _round_robin({"W0": lambda: _w0_step(floor, X, labels),
                         "U": lambda: _graph_step(_w1_loss, user, X, labels, user_opt)}, steps)
    gc.collect()
    say(f"W2, collector on, {where}...")
    rows |= _round_robin({"W2": lambda: _graph_step(_w2_loss, binary, X, labels, binary_opt)},
                         graph_steps)
    gc.collect()
    say(f"R2, collector on, {where}...")
    rows |= _round_robin({"R2": lambda: _closure_step(closure, X, labels)}, graph_steps)
    gc.collect()
    return rows


def _notebook_heap() -> tuple[list, str]:
    """About NOTEBOOK_OBJECTS live objects that the collector tracks, aged into its oldest
    generation as a notebook's are, and matplotlib.pyplot imported where it is installed."""
    heap = [[i, (i,)] for i in range(NOTEBOOK_OBJECTS // 2)]  # a list and a tuple each
    try:
        import matplotlib.pyplot  # noqa: F401
        what = f"{NOTEBOOK_OBJECTS:,} objects and matplotlib.pyplot"
    except ImportError:
        what = f"{NOTEBOOK_OBJECTS:,} objects (matplotlib is not installed)"
    gc.collect()
    return heap, what


def bench(steps: int = 20, seed: int = 0, chain: int = 1_000_000, notebook: bool = True,
          samples: int = 100, say: Callable[[str], None] = lambda line: None) -> dict:
    """Time W0, W1 and W2 with the collector paused over `steps` steps each, then W0, U, W2
    and R2 with it on (W2 and R2 over a quarter as many steps), in a bare process and, if
    `notebook`, beside a notebook-sized heap; a backward through a chain of `chain` ops
    (0 skips it). `samples` sets the size of the moons set; say(line) is told as each
    workload starts. Return the figures as a dict."""
    graph_steps = max(1, steps // 4)
    # the bare process first, before the big graphs of W2 have grown the allocator's arenas
    heaps = {"bare process": _collector_on_rows(seed, samples, steps, graph_steps, say,
                                                "bare process")}
    model0, X, labels = _bench_setup(seed, samples)
    floor = _value_layers(model0, attrgetter("data"))
    models = {name: _bench_setup(seed)[0] for name in ("W1", "W2")}
    opts = {name: SGD(model.parameters(), lr=BENCH_LR) for name, model in models.items()}
    say("W0, W1 and W2, collector paused...")
    with _gc_paused:
        rows = _round_robin({
            "W0": lambda: _w0_step(floor, X, labels),
            "W1": lambda: _graph_step(_w1_loss, models["W1"], X, labels, opts["W1"]),
            "W2": lambda: _graph_step(_w2_loss, models["W2"], X, labels, opts["W2"])}, steps)
        for name, loss_of in (("W1", _w1_loss), ("W2", _w2_loss)):
            row = rows[name]
            row["nodes_per_step"] = len(_topological_order(loss_of(models[name], X, labels)))
            row["nodes_per_second"] = row["nodes_per_step"] / row["ms_per_step"] * 1000
            row["bytes_per_node"], row["bytes_per_node_with_grads"] = _bytes_per_node(
                loss_of, models[name], X, labels)
    notebook_what = None
    if notebook:
        heap, notebook_what = _notebook_heap()
        heaps["notebook heap"] = _collector_on_rows(seed, samples, steps, graph_steps, say,
                                                    "beside a notebook's heap")
        del heap
    for table in (rows, *heaps.values()):
        for row in table.values():
            row["ratio_to_w0"] = row["ms_per_step"] / table["W0"]["ms_per_step"]
    for table in heaps.values():
        table["R2"]["ratio_to_w2"] = table["R2"]["ms_per_step"] / table["W2"]["ms_per_step"]
    all_losses = [row["losses"] for table in (rows, *heaps.values()) for row in table.values()]
    agree = all(math.isclose(a, b, rel_tol=1e-9)
                for losses in all_losses for a, b in zip(rows["W0"]["losses"], losses))
    result = {"steps": steps, "graph_steps": graph_steps, "samples": samples,
              "python": sys.version.split()[0], "platform": sys.platform,
              "cpus": os.cpu_count(), "workloads": rows,
              "collector_on": heaps, "notebook_heap": notebook_what, "losses_agree": agree}
    if chain:
        say(f"backward through a chain of {chain:,} ops...")
        result["chain"] = {"ops": chain, "backward_seconds": _chain_backward_seconds(chain)}
    return result


def _chain_backward_seconds(ops: int) -> float:
    with _gc_paused:
        x = v = Value(1.0)
        for _ in range(ops):
            v = v * 1.0
        start = time.perf_counter()
        v.backward()
        seconds = time.perf_counter() - start
        assert x.grad == 1.0
    return seconds


BENCH_NAMES = {"W0": "W0 floor: floats by hand", "W1": "W1 MLP: a node per neuron",
               "W2": "W2 binary + and * only", "U": "U  the user's own loop",
               "R2": "R2 W2 by closures"}


def format_bench(result: dict) -> str:
    """The bench figures as tables; their layout stays stable so runs can be compared."""
    lines = [f"micrograd.py bench: median of {result['steps']} steps ({result['graph_steps']} "
             f"for W2 and R2 with the collector on), Python {result['python']} on "
             f"{result['platform']}, {result['cpus']} cpus",
             f"{'workload':<26}{'ms/step':>9}{'nodes/step':>12}{'nodes/s':>11}"
             f"{'bytes/node':>12}{'first loss':>13}{'x W0':>7}",
             "collector paused (as in train()):"]
    for name, row in result["workloads"].items():
        nodes = row.get("nodes_per_step")
        lines.append(
            f"{BENCH_NAMES[name]:<26}{row['ms_per_step']:>9.2f}"
            + (f"{nodes:>12,}{row['nodes_per_second']:>11,.0f}{row['bytes_per_node']:>12.1f}"
               if nodes else f"{'-':>12}{'-':>11}{'-':>12}")
            + f"{row['losses'][0]:>13.8f}{row['ratio_to_w0']:>7.2f}")
    for heap, table in result["collector_on"].items():
        where = f"beside {result['notebook_heap']}" if heap == "notebook heap" else heap
        lines.append(f"collector on, {where}:")
        for name, row in table.items():
            lines.append(f"{BENCH_NAMES[name]:<26}{row['ms_per_step']:>9.2f}{'':>35}"
                         f"{row['losses'][0]:>13.8f}{row['ratio_to_w0']:>7.2f}"
                         + (f"  ({row['ratio_to_w2']:.1f} x W2)" if "ratio_to_w2" in row
                            else ""))
    lines.append("bytes/node: the graph as the forward pass builds it; after backward(): "
                 + ", ".join(f"{name} {row['bytes_per_node_with_grads']:.1f}"
                             for name, row in result["workloads"].items()
                             if "bytes_per_node_with_grads" in row))
    lines.append("losses of every workload agree with W0's to 1e-9 at every step: "
                 + ("yes" if result["losses_agree"] else "NO"))
    if "chain" in result:
        chain = result["chain"]
        lines.append(f"backward through a chain of {chain['ops']:,} ops: "
                     f"{chain['backward_seconds']:.2f} s")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

class CommandError(Exception):
    """A failed run: printed as one line, exit status 1."""


# What `train --dataset NAME` uses when a flag is not given.
TASKS = {
    "toy": {"loss": "mse", "hidden": [4, 4], "activation": "tanh", "epochs": 20, "optim": "sgd"},
    "xor": {"loss": "bce", "hidden": [8], "activation": "tanh", "epochs": 100, "optim": "adam"},
    "moons": {"loss": "hinge", "hidden": [16, 16], "activation": "relu", "epochs": 50,
              "optim": "adam"},
    "circles": {"loss": "hinge", "hidden": [16, 16], "activation": "relu", "epochs": 50,
                "optim": "adam"},
    "spiral": {"loss": "ce", "hidden": [16, 16], "activation": "relu", "epochs": 40,
               "optim": "adam"},
}


# Sizes past these would take more memory than the machine has; refused before any work.
MAX_SAMPLES = 100_000
MAX_BENCH_SAMPLES = 5_000  # W2's graph: 750 nodes a sample; R2's closures about 2 GB here
MAX_CHAIN = 10_000_000  # a node takes about 200 bytes
MAX_STEPS = 10_000


def _whole(text: str, low: int, high: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
    if high is not None and value > high:
        raise argparse.ArgumentTypeError(f"must be at most {high:,}, got {value:,}")
    return value


def _positive_int(text: str) -> int:
    return _whole(text, 1)


def _number(text: str, low: float, high: float = math.inf, open_high: bool = False,
            open_low: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    too_low = value <= low if open_low else value < low
    too_high = value >= high if open_high else value > high
    if not math.isfinite(value) or too_low or too_high:
        bounds = []
        if low != -math.inf:
            bounds.append(f"above {low:g}" if open_low else f"at least {low:g}")
        if high != math.inf:
            bounds.append(f"below {high:g}" if open_high else f"at most {high:g}")
        wanted = f"a finite number {' and '.join(bounds)}".rstrip()
        raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}")
    return value


def _positive_float(text: str) -> float:
    return _number(text, 0.0, open_low=True)


def _non_negative_float(text: str) -> float:
    return _number(text, 0.0)


def _fraction(text: str) -> float:
    return _number(text, 0.0, 1.0, open_high=True)


def _layer_sizes(text: str) -> list[int]:
    sizes = []
    for part in text.split(","):
        try:
            sizes.append(_positive_int(part.strip()))
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: give hidden layer sizes as positive whole numbers separated by "
                "commas, such as 16,16") from None
    return sizes


def _path(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("the file name is empty")
    if text.endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(f"{text!r} ends in a slash: name a file, not a folder")
    return text


def _gif_path(text: str) -> str:
    _path(text)
    if not text.lower().endswith(".gif"):
        raise argparse.ArgumentTypeError(f"{text!r}: an animation is written as a GIF: end "
                                         "the name in .gif")
    return text


def _image_path(text: str) -> str:
    _path(text)
    try:
        _image_format(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _steps_path(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("the name is empty")
    extension = os.path.splitext(text.rstrip("/" + os.sep))[1].lower()
    if extension not in ("", ".gif"):
        raise argparse.ArgumentTypeError(f"{text!r}: end the name in .gif, or name a folder "
                                         "for numbered PNGs")
    return text


def _point(text: str) -> tuple[float, float]:
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"{text!r}: give X,Y, such as -1.5,2")
    return _number(parts[0], -math.inf), _number(parts[1], -math.inf)


def _optimizer_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    for name in names:
        if name not in OPTIMIZERS:
            raise argparse.ArgumentTypeError(f"unknown optimizer {name!r}; choose from "
                                             f"{', '.join(OPTIMIZERS)}")
    return names


def _rates(text: str) -> list[float]:
    return [_positive_float(part) for part in text.split(",")]


def _int_or_float(text: str) -> int | float | None:
    """3 as an int, 0.5 or 1e-3 or inf as a float (a schedule checks its own ranges)."""
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(text)
    return None


def _schedule(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    if name not in SCHEDULERS:
        raise argparse.ArgumentTypeError(f"unknown schedule {name!r}; choose from "
                                         f"{', '.join(SCHEDULERS)}")
    options: dict = {}
    for part in filter(None, rest.split(",")):
        key, equals, value = part.partition("=")
        if not equals or not key.isidentifier():
            raise argparse.ArgumentTypeError(f"{part!r}: give the schedule's arguments as "
                                             "NAME=VALUE, such as step:step_size=10")
        numbers = [_int_or_float(v) for v in value.split("/")]
        if None in numbers:
            options[key] = value  # a word: mode=max, anneal_strategy=linear
        else:
            options[key] = numbers if key == "milestones" else numbers[0]
    return name, options


def _make_scheduler(args: argparse.Namespace, opt: Optimizer, epochs: int,
                    parser: argparse.ArgumentParser) -> LRScheduler | None:
    """The --schedule asked for, its arguments as given, the others fitted to the run."""
    if not args.schedule:
        return None
    name, options = args.schedule
    fitted = {"step": {"step_size": max(1, epochs // 3)},
              "multistep": {"milestones": [max(1, epochs // 2), max(1, 3 * epochs // 4)]},
              "exponential": {"gamma": 0.95}, "cosine": {"T_max": max(1, epochs)},
              "onecycle": {"max_lr": opt.lr, "total_steps": max(1, epochs),
                           "cycle_momentum": "momentum" in opt.defaults
                           or "betas" in opt.defaults}}.get(name, {})
    options = {**fitted, **options}
    if name == "onecycle" and isinstance(options.get("total_steps"), int) and \
            options["total_steps"] < epochs:
        parser.error(f"--schedule onecycle: total_steps {options['total_steps']} is fewer than "
                     f"the {_plural(epochs, 'epoch')} it steps through")
    try:
        return SCHEDULERS[name](opt, **options)
    except (TypeError, ValueError) as e:
        parser.error(f"--schedule {name}: {e}")


def _assignments(text: str) -> dict[str, float]:
    values = {}
    for part in text.split(","):
        name, equals, number = part.partition("=")
        name = name.strip()
        if not equals or not name.isidentifier():
            raise argparse.ArgumentTypeError(f"{part.strip()!r}: give NAME=NUMBER pairs "
                                             "separated by commas, such as x=2,w=-3")
        if name in values:
            raise argparse.ArgumentTypeError(f"{name} is given twice")
        values[name] = _number(number, -math.inf)
    return values


# what --compare may vary, each value read as the flag of that name reads it
def _one_of(names: Iterable[str]) -> Callable[[str], str]:
    names = list(names)

    def parse(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(names)}")
        return text
    return parse


COMPARABLE: dict[str, tuple[str, Callable[[str], object]]] = {  # flag -> (its dest, its type)
    "lr": ("lr", _positive_float), "optim": ("optim", _one_of(OPTIMIZERS)),
    "activation": ("activation", _one_of(a for a in ACTIVATIONS if a != "linear")),
    "hidden": ("hidden", lambda text: _layer_sizes(text.replace("x", ","))),
    "batch-size": ("batch_size", _positive_int)}


def _comparison(text: str) -> tuple[str, list[str]]:
    setting, equals, values = text.partition("=")
    if not equals or setting not in COMPARABLE or not values:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give SETTING=V1,V2,... with SETTING one of {', '.join(COMPARABLE)} "
            "(hidden sizes: 16x16 for two layers)")
    return setting, values.split(",")


def _dataset_defaults(parameter: str) -> str:
    """'moons 100, circles 100, spiral 150': a maker's default, for the help text."""
    return ", ".join(f"{name} {inspect.signature(maker).parameters[parameter].default}"
                     for name, maker in DATASETS.items()
                     if parameter in inspect.signature(maker).parameters)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="micrograd.py",
        description="A tiny, complete deep-learning engine: autograd on scalars, neural "
                    "networks, optimizers, training and drawing, in one file.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    expr = commands.add_parser(
        "expr", help="an expression's values, gradients and graph (yours, or the demo's)",
        description="Build an expression's graph (with none: the demo, L = (a*b + c) * f with "
                    "a=2, b=-3, c=10, f=-2), run backward, print every node's data and "
                    "gradient, and draw the graph. Drawing needs matplotlib only: graphviz is "
                    "not needed.")
    expr.add_argument("expression", nargs="?",
                      help="Python syntax over names, numbers, + - * / ** and the functions "
                           f"{', '.join(EXPRESSION_FUNCTIONS)}, such as 'tanh(x*w + b)'")
    expr.add_argument("--at", type=_assignments, metavar="NAME=V,...",
                      help="the value of each name, such as x=2,w=-3,b=6.88")
    expr.add_argument("--check", action="store_true",
                      help="check each input's gradient by nudging it: forward and central "
                           "differences, the relative error and a verdict")
    expr.add_argument("--steps", type=_steps_path, metavar="FILE.gif|FOLDER",
                      help="play backpropagation step by step: the frames as a GIF, or as "
                           "numbered PNGs in a folder; the steps printed a line each")
    expr.add_argument("--quiz", action="store_true",
                      help="ask for each gradient from the root down, one answer a line on "
                           "standard input; the drawing marks them right or wrong")
    expr.add_argument("--out", type=_image_path, default="graph.png", metavar="FILE",
                      help="where to save the graph (.png, .svg or .pdf; default graph.png)")
    expr.add_argument("--rankdir", choices=("LR", "TB"), default="LR",
                      help="draw left to right (LR, default) or top to bottom (TB)")
    expr.add_argument("--explain", action="store_true",
                      help="spell out the chain rule: each gradient as the products it came "
                           "from, with numbers")
    expr.add_argument("--color", choices=("grad",),
                      help="fill each box by its gradient: blue below zero, red above")
    expr.add_argument("--show", action="store_true", help="also open the graph in a window")
    expr.set_defaults(command_parser=expr)  # so that its errors show its own usage

    train_cmd = commands.add_parser(
        "train", help="train a network and watch the loss fall",
        description="Train an MLP on a small dataset. With no flags: the classic toy set "
                    "(4 samples, 3 inputs), MLP 3 -> 4 -> 4 -> 1 with tanh, squared error, "
                    "20 epochs of full-batch gradient descent. Defaults that say 'per "
                    "dataset' come from the task: " + "; ".join(
                        f"{name}: {t['loss']} loss, hidden {','.join(map(str, t['hidden']))}, "
                        f"{t['activation']}, {t['optim']}, {t['epochs']} epochs"
                        for name, t in TASKS.items()) + ".")
    add = train_cmd.add_argument
    add("--dataset", choices=list(DATASETS), help="the data (default toy)")
    add("--data", type=_path, metavar="FILE.csv",
        help="your own data: numbers separated by commas, an optional header, the label (a "
             "class: 0, 1, ... or -1 and 1) in the last column")
    add("--target", metavar="NAME", help="the label's column, by its name in the header")
    add("--export", type=_path, metavar="FILE.csv",
        help="write the data as CSV (a header, the label last) and stop")
    add("--epochs", type=lambda text: _whole(text, 0),
        help="passes over the data (default: per dataset; 0 with --load evaluates only)")
    add("--optim", choices=list(OPTIMIZERS), help="the optimizer (default: per dataset)")
    add("--lr", type=_positive_float,
        help="learning rate (default per optimizer: "
             + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")")
    add("--batch-size", type=_positive_int, help="samples per step (default: all of them)")
    add("--hidden", type=_layer_sizes, metavar="SIZES",
        help="hidden layer sizes, such as 16,16 (default: per dataset)")
    add("--activation", choices=[a for a in ACTIVATIONS if a != "linear"],
        help="activation of the hidden layers (default: per dataset)")
    add("--loss", choices=list(LOSSES), help="the loss (default: per dataset)")
    add("--schedule", type=_schedule, metavar="NAME[:ARG=V,...]",
        help="a learning-rate schedule, as torch.optim.lr_scheduler's: "
             + ", ".join(SCHEDULERS) + " (such as step:step_size=10,gamma=0.5, cosine, "
             "multistep:milestones=10/20, plateau:patience=3); stepped after each epoch")
    add("--weight-decay", type=_non_negative_float,
        help="weight decay (default: the optimizer's, 0.01 for adamw, 0 for the others)")
    add("--seed", type=int, default=0,
        help="seeds the data, the initial weights and the shuffling (default 0)")
    add("--samples", type=lambda text: _whole(text, 1, MAX_SAMPLES),
        help=f"samples to make, at most {MAX_SAMPLES:,} (default: "
             + _dataset_defaults("n") + ")")
    add("--noise", type=_non_negative_float,
        help="noise of the data (default: " + _dataset_defaults("noise") + ")")
    add("--val-split", type=_fraction, default=0.0, metavar="FRACTION",
        help="share of the samples held out for validation (default 0)")
    add("--plot", type=_image_path, metavar="FILE", help="save the training curves")
    add("--boundary", type=_image_path, metavar="FILE",
        help="save the decision boundary (datasets with 2 inputs)")
    add("--neurons", type=_image_path, metavar="FILE",
        help="save the network as TensorFlow Playground draws it: each unit's output over the "
             "input plane, weighted edges, dead and saturated units marked (2 inputs)")
    add("--diagnose", type=_image_path, metavar="FILE",
        help="save the run's health (each layer's outputs and gradients, update/data ratios, "
             "dead and saturated units) and print verdicts in plain words")
    add("--init-scale", type=_positive_float, metavar="S",
        help="multiply the initial weights by S (large: saturated units; small: vanishing "
             "gradients)")
    add("--graph", type=_image_path, metavar="FILE",
        help="save the graph of the loss of one sample through the trained model")
    add("--animate", type=_gif_path, metavar="FILE.gif",
        help="save the run as an animated GIF: the decision boundary and the loss, a frame "
             f"per epoch (at most about {MAX_FRAMES}; datasets with 2 inputs)")
    add("--save", type=_path, metavar="FILE", help="save the trained model as JSON")
    add("--load", type=_path, metavar="FILE", help="start from a model saved with --save")
    add("--quiet", action="store_true", help="print only the final summary")
    add("--compare", type=_comparison, metavar="SETTING=V1,V2,...",
        help="a run for each value of one setting (" + ", ".join(COMPARABLE) + "), from the "
             "same seed: a row each; --plot overlays the curves, --boundary puts the "
             "boundaries side by side")
    train_cmd.set_defaults(command_parser=train_cmd)

    predict_cmd = commands.add_parser(
        "predict", help="a saved model's score and class for each row of a CSV file",
        description="Load a model saved by train --save and print, or write as CSV, each "
                    "row's score (a score per class for cross entropy) and class. A file with "
                    "one column more than the model's inputs has labels: the accuracy is said.")
    predict_cmd.add_argument("--load", type=_path, required=True, metavar="MODEL.json",
                             help="the model")
    predict_cmd.add_argument("--data", type=_path, required=True, metavar="FILE.csv",
                             help="the rows to predict (numbers separated by commas)")
    predict_cmd.add_argument("--out", type=_path, metavar="FILE.csv",
                             help="write the predictions here as CSV instead of printing them")
    predict_cmd.set_defaults(command_parser=predict_cmd)

    descend_cmd = commands.add_parser(
        "descend", help="optimizers' paths down a function of x and y, side by side",
        description="Run each optimizer from the same start down f(x, y), an expression as "
                    "expr reads them, print where each ends, and draw the paths over the "
                    "function's contours.")
    descend_cmd.add_argument("expression", help="f(x, y), such as '(1-x)**2 + "
                                                "100*(y-x**2)**2' (Rosenbrock's)")
    descend_cmd.add_argument("--start", type=_point, default=(-1.5, 2.0), metavar="X,Y",
                             help="where every path starts (default -1.5,2)")
    descend_cmd.add_argument("--optim", type=_optimizer_names, default=["sgd", "adam"],
                             metavar="NAMES", help="optimizers, such as sgd,adam,rmsprop "
                                                   "(default sgd,adam)")
    descend_cmd.add_argument("--lr", type=_rates, metavar="RATES",
                             help="a learning rate for each optimizer, or one for all "
                                  "(default per optimizer: as train)")
    descend_cmd.add_argument("--steps", type=lambda text: _whole(text, 1, MAX_STEPS),
                             default=500, help="steps of each optimizer (default 500)")
    descend_cmd.add_argument("--out", type=_image_path, default="paths.png", metavar="FILE",
                             help="where to draw the paths (default paths.png)")
    descend_cmd.set_defaults(command_parser=descend_cmd)

    bench_cmd = commands.add_parser(
        "bench", help="speed and memory figures",
        description="Time one training step on moons several ways (W0: plain floats by "
                    "hand; W1: this file's MLP; W2: binary ops only; U: W1 as a user's own "
                    "loop; R2: W2 through closures, as the original micrograd builds it), "
                    "with Python's collector paused and on, in a bare process and beside a "
                    "notebook-sized heap, and a backward through a chain of 1,000,000 ops; "
                    "print milliseconds, nodes and bytes per node. It takes about a minute "
                    "at the defaults, a line on stderr as each workload starts.")
    bench_cmd.add_argument("--steps", type=lambda text: _whole(text, 1, MAX_STEPS), default=20,
                           help=f"steps to time per workload (default 20, at most "
                                f"{MAX_STEPS:,})")
    bench_cmd.add_argument("--chain", type=lambda text: _whole(text, 0, MAX_CHAIN),
                           default=1_000_000, metavar="OPS",
                           help=f"ops in the chain (default 1,000,000, at most {MAX_CHAIN:,}; "
                                "0 skips it)")
    bench_cmd.add_argument("--samples", type=lambda text: _whole(text, 2, MAX_BENCH_SAMPLES),
                           default=100, help="size of the moons set (default 100, at most "
                                             f"{MAX_BENCH_SAMPLES:,})")
    bench_cmd.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench_cmd.set_defaults(command_parser=bench_cmd)
    return parser


DEMO_VALUES = {"a": 2.0, "b": -3.0, "c": 10.0, "f": -2.0}


def _expression(values: Mapping[str, float] = DEMO_VALUES) -> Value:
    """The classic small expression, L = (a*b + c) * f, every node labelled."""
    a, b, c, f = (Value(values[name], name) for name in "abcf")
    e = a * b
    e.label = "e"
    d = e + c
    d.label = "d"
    L = d * f
    L.label = "L"
    return L


def run_expr(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.expression is None:
        if args.at:
            parser.error("--at gives values to the names of an expression: give it too")
        build, values = _expression, DEMO_VALUES
    else:
        values = args.at or {}

        def build(values: dict[str, float]) -> Value:
            return parse_expression(args.expression, values)
    try:
        root = build(values)
    except _NoValue as e:
        parser.error(f"{e}: give it with --at {e.name}=...")
    except ExpressionError as e:
        parser.error(str(e))
    unused = set(values) - {v.label for v in _topological_order(root)}
    if unused:
        parser.error(f"--at gives {', '.join(sorted(unused))}, which the expression "
                     "does not use")
    for path in (args.out, args.steps):
        if path and path.lower().endswith((".png", ".svg", ".pdf", ".gif")):
            _check_folder(path)
    size = len(_topological_order(root)) if args.steps else 0
    if size > STEPS_LIMIT:  # refused before anything is printed
        raise CommandError(f"cannot draw {args.steps}: {_too_many_steps(size, STEPS_LIMIT)}")
    fills = None
    if args.quiz:
        marks = quiz(root)
        fills = {v: "#c7f0c2" if right else "#ffc9c9" for v, right in marks.items()}
    else:
        root.backward()
        names = _short_names(_topological_order(root)[::-1])
        width = max(6, *(len(n) + 2 for n in names.values()))
        op_width = max(4, *(len(v._op) + 2 for v in names))
        print(f"{'node':<{width}}{'op':<{op_width}}{'data':>10}{'grad':>10}")
        for v in _topological_order(root):
            print(f"{names[v]:<{width}}{v._op:<{op_width}}{_digits(v.data):>10}"
                  f"{_digits(v.grad):>10}")
    if args.explain:
        print()
        print(explain(root))
    if args.check:
        print()
        print(format_check(nudge_check(build, values)))
    if args.steps:
        print()
        _draw(lambda: step_through(root, args.steps, rankdir=args.rankdir), args.steps)
        print(f"steps saved to {args.steps}")
    _draw(lambda: draw_graph(root, args.out, show=args.show, rankdir=args.rankdir,
                             color=args.color, fills=fills), args.out)
    print(f"graph saved to {args.out}")


def _check_not_input(parser: argparse.ArgumentParser, flag: str, path: str | None,
                     args: argparse.Namespace, inputs: Sequence[str]) -> None:
    """Refuse an output that would overwrite a file the run reads."""
    for name in inputs:
        given = getattr(args, name)
        if path and given and os.path.realpath(path) == os.path.realpath(given):
            parser.error(f"--{flag} {path} would overwrite the --{name} file: give it a file "
                         "of its own")


def _check_folder(path: str | None) -> None:
    """Fail before any work when an output file cannot be written where it is asked for."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CommandError(f"cannot write {path}: the folder {folder} does not exist")
    try:
        _save_target(path)  # a folder, a FIFO, a device or a read-only file
    except OSError as e:
        raise CommandError(f"cannot write {path}: {e.strerror or e}") from None


def _draw(make: Callable, path: str) -> None:
    try:
        make()
    except ImportError:
        raise CommandError(f"cannot draw {path}: matplotlib is not installed "
                           "(pip install matplotlib)") from None
    except OSError as e:
        raise CommandError(f"cannot write {path}: {e.strerror or e}") from None
    except ValueError as e:  # a graph too large to draw
        raise CommandError(f"cannot draw {path}: {e}") from None


def _targets_for(loss: str, y: list, classes: int) -> list:
    """Labels in the form the loss wants: -1/+1 for mse and hinge, 0/1 for bce, class
    indices for ce. Datasets give classes 0, 1, ... (the toy set: -1/+1)."""
    binary = set(y) <= {-1.0, 1.0} or set(y) <= {0, 1}
    if loss == "ce":
        return [int(t > 0) if set(y) <= {-1.0, 1.0} else int(t) for t in y]
    if not binary:
        raise CommandError(f"the {loss} loss needs two classes, the dataset has {classes}; "
                           "use --loss ce")
    if loss == "bce":
        return [1 if t > 0 else 0 for t in y]
    return [1.0 if t > 0 else -1.0 for t in y]


def _load_data(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[list, list]:
    if args.data:
        try:
            return load_csv(args.data, args.target, max_rows=MAX_SAMPLES)[:2]
        except FileNotFoundError:
            raise CommandError(f"cannot read {args.data}: no such file") from None
        except ValueError as e:  # a bad cell, a ragged row, one class: the flag's file
            parser.error(str(e))
    maker = DATASETS[args.dataset]
    if args.dataset in ("toy", "xor"):
        return maker()
    options = {"seed": args.seed}
    if args.samples is not None:
        options["n"] = args.samples
    if args.noise is not None:
        options["noise"] = args.noise
    try:
        return maker(**options)
    except ValueError as e:  # --samples or --noise out of what the maker can make
        parser.error(f"cannot make the {args.dataset} dataset: {e}")


def _load_model(path: str) -> tuple[MLP, dict | None]:
    """The model in path and what its run saved to go on from (None for a version 1 file)."""
    try:
        return MLP.load_with_training(path)
    except FileNotFoundError:
        raise CommandError(f"cannot load {path}: no such file") from None
    except OSError as e:
        raise CommandError(f"cannot load {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise CommandError(f"cannot load {path}: {e}") from None


def _shown_as(loss: str) -> str:
    return "probabilities" if loss in ("bce", "ce") else "predictions"


def _shown(model: MLP, X: list, loss: str) -> list:
    """What to print beside the targets: probabilities where the model's outputs are logits
    (bce, ce), else the outputs themselves."""
    scores = predict(model, X)
    if loss == "bce":
        return [_sigmoid(s) for s in scores]
    if loss == "ce":
        return [_softmax(row) for row in scores]
    return scores


def _format_predictions(scores: list) -> str:
    def one(s: float | list) -> str:
        if isinstance(s, list):
            return "[" + ", ".join(f"{v:+.4f}" for v in s) + "]"
        return f"{s:+.4f}"

    return " ".join(one(s) for s in scores)


# `train --graph` draws the loss of one sample. Past FOLD_ABOVE values (a 2-16-16-1 network
# has about 170) it folds each neuron's weights and bias into its op; past GRAPH_LIMIT boxes
# even the folded picture would be unreadable.
FOLD_ABOVE = 150
GRAPH_LIMIT = 400


def _graph_plan(root: Value) -> tuple[bool, int]:
    """(fold?, the number of value boxes to draw) for the picture of root."""
    fold = _count_nodes(root, FOLD_ABOVE) > FOLD_ABOVE
    return fold, _drawn_values(root, GRAPH_LIMIT, fold)


def _sample_loss(model: MLP, x: list, y: float | int, loss: str) -> Value:
    """The loss of one sample, the graph that `train --graph` draws."""
    sample_loss = LOSSES[loss]([model(x)], [y])
    sample_loss.label = "loss"
    return sample_loss


def _say(args: argparse.Namespace, line: str) -> None:
    """Print a line of progress, unless --quiet asked for the final summary alone."""
    if not args.quiet:
        print(line)


def _write_outputs(args: argparse.Namespace, model: MLP, history: History, X: list, y: list,
                   loss: str, val: tuple[list, list] | None, training: dict) -> None:
    if args.save:
        try:
            model.save(args.save, training)
        except OSError as e:
            raise CommandError(f"cannot save {args.save}: {e.strerror or e}") from None
        _say(args, f"model saved to {args.save}")
    if args.plot:
        _draw(lambda: plot_history(history, args.plot), args.plot)
        _say(args, f"training curves saved to {args.plot}")
    if args.boundary:
        _draw(lambda: plot_decision_boundary(model, X, y, args.boundary, val=val,
                                             dataset=args.dataset, loss=loss), args.boundary)
        _say(args, f"decision boundary saved to {args.boundary}")
    if args.neurons:
        _draw(lambda: plot_neurons(model, X, y, args.neurons), args.neurons)
        _say(args, f"neurons saved to {args.neurons}")
    if args.graph:
        # the sample the model gets most wrong: its gradients teach (a met margin has none)
        with no_grad():
            losses = [_sample_loss(model, x, t, loss).data for x, t in zip(X, y)]
        worst = max(range(len(X)), key=lambda i: (losses[i], -i))
        sample_loss = _sample_loss(model, X[worst], y[worst], loss)
        model.zero_grad()
        sample_loss.backward()
        fold, boxes = _graph_plan(sample_loss)
        if fold:
            _say(args, f"the loss of sample {worst} has {len(_topological_order(sample_loss))}"
                       f" values: drawing it folded, each neuron's weights and bias inside "
                       f"its op ({boxes} value boxes)")
        if boxes > 100:  # a second or more
            _say(args, f"drawing {args.graph}...")
        title = (f"the loss of sample {worst}, the largest of the {len(X)}: "
                 f"{_digits(losses[worst])}")
        _draw(lambda: draw_graph(sample_loss, args.graph, params=model.parameters(),
                                 max_nodes=GRAPH_LIMIT, fold=fold, title=title), args.graph)
        _say(args, f"graph of {title} saved to {args.graph}")


def _diagnose(args: argparse.Namespace, model: MLP, health: HealthRecorder, X: list, y: list,
              loss: str) -> None:
    """Print the run's health verdicts and draw its health report."""
    acts, grads = _layer_signals(model, X, y, loss)
    print("health:")
    for verdict in health_verdicts(model, health, grads):
        print(f"  {verdict}")
    _draw(lambda: plot_health(model, health, acts, grads, args.diagnose), args.diagnose)
    _say(args, f"health report saved to {args.diagnose}")


def _data_settings(args: argparse.Namespace, loss: str, samples: int) -> dict:
    """What decides the data a run trains on, as a saved run records it."""
    if args.data:  # the seed picks the rows held out
        return {"dataset": args.data, "samples": samples, "noise": None, "seed": args.seed,
                "loss": loss, "val_split": args.val_split}
    maker = inspect.signature(DATASETS[args.dataset]).parameters
    made = "seed" in maker  # toy and xor are fixed sets
    noise = args.noise if args.noise is not None else maker["noise"].default if made else None
    return {"dataset": args.dataset, "samples": samples, "noise": noise,
            "seed": args.seed if made else None, "loss": loss, "val_split": args.val_split}


def _resume(args: argparse.Namespace, saved: dict | None, optim: str, opt: Optimizer,
            data: dict, scheduler: LRScheduler | None = None
            ) -> tuple[random.Random, int, History]:
    """The shuffling generator, the epochs done so far and what they measured: fresh, or
    as a saved run left them, whose optimizer state then goes into opt (if it is the same
    optimizer). Training goes on only on the data the run was trained on."""
    if saved is None:
        return random.Random(args.seed), 0, History()
    trained_on = saved.get("data", data)  # runs saved before it was recorded: as now
    if not isinstance(trained_on, dict):
        raise CommandError(f"cannot resume from {args.load}: data must be a JSON object")
    if trained_on != data:
        other = ", ".join(f"{key} {trained_on.get(key)!r} there, {value!r} here"
                          for key, value in data.items() if trained_on.get(key) != value)
        if args.epochs != 0:
            raise CommandError(f"cannot resume from {args.load}: it was trained on other "
                               f"data ({other}); give the same data flags")
        _say(args, f"note: {args.load} was trained on other data ({other})")
    try:
        rng = random.Random()
        version, internal, gauss = saved["generator"]
        rng.setstate((version, tuple(internal), gauss))
        done = saved["epochs"]
        if isinstance(done, bool) or not isinstance(done, int) or done < 0:
            raise ValueError(f"epochs must be a whole number, got {done!r}")
        earlier = _history_from(saved.get("history", {}))
        if saved["optimizer"] == optim:
            opt.load_state_dict(saved["optimizer_state"])
            schedule = saved.get("schedule")
            if scheduler is not None and schedule and schedule[0] == args.schedule[0]:
                scheduler.load_state_dict(schedule[1])  # where the saved run left it
            if args.lr is not None:  # a flag given now wins over the saved setting
                opt.lr = args.lr
            if args.weight_decay is not None:
                opt.weight_decay = args.weight_decay
        else:
            _say(args, f"{args.load} was trained with {saved['optimizer']}: {optim} starts "
                       "afresh")
    except KeyError as e:
        raise CommandError(f"cannot resume from {args.load}: {e} is missing") from None
    except (TypeError, ValueError, OverflowError) as e:
        raise CommandError(f"cannot resume from {args.load}: {e}") from None
    _say(args, f"resuming from {args.load} after {_plural(done, 'epoch')}")
    return rng, done, earlier


def run_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict:
    """One training run as the flags ask; returns what a comparison needs of it."""
    if args.compare:
        return _run_comparison(args, parser)
    if args.data and args.dataset:
        parser.error("--data and --dataset both name the data: give one")
    if args.target and not args.data:
        parser.error("--target names a column of a --data file")
    if args.data and (args.samples or args.noise is not None):
        parser.error("--samples and --noise make a dataset; --data gives one")
    args.dataset = os.path.basename(args.data) if args.data else args.dataset or "toy"
    _check_not_input(parser, "export", args.export, args, ("data",))
    X, y = _load_data(args, parser)
    if args.export:
        _draw(lambda: save_csv(args.export, X, y), args.export)
        print(f"{len(X)} samples of {args.dataset} saved to {args.export}")
        return {}
    # a file's data: the defaults of the made sets, cross entropy past two classes
    task = TASKS.get(args.dataset) or {**TASKS["moons"], "loss": "ce" if len(set(y)) > 2
                                       else "hinge"}
    for flag in ("boundary", "animate", "neurons"):
        if getattr(args, flag) and len(X[0]) != 2:
            parser.error(f"--{flag} draws datasets with 2 inputs; {args.dataset} has "
                         f"{len(X[0])}")
    if args.animate and args.epochs == 0:
        parser.error("--animate draws training, and --epochs 0 trains nothing")
    if args.dataset in ("toy", "xor") and (args.samples or args.noise is not None):
        parser.error(f"--samples and --noise apply to moons, circles and spiral, "
                     f"not {args.dataset}")
    if args.load and (args.hidden or args.activation or args.init_scale):
        parser.error("--hidden, --activation and --init-scale shape a new model; with --load "
                     "the model file has its own")
    if args.epochs == 0 and not args.load:
        parser.error("--epochs 0 evaluates a saved model: give it with --load")
    outputs: dict[str, str] = {}  # real path -> the flag that writes it
    for flag in ("save", "plot", "boundary", "graph", "animate", "neurons", "diagnose"):
        path = getattr(args, flag)
        _check_not_input(parser, flag, path, args, ("data", "load") if flag != "save"
                         else ("data",))  # --save over --load: a run resumed in place
        if path and os.path.realpath(path) in outputs:
            parser.error(f"--{outputs[os.path.realpath(path)]} and --{flag} both name "
                         f"{path}: give each output a file of its own")
        if path:
            outputs[os.path.realpath(path)] = flag
    drawings = [flag for flag in ("plot", "boundary", "graph", "animate", "neurons",
                                  "diagnose") if getattr(args, flag)]
    if drawings:  # find out now, not after a long run
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CommandError(f"--{drawings[0]} needs matplotlib, which is not installed "
                               "(pip install matplotlib)") from None
    for flag in ("save", "plot", "boundary", "graph", "animate", "neurons", "diagnose"):
        _check_folder(getattr(args, flag))
    loss = args.loss or task["loss"]
    classes = len(set(y))
    targets = _targets_for(loss, y, classes)
    n_val = round(len(X) * args.val_split)
    if args.val_split and not 1 <= n_val < len(X):
        parser.error(f"--val-split {args.val_split} leaves no samples to "
                     f"{'validate' if n_val < 1 else 'train'} on ({len(X)} in all)")
    if args.data and n_val:  # a file's rows come in its own order: held out at random
        order = list(range(len(X)))
        random.Random(args.seed).shuffle(order)
        X, targets = [X[i] for i in order], [targets[i] for i in order]
    split = len(X) - n_val
    X_train, y_train = X[:split], targets[:split]
    val = (X[split:], targets[split:]) if n_val else None

    nout = classes if loss == "ce" else 1
    saved = None
    if args.load:
        model, saved = _load_model(args.load)
        if model.nin != len(X[0]) or model.nouts[-1] != nout:
            raise CommandError(
                f"cannot load {args.load}: the model maps {_plural(model.nin, 'input')} to "
                f"{_plural(model.nouts[-1], 'output')}, but {args.dataset} with the {loss} "
                f"loss needs {_plural(len(X[0]), 'input')} and {_plural(nout, 'output')}")
    else:
        sizes = [len(X[0]), *(args.hidden or task["hidden"]), nout]
        count = _parameter_count(MLP, {"nin": sizes[0], "nouts": sizes[1:]})
        if count > MAX_PARAMETERS:
            parser.error(f"--hidden {','.join(map(str, sizes[1:-1]))} makes a network of "
                         f"{count:,} parameters; the limit is {MAX_PARAMETERS:,}")
        model = MLP(sizes[0], sizes[1:],
                    activation=args.activation or task["activation"],
                    output_activation="tanh" if loss == "mse" else "linear", seed=args.seed)
        for layer in model.layers if args.init_scale else ():
            for neuron in layer.neurons:
                for w in neuron.w:
                    w.data *= args.init_scale
    if args.graph and _graph_plan(_sample_loss(model, X[0], targets[0], loss))[1] > GRAPH_LIMIT:
        raise CommandError(f"cannot draw {args.graph}: the loss of one sample has more than "
                           f"{GRAPH_LIMIT} values even folded; train a smaller network "
                           "(--hidden)")
    optim = args.optim or task["optim"]
    epochs = task["epochs"] if args.epochs is None else args.epochs
    opt = _make_optimizer(optim, model.parameters(), args.lr, args.weight_decay)
    scheduler = _make_scheduler(args, opt, epochs, parser)  # before a saved state is loaded
    data = _data_settings(args, loss, len(X))
    rng, done, earlier = _resume(args, saved, optim, opt, data, scheduler)
    left = scheduler.total_steps - scheduler.last_epoch \
        if isinstance(scheduler, OneCycleLR) else epochs
    if left < epochs:
        raise CommandError(f"the one-cycle schedule has {left} of its "
                           f"{scheduler.total_steps} steps left, fewer than the "
                           f"{_plural(epochs, 'epoch')} asked for")
    show = len(X_train) <= 10 and not args.quiet
    if not args.quiet:
        print(f"dataset {args.dataset}: {len(X_train)} samples of {_plural(len(X[0]), 'input')}"
              + (f", {n_val} held out for validation" if val else ""))
        print(f"model {model}")
        print(f"loss {loss}, optimizer {optim} (lr {opt.lr:g}), {_plural(epochs, 'epoch')}, "
              f"batch size {args.batch_size or len(X_train)}")
    if show:
        width = len(f"{_shown_as(loss)} before:") + 1
        print(f"{'targets:':<{width}}", _format_predictions(y_train))
        print(f"{_shown_as(loss) + (' before:' if epochs else ':'):<{width}}",
              _format_predictions(_shown(model, X_train, loss)))
    start = time.perf_counter()
    history = History()
    frames = _Frames(X_train, epochs, _threshold(loss, targets)) if args.animate else None
    health = HealthRecorder(model, X_train) if args.diagnose else None

    def on_epoch(epoch: int, model: MLP, history: History) -> None:
        for watcher in (frames, health and health.epoch):
            if watcher:
                watcher(epoch, model, history)

    try:
        if epochs:
            history = train(model, X_train, y_train, loss=loss, optimizer=opt, epochs=epochs,
                            batch_size=args.batch_size, val=val, verbose=not args.quiet,
                            generator=rng, on_epoch=on_epoch, scheduler=scheduler,
                            on_step=health.step if health else None)
    except TrainingError as e:
        if health:
            _diagnose(args, model, health, X_train, y_train, loss)
        raise CommandError(str(e)) from None
    if health:
        _diagnose(args, model, health, X_train, y_train, loss)
    seconds = time.perf_counter() - start
    if show and epochs:
        print(f"{_shown_as(loss) + ' after:':<{width}}",
              _format_predictions(_shown(model, X_train, loss)))
    # the loss of the trained model on every sample, not the mean over the last epoch's steps
    threshold = _threshold(loss, targets)  # as train() reads both sets: one cut-off
    final = evaluate(model, X_train, y_train, loss, threshold)
    summary = "final: " + _metrics(*final, evaluate(model, *val, loss, threshold)
                                   if val else None, ", ")
    if not epochs:
        trained = f", after {_plural(done, 'epoch')} of training" if done else ""
        print(summary + f" on all {len(X_train)} samples (evaluated only{trained})")
    else:
        print(summary + f" on all {len(X_train)} training samples after training "
              f"({_plural(epochs, 'epoch')} in {seconds:.3g} s"
              + (f", {done + epochs} in all" if done else "") + ")")
    earlier.extend(history)  # the curves of the whole run, resumed or not
    history = earlier
    training = {"optimizer": optim, "optimizer_state": opt.state_dict(),
                "epochs": done + epochs, "generator": rng.getstate(),
                "history": history.state_dict(), "data": data}
    if scheduler is not None:
        training["schedule"] = [args.schedule[0], scheduler.state_dict()]
    _write_outputs(args, model, history, X_train, y_train, loss, val, training)
    if frames is not None:
        _say(args, f"drawing {len(frames.frames)} frames of {args.animate}...")
        _draw(lambda: frames.save(args.animate, X_train, y_train, f"{args.dataset}, ",
                                  lambda line: _say(args, line)), args.animate)
        _say(args, f"animation saved to {args.animate}")
    return {"model": model, "history": history, "X": X_train, "y": y_train, "loss": loss,
            "final": final}


def _run_comparison(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict:
    """Each value of the compared setting as a run of its own, from the same seed and so
    the same data and initial weights: a row each, the curves overlaid with --plot, the
    boundaries side by side with --boundary."""
    import io

    setting, raw = args.compare
    for flag in ("save", "load", "graph", "animate", "neurons", "diagnose"):
        if getattr(args, flag):
            parser.error(f"--compare runs several models: --{flag} takes one")
    if args.export:
        parser.error("--export writes the data and stops: leave out --compare")
    if getattr(args, COMPARABLE[setting][0]) is not None:
        parser.error(f"--compare gives the values of --{setting}: leave out --{setting}")
    if args.boundary:  # the runs draw nothing: their data is checked here, before any runs
        name = os.path.basename(args.data) if args.data else args.dataset or "toy"
        data = argparse.Namespace(**{**vars(args), "dataset": name})
        inputs = len(_load_data(data, parser)[0][0])
        if inputs != 2:
            parser.error(f"--boundary draws datasets with 2 inputs; {name} has {inputs}")
    rows, runs = [], {}
    for text in raw:
        run = argparse.Namespace(**{**vars(args), "compare": None, "quiet": True,
                                    "plot": None, "boundary": None})
        dest, parse = COMPARABLE[setting]
        try:
            setattr(run, dest, parse(text))
        except argparse.ArgumentTypeError as e:
            parser.error(f"--compare {setting}={text}: {e}")
        label = f"{setting}={text}"
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the rows say what matters
                runs[label] = run_train(run, parser)
            loss, share = runs[label]["final"]
            rows.append(f"{label:<24}{_loss(loss):>12}{_percent(share):>10}  trained")
        except CommandError as e:
            rows.append(f"{label:<24}{'-':>12}{'-':>10}  diverged: {e}")
    print(f"{'setting':<24}{'final loss':>12}{'accuracy':>10}  run")
    print("\n".join(rows))
    if args.plot and runs:
        _draw(lambda: plot_history({k: r["history"] for k, r in runs.items()}, args.plot),
              args.plot)
        _say(args, f"training curves saved to {args.plot}")
    if args.boundary and runs:
        first = next(iter(runs.values()))
        _draw(lambda: plot_boundaries({k: r["model"] for k, r in runs.items()}, first["X"],
                                      first["y"], args.boundary, loss=first["loss"]),
              args.boundary)
        _say(args, f"decision boundaries saved to {args.boundary}")
    return {"runs": runs}


def _check_labels(labels: list[float], model: MLP, path: str,
                  parser: argparse.ArgumentParser) -> None:
    """Each label must be one of the model's classes: 0 and 1 (or -1 and 1) for one output,
    0 to n-1 for n."""
    classes = [-1, 0, 1] if model.nouts[-1] == 1 else list(range(model.nouts[-1]))
    for row, label in enumerate(labels, 1):
        if label not in classes:
            shown = "0 and 1 (or -1 and 1)" if model.nouts[-1] == 1 else f"0 to {classes[-1]}"
            parser.error(f"{path}: data row {row} has the label {label:g}, not a class of "
                         f"the model (its classes: {shown})")


def run_predict(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    model, saved = _load_model(args.load)
    try:
        X = load_csv(args.data, labelled=False, max_rows=MAX_SAMPLES)[0]
    except FileNotFoundError:
        raise CommandError(f"cannot read {args.data}: no such file") from None
    except ValueError as e:
        parser.error(str(e))
    labels = None
    if len(X[0]) == model.nin + 1:  # a label column too: the accuracy can be told
        labels = [row.pop() for row in X]
    elif len(X[0]) != model.nin:
        parser.error(f"{args.data} has {_plural(len(X[0]), 'column')}; the model takes "
                     f"{_plural(model.nin, 'input')} (and a label may follow them)")
    _check_not_input(parser, "out", args.out, args, ("data", "load"))
    _check_folder(args.out)
    if labels is not None:
        _check_labels(labels, model, args.data, parser)
    scores = predict(model, X)
    classes = [row.index(max(row)) if isinstance(row, list) else int(row > 0.0)
               for row in scores]
    lines = []
    for score, k in zip(scores, classes):
        shown = score if isinstance(score, list) else [score]
        lines.append(",".join([*(repr(v) for v in shown), str(k)]))
    if args.out:
        width = len(scores[0]) if isinstance(scores[0], list) else 1
        header = "score,class" if width == 1 else ",".join(
            [*(f"score{j}" for j in range(width)), "class"])
        _draw(lambda: _write_text(args.out, "\n".join([header, *lines]) + "\n"), args.out)
        print(f"{len(lines)} predictions written to {args.out}")
    else:
        for i, (score, k) in enumerate(zip(scores, classes), 1):
            shown = _format_predictions([score])
            print(f"row {i}: score {shown} class {k}")
    if labels is not None:
        wanted = [int(t > 0) if set(labels) <= {-1.0, 1.0} else int(t) for t in labels]
        hits = sum(k == t for k, t in zip(classes, wanted))
        print(f"accuracy {_percent(hits / len(wanted))} on the "
              f"{_plural(len(wanted), 'labelled row')}")


def _write_text(path: str, text: str) -> None:
    with _replacing(path) as f:
        f.write(text.encode("utf-8"))


def run_descend(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    rates = args.lr or [DEFAULT_LR[name] for name in args.optim]
    if len(rates) == 1:
        rates = rates * len(args.optim)
    if len(rates) != len(args.optim):
        parser.error(f"--lr gives {len(rates)} rates for {len(args.optim)} optimizers: give "
                     "one for each, or one for all")
    try:
        paths = descend(args.expression, args.start, list(zip(args.optim, rates)), args.steps)
    except _NoValue as e:
        parser.error(f"{e}: descend's f is a function of x and y")
    except ExpressionError as e:
        parser.error(f"{e} (the start, --start)")
    _check_folder(args.out)
    for label, path in paths.items():
        x, y, f = path[-1]
        end = (f"after {_plural(len(path) - 1, 'step')}: x {_digits(x)}, y {_digits(y)}, "
               f"f {_digits(f)}")
        stop = "" if math.isfinite(f) else "  (diverged)" if math.isinf(f) else \
            "  (stopped: f is not defined there)"
        print(f"{label:<22} {end}{stop}")
    _draw(lambda: plot_paths(args.expression, paths, args.out), args.out)
    print(f"paths saved to {args.out}")


def run_bench(args: argparse.Namespace) -> None:
    def say(line: str) -> None:  # progress on stderr, so that stdout holds the figures only
        print(line, file=sys.stderr, flush=True)

    say(f"timing {args.steps} steps of each workload (about a minute at the defaults)")
    result = bench(steps=args.steps, chain=args.chain, samples=args.samples, say=say)
    print(json.dumps(result, indent=1) if args.json else format_bench(result))


def _open_missing_streams() -> None:
    """A closed stdout or stderr (`>&-`) leaves None in sys: write to nothing instead."""
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - it lives as long as the process
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115


def _discard_stdout() -> None:
    """Send what is left in stdout's buffer to nowhere, so that Python's own flush at exit
    does not fail again with a traceback."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _minus_signs(argv: Sequence[str]) -> list[str]:
    """argv with what starts with a minus sign made readable to argparse, which would take it
    for a flag: `--start -1.5,2` as `--start=-1.5,2`, and an expression (-x*y) given a space
    in front, which the expression reader ignores."""
    out: list[str] = []
    takes_expression = False
    for arg in argv:
        if out and out[-1] == "--start" and arg.startswith("-"):
            out[-1] = f"--start={arg}"
        elif (takes_expression and arg.startswith("-") and arg[1:2] not in ("-", "h", "")
              and out[-1] not in ("--out", "--steps")):  # there, a file's name
            out.append(f" {arg}")
        else:
            out.append(arg)
        takes_expression = takes_expression or arg in ("expr", "descend")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (2 for bad flags, from argparse)."""
    _open_missing_streams()
    parser = build_parser()
    args = parser.parse_args(_minus_signs(sys.argv[1:] if argv is None else argv))
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "expr":
            run_expr(args, args.command_parser)
        elif args.command == "train":
            run_train(args, args.command_parser)
        elif args.command == "descend":
            run_descend(args, args.command_parser)
        elif args.command == "predict":
            run_predict(args, args.command_parser)
        else:
            run_bench(args)
        sys.stdout.flush()  # a full disk shows here, where it can be reported
    except CommandError as e:
        print(f"micrograd.py {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"micrograd.py {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly
        _discard_stdout()
        return 1
    except OSError as e:  # writing the output failed: a full disk, an I/O error
        _discard_stdout()
        print(f"micrograd.py {args.command}: error: cannot write the output: "
              f"{e.strerror or e}", file=sys.stderr)
        return 1
    return 0


def _in_notebook() -> bool:
    """True inside IPython or Jupyter, where pasting this file must not run the command line."""
    return hasattr(builtins, "__IPYTHON__")


if __name__ == "__main__" and not _in_notebook():
    sys.exit(main())
