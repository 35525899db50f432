"""Tests for micrograd.py: run with `python -m pytest -q tests.py`."""

from __future__ import annotations

import base64
import contextlib
import gc
import importlib.util
import inspect
import io
import itertools
import json
import math
import os
import random
import re
import shlex
import shutil
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

import micrograd as mg
from micrograd import Value

HERE = Path(__file__).resolve().parent
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
SCRIPT = str(HERE / "micrograd.py")


def run_cli(*args: str, cwd: Path | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the command line for real, as a user would."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env)


def run_cli_within(memory: int, *args: str, cwd: Path | None = None,
                   timeout: float = 30) -> subprocess.CompletedProcess:
    """run_cli with the address space capped at `memory` bytes: if a check meant to refuse a
    huge size before any work ever breaks, the test fails fast instead of filling the machine."""
    import resource

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env, preexec_fn=cap)


def central_difference(f, xs: list[float], i: int, eps: float = 1e-6) -> float:
    up = [x + eps if j == i else x for j, x in enumerate(xs)]
    down = [x - eps if j == i else x for j, x in enumerate(xs)]
    return (f(*[Value(v) for v in up]).data - f(*[Value(v) for v in down]).data) / (2 * eps)


def assert_gradients_match(f, xs: list[float], rel: float = 1e-6) -> None:
    """backward() against central differences, relative to max(1, |slope|)."""
    values = [Value(x) for x in xs]
    f(*values).backward()
    for i, v in enumerate(values):
        numeric = central_difference(f, xs, i)
        assert abs(v.grad - numeric) <= rel * max(1.0, abs(numeric)), (f, xs, i, v.grad, numeric)


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------

def away_from(kinks: list[float], rng: random.Random, low: float, high: float) -> float:
    """A random point at least 1e-3 from every kink, so differences do not straddle one."""
    while True:
        x = rng.uniform(low, high)
        if all(abs(x - k) > 1e-3 for k in kinks):
            return x


UNARY = {
    "neg": (lambda a: -a, [], -5, 5),
    "abs": (lambda a: abs(a), [0.0], -5, 5),
    "exp": (lambda a: a.exp(), [], -5, 5),
    "log": (lambda a: a.log(), [], 0.05, 10),
    "sqrt": (lambda a: a.sqrt(), [], 0.05, 10),
    "tanh": (lambda a: a.tanh(), [], -4, 4),
    "sigmoid": (lambda a: a.sigmoid(), [], -8, 8),
    "relu": (lambda a: a.relu(), [0.0], -5, 5),
    "leaky_relu": (lambda a: a.leaky_relu(), [0.0], -5, 5),
    "leaky_relu_0.2": (lambda a: a.leaky_relu(0.2), [0.0], -5, 5),
    "elu": (lambda a: a.elu(), [0.0], -5, 5),
    "elu_2": (lambda a: a.elu(alpha=2.0), [0.0], -5, 5),
    "gelu": (lambda a: a.gelu(), [], -5, 5),
    "silu": (lambda a: a.silu(), [], -8, 8),
    "softplus": (lambda a: a.softplus(), [20.0], -25, 25),
    "pow2": (lambda a: a ** 2, [], -5, 5),
    "pow3": (lambda a: a ** 3, [], -3, 3),
    "pow_half": (lambda a: a ** 0.5, [], 0.05, 9),
    "pow_neg": (lambda a: a ** -1.5, [], 0.2, 9),
    "rpow": (lambda a: 2.5 ** a, [], -3, 3),
    "radd": (lambda a: 3.0 + a, [], -5, 5),
    "rsub": (lambda a: 3.0 - a, [], -5, 5),
    "rmul": (lambda a: 3.0 * a, [], -5, 5),
    "rdiv": (lambda a: 3.0 / a, [], 0.2, 5),
}


@pytest.mark.parametrize("name", list(UNARY))
def test_unary_gradients_match_finite_differences(name):
    f, kinks, low, high = UNARY[name]
    rng = random.Random(name)
    for _ in range(25):
        assert_gradients_match(f, [away_from(kinks, rng, low, high)])
    for k in kinks:  # both sides of each kink
        assert_gradients_match(f, [k - 0.01])
        assert_gradients_match(f, [k + 0.01])


BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a ** b,
    "mixed": lambda a, b: (a * b + a.exp() / b.tanh()).sigmoid() - a ** 2 * b,
}


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_gradients_match_finite_differences(name):
    rng = random.Random(name)
    for _ in range(25):
        a, b = rng.uniform(0.2, 3), rng.choice([-1, 1]) * rng.uniform(0.3, 3)
        assert_gradients_match(BINARY[name], [a, b])


def test_fused_sum_and_dot_gradients_match_finite_differences():
    rng = random.Random(7)
    for _ in range(10):
        xs = [rng.uniform(-2, 2) for _ in range(7)]
        assert_gradients_match(lambda *v: Value.sum(v) * v[0], xs)
        assert_gradients_match(lambda *v: Value.dot(v[:3], v[3:6], bias=v[6]).tanh(), xs)
        assert_gradients_match(lambda *v: Value.dot(v, v), xs)


def test_fused_ops_are_one_node_and_match_the_elementary_path():
    rng = random.Random(3)
    ws = [Value(rng.uniform(-1, 1)) for _ in range(9)]
    xs = [Value(rng.uniform(-1, 1)) for _ in range(9)]
    b = Value(0.3)
    fused = Value.dot(ws, xs, b)
    assert len(fused._children) == 19 and fused._op == "dot"
    total = Value.sum(xs)
    assert len(total._children) == 9 and total._op == "sum"
    (fused * total).backward()
    fused_grads = [v.grad for v in ws + xs + [b]]
    for v in ws + xs + [b]:
        v.grad = 0.0
    elementary_dot = b
    for w, x in zip(ws, xs):
        elementary_dot = elementary_dot + w * x
    elementary_sum = xs[0]
    for x in xs[1:]:
        elementary_sum = elementary_sum + x
    assert abs(elementary_dot.data - fused.data) <= 1e-12
    (elementary_dot * elementary_sum).backward()
    for g, v in zip(fused_grads, ws + xs + [b]):
        assert abs(g - v.grad) <= 1e-12


def test_dot_checks_lengths_and_accepts_numbers():
    with pytest.raises(ValueError, match="3 and 2"):
        Value.dot([Value(1), Value(2), Value(3)], [1.0, 2.0])
    assert Value.dot([Value(2.0), Value(3.0)], [4, 5], bias=1).data == 24.0
    assert Value.sum([1, Value(2.0), 3.5]).data == 6.5


def test_kink_conventions_match_pytorch():
    for f, expected in [(lambda a: a.relu(), 0.0), (lambda a: abs(a), 0.0),
                        (lambda a: a.leaky_relu(0.1), 0.1), (lambda a: a.elu(alpha=1.5), 1.5)]:
        x = Value(0.0)
        f(x).backward()
        assert x.grad == expected
    x = Value(0.0)
    x.sqrt().backward()
    assert x.grad == math.inf
    x = Value(0.0)
    (x ** 2).backward()
    assert x.grad == 0.0


def expr_demo():
    a, b, c, f = Value(2.0, "a"), Value(-3.0, "b"), Value(10.0, "c"), Value(-2.0, "f")
    e = a * b
    d = e + c
    L = d * f
    return a, b, c, f, e, d, L


def test_expr_demo_exact_values():
    a, b, c, f, e, d, L = expr_demo()
    L.backward()
    assert L.data == -8.0
    assert (a.grad, b.grad, c.grad, f.grad) == (6.0, -4.0, -2.0, 4.0)
    assert (d.grad, e.grad, L.grad) == (-2.0, -2.0, 1.0)


def test_numerically_stable_at_large_inputs():
    for x in (-1000.0, 1000.0):
        for f in (Value.sigmoid, Value.tanh, Value.softplus, Value.silu, Value.gelu):
            v = Value(x)
            out = f(v)
            out.backward()
            assert math.isfinite(out.data) and math.isfinite(v.grad), (f, x)
    assert Value(1000.0).sigmoid().data == 1.0 and Value(-1000.0).sigmoid().data == 0.0
    assert Value(1000.0).softplus().data == 1000.0
    v = Value(-1000.0)
    out = v.exp()
    out.backward()
    assert out.data == 0.0 and v.grad == 0.0
    big = Value(1000.0).exp()
    assert big.data == math.inf


def test_backward_through_a_million_ops_deep_chain():
    x = Value(1.0)
    v = x
    with mg._gc_paused:  # the collector would only slow the building down
        for _ in range(1_000_000):
            v = v.relu()
        v.backward()
    assert x.grad == 1.0 and v.data == 1.0


def test_node_reuse_accumulates():
    a = Value(3.0)
    (a + a).backward()
    assert a.grad == 2.0
    a = Value(3.0)
    b = a * a
    c = b * b
    c.backward()
    assert a.grad == 4 * 3.0 ** 3 and b.grad == 2 * 9.0


def test_second_backward_doubles_leaf_grads_exactly():
    # A leaf used four times: its contributions are summed on their own, then added, so a
    # second pass gives exactly twice the first. Adding them one by one onto the old grad
    # rounds differently for these numbers, in every order (checked below), so the test can
    # tell the two apart.
    x = Value(0.1)
    coefficients = [1.8, 1.39, 1.83, 1.22]
    loss = Value.sum([x * k for k in coefficients])
    loss.backward()
    first = x.grad
    for order in itertools.permutations(coefficients):
        one_by_one = first
        for c in order:
            one_by_one += c
        assert one_by_one != 2 * first
    loss.backward()
    assert x.grad == 2 * first
    middle = x * 0.7  # interior nodes are reset on each call, not doubled
    out = middle * middle
    out.backward()
    out.backward()
    assert middle.grad == 2 * middle.data


def test_gradients_are_plain_floats_even_after_an_interrupted_backward():
    a, b, c, f, e, d, L = expr_demo()
    d._local_grads = (1.0, "not a number")  # breaks the pass half-way through
    with pytest.raises(TypeError):
        L.backward()
    d._local_grads = (1.0, 1.0)
    for v in (a, b, c, f):
        v.grad = 0.0
    L.backward()  # a fresh pass is not confused by what the broken one left behind
    assert (a.grad, b.grad, c.grad, f.grad) == (6.0, -4.0, -2.0, 4.0)
    assert all(type(v.grad) is float for v in (a, b, c, f, e, d, L))


def test_backward_from_any_node_and_interior_reset():
    a, b, c, f, e, d, L = expr_demo()
    L.backward()
    d.backward()  # d as the root: e and c get 1 more, leaves accumulate
    assert d.grad == 1.0 and e.grad == 1.0
    assert a.grad == 6.0 + -3.0 and c.grad == -2.0 + 1.0
    assert f.grad == 4.0  # f is not below d: untouched


def test_no_grad_builds_no_graph_and_restores():
    a = Value(2.0)
    with mg.no_grad():
        b = a * 3 + 1
        with mg.no_grad():
            pass
        c = b.tanh()
    assert b._children == () and c._children == ()
    assert (a * 2)._children != ()
    with pytest.raises(RuntimeError), mg.no_grad():
        raise RuntimeError("boom")
    assert (a * 2)._children != ()


def test_gradcheck_passes_and_catches_a_wrong_gradient():
    assert mg.gradcheck(lambda a, b: (a * b).tanh() + a.exp(), [0.3, -0.7])

    def broken(a):  # the value of a*a with a wrong local gradient
        return Value(a.data * a.data, (a,), "bad", (a.data,))

    with pytest.raises(ValueError, match="input 0"):
        mg.gradcheck(broken, [1.5])


def test_complex_powers_are_refused():
    assert isinstance((-8.0) ** (1 / 3), complex)  # Python's own answer
    with pytest.raises(ValueError, match="complex"):
        Value(-8.0) ** (1 / 3)
    with pytest.raises(ValueError, match="complex"):
        Value(-8.0) ** Value(1 / 3)
    with pytest.raises(ValueError, match="complex"):
        (-8.0) ** Value(1 / 3)


@pytest.mark.parametrize("bad", ["3", None, 1 + 2j, [1.0]])
def test_bad_data_is_a_type_error_naming_the_type(bad):
    with pytest.raises(TypeError, match=type(bad).__name__):
        Value(bad)


def test_domain_errors_name_the_value():
    with pytest.raises(ZeroDivisionError):
        Value(1) / 0
    with pytest.raises(ZeroDivisionError):
        Value(1) / Value(0.0)
    with pytest.raises(ValueError, match="-1.0"):
        Value(-1.0).log()
    with pytest.raises(ValueError, match="0.0"):
        Value(0.0).log()
    with pytest.raises(ValueError, match="-4.0"):
        Value(-4.0).sqrt()


def test_value_power_value_follows_pytorch():
    a, b = Value(-2.0), Value(3.0)  # negative base, integral exponent: real forward
    out = a ** b
    out.backward()
    assert out.data == -8.0 and a.grad == 12.0 and math.isnan(b.grad)
    a, b = Value(0.0), Value(2.5)  # zero base, positive exponent: exponent grad 0
    (a ** b).backward()
    assert b.grad == 0.0 and a.grad == 0.0
    a, b = Value(2.0), Value(0.0)  # zero exponent: base grad 0
    (a ** b).backward()
    assert a.grad == 0.0 and b.grad == math.log(2.0)


def test_value_basics():
    v = Value(3, label="x")
    assert isinstance(v.data, float) and float(v) == 3.0 and v.label == "x"
    assert repr(Value(2.0)) == "Value(data=2.0, grad=0.0)"
    a, b = Value(1.0), Value(1.0)
    assert a != b and len({a, b}) == 2  # identity semantics
    assert (-Value(2.0)).data == -2.0 and abs(Value(-2.5)).data == 2.5
    assert (2 - Value(5.0)).data == -3.0 and (1 / Value(4.0)).data == 0.25
    assert set(mg.ACTIVATIONS) == {"linear", "tanh", "relu", "sigmoid", "leaky_relu", "elu",
                                   "gelu", "silu", "softplus"}
    assert mg.ACTIVATIONS["linear"](v) is v


def test_a_value_has_a_tensors_habits():
    a, b = Value(2.0), Value(3.0)
    c = a * b
    assert c.item() == 6.0 and type(c.item()) is float
    assert a.is_leaf and not c.is_leaf
    assert (a < b, a <= 2.0, b > a, 3 >= b, a > 2.5) == (True, True, True, True, False)
    assert a != Value(2.0) and len({a, Value(2.0)}) == 2  # == stays identity, hash works
    assert sorted([b, a])[0] is a
    d = c.detach()
    assert d.data == 6.0 and d.is_leaf and not d.requires_grad and d is not c
    b.requires_grad = False  # frozen: no gradient, and the optimizer leaves it
    (c * d + a).backward()
    assert a.grad == 3.0 * 6.0 + 1.0 and b.grad == 0.0 and d.grad == 0.0
    opt = mg.SGD([a, b], lr=0.1)
    b.grad = 5.0  # even if something wrote one
    opt.step()
    assert a.data == pytest.approx(0.1, rel=1e-14) and b.data == 3.0 and opt.state[1] == {}


def test_node_is_small_and_takes_user_attributes():
    assert Value.__slots__ == ("data", "grad", "label", "_children", "_local_grads", "_op",
                               "__dict__")
    p = Value(0.5)
    p.m, p.v = 0.0, 0.0  # an optimizer of the user's own keeps its moments on the parameter
    assert (p.m, p.v) == (0.0, 0.0) and (p * 2.0).data == 1.0
    assert sys.getsizeof(p * 2.0) <= 96  # eight words and the collector's header


def lecture_op_tanh(x: Value) -> Value:
    """tanh as the lecture writes a new op: Value(data, children, op), then a closure."""
    t = math.tanh(x.data)
    out = Value(t, (x,), "tanh_lecture")

    def _backward():
        x.grad += (1 - t ** 2) * out.grad
    out._backward = _backward
    return out


def test_an_op_written_the_lectures_way_runs_through_backward_gradcheck_and_the_drawer(
        tmp_path):
    a, b = Value(0.3, "a"), Value(-0.8, "b")
    out = lecture_op_tanh(a * b + a)  # a used twice: gradients add up through the closure
    assert out._children[0]._op == "+" and out._local_grads is None
    out.backward()
    t = math.tanh(0.3 * -0.8 + 0.3)
    assert a.grad == pytest.approx((1 - t * t) * (-0.8 + 1), rel=1e-15)
    assert b.grad == pytest.approx((1 - t * t) * 0.3, rel=1e-15)
    out.backward()  # leaves accumulate, as for the built-in ops
    assert a.grad == pytest.approx(2 * (1 - t * t) * (-0.8 + 1), rel=1e-15)
    assert mg.gradcheck(lambda x, y: lecture_op_tanh(x * y + x) * x, [0.3, -0.8])
    with mg.no_grad():
        assert lecture_op_tanh(a)._children == ()  # no graph, as for any op
    assert "from the _backward code of" in mg.explain(out)
    if HAS_MATPLOTLIB:
        mg.draw_graph(out, str(tmp_path / "lecture.png"))
        assert png_size(tmp_path / "lecture.png")[0] > 100
    # karpathy/micrograd's keyword for the activation
    assert mg.Neuron(3, nonlin=False).activation == "linear"
    assert mg.Layer(3, 2, nonlin=True).activation == "relu"


def test_expr_command_prints_the_table_and_saves_a_real_graph(tmp_path):
    pytest.importorskip("matplotlib")  # expr draws; without it, see the no-matplotlib test
    result = run_cli("expr", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:8]}
    assert rows["L"][-2:] == ["-8.0000", "1.0000"]
    assert rows["a"][-2:] == ["2.0000", "6.0000"]
    assert rows["b"][-2:] == ["-3.0000", "-4.0000"]
    assert rows["c"][-2:] == ["10.0000", "-2.0000"]
    assert rows["f"][-2:] == ["-2.0000", "4.0000"]
    assert list(rows) == ["a", "b", "e", "c", "d", "f", "L"]  # topological order
    assert lines[-1] == "graph saved to graph.png"
    pytest.importorskip("matplotlib")
    width, height = png_size(tmp_path / "graph.png")
    L = mg._expression()
    L.backward()
    fig = mg.draw_graph(L)
    expected_width, expected_height = fig.get_size_inches() * 100  # at 100 dpi
    assert abs(width - expected_width) <= 1 and abs(height - expected_height) <= 1
    assert width > 3 * height > 300
    mg.draw_graph(L, str(tmp_path / "g.svg"), rankdir="TB")  # PDFs: test_plots_write_files
    assert (tmp_path / "g.svg").read_bytes().startswith(b"<?xml")
    with pytest.raises(SystemExit) as bad:
        mg.main(["expr", "--out", "graph.bmp"])
    assert bad.value.code == 2


def test_readme_examples_print_what_they_say(capsys):
    readme = (HERE / "README.md").read_text()
    blocks = [block.split("```", 1)[0] for block in readme.split("```python\n")[1:]]
    checked = 0
    for code in blocks:  # the engine's example and the custom op's: those that print
        promised = [line.split("# ", 1)[1].strip() for line in code.splitlines()
                    if line.startswith("print(") and "# " in line]
        if promised:
            exec(code, {})
            assert capsys.readouterr().out.splitlines() == promised
            checked += 1
    assert checked == 3  # the engine, your own op, an op written the lecture's way


def test_help_lists_the_commands():
    result = run_cli("-h")
    assert result.returncode == 0
    for command in ("expr", "train", "bench"):
        assert command in result.stdout
    result = run_cli("expr", "-h")
    assert "--out" in result.stdout and "--show" in result.stdout
    assert "graphviz is not needed" in " ".join(result.stdout.split())


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------

def test_mlp_shapes_parameters_and_repr():
    model = mg.MLP(3, [4, 4, 1], seed=0)
    assert len(model.parameters()) == 41
    assert isinstance(model([1.0, 2.0, 3.0]), Value)
    wide = mg.MLP(2, [3, 2], seed=0)
    out = wide([Value(1.0), 0.5])
    assert isinstance(out, list) and len(out) == 2
    assert "3 -> 4 -> 4 -> 1" in repr(model) and "41" in repr(model)
    assert repr(mg.Neuron(2, "relu")) == "Neuron(2, activation='relu')"
    assert repr(mg.Layer(2, 3)) == "Layer(2, 3, activation='tanh')"
    layer_out = mg.Layer(2, 3, "relu")([1.0, 2.0])
    assert len(layer_out) == 3 and all(v._op == "relu(dot)" for v in layer_out)
    assert mg.MLP(3, [4, 1], seed=5).state_dict() == mg.MLP(3, [4, 1], seed=5).state_dict()


def test_activations_per_layer():
    model = mg.MLP(2, [3, 1], activation="relu", output_activation="linear", seed=1)
    assert [layer.activation for layer in model.layers] == ["relu", "linear"]
    out = model([0.3, -0.2])
    assert out._op == "dot"  # linear output: the dot node itself
    assert model.layers[0]._forward((Value(0.3), Value(-0.2)))[0]._op == "relu(dot)"


def test_wrong_input_length_says_expected_and_got():
    model = mg.MLP(3, [2, 1], seed=0)
    with pytest.raises(ValueError, match="expects 3 inputs, got 2"):
        model([1.0, 2.0])
    with pytest.raises(ValueError, match="expects 2 inputs, got 3"):
        mg.Neuron(2)([1, 2, 3])
    with pytest.raises(ValueError, match="unknown activation"):
        mg.MLP(2, [1], activation="swish")


def test_zero_grad_and_state_dict_round_trip():
    model = mg.MLP(2, [3, 1], seed=0)
    model([1.0, 2.0]).backward()
    assert any(p.grad for p in model.parameters())
    model.zero_grad()
    assert all(p.grad == 0.0 for p in model.parameters())
    state = json.loads(json.dumps(model.state_dict()))
    assert set(state) == {"layers.0.weight", "layers.0.bias", "layers.1.weight",
                          "layers.1.bias"}
    other = mg.MLP(2, [3, 1], seed=99)
    other.load_state_dict(state)
    assert [p.data for p in other.parameters()] == [p.data for p in model.parameters()]
    state["layers.0.weight"] = state["layers.0.weight"][:2]
    with pytest.raises(ValueError, match="layers.0.weight"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="keys"):
        other.load_state_dict({"w": 1})


def test_save_and_load_give_identical_predictions(tmp_path):
    model = mg.MLP(2, [5, 3, 1], activation="gelu", output_activation="tanh", seed=4)
    path = tmp_path / "model.json"
    model.save(str(path))
    document = json.loads(path.read_text())
    assert document["format"] == mg.MODEL_FORMAT and document["version"] == 1
    loaded = mg.MLP.load(str(path))
    X, _ = mg.make_moons(20)
    assert mg.predict(loaded, X) == mg.predict(model, X)
    assert [f.name for f in tmp_path.iterdir()] == ["model.json"]  # no temporary left over


def test_load_rejects_bad_files_and_never_runs_code(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\x80\x04\x95 pickle bytes")
    with pytest.raises(ValueError, match="not JSON"):
        mg.MLP.load(str(bad))
    model = mg.MLP(2, [1], seed=0)
    model.save(str(bad))
    document = json.loads(bad.read_text())
    marker = tmp_path / "ran"
    document["config"]["nin"] = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    bad.write_text(json.dumps(document))
    with pytest.raises(ValueError):
        mg.MLP.load(str(bad))
    assert not marker.exists()
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a micrograd.py model"):
        mg.MLP.load(str(bad))


def test_save_into_a_missing_folder_fails_and_keeps_nothing(tmp_path):
    model = mg.MLP(2, [1], seed=0)
    with pytest.raises(OSError):
        model.save(str(tmp_path / "missing" / "m.json"))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------

def test_losses_exact_values():
    preds = [Value(0.5), Value(-1.0)]
    assert mg.mse_loss(preds, [1.0, 1.0]).data == (0.25 + 4.0) / 2
    assert mg.hinge_loss([Value(0.5), Value(-2.0)], [1, -1]).data == 0.5 / 2
    logits, labels = [0.3, -1.2, 2.0], [1, 0, 0]
    expected = sum(-(y * math.log(1 / (1 + math.exp(-x)))
                     + (1 - y) * math.log(1 - 1 / (1 + math.exp(-x))))
                   for x, y in zip(logits, labels)) / 3
    got = mg.bce_with_logits_loss([Value(x) for x in logits], labels).data
    assert abs(got - expected) <= 1e-15
    rows, targets = [[1.0, 2.0, 0.5], [0.1, -0.3, 0.0]], [1, 2]
    expected = sum(math.log(sum(math.exp(z) for z in row)) - row[t]
                   for row, t in zip(rows, targets)) / 2
    got = mg.cross_entropy([[Value(z) for z in row] for row in rows], targets).data
    assert abs(got - expected) <= 1e-15
    assert set(mg.LOSSES) == {"mse", "hinge", "bce", "ce"}


def test_loss_gradients_match_finite_differences():
    assert_gradients_match(lambda a, b: mg.mse_loss([a, b], [0.3, -0.2]), [0.1, 0.4])
    assert_gradients_match(lambda a, b: mg.hinge_loss([a, b], [1, -1]), [0.3, -0.2])
    assert_gradients_match(lambda a, b: mg.bce_with_logits_loss([a, b], [1, 0]), [0.3, -2.0])
    assert_gradients_match(lambda a, b, c: mg.cross_entropy([[a, b, c], [c, a, b]], [0, 2]),
                           [0.3, -1.0, 2.0])


def test_losses_stable_for_large_scores():
    for x in (-1000.0, 1000.0):
        v = Value(x)
        loss = mg.bce_with_logits_loss([v], [1])
        loss.backward()
        assert math.isfinite(loss.data) and math.isfinite(v.grad)
        row = [Value(x), Value(-x), Value(0.0)]
        loss = mg.cross_entropy([row], [0])
        loss.backward()
        assert math.isfinite(loss.data) and all(math.isfinite(r.grad) for r in row)
    assert mg.bce_with_logits_loss([Value(-1000.0)], [1]).data == 1000.0


def test_losses_reject_bad_labels():
    with pytest.raises(ValueError, match="-1 or \\+1, got 0 at index 1"):
        mg.hinge_loss([Value(1.0), Value(2.0)], [1, 0])
    with pytest.raises(ValueError, match="class indices 0..2, got 3"):
        mg.cross_entropy([[Value(1.0)] * 3], [3])
    with pytest.raises(ValueError, match="got -1"):
        mg.cross_entropy([[Value(1.0)] * 3], [-1])
    with pytest.raises(ValueError, match="0 or 1"):
        mg.bce_with_logits_loss([Value(1.0)], [2])
    with pytest.raises(ValueError, match="2 predictions but 1 targets"):
        mg.mse_loss([Value(1.0), Value(2.0)], [1.0])


# ---------------------------------------------------------------------------------------------
# Optimizers: expected values from the published update rules, written out plainly here
# ---------------------------------------------------------------------------------------------

def reference_updates(name: str, kw: dict, p: float, grads: list[float]) -> list[float]:
    """One parameter through the update rules as torch.optim's documentation states them."""
    lr = kw.get("lr")
    wd = kw.get("weight_decay", 0.0)
    out, state = [], {}
    for t, g in enumerate(grads, start=1):
        if name != "adamw" and wd:
            g = g + wd * p
        if name == "sgd":
            mu, damp = kw.get("momentum", 0.0), kw.get("dampening", 0.0)
            if mu:
                b = g if t == 1 else mu * state["b"] + (1 - damp) * g
                state["b"] = b
                g = g + mu * b if kw.get("nesterov") else b
            p = p - lr * g
        elif name in ("adam", "adamw"):
            b1, b2 = kw.get("betas", (0.9, 0.999))
            eps = kw.get("eps", 1e-8)
            if name == "adamw":
                p = p * (1 - lr * kw.get("weight_decay", 0.01))
            m = state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
            v = state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g * g
            m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
            p = p - lr * m_hat / (math.sqrt(v_hat) + eps)
        elif name == "rmsprop":
            alpha, eps, mu = kw.get("alpha", 0.99), kw.get("eps", 1e-8), kw.get("momentum", 0)
            v = state["v"] = alpha * state.get("v", 0.0) + (1 - alpha) * g * g
            v_tilde = v
            if kw.get("centered"):
                ga = state["g"] = alpha * state.get("g", 0.0) + (1 - alpha) * g
                v_tilde = v - ga * ga
            if mu:
                b = state["b"] = mu * state.get("b", 0.0) + g / (math.sqrt(v_tilde) + eps)
                p = p - lr * b
            else:
                p = p - lr * g / (math.sqrt(v_tilde) + eps)
        elif name == "adagrad":
            eps, decay = kw.get("eps", 1e-10), kw.get("lr_decay", 0.0)
            clr = lr / (1 + (t - 1) * decay)
            s = state["s"] = state.get("s", 0.0) + g * g
            p = p - clr * g / (math.sqrt(s) + eps)
        out.append(p)
    return out


OPTIMIZER_CASES = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.05, "momentum": 0.9}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.1}),
    ("sgd", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.01}),
    ("adam", {"lr": 0.01}),
    ("adam", {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("adamw", {"lr": 0.01}),
    ("adamw", {"lr": 0.02, "weight_decay": 0.3}),
    ("rmsprop", {"lr": 0.01}),
    ("rmsprop", {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.05}),
    ("rmsprop", {"lr": 0.01, "centered": True, "alpha": 0.9}),
    ("rmsprop", {"lr": 0.01, "centered": True, "momentum": 0.5}),
    ("adagrad", {"lr": 0.1}),
    ("adagrad", {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.1, "eps": 1e-6}),
]


@pytest.mark.parametrize("name,kw", OPTIMIZER_CASES)
def test_optimizers_follow_the_published_update_rules(name, kw):
    rng = random.Random(f"{name}{sorted(kw.items())}")
    starts = [rng.uniform(-2, 2) for _ in range(4)]
    grads = [[rng.uniform(-3, 3) for _ in range(4)] for _ in range(40)]
    params = [Value(x) for x in starts]
    opt = mg.OPTIMIZERS[name](params, **kw)
    trajectory = []
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g
        opt.step()
        trajectory.append([p.data for p in params])
    for i, start in enumerate(starts):
        expected = reference_updates(name, kw, start, [step[i] for step in grads])
        for t, e in enumerate(expected):
            assert abs(trajectory[t][i] - e) <= 1e-12 * max(1.0, abs(e)), (t, i)


# torch 2.13, float64, one tensor a parameter: two groups, five steps of gradient sin(i + t)
GROUP_CASES = {
    "sgd": ({"lr": 0.1, "momentum": 0.9},
            {"lr": 0.01, "weight_decay": 0.1, "nesterov": True, "momentum": 0.5},
            [0.5130659736542227, -2.455856788683437, 0.5100883424004209]),
    "adam": ({"lr": 0.1}, {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.1},
             [0.7361365777816711, -2.303259176253492, 0.4898424646126142]),
    "adamw": ({"lr": 0.1}, {"lr": 0.01, "weight_decay": 0.5},
              [0.731617947869558, -2.2923827711510305, 0.4765824959859852]),
    "rmsprop": ({"lr": 0.1}, {"lr": 0.01, "centered": True, "momentum": 0.9},
                [-0.3261396593001237, -2.7714415808523745, 0.34654066927001376]),
    "adagrad": ({"lr": 0.1}, {"lr": 0.01, "lr_decay": 0.1},
                [0.8671724730703241, -2.0778935230762805, 0.5000060298941085]),
}


@pytest.mark.parametrize("name", list(GROUP_CASES))
def test_parameter_groups_update_as_torchs_do(name):
    first, second, expected = GROUP_CASES[name]
    ps = [Value(v) for v in (1.0, -2.0, 0.5)]
    opt = mg.OPTIMIZERS[name]([{"params": ps[:2], **first}, {"params": ps[2:], **second}])
    for t in range(5):
        for i, p in enumerate(ps):
            p.grad = math.sin(i + t)
        opt.step()
    assert [p.data for p in ps] == expected
    saved = json.loads(json.dumps(opt.state_dict()))
    assert [g["params"] for g in saved["param_groups"]] == [[0, 1], [2]]
    again = mg.OPTIMIZERS[name]([{"params": ps[:2], **first}, {"params": ps[2:], **second}])
    again.load_state_dict(saved)
    assert again.state == opt.state and again.param_groups[1]["lr"] == 0.01


def test_parameter_groups_are_read_written_added_and_checked():
    a, b, c = Value(1.0), Value(2.0), Value(3.0)
    opt = mg.SGD([{"params": [a], "lr": 0.5}], lr=0.1, momentum=0.9)
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[0]["momentum"] == 0.9
    opt.add_param_group({"params": [b, c]})
    assert opt.param_groups[1]["lr"] == 0.1 and opt.params == [a, b, c]
    opt.param_groups[1]["lr"] = 0.2  # a scheduler writes here
    for p in (a, b, c):
        p.grad = 1.0
    opt.step()
    assert (a.data, b.data, c.data) == (0.5, 1.8, 2.8)
    opt.lr = 0.01  # every group's
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.01]
    for bad, error, message in (([{"lr": 0.1}], ValueError, "a dict with 'params'"),
                                (["w"], TypeError, "parameters must be Values, got str"),
                                ([1.0, a], TypeError, "got float"),
                                ([{"params": [a]}, {"params": [a]}], ValueError, "one twice"),
                                ([{"params": [a], "betas": (0.9, 0.99)}], ValueError,
                                 "unknown settings"),
                                ([{"params": [a], "lr": -1}], ValueError, "learning rate"),
                                ("ab", TypeError, "list of Values or of dicts")):
        with pytest.raises(error, match=message):
            mg.SGD(bad, lr=0.1)
    with pytest.raises(ValueError, match="one twice"):
        opt.add_param_group({"params": [c]})
    assert len(opt.param_groups) == 2 and len(opt.state) == 3  # nothing half-added


# torch 2.13's rates (and momenta) over 200 epochs, two groups at 0.1 and 0.01, as the first
# 16 hex digits of the SHA-256 of repr() of the list of every group's lr (and momentum or
# beta1) after each of 199 steps, for each schedule with each optimizer
SCHEDULES = {
    "step": (mg.StepLR, {"step_size": 30, "gamma": 0.5}),
    "multistep": (mg.MultiStepLR, {"milestones": [20, 60, 60, 150], "gamma": 0.3}),
    "exponential": (mg.ExponentialLR, {"gamma": 0.97}),
    "cosine": (mg.CosineAnnealingLR, {"T_max": 50, "eta_min": 0.001}),
    "linear": (mg.LinearLR, {"start_factor": 0.25, "end_factor": 1.0, "total_iters": 40}),
    "onecycle": (mg.OneCycleLR, {"max_lr": 0.5, "total_steps": 200}),
    "plateau": (mg.ReduceLROnPlateau, {"patience": 5, "factor": 0.5}),
}
SCHEDULE_HASHES = {
    "step/sgd": "59321fb8118e3733",
    "step/adam": "59321fb8118e3733",
    "step/adamw": "59321fb8118e3733",
    "step/rmsprop": "4998eccda3ae7e0b",
    "step/adagrad": "1be34cd739f386f7",
    "multistep/sgd": "0448a4aeed520fea",
    "multistep/adam": "0448a4aeed520fea",
    "multistep/adamw": "0448a4aeed520fea",
    "multistep/rmsprop": "e5cfef056f399e5e",
    "multistep/adagrad": "8b56721e4f5f8b5b",
    "exponential/sgd": "296df82c95e2fae4",
    "exponential/adam": "296df82c95e2fae4",
    "exponential/adamw": "296df82c95e2fae4",
    "exponential/rmsprop": "80d7c7fbde9b9e65",
    "exponential/adagrad": "768b8a384f435021",
    "cosine/sgd": "bcf185e600b7ee34",
    "cosine/adam": "bcf185e600b7ee34",
    "cosine/adamw": "bcf185e600b7ee34",
    "cosine/rmsprop": "986883021e177f72",
    "cosine/adagrad": "a98b3ef55108939c",
    "linear/sgd": "04aabd6fb4a2cf2f",
    "linear/adam": "04aabd6fb4a2cf2f",
    "linear/adamw": "04aabd6fb4a2cf2f",
    "linear/rmsprop": "eecbe24a8a7cd0b5",
    "linear/adagrad": "0a17da5f4ffee499",
    "onecycle/sgd": "ce5d06e043ed01cf",
    "onecycle/adam": "ce5d06e043ed01cf",
    "onecycle/adamw": "ce5d06e043ed01cf",
    "onecycle/rmsprop": "ce5d06e043ed01cf",
    "onecycle/adagrad": "5defe5d8a23d6655",
    "plateau/sgd": "08e9783a4689eace",
    "plateau/adam": "08e9783a4689eace",
    "plateau/adamw": "08e9783a4689eace",
    "plateau/rmsprop": "9ca19734f9891eaa",
    "plateau/adagrad": "9b0ad6fb802fa059",
}


@pytest.mark.parametrize("case", list(SCHEDULE_HASHES))
def test_schedulers_set_torchs_rates_to_the_bit(case):
    import hashlib

    name, optimizer = case.split("/")
    cls, options = SCHEDULES[name]
    settings = {"sgd": {"momentum": 0.9}, "rmsprop": {"momentum": 0.5}}.get(optimizer, {})
    ps = [Value(0.0), Value(0.0)]
    opt = mg.OPTIMIZERS[optimizer]([{"params": ps[:1], "lr": 0.1},
                                    {"params": ps[1:], "lr": 0.01}], **settings)
    if name == "onecycle" and optimizer == "adagrad":
        options = {**options, "cycle_momentum": False}  # Adagrad has no momentum
    scheduler = cls(opt, **options)
    seen = []
    for t in range(199):
        opt.step()
        if name == "plateau":
            scheduler.step(max(1 / (1 + t), 0.05) + (t % 7) * 1e-6)
        else:
            scheduler.step()
        for group in opt.param_groups:
            seen.append(group["lr"])
            if "betas" in group:
                seen.append(group["betas"][0])
            elif "momentum" in group:
                seen.append(group["momentum"])
    assert scheduler.get_last_lr() == [g["lr"] for g in opt.param_groups]
    assert hashlib.sha256(repr(seen).encode()).hexdigest()[:16] == SCHEDULE_HASHES[case]
    state = json.loads(json.dumps(scheduler.state_dict()))
    again = cls(mg.OPTIMIZERS[optimizer]([Value(0.0)], **settings), **options) \
        if name != "plateau" else None
    if again is not None:
        with pytest.raises(ValueError, match="not a state_dict"):
            again.load_state_dict({**state, "last_epoch": "5"})


def test_train_steps_a_scheduler_each_epoch_and_resumes_it_to_the_bit(tmp_path, capsys):
    X, y = mg.make_moons(20, seed=0)
    model = mg.MLP(2, [4, 1], seed=0)
    opt = mg.SGD(model.parameters(), lr=0.1)
    history = mg.train(model, X, y, optimizer=opt, epochs=6, verbose=False,
                       scheduler=mg.StepLR(opt, step_size=2, gamma=0.5))
    assert opt.lr == 0.1 * 0.5 ** 3 and len(history) == 6
    common = ["train", "--dataset", "moons", "--samples", "30", "--quiet", "--schedule"]
    for schedule in ("cosine:T_max=10,eta_min=0.001", "plateau:patience=1,factor=0.5",
                     "onecycle:total_steps=10"):
        whole, half = str(tmp_path / "whole.json"), str(tmp_path / "half.json")
        assert mg.main([*common, schedule, "--epochs", "10", "--save", whole]) == 0
        assert mg.main([*common, schedule, "--epochs", "4", "--save", half]) == 0
        assert mg.main([*common, schedule, "--epochs", "6", "--load", half, "--save",
                        half]) == 0
        a, b = (json.loads(Path(f).read_text()) for f in (whole, half))
        assert a["state_dict"] == b["state_dict"], schedule  # resumed: the same, bit for bit
        assert a["training"]["schedule"] == b["training"]["schedule"]
    assert mg.main([*common, "onecycle:total_steps=10", "--epochs", "8", "--save", half]) == 0
    assert mg.main([*common, "onecycle:total_steps=10", "--epochs", "5", "--load", half]) == 1
    assert "2 of its 10 steps left, fewer than the 5 epochs" in capsys.readouterr().err
    for bad in ("warmup", "step:step_size", "step:step_size=0", "linear:start_factor=2",
                "onecycle:total_steps=1", "plateau:mode=sideways", "cosine:T_max=abc"):
        with pytest.raises(SystemExit) as stop:
            mg.main([*common, bad, "--epochs", "2"])
        assert stop.value.code == 2, bad


@pytest.mark.parametrize("cls,options,message", [
    (mg.StepLR, {"step_size": 2, "gamma": math.inf}, "invalid gamma: inf"),
    (mg.StepLR, {"step_size": 2, "gamma": -1.0}, "invalid gamma: -1.0"),
    (mg.MultiStepLR, {"milestones": [2], "gamma": math.nan}, "invalid gamma: nan"),
    (mg.ExponentialLR, {"gamma": math.nan}, "invalid gamma: nan"),
    (mg.CosineAnnealingLR, {"T_max": 5, "eta_min": -0.5}, "invalid eta_min: -0.5"),
    (mg.OneCycleLR, {"max_lr": math.inf, "total_steps": 5}, "invalid max_lr: inf"),
    (mg.OneCycleLR, {"max_lr": 0.1, "total_steps": 5, "div_factor": 0.0}, "div_factor: 0.0"),
    (mg.OneCycleLR, {"max_lr": 0.1, "total_steps": 5, "final_div_factor": math.nan},
     "final_div_factor: nan"),
    (mg.OneCycleLR, {"max_lr": 0.1, "total_steps": 5, "max_momentum": 2.0},
     "max_momentum: 2.0"),
    (mg.ReduceLROnPlateau, {"factor": -0.5}, "invalid factor: -0.5"),
    (mg.ReduceLROnPlateau, {"min_lr": math.inf}, "invalid min_lr: inf"),
    (mg.ReduceLROnPlateau, {"threshold": math.nan}, "invalid threshold: nan"),
    (mg.ReduceLROnPlateau, {"cooldown": -1}, "cooldown must be at least 0")])
def test_a_schedule_that_would_set_a_rate_of_nan_inf_or_below_zero_is_refused(cls, options,
                                                                              message):
    opt = mg.SGD([Value(1.0)], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=re.escape(message)):
        cls(opt, **options)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["momentum"] == 0.9


def test_a_schedule_step_that_overflows_the_rate_is_refused_and_changes_nothing():
    opt = mg.SGD([Value(1.0)], lr=0.1)
    scheduler = mg.ExponentialLR(opt, gamma=1e10)
    for _ in range(30):
        scheduler.step()
    before = (opt.lr, scheduler.last_epoch, scheduler.get_last_lr())
    with pytest.raises(ValueError, match="ExponentialLR, step 31: invalid learning rate: inf"):
        scheduler.step()
    assert (opt.lr, scheduler.last_epoch, scheduler.get_last_lr()) == before


def test_one_cycle_has_torchs_rates_and_ends_at_its_end_not_below_zero(tmp_path):
    # torch 2.13, OneCycleLR(SGD(lr=0.1, momentum=0.9), max_lr=0.1, total_steps=5,
    # anneal_strategy="linear"): the rates and momenta of steps 1 to 4; its step 5 goes on
    # along the line to -0.02857091428571429, a rate here refused by every optimizer
    opt = mg.SGD([Value(0.0)], lr=0.1, momentum=0.9)
    scheduler = mg.OneCycleLR(opt, max_lr=0.1, total_steps=5, anneal_strategy="linear")
    seen = []
    for _ in range(5):
        scheduler.step()
        seen.append((opt.lr, opt.param_groups[0]["momentum"]))
    assert seen[:4] == [(0.08571434285714286, 0.8642857142857142),
                        (0.05714302857142858, 0.8928571428571428),
                        (0.028571714285714284, 0.9214285714285714),
                        (3.999999999976245e-07, 0.95)]
    assert seen[4] == seen[3]  # the cycle's end, min_lr = 0.1 / 25 / 1e4
    with pytest.raises(ValueError, match="stepped past its total_steps, 5"):
        scheduler.step()
    assert scheduler.last_epoch == 5
    # a run on such a schedule saves a file that loads, to evaluate or to go on with
    model = str(tmp_path / "m.json")
    flags = ["train", "--epochs", "5", "--quiet", "--schedule", "onecycle:anneal_strategy=linear"]
    assert run_cli(*flags, "--save", model).returncode == 0
    evaluated = run_cli("train", "--epochs", "0", "--load", model, "--quiet")
    assert evaluated.returncode == 0 and "evaluated only" in evaluated.stdout, evaluated.stderr
    assert run_cli("train", "--epochs", "2", "--load", model, "--quiet").returncode == 0
    bad = run_cli("train", "--epochs", "2", "--schedule", "onecycle:max_lr=inf")
    assert bad.returncode == 2 and "invalid max_lr: inf" in bad.stderr, bad.stderr


def test_a_loss_given_the_wrong_shape_of_output_or_train_a_wrong_kind_of_setting_says_so():
    one, two = mg.MLP(2, [1], seed=0), mg.MLP(2, [2], seed=0)
    X = [[1.0, 2.0], [0.5, -1.0]]
    with pytest.raises(TypeError, match="cross_entropy needs a list of class scores per sample, "
                                        "got Value at index 0: a model with one output"):
        mg.train(one, X, [1, 0], loss="ce", epochs=1, verbose=False)
    for loss in ("mse", "hinge", "bce"):
        with pytest.raises(TypeError, match="needs one score per sample, got a list of 2 at "
                                            "index 0: a model with an output per class needs "
                                            r"cross entropy \(ce\)"):
            mg.train(two, X, [1, 0], loss=loss, epochs=1, verbose=False)
    for options, message in (({"epochs": 2.5}, "epochs must be a whole number, got float: 2.5"),
                             ({"batch_size": 1.5}, "batch_size must be a whole number"),
                             ({"epochs": 0}, "epochs must be at least 1, got 0")):
        with pytest.raises((TypeError, ValueError), match=message):
            mg.train(one, X, [1, 0], verbose=False, **options)
    with pytest.raises(TypeError, match=r"X\[1\]\[0\] is 'a': training needs numbers"):
        mg.train(one, [[1.0, 2.0], ["a", 1.0]], [1, 0], verbose=False)
    other = mg.SGD(one.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="the scheduler steps another optimizer than "
                                         "train\\(\\)'s"):
        mg.train(one, X, [1, 0], optimizer="adam", scheduler=mg.StepLR(other, 1), verbose=False)
    assert other.lr == 0.1  # not stepped
    with pytest.raises(TypeError, match="scheduler must be an LRScheduler, got str: 'cosine'"):
        mg.train(one, X, [1, 0], scheduler="cosine", verbose=False)
    with pytest.raises(ValueError, match="the optimizer holds none of the model's parameters"):
        mg.train(one, X, [1, 0], optimizer=mg.SGD(two.parameters(), lr=0.1), verbose=False)
    with pytest.raises(ValueError, match="lr and weight_decay are for an optimizer given by "
                                         "name"):
        mg.train(one, X, [1, 0], optimizer=other, lr=0.5, verbose=False)
    assert [p.data for p in one.parameters()] == [p.data for p in mg.MLP(2, [1], seed=0)
                                                  .parameters()]  # nothing trained so far
    with pytest.raises(TypeError, match=r"val must be a pair \(X_val, y_val\), got tuple of 1"):
        mg.train(one, X, [1, 0], val=(X,), verbose=False)
    with pytest.raises(ValueError, match="a label for each score, got 2 scores and 1 label"):
        mg.accuracy([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="give seed or generator, not both"):
        mg.train(one, X, [1, 0], seed=1, generator=random.Random(2), verbose=False)
    for show in (mg.explain, mg.draw_graph, mg.step_through, mg.quiz):
        with pytest.raises(TypeError, match="expected a Value, the root of a graph, got float"):
            show(3.0)
    frozen = mg.train(one, X, [1, 0], optimizer=mg.SGD(one.parameters()[:1], lr=0.1),
                      epochs=2, verbose=False)  # a part of the model: as torch, allowed
    assert frozen.loss[0] != frozen.loss[1]


def test_optimizer_single_steps_by_hand():
    p = Value(1.0)
    p.grad = 0.5
    mg.SGD([p], lr=0.1).step()
    assert p.data == 0.95
    p = Value(1.0)
    p.grad = 0.5
    mg.Adam([p], lr=0.1).step()  # first step: m_hat = g, sqrt(v_hat) = |g|
    assert abs(p.data - (1.0 - 0.1 * 0.5 / (0.5 + 1e-8))) <= 1e-15
    p = Value(1.0)
    p.grad = 0.0
    mg.AdamW([p], lr=0.1).step()  # decoupled decay alone: p * (1 - lr * 0.01)
    assert p.data == 1.0 * (1 - 0.1 * 0.01)


def test_optimizer_defaults_are_pytorchs():
    import inspect

    def defaults(cls):
        return {k: v.default for k, v in inspect.signature(cls).parameters.items()
                if k != "params"}

    assert defaults(mg.SGD) == {"lr": 0.001, "momentum": 0.0, "dampening": 0.0,
                                "nesterov": False, "weight_decay": 0.0}
    assert defaults(mg.Adam) == {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-8,
                                 "weight_decay": 0.0}
    assert defaults(mg.AdamW)["weight_decay"] == 0.01
    assert defaults(mg.RMSprop) == {"lr": 0.01, "alpha": 0.99, "eps": 1e-8,
                                    "weight_decay": 0.0, "momentum": 0.0, "centered": False}
    assert defaults(mg.Adagrad) == {"lr": 0.01, "lr_decay": 0.0, "weight_decay": 0.0,
                                    "eps": 1e-10}
    assert set(mg.OPTIMIZERS) == {"sgd", "adam", "adamw", "rmsprop", "adagrad"}


def test_optimizer_lr_is_settable_and_bad_values_refused():
    p = Value(1.0)
    opt = mg.SGD([p], lr=0.1)
    opt.lr = 0.5
    p.grad = 1.0
    opt.step()
    assert p.data == 0.5
    opt.zero_grad()
    assert p.grad == 0.0
    with pytest.raises(ValueError, match="learning rate: -1"):
        mg.Adam([p], lr=-1)
    with pytest.raises(ValueError, match="beta1"):
        mg.Adam([p], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="nesterov"):
        mg.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="empty"):
        mg.SGD([], lr=0.1)


def test_centered_rmsprop_keeps_a_parameter_through_a_huge_gradient_as_torch_does():
    # torch 2.13: two steps of gradient 1e200 leave the parameter at 1.0 (square_avg inf)
    for fma in (mg._fma_exact, mg._fma):  # the fallback of Pythons before 3.13 too
        p = Value(1.0)
        opt = mg.RMSprop([p], lr=0.01, centered=True)
        original, mg._fma = mg._fma, fma
        try:
            for _ in range(2):
                p.grad = 1e200
                opt.step()
        finally:
            mg._fma = original
        assert p.data == 1.0 and opt.state[0]["square_avg"] == math.inf
    assert mg._fma_exact(1e200, 1e200, math.inf) == math.inf  # not inf - inf
    assert mg._fma_exact(-1e200, 1e200, math.inf) == math.inf


def test_cross_entropy_is_right_for_logits_of_any_size():
    for big in (1e15, 1e300, -1e300):
        assert mg.cross_entropy([[Value(big), Value(big)]], [0]).data == math.log(2)
    loss = mg.cross_entropy([[Value(1e15), Value(1e15 + 2.0)]], [0])
    assert loss.data == pytest.approx(2.0 + math.log1p(math.exp(-2.0)), rel=1e-15)


def test_fma_emulation_is_exact():
    from fractions import Fraction

    rng = random.Random(5)
    for _ in range(2000):
        x, y = rng.uniform(-10, 10), rng.uniform(-10, 10) * 10.0 ** rng.randint(-20, 20)
        z = rng.uniform(-1, 1) * 10.0 ** rng.randint(-30, 30)
        assert mg._fma_exact(x, y, z) == float(Fraction(x) * Fraction(y) + Fraction(z))
    assert mg._fma_exact(1e308, 10.0, 0.0) == math.inf
    assert math.isnan(mg._fma_exact(math.nan, 1.0, 1.0))


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------

def test_datasets_are_seeded_and_leave_the_global_generator_alone():
    state = random.getstate()
    for name in ("moons", "circles", "spiral"):
        maker = mg.DATASETS[name]
        X, y = maker(seed=1)
        assert (X, y) == maker(seed=1)
        assert X != maker(seed=2)[0]
        assert all(len(x) == 2 and all(isinstance(c, float) for c in x) for x in X)
    assert random.getstate() == state
    X, y = mg.make_moons(101)
    assert len(X) == 101 and sorted(set(y)) == [0, 1]
    X, y = mg.make_spiral(150, classes=3)
    assert len(X) == 150 and [y.count(k) for k in range(3)] == [50, 50, 50]
    X, y = mg.make_circles(40, noise=0.0, factor=0.5)
    radii = {round(math.hypot(*x), 9): t for x, t in zip(X, y)}
    assert radii == {1.0: 0, 0.5: 1}
    assert mg.make_toy() == ([[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0],
                              [1.0, 1.0, -1.0]], [1.0, -1.0, -1.0, 1.0])
    assert mg.make_xor()[1] == [0, 1, 1, 0]
    with pytest.raises(ValueError, match="samples"):
        mg.make_moons(0)
    with pytest.raises(ValueError, match="noise"):
        mg.make_moons(10, noise=-1)


def test_dataset_makers_use_their_noise_and_every_sample():
    for name in ("moons", "circles", "spiral"):
        maker = mg.DATASETS[name]
        quiet, loud = maker(noise=0.0, seed=1)[0], maker(noise=0.3, seed=1)[0]
        # no noise: the same points from any seed (only their order is shuffled)
        assert quiet != loud and sorted(quiet) == sorted(maker(noise=0.0, seed=2)[0])
    X, y = mg.make_moons(10, noise=0.0)  # on the half circles themselves
    assert all(math.isclose(math.hypot(a, b) if t == 0 else math.hypot(1 - a, 0.5 - b), 1.0)
               for (a, b), t in zip(X, y))
    X, y = mg.make_spiral(10, classes=3)
    assert len(X) == 10 and [y.count(k) for k in range(3)] == [4, 3, 3]  # nothing dropped
    X, y = mg.make_moons(7)
    assert len(X) == 7 and y.count(0) == 3 and y.count(1) == 4


def test_softplus_has_the_exact_value_in_both_regimes():
    for x in (-5.0, 0.0, 3.0, 19.5, 20.0):
        assert Value(x).softplus().data == math.log1p(math.exp(x))
    assert Value(20.5).softplus().data == 20.5 and Value(3.0).softplus().data != 3.0


def test_hinge_at_a_margin_of_exactly_zero_has_no_slope():
    for score, label in ((1.0, 1.0), (-1.0, -1.0)):
        s = Value(score)
        loss = mg.hinge_loss([s], [label])
        loss.backward()
        assert loss.data == 0.0 and s.grad == 0.0
    s = Value(0.999)
    mg.hinge_loss([s], [1.0]).backward()
    assert s.grad == -1.0


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def toy_run(seed: int, **kw) -> tuple[mg.MLP, mg.History]:
    X, y = mg.make_toy()
    model = mg.MLP(3, [4, 4, 1], seed=seed)
    return model, mg.train(model, X, y, seed=seed, verbose=False, **kw)


def test_train_is_reproducible_bit_for_bit():
    _, a = toy_run(3, batch_size=2, optimizer="adam")
    _, b = toy_run(3, batch_size=2, optimizer="adam")
    _, c = toy_run(4, batch_size=2, optimizer="adam")
    assert a.loss == b.loss and a.loss != c.loss
    assert len(a) == 20 and len(a.seconds) == 20


def test_train_minibatches_take_one_step_per_batch():
    X, y = mg.make_moons(10)
    y = [2 * t - 1 for t in y]
    model = mg.MLP(2, [4, 1], seed=0)
    steps = []

    class CountingSGD(mg.SGD):
        def step(self):
            steps.append(1)
            super().step()

    mg.train(model, X, y, loss="hinge", optimizer=CountingSGD(model.parameters(), lr=0.1),
             epochs=3, batch_size=4, verbose=False)
    assert len(steps) == 3 * 3  # batches of 4, 4 and 2


def test_train_with_validation_and_history():
    X, y = mg.make_moons(60)
    y = [2 * t - 1 for t in y]
    model = mg.MLP(2, [8, 1], activation="relu", output_activation="linear", seed=0)
    history = mg.train(model, X[:40], y[:40], loss="hinge", optimizer="adam", epochs=15,
                       val=(X[40:], y[40:]), verbose=False, seed=0)
    assert len(history.val_loss) == 15 and history.val_accuracy[-1] is not None
    assert history.loss[-1] < history.loss[0]
    loss, acc = mg.evaluate(model, X[40:], y[40:], "hinge")
    assert loss == history.val_loss[-1] and acc == history.val_accuracy[-1]


def test_train_builds_optimizers_with_their_defaults():
    X, y = mg.make_toy()
    model = mg.MLP(3, [2, 1], seed=0)
    before = [p.data for p in model.parameters()]
    for p in model.parameters():
        p.grad = 0.0
    mg.train(model, X[:1], y[:1], optimizer="adamw", lr=1e-9, epochs=1, verbose=False)
    # With a tiny lr the step is the decoupled decay of AdamW's default 0.01, and little more.
    assert all(abs(p.data - b * (1 - 1e-9 * 0.01)) < 1e-8 for p, b in
               zip(model.parameters(), before))


def test_train_stops_on_divergence_naming_the_epoch():
    X, y = mg.make_toy()
    model = mg.MLP(3, [4, 1], activation="relu", output_activation="linear", seed=0)
    with pytest.raises(mg.TrainingError, match=r"epoch \d+.*lower learning rate"):
        mg.train(model, X, y, loss="hinge", optimizer="sgd", lr=1e300, verbose=False)


def test_gc_is_paused_while_train_builds_graphs():
    seen = []

    def recording_mse(preds, targets):
        seen.append(gc.isenabled())
        return mg.mse_loss(preds, targets)

    X, y = mg.make_toy()
    assert gc.isenabled()
    mg.train(mg.MLP(3, [2, 1], seed=0), X, y, loss=recording_mse, epochs=2, verbose=False)
    # two steps, then the check of the loss after the last one
    assert seen == [False, False, False] and gc.isenabled()


def test_gc_state_restored_after_train_even_when_it_raises():
    X, y = mg.make_toy()
    for enabled in (True, False):
        gc.enable() if enabled else gc.disable()
        try:
            toy_run(0, epochs=2)
            assert gc.isenabled() == enabled
            with pytest.raises(mg.TrainingError):
                mg.train(mg.MLP(3, [1], output_activation="linear", seed=0), X, y,
                         lr=1e300, epochs=5, verbose=False)
            assert gc.isenabled() == enabled
        finally:
            gc.enable()


def test_training_that_cannot_train_says_so_before_changing_anything():
    X, y = mg.make_moons(20, seed=0)
    model = mg.MLP(2, [3, 1], seed=0)
    before = model.state_dict()
    with mg.no_grad(), pytest.raises(RuntimeError, match="inside no_grad"):
        mg.train(model, X, y, epochs=2, verbose=False)
    bad_sets = [(([[0.0, 1.0], [1.0]], [0, 1]), r"val X\[1\] has 1 input, val X\[0\] 2"),
                (([], []), "validation data, got 0 and 0"),
                (([[0.0, math.nan]], [1]), r"val X\[0\]\[1\] is nan"),
                (([[0.0, 1.0]], [math.inf]), r"val y\[0\] is inf"),
                (([[0.0, 1.0, 2.0]], [1]), "validation samples have 3 inputs")]
    for val, message in bad_sets:
        with pytest.raises(ValueError, match=message):
            mg.train(model, X, y, epochs=2, verbose=False, val=val)
    with pytest.raises(ValueError, match=r"X\[7\] has 1 input,"):
        mg.train(model, X[:7] + [[1.0]] + X[8:], y, epochs=2, verbose=False)
    assert model.state_dict() == before  # no run that failed changed the model


def test_validation_is_read_at_the_training_cut_off():
    # -1/+1 targets with squared error split at 0; a validation set of +1 only must not be
    # read as 0/1 labels split at 0.5
    X, y = mg.make_toy()
    model = mg.MLP(3, [4, 4, 1], seed=0)
    history = mg.train(model, X, y, epochs=2, lr=0.1, verbose=False,
                       val=([X[0], X[3]], [1.0, 1.0]))
    scores = mg.predict(model, [X[0], X[3]])
    assert 0 < min(scores) < 0.5  # right at 0, wrong at 0.5: the cut-off decides
    assert history.val_accuracy[-1] == 1.0 and history.accuracy[-1] == 1.0


def test_noise_that_overflows_the_data_is_refused():
    for maker in (mg.make_moons, mg.make_circles, mg.make_spiral):
        with pytest.raises(ValueError, match=r"noise 1e\+308 is too large"):
            maker(noise=1e308)
    result = run_cli("train", "--dataset", "moons", "--noise", "1e308")
    assert result.returncode == 2 and "noise 1e+308 is too large" in result.stderr
    assert "usage:" in result.stderr and "Traceback" not in result.stderr


def test_load_state_dict_refuses_bad_states_and_changes_nothing():
    params = [Value(1.0), Value(2.0)]
    opt = mg.Adam(params, lr=0.1)
    for p in params:
        p.grad = 0.5
    opt.step()
    good = opt.state_dict()
    cases = [
        (lambda d: d["state"]["0"].update(exp_avg_sq=-1.0), "state 0: exp_avg_sq is -1.0"),
        (lambda d: d["state"]["1"].update(step=-3), "state 1: step is -3"),
        (lambda d: d.update(state=[]), "state must be a mapping, got list"),
        (lambda d: d.update(state=None), "state must be a mapping, got NoneType"),
        (lambda d: d["state"].update({"-1": {"step": 1.0}}), "state '-1' names no parameter"),
        (lambda d: d["state"].update({"2": {"step": 1.0}}), "state '2' names no parameter"),
        (lambda d: d["param_groups"][0].update(betas=[0.9, 0.99, 0.999]), "pair of numbers"),
        (lambda d: d["param_groups"][0].update(betas=None), "betas"),
        (lambda d: d["state"]["0"].update(exp_avg=None), "exp_avg is None"),
        (lambda d: d["param_groups"][0].pop("eps"), "'eps' is missing"),
        (lambda d: d.update(param_groups={}), "param_groups"),
    ]
    for spoil, message in cases:
        bad = json.loads(json.dumps(good))
        spoil(bad)
        with pytest.raises(ValueError, match=re.escape(message)):
            opt.load_state_dict(bad)
        assert json.dumps(opt.state_dict()) == json.dumps(good)  # nothing changed
    opt.load_state_dict(json.loads(json.dumps(good)))  # keys as JSON gives them: "0", "1"
    assert opt.state_dict()["state"] == good["state"]


def test_resuming_refuses_bad_files_in_one_line_and_other_data(tmp_path):
    assert mg.main(["train", "--dataset", "moons", "--samples", "20", "--epochs", "2",
                    "--save", str(tmp_path / "m.json"), "--quiet"]) == 0
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["training"]["data"] == {"dataset": "moons", "samples": 20, "noise": 0.1,
                                         "seed": 0, "loss": "hinge", "val_split": 0.0}
    spoilers = [
        (lambda t: t["optimizer_state"]["state"]["0"].update(exp_avg_sq=-1), "exp_avg_sq"),
        (lambda t: t["optimizer_state"].update(state=[]), "state must be a mapping"),
        (lambda t: t["optimizer_state"]["param_groups"][0].update(betas=[0.9, 0.9, 0.9]),
         "betas"),
        (lambda t: t.update(history=[]), "history must be a mapping"),
        (lambda t: t["history"].update(loss="x"), "history.loss"),
        (lambda t: t.update(generator=None), "cannot resume"),
        (lambda t: t.update(epochs=-2), "epochs must be a whole number"),
        (lambda t: t.update(data=[]), "data must be a JSON object"),
        (lambda t: t.pop("generator"), "'generator' is missing"),
    ]
    for spoil, message in spoilers:
        bad = json.loads(json.dumps(saved))
        spoil(bad["training"])
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        result = run_cli("train", "--dataset", "moons", "--samples", "20", "--load",
                         str(tmp_path / "bad.json"), "--save", str(tmp_path / "bad.json"),
                         cwd=tmp_path)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert message in result.stderr and len(result.stderr.splitlines()) == 1, message
        assert json.loads((tmp_path / "bad.json").read_text()) == bad  # left as it was
    # other data: refused for training on, noted for evaluating
    result = run_cli("train", "--dataset", "moons", "--samples", "30", "--load",
                     str(tmp_path / "m.json"), cwd=tmp_path)
    assert result.returncode == 1 and "trained on other data (samples 20 there, 30 here)" \
        in result.stderr
    result = run_cli("train", "--dataset", "moons", "--noise", "0.3", "--epochs", "0",
                     "--samples", "20", "--load", str(tmp_path / "m.json"), cwd=tmp_path)
    assert result.returncode == 0 and "noise 0.1 there, 0.3 here" in result.stdout


def test_epoch_lines_print_the_losses_train_measured(capsys):
    X, y = mg.make_moons(30, seed=0)
    model = mg.MLP(2, [4, 1], activation="relu", output_activation="linear", seed=0)
    history = mg.train(model, X, [2 * t - 1 for t in y], loss="hinge", optimizer="adam",
                       epochs=5, seed=0, batch_size=8)
    printed = epoch_losses(capsys.readouterr().out)
    assert printed == [round(loss, 6) for loss in history.loss] and len(printed) == 5
    assert history.loss[0] == pytest.approx(0.901969, abs=1e-6)  # this seed's first epoch


def test_train_gives_adamw_its_default_weight_decay():
    X, y = mg.make_moons(20, seed=0)
    runs = {}
    for name, optimizer in (("by name", "adamw"), ("0.01", None), ("none", None)):
        model = mg.MLP(2, [3, 1], seed=0)
        if optimizer is None:
            optimizer = mg.AdamW(model.parameters(), lr=0.05,
                                 weight_decay=0.01 if name == "0.01" else 0.0)
        mg.train(model, X, y, optimizer=optimizer, epochs=2, verbose=False, seed=0)
        runs[name] = model.state_dict()
    assert runs["by name"] == runs["0.01"] != runs["none"]  # bit for bit with the default


def test_predict_and_evaluate_run_the_model_without_a_graph():
    model, seen = mg.MLP(2, [3, 1], seed=0), []

    def watched(x):
        out = model(x)
        seen.append(out._children)
        return out

    mg.predict(watched, [[1.0, 2.0], [0.5, 0.5]])
    mg.evaluate(watched, [[1.0, 2.0]], [1.0])
    assert seen == [(), (), ()]  # leaves: no graph was built


def test_a_failed_save_keeps_the_old_model_whole(tmp_path, monkeypatch):
    path = str(tmp_path / "m.json")
    old, new = mg.MLP(3, [4, 1], seed=0), mg.MLP(3, [4, 1], seed=1)
    old.save(path)

    def fail(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mg.os, "fsync", fail)
    with pytest.raises(OSError, match="No space"):
        new.save(path)
    monkeypatch.undo()
    assert mg.MLP.load(path).state_dict() == old.state_dict()
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_a_resumed_run_takes_the_learning_rate_given_now(tmp_path, capsys):
    common = ["train", "--dataset", "moons", "--samples", "20", "--quiet"]
    assert mg.main([*common, "--epochs", "2", "--save", str(tmp_path / "a.json")]) == 0
    assert mg.main([*common, "--epochs", "1", "--load", str(tmp_path / "a.json"), "--lr",
                    "0.2", "--weight-decay", "0.5", "--save", str(tmp_path / "b.json")]) == 0
    group = json.loads((tmp_path / "b.json").read_text())["training"]["optimizer_state"][
        "param_groups"][0]
    assert group["lr"] == 0.2 and group["weight_decay"] == 0.5
    assert mg.main([*common, "--epochs", "1", "--load", str(tmp_path / "a.json"), "--save",
                    str(tmp_path / "c.json")]) == 0  # without the flag: the saved rate
    group = json.loads((tmp_path / "c.json").read_text())["training"]["optimizer_state"][
        "param_groups"][0]
    assert group["lr"] == 0.05 and group["weight_decay"] == 0.0


def test_ctrl_c_stops_a_run_with_status_130(tmp_path):
    process = subprocess.Popen([sys.executable, SCRIPT, "train", "--dataset", "moons",
                                "--epochs", "100000"], cwd=tmp_path, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline().startswith("dataset moons")
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 130 and err.strip() == "micrograd.py train: interrupted"


def test_predict_and_evaluate_build_no_graph():
    model = mg.MLP(2, [3, 1], seed=0)
    with mg.no_grad():
        assert model([1.0, 2.0])._children == ()
    assert mg.predict(model, [[1.0, 2.0]]) == [model([1.0, 2.0]).data]
    assert mg.accuracy([0.5, -0.2, 0.1], [1, -1, -1]) == 2 / 3
    assert mg.accuracy([[0.1, 0.9], [2.0, 1.0]], [1, 1]) == 0.5
    assert mg.accuracy([0.5], [0.3]) is None


def final_line(stdout: str) -> str:
    return [line for line in stdout.splitlines() if line.startswith("final:")][0]


def epoch_losses(stdout: str) -> list[float]:
    return [float(line.split("loss")[1].split()[0]) for line in stdout.splitlines()
            if line.startswith("epoch")]


def signed_predictions(stdout: str, which: str) -> list[float]:
    line = [x for x in stdout.splitlines() if x.startswith(f"predictions {which}")][0]
    return [float(x) for x in line.split(":")[1].split()]


@pytest.mark.parametrize("flags", [[], ["--epochs", "20", "--optim", "adam"]])
def test_train_command_toy_runs_learn(flags):
    result = run_cli("train", *flags)
    assert result.returncode == 0, result.stderr
    after = signed_predictions(result.stdout, "after")
    assert [p > 0 for p in after] == [True, False, False, True]
    losses = epoch_losses(result.stdout)
    assert len(losses) == 20 and losses[-1] <= losses[0] / 10
    assert "predictions before" in result.stdout


def test_train_command_datasets_reach_their_accuracy():
    minimum = {"moons": 97.0, "spiral": 90.0, "xor": 100.0}
    env = {**os.environ, "MPLBACKEND": "Agg"}
    runs = {name: subprocess.Popen([sys.executable, SCRIPT, "train", "--dataset", name,
                                    "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=env)
            for name in minimum}  # side by side, to use both cores
    for name, process in runs.items():
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        assert stdout.count("\n") == 1  # --quiet: the summary alone
        accuracy = float(final_line(stdout).split("accuracy ")[1].split("%")[0])
        assert accuracy >= minimum[name], (name, stdout)


def run_on_a_terminal(*args: str, term: str = "xterm") -> str:
    """Run the command line with its output on a pseudo-terminal; return what it printed."""
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, SCRIPT, *args], stdout=follower,
                               stderr=subprocess.PIPE, close_fds=True,
                               env={**os.environ, "TERM": term})
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=30)
    os.close(leader)
    assert process.returncode == 0
    return output.decode()


def test_train_command_progress_on_a_terminal():
    long_run = run_on_a_terminal("train", "--epochs", "60")
    assert long_run.count("\repoch") == 60  # each epoch rewrites the same line
    assert "epoch 60/60" in long_run and "final:" in long_run
    short_run = run_on_a_terminal("train")  # the seed's run: a line per epoch
    assert "\repoch" not in short_run
    assert len([line for line in short_run.splitlines() if line.startswith("epoch")]) == 20


def test_train_command_thins_long_runs_elsewhere():
    result = run_cli("train", "--epochs", "200")
    lines = [line for line in result.stdout.splitlines() if line.startswith("epoch")]
    assert len(lines) == 51 and lines[0].startswith("epoch   1/200")
    assert lines[-1].startswith("epoch 200/200")


def test_train_command_seeds():
    args = ["train", "--dataset", "circles", "--samples", "40", "--epochs", "5"]
    a, b, c = run_cli(*args, "--seed", "1"), run_cli(*args, "--seed", "1"), \
        run_cli(*args, "--seed", "2")
    assert epoch_losses(a.stdout) == epoch_losses(b.stdout)
    assert len(epoch_losses(a.stdout)) == 5
    assert epoch_losses(a.stdout) != epoch_losses(c.stdout)


def test_train_command_flags_work_together(tmp_path):
    result = run_cli("train", "--dataset", "moons", "--samples", "40", "--noise", "0.05",
                     "--epochs", "4", "--optim", "rmsprop", "--lr", "0.02", "--batch-size",
                     "16", "--hidden", "6", "--activation", "gelu", "--loss", "bce",
                     "--weight-decay", "0.001", "--val-split", "0.25")
    assert result.returncode == 0, result.stderr
    assert "30 samples" in result.stdout and "10 held out" in result.stdout
    assert "MLP(2 -> 6 -> 1, activation='gelu', output_activation='linear'" in result.stdout
    assert "val_accuracy" in final_line(result.stdout)


def test_train_command_bad_flag_exits_2_with_usage():
    result = run_cli("train", "--epochs", "-1")
    assert result.returncode == 2
    assert result.stderr.startswith("usage:") and "Traceback" not in result.stderr
    assert "--epochs: must be at least 0, got -1" in result.stderr


@pytest.mark.parametrize("flags", [["--lr", "-1"], ["--lr", "nan"], ["--lr", "0"],
                                   ["--batch-size", "0"],
                                   ["--hidden", "4,x"], ["--hidden", "4,0"],
                                   ["--optim", "lbfgs"], ["--val-split", "1.5"],
                                   ["--dataset", "mnist"], ["--plot", "curves.txt"],
                                   ["--samples", "10"], ["--weight-decay", "-0.1"],
                                   ["--load", "model.json", "--hidden", "8"]])
def test_train_bad_flags_are_usage_errors(flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        mg.main(["train", *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage:") and "error:" in err


def test_train_command_save_load_and_failures(tmp_path, capsys):
    model_path = tmp_path / "model.json"
    first = run_cli("train", "--save", str(model_path))
    assert first.returncode == 0 and model_path.exists()
    saved = model_path.read_text()
    again = run_cli("train", "--load", str(model_path), "--epochs", "3")
    assert again.returncode == 0
    first_loss = epoch_losses(first.stdout)[-1]
    assert epoch_losses(again.stdout)[0] < first_loss * 1.01  # continues, not from scratch
    diverged = run_cli("train", "--lr", "1e300", "--loss", "hinge", "--activation", "relu",
                       "--save", str(model_path))
    assert diverged.returncode == 1
    assert "epoch" in diverged.stderr and "lower learning rate" in diverged.stderr
    assert model_path.read_text() == saved  # the earlier file is untouched
    failures = {
        "missing folder": (["--save", str(tmp_path / "nope" / "m.json")], "does not exist"),
        "missing file": (["--load", str(tmp_path / "absent.json")], "no such file"),
        "not json": (["--load", str(HERE / "tests.py")], "not JSON"),
        "architecture": (["--load", str(model_path), "--dataset", "moons"], "3 inputs"),
        "graph too big": (["--graph", str(tmp_path / "g.png"), "--hidden", "200,200"],
                          "more than 400 values even folded" if HAS_MATPLOTLIB
                          else "--graph needs matplotlib"),
    }
    for name, (flags, message) in failures.items():  # in this process: the runs above are real
        capsys.readouterr()
        assert mg.main(["train", "--quiet", *flags]) == 1, name
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (name, lines)


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------

def orientation(p, q, r) -> int:
    v = (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
    return (v > 1e-9) - (v < -1e-9)


def between(p, q, r) -> bool:
    return (min(p[0], r[0]) - 1e-9 <= q[0] <= max(p[0], r[0]) + 1e-9
            and min(p[1], r[1]) - 1e-9 <= q[1] <= max(p[1], r[1]) + 1e-9)


def segments_cross(p1, p2, p3, p4) -> bool:
    o1, o2 = orientation(p1, p2, p3), orientation(p1, p2, p4)
    o3, o4 = orientation(p3, p4, p1), orientation(p3, p4, p2)
    if o1 != o2 and o3 != o4:
        return True
    return ((o1 == 0 and between(p1, p3, p2)) or (o2 == 0 and between(p1, p4, p2))
            or (o3 == 0 and between(p3, p1, p4)) or (o4 == 0 and between(p3, p2, p4)))


def count_crossings(pos: dict, edges: list) -> int:
    """Pairs of straight segments between node centres that meet anywhere but at a shared
    endpoint."""
    total = 0
    for i, (a, b) in enumerate(edges):
        for c, d in edges[i + 1:]:
            if len({a, b, c, d}) == 4 and segments_cross(pos[a], pos[b], pos[c], pos[d]):
                total += 1
    return total


def mlp_sample_loss(nin: int, hidden: list[int], loss: str, activation: str):
    model = mg.MLP(nin, [*hidden, 1], activation=activation,
                   output_activation="tanh" if loss == "mse" else "linear", seed=0)
    out = mg.LOSSES[loss]([model([0.5 * (i + 1) for i in range(nin)])], [1.0])
    out.backward()
    return out, model


def tree_graph():
    leaves = [Value(float(i), f"x{i}") for i in range(8)]
    level = leaves
    while len(level) > 1:
        level = [(a * b).tanh() if i % 4 else a + b
                 for i, (a, b) in enumerate(zip(level[::2], level[1::2]))]
    level[0].backward()
    return level[0]


def reused_node_graph():
    x = Value(1.5, "x")
    y = x * x + x.exp() - x / 2.0
    y.backward()
    return y


def graphviz_crossings(root, rankdir: str) -> int:
    """Crossings in graphviz dot's own layout of the same graph, counted the same way."""
    keys, edges, _ = mg._graph_nodes(root)
    name = {k: f"n{i}" for i, k in enumerate(keys)}
    lines = [f"digraph G {{ rankdir={rankdir}; node [shape=box fontname=monospace];"]
    lines += [f'{name[k]} [label="{mg._box_text(k)}"];' for k in keys]
    lines += [f"{name[a]} -> {name[b]};" for a, b in edges]
    out = subprocess.run(["dot", "-Tplain"], input="\n".join(lines) + "}", text=True,
                         capture_output=True, check=True).stdout
    by_name = {v: k for k, v in name.items()}
    pos = {by_name[p[1]]: (float(p[2]), float(p[3]))
           for p in (line.split() for line in out.splitlines()) if p[0] == "node"}
    return count_crossings(pos, edges)


# Crossings in graphviz dot 2.43's layout of these graphs, counted as above (measured with
# graphviz_crossings on a machine that has dot; the live comparison runs wherever dot is).
DOT_CROSSINGS = {"mlp 3-4-4-1 mse": 118, "mlp 2-8-8-1 hinge": 1748}


@pytest.mark.parametrize("rankdir", ["LR", "TB"])
def test_layout_has_no_crossings_on_trees_and_expr(rankdir):
    for root in (mg._expression(), tree_graph()):
        pos, edges = mg.layout_graph(root, rankdir)
        assert count_crossings(pos, edges) == 0


@pytest.mark.parametrize("case", list(DOT_CROSSINGS))
def test_layout_crosses_no_more_than_graphviz_dot(case):
    root = (mlp_sample_loss(3, [4, 4], "mse", "tanh") if "3-4-4-1" in case
            else mlp_sample_loss(2, [8, 8], "hinge", "relu"))[0]
    for rankdir in ("LR", "TB"):
        pos, edges = mg.layout_graph(root, rankdir)
        ours = count_crossings(pos, edges)
        assert ours <= DOT_CROSSINGS[case]
        if shutil.which("dot"):
            assert ours <= graphviz_crossings(root, rankdir)


def test_layout_structure():
    root = mg._expression()
    pos, edges = mg.layout_graph(root)
    values = [k for k in pos if isinstance(k, Value)]
    ops = [k for k in pos if isinstance(k, tuple)]
    assert len(values) == 7 and len(ops) == 3 and all(k[0] == "op" for k in ops)
    assert len(edges) == 9
    for a, b in edges:  # every edge points forward, child -> op -> result
        assert pos[a][0] < pos[b][0]
        assert isinstance(a, tuple) != isinstance(b, tuple)
    columns = sorted({x for x, _ in pos.values()})
    c = next(k for k in values if k.label == "c")
    f = next(k for k in values if k.label == "f")
    # leaves sit right before their use, not all in the first column
    assert columns.index(pos[c][0]) == 2 and columns.index(pos[f][0]) == 4
    tb_pos, _ = mg.layout_graph(root, "TB")
    for a, b in edges:
        assert tb_pos[a][1] > tb_pos[b][1]  # top to bottom
    assert mg.layout_graph(root) == (pos, edges)  # deterministic
    with pytest.raises(ValueError, match="rankdir"):
        mg.layout_graph(root, "RL")


def test_layout_of_a_10000_node_graph():
    v = Value(0.5)
    for _ in range(3_400):
        v = v * 0.999  # each op adds a constant, an op and a result
    pos, edges = mg.layout_graph(v)
    assert len(pos) > 10_000
    assert all(pos[a][0] < pos[b][0] for a, b in edges)


def test_layout_of_a_value_used_all_along_a_long_graph():
    x = Value(0.5, "x")
    v = x
    for _ in range(1000):
        v = v * x  # x feeds every op: its edges span up to 2000 ranks
    pos, edges = mg.layout_graph(v)
    assert len(pos) == 2 * 1000 + 1
    assert all(pos[a][0] < pos[b][0] for a, b in edges)


def rendered_boxes(fig):
    """Display-space extents of every box and every text in the drawn figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.patches import Ellipse, FancyBboxPatch

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    boxes = [p.get_window_extent(renderer) for p in ax.patches
             if isinstance(p, (FancyBboxPatch, Ellipse))]
    texts = [t.get_window_extent(renderer) for t in ax.texts]
    return boxes, texts


def graphs_to_check():
    neuron2 = mg.Neuron(2, "tanh", random.Random(1))
    neuron3 = mg.Neuron(3, "tanh", random.Random(2))
    out2, out3 = neuron2([1.0, -2.0]), neuron3([0.5, 1.5, -1.0])
    out2.backward()
    out3.backward()
    return {"expr": mg._expression(), "neuron2": out2, "neuron3": out3,
            "mlp": mlp_sample_loss(3, [4, 4], "mse", "tanh")[0], "reused": reused_node_graph()}


def test_drawn_boxes_never_overlap_and_hold_their_labels():
    pytest.importorskip("matplotlib")
    for name, root in graphs_to_check().items():
        for rankdir in ("LR", "TB") if name == "expr" else ("LR",):
            check_boxes(name, mg.draw_graph(root, rankdir=rankdir))
    folded = mlp_sample_loss(2, [4, 4], "hinge", "relu")[0]  # texts of two and three lines
    for rankdir in ("LR", "TB"):
        check_boxes("folded", mg.draw_graph(folded, rankdir=rankdir, fold=True))


def check_boxes(name: str, fig) -> None:
    """No two boxes overlap, and each label lies inside a box."""
    boxes, texts = rendered_boxes(fig)
    assert len(texts) == len(boxes) > 0
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), name
    for t in texts:
        assert any(b.x0 <= t.x0 and t.x1 <= b.x1 and b.y0 <= t.y0 and t.y1 <= b.y1
                   for b in boxes), (name, t)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert zlib.crc32(data[12:29]) == struct.unpack(">I", data[29:33])[0]
    return width, height


def test_draw_graph_limits_and_colours():
    pytest.importorskip("matplotlib")
    root, model = mlp_sample_loss(2, [8, 8], "hinge", "relu")
    fig = mg.draw_graph(root, params=model.parameters())
    width, height = fig.get_size_inches()
    small_w, small_h = mg.draw_graph(mg._expression()).get_size_inches()
    assert width > small_w and height > small_h  # grows with the graph
    fills = {p.get_facecolor()[:3] for p in fig.axes[0].patches}
    assert len(fills) >= 3  # parameters, other leaves, results (and ops)
    with pytest.raises(ValueError, match="more than 50 values.*one neuron"):
        mg.draw_graph(root, max_nodes=50)


def test_figures_show_in_notebooks_as_png():
    pytest.importorskip("matplotlib")
    fig = mg.draw_graph(mg._expression())
    data, shown = fig._repr_png_()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    history = toy_run(0, epochs=3)[1]
    assert mg.plot_history(history)._repr_png_()[0][:4] == b"\x89PNG"


def test_plots_write_files(tmp_path):
    pytest.importorskip("matplotlib")
    X, y = mg.make_spiral(60)
    model = mg.MLP(2, [8, 3], activation="relu", output_activation="linear", seed=0)
    history = mg.train(model, X, y, loss="ce", optimizer="adam", epochs=3, verbose=False,
                       val=(X[:10], y[:10]))
    mg.plot_history(history, str(tmp_path / "h.png"))
    mg.plot_decision_boundary(model, X, y, str(tmp_path / "b.svg"), resolution=20)
    binary = mg.MLP(2, [4, 1], seed=0)
    mg.plot_decision_boundary(binary, X, [t % 2 for t in y], str(tmp_path / "c.pdf"),
                              resolution=20)
    assert png_size(tmp_path / "h.png")[0] > 300
    assert (tmp_path / "b.svg").read_bytes().startswith(b"<?xml")
    assert (tmp_path / "c.pdf").read_bytes().startswith(b"%PDF")
    with pytest.raises(ValueError, match="2 inputs"):
        mg.plot_decision_boundary(model, [[1.0, 2.0, 3.0]], [0])


def test_train_command_pictures(tmp_path):
    pytest.importorskip("matplotlib")
    result = run_cli("train", "--dataset", "moons", "--samples", "30", "--epochs", "3",
                     "--val-split", "0.2", "--boundary", "boundary.png", "--graph", "graph.svg",
                     cwd=tmp_path)  # --plot: test_epochs_zero_evaluates_a_saved_model_...
    assert result.returncode == 0, result.stderr
    assert png_size(tmp_path / "boundary.png")[0] > 300
    assert (tmp_path / "graph.svg").read_bytes().startswith(b"<?xml")
    # the loss of one sample through a 2-16-16-1 network: drawn folded, and said so
    assert re.search(r"has \d+ values: drawing it folded", result.stdout)
    toy = run_cli("train", "--boundary", "b.png", cwd=tmp_path)
    assert toy.returncode == 2 and "2 inputs" in toy.stderr and not (tmp_path / "b.png").exists()


def test_engine_and_training_need_no_matplotlib(tmp_path):
    blocker = tmp_path / "matplotlib"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('matplotlib is blocked here')\n")
    code = ("import sys, micrograd as mg; assert 'matplotlib' not in sys.modules; "
            "X, y = mg.make_toy(); m = mg.MLP(3, [4, 1], seed=0); "
            "mg.train(m, X, y, epochs=2, verbose=False); print('ok')")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{HERE}"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, cwd=tmp_path)
    assert result.stdout.strip() == "ok", result.stderr
    result = subprocess.run([sys.executable, SCRIPT, "train", "--quiet"], capture_output=True,
                            text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0 and "final:" in result.stdout
    result = subprocess.run([sys.executable, SCRIPT, "expr"], capture_output=True, text=True,
                            env=env, cwd=tmp_path)
    assert result.returncode == 1 and "matplotlib is not installed" in result.stderr
    assert "Traceback" not in result.stderr


def test_pasted_into_a_notebook_runs_no_command_line_and_shows_images(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    source = Path(SCRIPT).read_text()
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(source),
        nbformat.v4.new_code_cell("a = Value(2.0, 'a'); b = a * 3 + 1; b.backward()\n"
                                  "draw_graph(b)"),
        nbformat.v4.new_code_cell("X, y = make_moons(30); m = MLP(2, [4, 1], seed=0)\n"
                                  "h = train(m, X, [2*t-1 for t in y], loss='hinge', "
                                  "epochs=2, verbose=False)\nplot_history(h)"),
        nbformat.v4.new_code_cell("from IPython.display import display\n"
                                  "display(draw_graph(b))\ndisplay(plot_history(h))\nNone"),
        nbformat.v4.new_code_cell("explain(b)"),
        nbformat.v4.new_code_cell("animate_training(m, X, [2*t-1 for t in y], 'a.gif', "
                                  "epochs=2, loss='hinge', verbose=False)"),
        nbformat.v4.new_code_cell("step_through(b, 's.gif', say=lambda line: None)"),
    ]
    readme = (HERE / "README.md").read_text()  # its Python, as it says to type it there:
    for block in (b.split("```")[0] for b in readme.split("```python\n")[1:]):
        if "sklearn" not in block:  # the one step for which scikit-learn is needed
            lines = [line for line in block.splitlines()
                     if not line.startswith("from micrograd import")]
            notebook.cells.append(nbformat.v4.new_code_cell("\n".join(lines)))
    nbclient.NotebookClient(notebook, timeout=60, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    pasted, graph, boundary, several, explained, animated, steps = notebook.cells[:7]
    assert len(notebook.cells) >= 10  # the README's own lines ran (an error would raise)
    for cell in (animated, steps):  # the GIF, inline
        assert "data:image/gif;base64," in cell.outputs[0]["data"]["text/html"]
    shown = explained.outputs[0]["data"]["text/plain"]  # lines, not a quoted string
    assert shown.splitlines()[0] == "dn1/dn1 = 1.0000" and "\\n" not in shown
    assert pasted.outputs == []  # no command line, nothing printed
    for cell, count in ((graph, 1), (boundary, 1), (several, 2)):  # each figure shown once
        images = [out for out in cell.outputs if "image/png" in out.get("data", {})]
        assert len(images) == count, cell.outputs
        shown_width = images[0]["metadata"]["image/png"]["width"]
        png = base64.b64decode(images[0]["data"]["image/png"])
        assert abs(struct.unpack(">II", png[16:24])[0] - 2 * shown_width) <= 2  # sharp


# ---------------------------------------------------------------------------------------------
# Speed and memory: the bench command (its figures go in the README, not in timed tests)
# ---------------------------------------------------------------------------------------------

def test_bench_command_reports_agreeing_workloads():
    result = run_cli("bench", "--steps", "1", "--chain", "1000", "--samples", "10", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["losses_agree"] is True
    # a line as each workload starts, on stderr (stdout holds the figures alone)
    started = [line for line in result.stderr.splitlines() if line.endswith("...")]
    assert started == ["W0 and U, collector on, bare process...",
                       "W2, collector on, bare process...", "R2, collector on, bare process...",
                       "W0, W1 and W2, collector paused...",
                       "W0 and U, collector on, beside a notebook's heap...",
                       "W2, collector on, beside a notebook's heap...",
                       "R2, collector on, beside a notebook's heap...",
                       "backward through a chain of 1,000 ops..."]
    rows = figures["workloads"]
    assert set(rows) == {"W0", "W1", "W2"}
    assert all(len(row["losses"]) == 2 for row in rows.values())  # a warm-up round + 1
    assert rows["W2"]["nodes_per_step"] > 10 * rows["W1"]["nodes_per_step"] > 3000
    for name in ("W1", "W2"):
        assert 0 < rows[name]["bytes_per_node"] < rows[name]["bytes_per_node_with_grads"]
    assert set(figures["collector_on"]) == {"bare process", "notebook heap"}
    assert figures["notebook_heap"] == ("200,000 objects and matplotlib.pyplot"
                                        if HAS_MATPLOTLIB else
                                        "200,000 objects (matplotlib is not installed)")
    for table in figures["collector_on"].values():
        assert set(table) == {"W0", "U", "W2", "R2"}
        assert table["R2"]["ratio_to_w2"] > 1  # the closure design is slower, node for node
        assert all(row["losses"][0] == rows["W0"]["losses"][0] for row in table.values())
    assert figures["chain"]["ops"] == 1000
    table = mg.format_bench(figures)
    assert table.splitlines()[1].split() == ["workload", "ms/step", "nodes/step", "nodes/s",
                                             "bytes/node", "first", "loss", "x", "W0"]
    assert "collector on, bare process:" in table and "x W2)" in table
    assert "agree with W0's to 1e-9 at every step: yes" in table


def test_bench_takes_only_sizes_that_fit_and_never_recurses():
    result = run_cli("bench", "--samples", "5001")
    assert result.returncode == 2 and "at most 5,000, got 5,001" in result.stderr
    # R2's closures run through this file's backward(), which does not recurse: a graph
    # deeper than Python's recursion limit (the old baseline failed past 950 samples)
    x = v = mg._LectureValue(1.0)
    for _ in range(3 * sys.getrecursionlimit()):
        v = v * 1.0 + 0.0
    v.backward()
    assert x.grad == 1.0


def test_the_closure_reference_computes_the_same_gradients():
    model, X, labels = mg._bench_setup(0)
    closure = mg._value_layers(model, lambda v: mg._LectureValue(v.data))
    reference = mg._binary_op_loss(closure, X[:10], labels[:10])
    reference.backward()
    ours = mg._binary_op_loss(mg._value_layers(model), X[:10], labels[:10])
    ours.backward()
    assert ours.data == reference.data
    flat = [p for W, b in closure for row, bias in zip(W, b) for p in (*row, bias)]
    assert [p.grad for p in flat] == pytest.approx([p.grad for p in model.parameters()],
                                                   rel=1e-12, abs=1e-15)


def test_gc_is_never_switched_off_at_import():
    result = subprocess.run([sys.executable, "-c", "import gc, micrograd; print(gc.isenabled())"],
                            capture_output=True, text=True, cwd=HERE)
    assert result.stdout.strip() == "True"


# ---------------------------------------------------------------------------------------------
# Nothing silently wrong: threads, nan, bad input, files and streams
# ---------------------------------------------------------------------------------------------

def run_in_thread(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_no_grad_in_one_thread_leaves_other_threads_building_graphs():
    inside, release = threading.Event(), threading.Event()
    seen = {}

    def hold_no_grad():
        with mg.no_grad():
            seen["leaf"] = Value(2.0) * Value(3.0)
            inside.set()
            release.wait(10)

    thread = run_in_thread(hold_no_grad)
    assert inside.wait(10)
    a, b = Value(2.0), Value(3.0)
    (a * b + a).backward()  # the main thread, while the other is inside no_grad
    release.set()
    thread.join(10)
    assert (a.grad, b.grad) == (4.0, 2.0)
    assert seen["leaf"]._children == () and seen["leaf"].data == 6.0


def test_no_grad_left_out_of_order_by_two_threads_restores_graph_building():
    steps = [threading.Event() for _ in range(3)]
    built = {}

    def first():
        with mg.no_grad():
            steps[0].set()
            steps[1].wait(10)  # the second thread is inside now: leave before it does
        built["first after"] = Value(1.0) + 1.0

    def second():
        steps[0].wait(10)
        with mg.no_grad():
            steps[1].set()
            time.sleep(0.05)
            built["second inside"] = Value(1.0) + 1.0
        steps[2].set()

    threads = [run_in_thread(first), run_in_thread(second)]
    assert steps[2].wait(10)
    for t in threads:
        t.join(10)
    assert built["second inside"]._children == ()
    assert len(built["first after"]._children) == 2
    x = Value(3.0)
    (x * x).backward()
    assert x.grad == 6.0 and mg._no_grad_threads == {}


def test_predict_in_a_thread_while_training_gives_the_losses_of_training_alone():
    X, y = mg.make_moons(40, seed=1)
    alone = mg.train(mg.MLP(2, [8, 1], seed=2), X, y, loss="bce", optimizer="adam",
                     epochs=15, verbose=False, seed=3)
    other = mg.MLP(2, [8, 1], seed=4)
    stop = threading.Event()
    predictions = []

    def predict_forever():
        while not stop.is_set():
            predictions.append(mg.predict(other, X[:5]))

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so that the two interleave
    try:
        thread = run_in_thread(predict_forever)
        together = mg.train(mg.MLP(2, [8, 1], seed=2), X, y, loss="bce", optimizer="adam",
                            epochs=15, verbose=False, seed=3)
    finally:
        stop.set()
        sys.setswitchinterval(old_interval)
    thread.join(10)
    assert len(predictions) > 5 and together.loss == alone.loss


NAN = math.nan


@pytest.mark.parametrize("name,slope", [("relu", 1.0), ("leaky_relu", 0.01), ("elu", 1.0),
                                        ("__abs__", 0.0), ("tanh", NAN), ("sigmoid", NAN),
                                        ("gelu", NAN), ("silu", NAN), ("softplus", NAN),
                                        ("exp", NAN), ("sqrt", NAN), ("log", NAN)])
def test_nan_propagates_as_in_pytorch(name, slope):
    # The local slopes are PyTorch 2's float64 gradients at nan.
    x = Value(NAN)
    out = getattr(x, name)()
    out.backward()
    assert math.isnan(out.data)
    assert math.isnan(x.grad) if math.isnan(slope) else x.grad == slope


def test_nan_scores_give_nan_losses_and_are_never_hits():
    for loss, label in ((mg.hinge_loss, 1), (mg.hinge_loss, -1), (mg.mse_loss, 1.0),
                        (mg.bce_with_logits_loss, 0)):
        assert math.isnan(loss([Value(NAN)], [label]).data)
    assert math.isnan(mg.cross_entropy([[Value(1.0), Value(NAN)]], [0]).data)
    assert mg.accuracy([NAN, NAN, NAN, NAN], [0, 1, -1, 1]) == 0.0
    assert mg.accuracy([[NAN, 1.0], [2.0, NAN], [0.0, 1.0]], [1, 0, 1]) == pytest.approx(1 / 3)


def test_diverging_cli_runs_fail_and_write_nothing(tmp_path):
    result = run_cli("train", "--dataset", "moons", "--optim", "sgd", "--lr", "1e150",
                     "--save", "m.json", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert re.search(r"epoch \d+.*lower learning rate", result.stderr), result.stderr
    result = run_cli("train", "--dataset", "spiral", "--optim", "sgd", "--lr", "1e300",
                     "--epochs", "1", "--save", "sp.json", cwd=tmp_path)
    assert result.returncode == 1 and "epoch 1" in result.stderr, result.stderr
    assert "final:" not in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_step_that_overflows_a_parameter_stops_training():
    X, y = [[1.0]], [100.0]  # a gradient near -200: a step of 1e308 times it overflows
    model = mg.MLP(1, [1], output_activation="linear", seed=0)
    with pytest.raises(mg.TrainingError, match=r"a step made a parameter non-finite "
                                               r"\(layers\.0\.\w+.* = -?inf\) in epoch 1"):
        mg.train(model, X, y, optimizer=mg.SGD(model.parameters(), lr=1e308), epochs=1,
                 verbose=False)


def test_the_loss_after_the_last_step_is_checked():
    X, y = mg.make_spiral(30, seed=0)
    model = mg.MLP(2, [16, 3], activation="relu", output_activation="linear", seed=0)
    with pytest.raises(mg.TrainingError, match="after the last step the loss is nan"):
        mg.train(model, X, y, loss="ce", optimizer="sgd", lr=1e300, epochs=1, verbose=False)


def test_nan_in_the_data_is_named_before_training():
    model = mg.MLP(2, [1], seed=0)
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"X\[1\]\[0\] is nan"):
        mg.train(model, [[0.0, 1.0], [NAN, 1.0]], [1.0, -1.0], verbose=False)
    with pytest.raises(ValueError, match=r"y\[0\] is inf"):
        mg.train(model, [[0.0, 1.0]], [math.inf], verbose=False)
    assert model.state_dict() == before


@pytest.mark.parametrize("flags", [["--lr", "inf"], ["--lr", "1e400"], ["--lr", "nan"],
                                   ["--weight-decay", "nan"], ["--weight-decay", "inf"],
                                   ["--dataset", "moons", "--noise", "inf"]])
def test_non_finite_settings_are_usage_errors(flags, capsys):
    with pytest.raises(SystemExit) as stop:
        mg.main(["train", *flags])
    assert stop.value.code == 2 and "finite number" in capsys.readouterr().err


def test_non_finite_optimizer_settings_are_refused():
    p = [Value(1.0)]
    for make in (lambda: mg.SGD(p, lr=math.inf), lambda: mg.Adam(p, lr=math.nan),
                 lambda: mg.SGD(p, weight_decay=math.inf), lambda: mg.make_moons(noise=math.inf)):
        with pytest.raises(ValueError, match="finite"):
            make()


def test_arithmetic_with_a_finite_answer_gives_it():
    a, b = Value(1.0), Value(1e-170)
    q = a / b
    q.backward()
    assert q.data == 1e170 and a.grad == 1e170 and b.grad == -math.inf
    x = Value(1e-170)
    y = x ** -2
    y.backward()
    assert y.data == math.inf and x.grad == -math.inf  # overflow is inf, not an exception
    tiny = Value(5e-324)
    tiny.log().backward()
    assert tiny.grad == math.inf


@pytest.mark.parametrize("base", [-2.0, -1e200, -1e300])
def test_negative_base_with_a_fractional_exponent_is_one_error_at_every_size(base):
    with pytest.raises(ValueError, match=re.escape(f"{base!r} ** 2.5 is a complex number")):
        Value(base) ** 2.5
    with pytest.raises(ValueError, match="complex number"):
        Value(base) ** Value(2.5)
    assert (Value(base) ** 3).data == base * base * base  # -inf where it overflows


def test_wrong_types_are_refused_not_guessed():
    a = Value(1.0)
    with pytest.raises(TypeError, match="label must be a str, got int"):
        Value(1.0, label=5)
    assert Value(1.0, (a,), "op")._children == (a,)  # the original micrograd's form
    for loss in (mg.mse_loss, mg.hinge_loss, mg.bce_with_logits_loss):
        with pytest.raises(TypeError, match="needs numbers as targets, got str '1'"):
            loss([Value(0.5)], ["1"])
    with pytest.raises(ValueError, match="class indices"):
        mg.cross_entropy([[Value(0.5), Value(1.0)]], ["1"])
    with pytest.raises(TypeError, match="got dict"):
        mg.MLP(2, [1], seed=0)({0: 1.0, 1: 2.0})
    with pytest.raises(ValueError, match="nin must be at least 1, got -3"):
        mg.Neuron(-3)
    with pytest.raises(ValueError, match="at least 1, got -2"):
        mg.Layer(-2, -3)
    with pytest.raises(TypeError, match="nin must be a whole number, got bool"):
        mg.MLP(True, [1])
    with pytest.raises(TypeError, match="nouts"):
        mg.MLP(2, 3)


def test_numpy_numbers_work_everywhere(tmp_path):
    np = pytest.importorskip("numpy")
    X, y = mg.make_spiral(30, seed=0)
    model = mg.MLP(np.int64(2), [np.int64(4), 3], seed=0)
    loss = mg.cross_entropy([model(x) for x in np.array(X)], np.array(y))
    assert loss.data == mg.cross_entropy([model(x) for x in X], y).data
    history = mg.train(model, np.array(X), np.array(y), loss="ce", epochs=2, verbose=False,
                       val=(np.array(X), np.array(y)))
    for values in (history.loss, history.accuracy, history.val_loss, history.val_accuracy):
        assert all(type(v) is float for v in values)
    pytest.importorskip("matplotlib")
    mg.plot_decision_boundary(model, np.array(X), np.array(y), str(tmp_path / "b.png"),
                              resolution=20)
    assert (tmp_path / "b.png").stat().st_size > 0


def test_options_are_python_floats_inside_the_engine(tmp_path):
    np = pytest.importorskip("numpy")
    x = Value(-2.0)
    for y in (x.leaky_relu(np.float32(0.1)), x.elu(np.float32(0.5))):
        y.backward()
        assert type(y.data) is float and all(type(g) is float for g in y._local_grads)
    for bad in (Value(0.1), "0.1", None):
        with pytest.raises(TypeError, match="negative_slope must be a number"):
            x.leaky_relu(bad)
        with pytest.raises(TypeError, match="alpha must be a number"):
            x.elu(bad)
    model = mg.MLP(2, [3, 1], seed=0)
    opts = [mg.Adam(model.parameters(), lr=np.float32(0.01),
                    betas=(np.float32(0.8), np.float64(0.9))),
            mg.AdamW(model.parameters(), weight_decay=np.float32(0.1)),
            mg.Adagrad(model.parameters(), lr_decay=np.float32(0.01)),
            mg.SGD(model.parameters(), lr=np.float16(0.1), momentum=np.float32(0.9),
                   dampening=np.float32(0.1))]
    for opt in opts:
        for p in model.parameters():
            p.grad = 0.5
        opt.step()
        settings = [v for k, v in opt.param_groups[0].items() if k != "params"]
        numbers = [v for s in settings for v in (s if isinstance(s, tuple) else (s,))
                   if not isinstance(s, bool)]
        assert numbers and all(type(v) is float for v in numbers)
        assert all(type(p.data) is float for p in model.parameters())
        assert all(type(v) is float for state in opt.state for v in state.values())
    model.save(str(tmp_path / "m.json"), {"optimizer_state": opts[0].state_dict()})
    p = [Value(1.0)]
    for make, message in ((lambda: mg.Adam(p, betas=(0.9, 0.99, 0.999)), "pair of numbers"),
                          (lambda: mg.Adam(p, betas="ab"), "pair of numbers"),
                          (lambda: mg.SGD(p, momentum="0.9"), "momentum must be a number"),
                          (lambda: mg.SGD(p, dampening=Value(0.1)), "dampening must be a"),
                          (lambda: mg.RMSprop(p, centered="no"), "centered must be True or"),
                          (lambda: mg.SGD(p, nesterov="yes"), "nesterov must be True or")):
        with pytest.raises((TypeError, ValueError), match=message):
            make()


def test_optimizer_settings_that_would_fail_in_step_are_refused():
    p = [Value(1.0)]
    for make in (lambda: mg.Adam(p, eps=0.0), lambda: mg.AdamW(p, eps=0.0),
                 lambda: mg.RMSprop(p, alpha=2.0), lambda: mg.RMSprop(p, eps=0.0),
                 lambda: mg.Adagrad(p, eps=0.0)):
        with pytest.raises(ValueError, match="invalid (eps|alpha)"):
            make()


def test_a_step_that_fails_changes_nothing():
    params = [Value(1.0), Value(2.0), Value(3.0)]
    opt = mg.Adam(params, lr=0.1)
    for p in params:
        p.grad = 0.5
    opt.step()
    data, state = [p.data for p in params], [dict(s) for s in opt.state]
    params[2].grad = "0.5"  # a user's mistake, found at the last parameter
    with pytest.raises(TypeError):
        opt.step()
    assert [p.data for p in params] == data and opt.state == state


@pytest.mark.parametrize("name,kw", [("SGD", {}), ("SGD", {"momentum": 0.9}),
                                     ("SGD", {"weight_decay": 0.1}), ("Adam", {}),
                                     ("Adam", {"weight_decay": 0.1}), ("AdamW", {}),
                                     ("RMSprop", {}),
                                     ("RMSprop", {"centered": True, "momentum": 0.5}),
                                     ("Adagrad", {})])
def test_a_negative_zero_parameter_stays_negative_zero(name, kw):
    # torch 2 float64 keeps -0.0 after two zero-gradient steps in each of these settings
    p = Value(-0.0)
    opt = getattr(mg, name)([p], lr=0.1, **kw)
    opt.step()
    opt.step()
    assert p.data == 0.0 and math.copysign(1.0, p.data) == -1.0


def test_fma_gives_inf_and_nan_as_ieee_does_on_every_python():
    # math.fma (Python 3.13+) raises on overflow and on inf * 0; torch's kernels give inf, nan
    assert mg._fma(1e308, 10.0, 0.0) == math.inf and mg._fma(-1e308, 10.0, 0.0) == -math.inf
    assert math.isnan(mg._fma(math.inf, 0.0, 1.0))
    assert math.isnan(mg._fma(math.inf, 1.0, -math.inf))
    assert mg._add(1.0, 1e308, -1e308) == -math.inf


def test_fma_emulation_gives_zeros_their_ieee_sign():
    for x, y, z, sign in ((-0.1, 0.0, -0.0, -1), (0.1, 0.0, -0.0, 1), (-0.0, -0.0, -0.0, 1),
                          (0.0, -3.0, -0.0, -1), (0.5, 2.0, -1.0, 1), (-0.5, 2.0, 1.0, 1)):
        result = mg._fma_exact(x, y, z)
        assert result == 0.0 and math.copysign(1.0, result) == sign, (x, y, z)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_saving_keeps_the_mode_of_an_existing_file_and_gives_a_new_one_the_umasks(tmp_path):
    model = mg.MLP(2, [1], seed=0)
    private = tmp_path / "private.json"
    private.write_text("old")
    private.chmod(0o600)
    model.save(str(private))
    assert mode_of(private) == 0o600 and mg.MLP.load(str(private)).state_dict()
    old_umask = os.umask(0o027)
    try:
        model.save(str(tmp_path / "new.json"))
    finally:
        os.umask(old_umask)
    assert mode_of(tmp_path / "new.json") == 0o640


def test_saving_refuses_read_only_and_special_files(tmp_path):
    model = mg.MLP(2, [1], seed=0)
    read_only = tmp_path / "ro.json"
    read_only.write_text("keep me")
    read_only.chmod(0o444)
    with pytest.raises(PermissionError, match="read-only"):
        model.save(str(read_only))  # refused even as root, who could write it
    assert read_only.read_text() == "keep me"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "null").symlink_to(os.devnull)
    for name in ("fifo", "null"):
        result = run_cli("train", "--epochs", "1", "--save", name, cwd=tmp_path)
        assert result.returncode == 1 and "not a regular file" in result.stderr, result.stderr
        assert "epoch" not in result.stdout  # found before training, not after
        assert "Traceback" not in result.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and (tmp_path / "null").is_symlink()
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "null", "ro.json"]


def test_saving_through_a_symlink_writes_its_target(tmp_path):
    target = tmp_path / "models" / "real.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    model = mg.MLP(2, [1], seed=0)
    model.save(str(link))
    assert link.is_symlink() and mg.MLP.load(str(target)).state_dict() == model.state_dict()
    assert sorted(p.name for p in target.parent.iterdir()) == ["real.json"]


def test_saving_syncs_the_data_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", fd)), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", a)),
                                                    real_replace(a, b)))
    mg.MLP(2, [1], seed=0).save(str(tmp_path / "m.json"))
    kinds = [kind for kind, _ in events]
    assert "fsync" in kinds and kinds.index("fsync") < kinds.index("replace")


def test_a_killed_save_leaves_at_most_one_temporary_file(tmp_path):
    code = ("import micrograd as mg\nm = mg.MLP(200, [300], seed=0)\nprint('ready', flush=True)\n"
            "while True:\n    m.save('m.json')\n")
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    rng = random.Random(0)
    for _ in range(2):
        process = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env,
                                   stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.05, 0.3))
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        process.stdout.close()
        assert len(list(tmp_path.iterdir())) <= 2  # m.json and at most one temporary file
        if (tmp_path / "m.json").exists():  # the survivor is a whole model
            assert mg.MLP.load(str(tmp_path / "m.json")).nouts == [300]
    mg.MLP(2, [1], seed=0).save(str(tmp_path / "m.json"))
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_two_saves_to_one_path_at_once_both_succeed_with_one_whole_file(tmp_path):
    path = str(tmp_path / "m.json")
    models = [mg.MLP(50, [60, 1], seed=seed) for seed in (1, 2)]
    errors = []

    def save_often(model):
        try:
            for _ in range(15):
                model.save(path)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [run_in_thread(lambda m=m: save_often(m)) for m in models]
    for t in threads:
        t.join(60)
    assert errors == [] and [p.name for p in tmp_path.iterdir()] == ["m.json"]
    loaded = mg.MLP.load(path).state_dict()
    assert loaded in [m.state_dict() for m in models]


def test_a_name_ending_in_a_slash_or_given_twice_is_refused(tmp_path):
    with pytest.raises(IsADirectoryError, match="ends in a slash"):
        mg.MLP(2, [1], seed=0).save(str(tmp_path / "model") + "/")
    for flags, message in ((["--save", "out/"], "ends in a slash"),
                           (["--save", "out.png", "--plot", "out.png"],
                            "--save and --plot both name out.png"),
                           (["--dataset", "moons", "--boundary", "b.png", "--graph",
                             "./b.png"], "--boundary and --graph both name ./b.png")):
        result = run_cli("train", *flags, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_checking_a_model_takes_time_linear_in_its_size():
    def seconds(n: int) -> float:  # the least of three runs: the machine's noise aside
        model = mg.Layer(n, 1, rng=random.Random(0))
        runs = []
        for _ in range(3):
            gc.disable()  # its scans of the names made would blur the count
            start = time.perf_counter()
            assert mg._first_non_finite(model) is None
            runs.append(time.perf_counter() - start)
            gc.enable()
        return min(runs)

    # sixteen times the weights take about sixteen times as long (quadratic: 256 times)
    assert seconds(80_000) < 64 * seconds(5_000)


def test_a_model_with_a_non_finite_weight_is_not_saved(tmp_path):
    model = mg.MLP(2, [3, 1], seed=0)
    model.layers[1].neurons[0].w[2].data = NAN
    with pytest.raises(ValueError, match=r"layers\.1\.weight\[0\]\[2\] = nan"):
        model.save(str(tmp_path / "m.json"))
    model.layers[1].neurons[0].w[2].data = 0.5
    model.layers[0].neurons[1].b.data = -math.inf
    with pytest.raises(ValueError, match=r"layers\.0\.bias\[1\] = -inf"):
        model.save(str(tmp_path / "m.json"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999",
                                    "9" * 400])
def test_loading_rejects_numbers_that_are_not_strict_json_floats(tmp_path, number):
    path = tmp_path / "m.json"
    mg.MLP(2, [1], seed=0).save(str(path))
    text = path.read_text()
    document = json.loads(text)
    first = document["state_dict"]["layers.0.bias"][0]
    path.write_text(text.replace(json.dumps(first), number, 1))
    with pytest.raises(ValueError, match="strict JSON") as error:
        mg.MLP.load(str(path))
    assert "\n" not in str(error.value)


def test_loading_checks_sizes_before_building(tmp_path):
    path = tmp_path / "huge.json"
    document = {"format": mg.MODEL_FORMAT, "version": mg.MODEL_VERSION, "model": "MLP",
                "config": {"nin": 100000, "nouts": [100000, 1], "activation": "tanh",
                           "output_activation": "tanh"},
                "state_dict": {"layers.0.weight": [[0.5]], "layers.0.bias": [0.0],
                               "layers.1.weight": [[0.5]], "layers.1.bias": [0.0]}}
    path.write_text(json.dumps(document))
    assert path.stat().st_size < 600
    result = run_cli_within(2**30, "train", "--load", "huge.json", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    start = time.perf_counter()
    with pytest.raises(ValueError, match="asks for 10,000,200,001 parameters but the "
                                         "state_dict holds 4 numbers"):
        mg.MLP.load(str(path))
    assert time.perf_counter() - start < 1.0
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        mg.MLP.load(str(deep))
    result = run_cli("train", "--load", "deep.json", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("flag", ["--save", "--load", "--plot", "--graph", "--boundary"])
def test_empty_file_names_are_usage_errors(flag, capsys):
    with pytest.raises(SystemExit) as stop:
        mg.main(["train", "--dataset", "moons", flag, ""])
    assert stop.value.code == 2 and "empty" in capsys.readouterr().err


def test_output_streams_that_fail_are_expected_failures(tmp_path):
    full = subprocess.run(f"exec {shlex.quote(sys.executable)} {shlex.quote(SCRIPT)} expr "
                          "> /dev/full", shell=True, capture_output=True, text=True,
                          cwd=tmp_path)
    assert full.returncode == 1 and full.stderr.strip().splitlines() == [
        "micrograd.py expr: error: cannot write the output: No space left on device"]
    closed_out = subprocess.run(f"exec {shlex.quote(sys.executable)} {shlex.quote(SCRIPT)} "
                                "train --dataset xor --epochs 60 >&-", shell=True,
                                capture_output=True, text=True, cwd=tmp_path)
    assert closed_out.returncode == 0 and closed_out.stderr == ""
    closed_err = subprocess.run(f"exec {shlex.quote(sys.executable)} {shlex.quote(SCRIPT)} "
                                "train --load missing.json 2>&-", shell=True,
                                capture_output=True, text=True, cwd=tmp_path)
    assert closed_err.returncode == 1
    piped = subprocess.run(f"{shlex.quote(sys.executable)} {shlex.quote(SCRIPT)} train "
                           "--dataset moons --epochs 200 | head -1", shell=True,
                           capture_output=True, text=True, cwd=tmp_path)
    assert piped.stdout.startswith("dataset moons") and piped.stderr == ""


def test_errors_of_a_command_show_its_own_usage():
    result = run_cli("train", "--dataset", "xor", "--val-split", "0.9")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: micrograd.py train")
    assert "micrograd.py train: error: --val-split 0.9 leaves no samples" in result.stderr
    bare = run_cli()
    assert bare.returncode == 2 and "usage: micrograd.py" in bare.stdout
    assert "expr" in bare.stdout and "train" in bare.stdout and "bench" in bare.stdout
    help_text = run_cli("train", "-h").stdout
    assert re.search(r"--samples.*moons\s+100,\s+circles 100, spiral 150", help_text, re.S)
    assert re.search(r"--noise.*moons\s+0\.1,\s+circles\s+0\.05,\s+spiral\s+0\.2", help_text,
                     re.S)


def test_messages_read_well_for_huge_losses_and_one_epoch():
    assert mg._loss(1e300) == "1e+300" and mg._loss(0.5) == "0.500000"
    history = mg.History()
    history.loss.append(3e200)
    history.accuracy.append(None)
    line = io.StringIO()
    with contextlib.redirect_stdout(line):
        mg._Progress(5, True).epoch(1, history)
    assert line.getvalue() == "epoch 1/5  loss 3e+200\n"
    result = run_cli("train", "--epochs", "1")
    assert "1 epoch, batch size" in result.stdout and "(1 epoch in" in result.stdout
    assert "epochs" not in result.stdout


def test_progress_is_rewritten_in_place_only_where_the_terminal_can():
    dumb = run_on_a_terminal("train", "--epochs", "60", term="dumb")
    assert "\r" not in dumb.replace("\r\n", "\n") and "\x1b" not in dumb
    assert "epoch 60/60" in dumb


def test_drawing_flags_fail_before_training_without_matplotlib(tmp_path):
    blocker = tmp_path / "matplotlib"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('matplotlib is blocked here')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    for flag in ("--plot", "--boundary", "--graph"):
        result = subprocess.run([sys.executable, SCRIPT, "train", "--dataset", "moons",
                                 flag, "out.png"], capture_output=True, text=True, env=env,
                                cwd=tmp_path, timeout=60)
        assert result.returncode == 1 and "epoch" not in result.stdout
        assert f"{flag} needs matplotlib" in result.stderr


@pytest.mark.parametrize("args,limit", [
    (["train", "--dataset", "moons", "--samples", str(10**9)], "at most 100,000"),
    (["train", "--hidden", "100000,100000"], "the limit is 1,000,000"),
    (["bench", "--chain", str(10**10)], "at most 10,000,000"),
    (["bench", "--steps", str(10**9)], "at most 10,000")])
def test_sizes_that_would_exhaust_memory_are_refused_up_front(args, limit):
    result = run_cli_within(2**30, *args)
    assert result.returncode == 2 and limit in result.stderr, result.stderr


# ---------------------------------------------------------------------------------------------
# Speed where users run it: fused neurons, skipped zeros and the collector's state
# ---------------------------------------------------------------------------------------------

def plain_backward(root: Value) -> None:
    """backward() as the plain chain rule, no node skipped: the reference for the fast one."""
    order = mg._topological_order(root)
    for v in order:
        v.grad = 0.0
    root.grad = 1.0
    for node in reversed(order):
        for child, local in zip(node._children, node._local_grads):
            child.grad += local * node.grad


def same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) ==
                                                  math.copysign(1, b))


def close_or_both_nan(a: float, b: float, rel: float = 1e-12) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= rel * max(1.0, abs(b))


@pytest.mark.parametrize("activation", [a for a in mg.ACTIVATIONS if a != "linear"])
def test_a_fused_neuron_matches_its_dot_and_activation_nodes(activation):
    rng = random.Random(7)
    inputs = [[rng.uniform(-2, 2) for _ in range(4)] for _ in range(30)]
    inputs += [[0.0] * 4, [NAN, 1.0, 2.0, 3.0], [math.inf, 0.5, 0.5, 0.5],
               [1e300, 1e300, -1e300, 1e300]]
    for x in inputs:
        neuron = mg.Neuron(4, activation, rng=random.Random(len(x) + int(x[1] * 100)))
        if x == [0.0] * 4:
            neuron.b.data = 0.0  # the kink itself
        xs = [Value(v) for v in x]
        fused = neuron(xs)
        assert fused._op == f"{activation}(dot)" and len(fused._children) == 9
        (fused * 1.5).backward()
        fused_grads = [v.grad for v in [*neuron.w, neuron.b, *xs]]
        neuron.zero_grad()
        xs2 = [Value(v) for v in x]
        plain = mg.ACTIVATIONS[activation](Value.dot(neuron.w, xs2, neuron.b))
        (plain * 1.5).backward()
        assert close_or_both_nan(fused.data, plain.data), (activation, x)
        for a, b in zip(fused_grads, [v.grad for v in [*neuron.w, neuron.b, *xs2]]):
            assert close_or_both_nan(a, b), (activation, x, a, b)


def test_a_dead_relu_neuron_has_zero_local_gradients_and_passes_nothing_back():
    layer = mg.Layer(3, 4, "relu", rng=random.Random(1))
    for n in layer.neurons:
        n.b.data = -100.0  # every neuron dead
    outs = layer([0.5, -0.2, 0.1])
    assert all(v.data == 0.0 for v in outs)
    assert all(not any(v._local_grads) for v in outs)
    Value.sum(outs).backward()
    assert all(p.grad == 0.0 for p in layer.parameters())


def random_relu_graph(rng: random.Random) -> tuple[Value, list[Value]]:
    """A loss through relus and hinges where many gradients are exactly zero."""
    model = mg.MLP(3, [6, 6, 1], activation="relu", output_activation="linear",
                   seed=rng.randint(0, 10**6))
    X = [[rng.uniform(-1, 1) for _ in range(3)] for _ in range(12)]
    y = [rng.choice((-1.0, 1.0)) for _ in X]
    scores = [model(x) for x in X]
    binary = sum((1 + -t * s).relu() for s, t in zip(scores, y)) * (1 / len(X))
    return mg.hinge_loss(scores, y) + binary, model.parameters()


def test_skipping_zero_gradients_gives_the_plain_chain_rule_bit_for_bit():
    rng = random.Random(11)
    skipped_somewhere = False
    for _ in range(20):
        loss, params = random_relu_graph(rng)
        order = mg._topological_order(loss)
        loss.backward()
        fast = [v.grad for v in order]
        skipped_somewhere |= any(not v.grad for v in order if v._children)
        plain_backward(loss)
        assert all(same_float(a, v.grad) for a, v in zip(fast, order))
    assert skipped_somewhere


@pytest.mark.parametrize("build", [
    lambda x: 0.0 * x.sqrt(),  # zero gradient, infinite local gradient: nan, as in PyTorch
    lambda x: (x * math.inf).relu() * 0.0,
    lambda x: (x + 1000.0).tanh() * 1e308 * 1e308,  # a flat tanh multiplies: inf * 0
    lambda x: Value.dot([x, x], [Value(math.inf), Value(1.0)]) * 0.0,
])
def test_no_inf_or_nan_local_gradient_is_skipped(build):
    x = Value(0.0)
    root = build(x)
    root.backward()
    fast = x.grad
    plain_backward(root)
    assert same_float(fast, x.grad) and math.isnan(fast)


def test_relu_and_hinge_select_where_flat_as_pytorch_does():
    # torch's relu and clamp pass 0 where they are flat, even times an inf or nan from
    # above (torch 2.13: relu(-1) with gradient inf from above gives 0); abs multiplies
    x = Value(-1.0)
    (x.relu() * 1e308 * 1e308).backward()
    assert x.grad == 0.0
    neuron = mg.Neuron(2, "relu", rng=random.Random(0))
    neuron.b.data = -100.0  # dead on this input
    a, b = Value(0.5), Value(-0.25)
    (neuron([a, b]) * math.nan).backward()
    assert all(p.grad == 0.0 for p in neuron.parameters()) and a.grad == b.grad == 0.0
    s = Value(2.0)
    (mg.hinge_loss([s], [1.0]) * math.inf).backward()  # the margin is met
    assert s.grad == 0.0
    z = Value(0.0)
    (abs(z) * math.inf).backward()
    assert math.isnan(z.grad)  # as torch: inf * sgn(0) = inf * 0


@pytest.mark.parametrize("exponent,expected", [
    (math.nan, (math.nan, math.nan, math.nan)),  # torch 2.13, float64: value, d/dx, d/dn
    (math.inf, (0.0, math.nan, 0.0)),
    (-math.inf, (math.inf, -math.inf, -math.inf))])
def test_zero_to_a_nan_or_infinite_power_has_torchs_gradients(exponent, expected):
    x, n = Value(0.0), Value(exponent)
    y = x ** n
    y.backward()
    assert all(same_float(a, b) for a, b in zip((y.data, x.grad, n.grad), expected))


def overlapping_pauses(first_out: str) -> list[bool]:
    """Threads A and B pause the collector, then leave in the order given; returns whether
    each saw it on inside its pause, and checks it stays off until both have left."""
    entered = {name: threading.Event() for name in "AB"}
    leave = {name: threading.Event() for name in "AB"}
    during = []

    def hold(name):
        with mg._gc_paused:
            entered[name].set()
            leave[name].wait(10)
            during.append(gc.isenabled())

    threads = {name: run_in_thread(lambda n=name: hold(n)) for name in "AB"}
    assert entered["A"].wait(10) and entered["B"].wait(10)
    second = "B" if first_out == "A" else "A"
    leave[first_out].set()
    threads[first_out].join(10)
    assert not gc.isenabled()  # the other thread is still inside
    leave[second].set()
    threads[second].join(10)
    return during


def test_the_collector_is_left_as_the_caller_had_it_after_nested_failing_and_threaded_calls():
    model = mg.MLP(2, [3, 1], seed=0)
    for enabled in (True, False):
        gc.enable() if enabled else gc.disable()
        try:
            with mg._gc_paused:
                with mg._gc_paused:
                    assert not gc.isenabled()
                model([1.0, 2.0])  # a call that pauses, nested in another
                assert not gc.isenabled()
            assert gc.isenabled() == enabled
            with pytest.raises(ValueError):
                model([1.0])  # fails inside its pause
            with pytest.raises(TypeError):
                mg.mse_loss([model([1.0, 2.0])], ["x"])
            assert gc.isenabled() == enabled
            for first_out in ("A", "B"):  # two threads whose pauses overlap, in both orders
                assert overlapping_pauses(first_out) == [False, False]
                assert gc.isenabled() == enabled
            assert mg._gc_paused.count == 0
        finally:
            gc.enable()


def test_many_threads_training_and_predicting_leave_the_collector_on():
    assert gc.isenabled()
    thresholds = gc.get_threshold()
    X, y = mg.make_moons(20, seed=0)
    errors = []

    def work(seed):
        try:
            model = mg.MLP(2, [4, 1], seed=seed)
            mg.train(model, X, y, loss="bce", epochs=3, verbose=False)
            mg.predict(model, X)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [run_in_thread(lambda s=s: work(s)) for s in range(6)]
    for t in threads:
        t.join(30)
    assert errors == [] and gc.isenabled() and mg._gc_paused.count == 0
    assert gc.get_threshold() == thresholds


# ---------------------------------------------------------------------------------------------
# Plots fit for a textbook
# ---------------------------------------------------------------------------------------------

def legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def test_history_plot_has_two_panels_whole_epochs_and_a_title_naming_loss_and_optimizer():
    pytest.importorskip("matplotlib")
    X, y = mg.make_moons(40, seed=0)
    model = mg.MLP(2, [6, 1], activation="relu", output_activation="linear", seed=0)
    history = mg.train(model, X[:30], y[:30], loss="bce", optimizer="adam", epochs=7,
                       verbose=False, val=(X[30:], y[30:]))
    fig = mg.plot_history(history)
    loss_ax, accuracy_ax = fig.axes
    assert fig._suptitle.get_text() == "bce loss, Adam (lr 0.05)"
    for ax, name in ((loss_ax, "loss"), (accuracy_ax, "accuracy (%)")):
        assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == name
        assert legend_texts(ax) == ["training", "validation"]
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 7]
        assert ticks and all(float(t).is_integer() for t in ticks)
        train_line, val_line = ax.get_lines()
        assert train_line.get_linestyle() == "-" and val_line.get_linestyle() == "--"
    no_classes = mg.train(mg.MLP(1, [1], seed=0), [[0.5], [1.0]], [0.2, 0.4], epochs=2,
                          verbose=False)
    assert len(mg.plot_history(no_classes).axes) == 1  # no accuracy without classes


def test_decision_boundary_shades_scores_draws_the_line_and_names_everything():
    pytest.importorskip("matplotlib")
    X, y = mg.make_moons(60, seed=0)
    model = mg.MLP(2, [8, 1], activation="relu", output_activation="linear", seed=0)
    mg.train(model, X[:45], [2 * t - 1 for t in y[:45]], loss="hinge", optimizer="adam",
             epochs=10, verbose=False)
    start = time.perf_counter()
    fig = mg.plot_decision_boundary(model, X[:45], y[:45], val=(X[45:], y[45:]),
                                    dataset="moons")
    assert time.perf_counter() - start < 2.0
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel()
    expected = f"moons: accuracy {mg._percent(mg.accuracy(mg.predict(model, X[:45]), y[:45]))}"
    assert ax.get_title().startswith(expected + ", validation ")
    assert legend_texts(ax) == ["class 0", "class 1", "validation", "decision boundary"]
    assert fig.axes[1].get_ylabel() == "model score"  # the colour bar of the shading
    kinds = [type(c).__name__ for c in ax.collections]
    assert kinds.count("PathCollection") == 4  # training and validation points, each class
    assert len([k for k in kinds if "Contour" in k]) == 1  # the line
    assert len(ax.get_images()) == 1  # the shading, as the animation shades the plane


def test_decision_boundary_colours_three_classes_like_their_points():
    pytest.importorskip("matplotlib")
    from matplotlib.colors import to_rgb

    X, y = mg.make_spiral(60, seed=0)
    model = mg.MLP(2, [8, 3], activation="relu", output_activation="linear", seed=0)
    mg.train(model, X, y, loss="ce", optimizer="adam", epochs=5, verbose=False)
    fig = mg.plot_decision_boundary(model, X, y, resolution=30)
    ax = fig.axes[0]
    assert legend_texts(ax) == ["class 0", "class 1", "class 2", "decision boundary"]
    image = ax.get_images()[0].get_array()
    grid_x, grid_y = mg._linspace(*ax.get_xlim(), 30), mg._linspace(*ax.get_ylim(), 30)
    scores = mg.predict(model, [[a, b] for b in grid_y for a in grid_x])
    points = [c for c in ax.collections if type(c).__name__ == "PathCollection"]
    for k, scatter in enumerate(points):
        point_rgb = tuple(scatter.get_facecolor()[0][:3])
        assert point_rgb == pytest.approx(to_rgb(mg._CLASS_COLOURS[k]))
        cells = [i for i, row in enumerate(scores) if row.index(max(row)) == k]
        if cells:  # the region of class k is a paler shade of the same colour
            r, c = divmod(cells[0], 30)
            region = image[r][c][:3]
            tint = [(1 - region[j]) / (1 - point_rgb[j]) for j in range(3) if point_rgb[j] < 0.9]
            assert max(tint) - min(tint) < 0.05


# ---------------------------------------------------------------------------------------------
# A readable picture of a real network: folding, and parameters named by where they live
# ---------------------------------------------------------------------------------------------

def test_mlp_names_each_parameter_by_where_it_lives():
    model = mg.MLP(2, [3, 1], seed=0)
    labels = [p.label for p in model.parameters()]
    assert labels[:3] == ["L0.N0.w0", "L0.N0.w1", "L0.N0.b"]
    assert labels[-4:] == ["L1.N0.w0", "L1.N0.w1", "L1.N0.w2", "L1.N0.b"]
    assert len(set(labels)) == len(labels) == 13
    assert [p.label for p in mg.Layer(2, 2).parameters()] == ["N0.w0", "N0.w1", "N0.b",
                                                               "N1.w0", "N1.w1", "N1.b"]
    loaded_labels = [p.label for p in mg.MLP(**model.config()).parameters()]
    assert loaded_labels == labels


def test_folding_draws_each_leaf_that_feeds_one_op_inside_it():
    model = mg.MLP(2, [16, 16, 1], activation="relu", output_activation="linear", seed=0)
    loss = mg.hinge_loss([model([0.5, -0.3])], [1.0])
    keys, edges, folded = mg._graph_nodes(loss, fold=True)
    values = [k for k in keys if not isinstance(k, tuple)]
    params = set(model.parameters())
    assert not params & set(values)  # every weight and bias sits inside its neuron's op
    assert 30 <= len(values) <= 60 and len(mg._graph_nodes(loss)[0]) > 5 * len(keys)
    texts = {mg._box_text(k, folded.get(k, ())) for k in keys if isinstance(k, tuple)}
    middle = "\u00b7"
    assert {f"relu(dot) {middle} 2 w + b", f"relu(dot) {middle} 16 w + b",
            f"dot {middle} 16 w + b"} <= texts
    assert all(a in keys and b in keys for a, b in edges)
    x0 = next(k for k in values if k.label == "x0")  # an input feeds 16 ops: not folded
    assert sum(a is x0 for a, _ in edges) == 16
    pos, layout_edges = mg.layout_graph(loss, fold=True)
    assert set(pos) == set(keys) and layout_edges == edges


def test_folded_drawing_of_a_real_network_fits_a_screen():
    pytest.importorskip("matplotlib")
    model = mg.MLP(2, [16, 16, 1], activation="relu", output_activation="linear", seed=0)
    loss = mg.hinge_loss([model([0.5, -0.3])], [1.0])
    loss.backward()
    with pytest.raises(ValueError, match="fold it"):
        mg.draw_graph(loss, max_nodes=100)
    fig = mg.draw_graph(loss, fold=True, max_nodes=100)
    texts = [t.get_text() for t in fig.axes[0].texts]
    # folded, each box's parts stand on lines of their own, so that the ranks stay narrow
    assert "relu(dot)\n\u00b7 16 w + b" in texts and not any("L0.N0.w0" in t for t in texts)
    assert "x0\ndata 0.5000\ngrad -0.2293" in texts
    width, height = fig.get_size_inches() * mg._dpi(fig)  # the pixels of its PNG
    assert width < 2000 and height < 2000


def test_train_graph_of_moons_fits_2000_pixels_a_side(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "graph.png"
    assert mg.main(["train", "--dataset", "moons", "--samples", "20", "--epochs", "1",
                    "--graph", str(path)]) == 0
    assert "drawing it folded" in capsys.readouterr().out
    width, height = png_size(path)
    assert 1000 < width < 2000 and height < 2000


# ---------------------------------------------------------------------------------------------
# Gradients you can see, and pictures that stay sharp
# ---------------------------------------------------------------------------------------------

def test_boxes_coloured_by_gradient_show_sign_and_size(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.patches import FancyBboxPatch

    L = mg._expression()
    L.backward()
    fig = mg.draw_graph(L, color="grad")
    ax, bar = fig.axes
    assert bar.get_ylabel() == "gradient"
    fills = {}
    for patch in ax.patches:
        if isinstance(patch, FancyBboxPatch):
            centre = (patch.get_x() + patch.get_width() / 2,
                      patch.get_y() + patch.get_height() / 2)
            label = next(t.get_text() for t in ax.texts
                         if t.get_position() == pytest.approx(centre, abs=4))
            fills[label.split(" |")[0]] = patch.get_facecolor()
    red, blue = fills["a"], fills["b"]  # grad 6 (the largest) and grad -4
    assert red[0] > 0.6 > red[2] and blue[2] > 0.6 > blue[0]
    assert fills["a"][0] - fills["a"][2] > fills["L"][0] - fills["L"][2] > 0  # 6 vs 1
    with pytest.raises(ValueError, match="color must be None or 'grad'"):
        mg.draw_graph(L, color="data")
    assert mg.main(["expr", "--color", "grad", "--out", str(tmp_path / "g.png")]) == 0
    assert png_size(tmp_path / "g.png")[0] > png_size(tmp_path / "g.png")[1] * 5


def test_notebook_pictures_have_twice_the_pixels_they_are_shown_at(monkeypatch):
    pytest.importorskip("matplotlib")
    fig = mg.draw_graph(mg._expression())
    data, shown = fig._repr_png_()
    width, height = struct.unpack(">II", data[16:24])
    assert abs(width - 2 * shown["width"]) <= 2 and abs(height - 2 * shown["height"]) <= 2
    assert shown["width"] == round(fig.get_size_inches()[0] * 100)
    # a large graph, fewer: within the budget, never fewer than it is shown at (a budget
    # of a million pixels here, where it is 16 million, to keep the test quick)
    monkeypatch.setattr(mg, "_NOTEBOOK_PIXELS", 1e6)
    fig.set_size_inches(10, 20)  # 1000 x 2000 shown
    data, shown = fig._repr_png_()
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (shown["width"], shown["height"]) == (1000, 2000)
    fig.set_size_inches(5, 10)  # 500 x 1000 shown, half the budget: a little sharper
    data, shown = fig._repr_png_()
    width, height = struct.unpack(">II", data[16:24])
    assert 500 < width and 1000 < height and 0.98e6 <= width * height <= 1e6


def test_show_opens_a_window_of_the_figures_size(monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    windows, shown = [], []
    make_window = plt.figure

    def figure(*args, **kwargs):  # the size a window is opened at is the one asked here
        windows.append(kwargs.get("figsize"))
        return make_window(*args, **kwargs)

    def show() -> None:  # and it shows the figure of the current manager
        shown.append(plt.get_current_fig_manager().canvas.figure)

    monkeypatch.setattr(plt, "figure", figure)
    monkeypatch.setattr(plt, "show", show)
    assert mg.main(["expr", "--show", "--out", str(tmp_path / "g.png")]) == 0
    [fig], [size] = shown, windows
    assert fig.axes[0].texts  # our graph, not an empty window
    assert tuple(size) == tuple(fig.get_size_inches())
    check_boxes("expr --show", fig)  # its text inside its boxes
    plt.close("all")


def test_svg_text_stays_text(tmp_path):
    pytest.importorskip("matplotlib")
    L = mg._expression()
    L.backward()
    mg.draw_graph(L, str(tmp_path / "g.svg"))
    svg = (tmp_path / "g.svg").read_text()
    assert "<text" in svg and "grad 6.0000" in svg


def ink_extent(pixels, box) -> tuple[float, float, float, float] | None:
    """(x0, y0, x1, y1), in display pixels, of the dark pixels inside box (its border left
    out), or None if there are none."""
    import numpy as np

    height = pixels.shape[0]
    top, left = round(height - box.y1) + 4, round(box.x0) + 4
    inside = pixels[top:round(height - box.y0) - 4, left:round(box.x1) - 4]
    ys, xs = np.nonzero(inside < 128)
    if not len(xs):
        return None
    assert xs.min() > 0 and ys.min() > 0  # clear of the border: the text fits its box
    assert xs.max() < inside.shape[1] - 1 and ys.max() < inside.shape[0] - 1
    return (left + xs.min(), height - top - ys.max(), left + xs.max(), height - top - ys.min())


def test_png_labels_sit_centred_inside_their_boxes(tmp_path):
    pytest.importorskip("matplotlib")
    import numpy as np
    from matplotlib.patches import FancyBboxPatch
    from PIL import Image

    folded = mlp_sample_loss(2, [4, 4], "hinge", "relu")[0]  # labels of one to three lines
    cases = {"expr": mg.draw_graph(mg._expression(), str(tmp_path / "expr.png")),
             "folded": mg.draw_graph(folded, str(tmp_path / "folded.png"), fold=True,
                                     rankdir="TB")}
    for name, fig in cases.items():
        image = np.asarray(Image.open(tmp_path / f"{name}.png").convert("L")).astype(int)
        boxes = [p.get_window_extent() for p in fig.axes[0].patches
                 if isinstance(p, FancyBboxPatch)]
        assert len(boxes) >= 7
        for box in boxes:
            ink = ink_extent(image, box)  # inside the box, clear of its border
            assert ink is not None, name
            for a, b, low, high in ((0, 2, box.x0, box.x1), (1, 3, box.y0, box.y1)):
                assert abs((ink[a] + ink[b]) / 2 - (low + high) / 2) <= 3.0, name  # centred


def test_labels_are_names_not_math(tmp_path):
    pytest.importorskip("matplotlib")
    price = mg.Value(2.0, label="$x$ in USD")
    (price * 3).backward()
    mg.draw_graph(price * 3, str(tmp_path / "g.svg"))
    assert ">$x$ in USD | data 2.0000" in (tmp_path / "g.svg").read_text()  # a text element
    mg.draw_graph(price * 3, str(tmp_path / "g.png"))  # and outlined: no error either


def segment_hits_box(p, q, centre, size, shrink: float = 1.0) -> bool:
    """Whether the segment p-q passes through the inside of the box (shrunk a little, so
    that touching its side does not count): Liang-Barsky clipping."""
    (x0, y0), (x1, y1) = p, q
    left, right = centre[0] - size[0] / 2 + shrink, centre[0] + size[0] / 2 - shrink
    bottom, top = centre[1] - size[1] / 2 + shrink, centre[1] + size[1] / 2 - shrink
    if left >= right or bottom >= top:
        return False
    t0, t1, dx, dy = 0.0, 1.0, x1 - x0, y1 - y0
    for edge_p, edge_q in ((-dx, x0 - left), (dx, right - x0), (-dy, y0 - bottom),
                           (dy, top - y0)):
        if edge_p == 0:
            if edge_q < 0:
                return False
            continue
        t = edge_q / edge_p
        if edge_p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return False
    return True


def horner(steps: int) -> tuple[Value, Value]:
    """A polynomial in x by Horner's rule: x is used once at every step."""
    x = Value(0.5, "x")
    p = Value(1.0, "c0")
    for i in range(steps):
        p = p * x + 0.1 * i
    return p, x


def test_the_long_edges_out_of_one_value_share_one_line():
    root, x = horner(60)
    keys, edges, _ = mg._graph_nodes(root)
    g = mg._Graph(keys, edges)
    rank = mg._rank_nodes(g)
    layers, routes = mg._add_virtual_points(g, rank)
    uses = [route for (a, _), route in routes.items() if g.keys[a] is x]
    assert len(uses) == 60
    # one line, as long as the furthest use, each use branching off it: a point per rank,
    # where a line per use took 3,600 and drew edges straight through boxes
    trunk = {p for route in uses for p in route[1:-1]}
    assert len(trunk) == max(rank[route[-1]] for route in uses) - rank[uses[0][0]] - 1
    assert all(mg._is_virtual(g.keys[p]) for p in trunk)
    longest = max(uses, key=len)
    assert all(route[:-1] == longest[:len(route) - 1] for route in uses)
    assert sum(map(len, layers)) - len(keys) == len(trunk)  # the only long edges are x's


@pytest.mark.parametrize("rankdir", ["LR", "TB"])
def test_no_edge_passes_through_a_box_that_is_not_one_of_its_ends(rankdir):
    w2 = mg._w2_loss(mg.MLP(2, [3, 3, 1], activation="relu", output_activation="linear",
                            seed=0), [[0.5, -0.3]], [1.0])
    graphs = {**graphs_to_check(),
              "mlp 3-4-4-1": mlp_sample_loss(3, [4, 4], "mse", "tanh")[0],
              "folded 2-16-16-1": mlp_sample_loss(2, [16, 16], "hinge", "relu")[0],
              "horner 60": horner(60)[0],  # x used at every step: 14 edges crossed boxes
              "binary-op 2-3-3-1": w2}  # long edges from the weight decay to the end
    for name, root in graphs.items():
        fold = name.startswith("folded")
        pos, edges, routes, size, _ = mg._layout(root, rankdir, fold)
        boxes = [k for k in pos if not mg._is_virtual(k)]
        along = 0 if rankdir == "LR" else 1
        lines = mg._edge_lines(pos, size, routes, edges, along)
        assert len(lines) == len(edges)
        hits: dict = {}  # the boxes each segment crosses (edges out of one value share some)
        for (a, b), (points, head) in zip(edges, lines):
            assert 4.0 <= head <= 10.0
            for p, q in zip(points, points[1:]):
                if (p, q) not in hits:
                    hits[p, q] = [k for k in boxes if segment_hits_box(p, q, pos[k], size[k])]
                through = [k for k in hits[p, q] if k is not a and k is not b]
                assert not through, (name, a, b, through)
        ends = {}
        for (_, b), (points, _) in zip(edges, lines):  # arrowheads into one box stay apart
            ends.setdefault(b, []).append(points[-1])
        for points in ends.values():
            assert len({(round(x, 3), round(y, 3)) for x, y in points}) == len(points), name


# ---------------------------------------------------------------------------------------------
# Honest numbers in the trainer's output
# ---------------------------------------------------------------------------------------------

def test_boundary_and_animation_split_0_1_squared_error_at_a_half():
    pytest.importorskip("matplotlib")
    X, y = mg.make_moons(60, seed=0)
    model = mg.MLP(2, [8, 1], seed=0)  # tanh output, squared error against 0/1 labels
    mg.train(model, X, y, epochs=30, verbose=False, seed=0, lr=0.1)
    trained = mg.evaluate(model, X, y)[1]

    def decision_lines(fig) -> list[float]:
        return [float(c.levels[0]) for c in fig.axes[0].collections
                if getattr(c, "levels", None) is not None and len(c.levels) == 1]

    fig = mg.plot_decision_boundary(model, X, y, resolution=30, loss="mse")
    assert fig.axes[0].get_title() == f"accuracy {mg._percent(trained)}"  # train()'s number
    assert decision_lines(fig) == [0.5]
    # a margin or a logit (or no loss given) splits at 0, whatever the labels
    for loss in ("bce", None):
        assert decision_lines(mg.plot_decision_boundary(model, X, y, resolution=30,
                                                        loss=loss)) == [0.0]
    assert mg._Frames(X, 3, mg._threshold("mse", y)).split == 0.5
    assert mg._Frames(X, 3).split == 0.0


def test_accuracy_with_0_1_labels_under_squared_error_thresholds_at_a_half():
    assert mg.accuracy([0.3, 0.7, 0.2], [0, 1, 0], threshold=0.5) == 1.0
    assert mg.accuracy([0.3, 0.7, 0.2], [0, 1, 0]) == pytest.approx(1 / 3)
    X, y = mg.make_moons(100, seed=0)
    model = mg.MLP(2, [4, 1], seed=0)  # tanh output, squared error against 0/1 labels
    history = mg.train(model, X, y, epochs=40, verbose=False, seed=0)
    assert history.loss[-1] < history.loss[0] / 3
    assert history.accuracy[-1] >= 0.8 > history.accuracy[0]  # it learns, and it shows
    assert mg.evaluate(model, X, y)[1] == mg.accuracy(mg.predict(model, X), y, 0.5)
    assert mg._threshold("mse", [-1.0, 1.0]) == 0.0 and mg._threshold("bce", [0, 1]) == 0.0


def test_the_trainer_prints_probabilities_for_logits_and_says_what_its_last_loss_is():
    result = run_cli("train", "--dataset", "xor", "--epochs", "5")
    lines = result.stdout.splitlines()
    shown = [line for line in lines if line.startswith("probabilities")]
    assert len(shown) == 2
    for line in shown:
        values = [float(v) for v in line.split(":")[1].split()]
        assert len(values) == 4 and all(0.0 < v < 1.0 for v in values)
    assert re.search(r"^final: loss [\d.]+, accuracy [\d.]+% on all 4 training samples after "
                     r"training \(5 epochs in ", lines[-1])


# ---------------------------------------------------------------------------------------------
# Ranking by network simplex: the least total edge length
# ---------------------------------------------------------------------------------------------

def random_dag(rng: random.Random, n: int) -> list[tuple[int, int]]:
    """A connected DAG on nodes 0..n-1, every edge from a lower number to a higher one."""
    ends = {(rng.randrange(i), i) for i in range(1, n)}
    for _ in range(rng.randint(0, n)):
        a, b = sorted(rng.sample(range(n), 2))
        ends.add((a, b))
    return sorted(ends)


def test_network_simplex_finds_the_least_total_edge_length():
    rng = random.Random(1)
    for _ in range(100):
        n = rng.randint(2, 6)
        ends = random_dag(rng, n)
        rank = [0] * n
        for v in range(n):  # a feasible start: the longest path from the sources
            rank[v] = max([rank[t] + 1 for t, h in ends if h == v], default=0)
        mg._network_simplex(n, ends, rank)
        assert all(rank[h] - rank[t] >= 1 for t, h in ends)
        best = min(sum(r[h] - r[t] for t, h in ends)
                   for r in itertools.product(range(n), repeat=n)
                   if all(r[h] - r[t] >= 1 for t, h in ends))
        assert sum(rank[h] - rank[t] for t, h in ends) == best, ends


def test_cut_values_match_their_definition():
    rng = random.Random(2)
    for _ in range(100):
        n = rng.randint(2, 14)
        ends = random_dag(rng, n)
        incident = [[] for _ in range(n)]
        for e, (t, h) in enumerate(ends):
            incident[t].append(e)
            incident[h].append(e)
        rank = [0] * n
        for v in range(n):
            rank[v] = max([rank[t] + 1 for t, h in ends if h == v], default=0)
        in_tree = mg._tight_tree(n, ends, incident, rank)
        assert sum(in_tree) == n - 1 and all(
            rank[h] - rank[t] == 1 for e, (t, h) in enumerate(ends) if in_tree[e])
        tree = [[] for _ in range(n)]
        for e, (t, h) in enumerate(ends):
            if in_tree[e]:
                tree[t].append((e, h))
                tree[h].append((e, t))
        par, lim, low, order = mg._tree_postorder(n, tree)
        cut = mg._cut_values(n, ends, par, order)
        for e in (e for e in range(len(ends)) if in_tree[e]):
            tail_part, stack = {ends[e][0]}, [ends[e][0]]  # the tree without e, from its tail
            while stack:
                v = stack.pop()
                for f, w in tree[v]:
                    if f != e and w not in tail_part:
                        tail_part.add(w)
                        stack.append(w)
            expected = sum((t in tail_part) - (h in tail_part) for t, h in ends)
            assert cut[e] == expected


def test_ranks_of_a_binary_op_network_are_much_shorter_than_the_first_guess():
    model = mg.MLP(2, [4, 4, 1], activation="relu", output_activation="linear", seed=0)
    loss = mg._binary_op_loss(mg._value_layers(model), [[0.5, -0.3]], [1.0])
    g = mg._Graph(*mg._graph_nodes(loss)[:2])
    edges = g.edges
    first, best = mg._first_ranks(g), mg._rank_nodes(g)
    assert all(best[b] - best[a] >= 1 for a, b in edges) and min(best) == 0

    def span(rank):
        return sum(rank[b] - rank[a] for a, b in edges)

    assert span(best) < 0.75 * span(first)  # 686 against 958
    assert mg._rank_nodes(g) == best  # deterministic


def test_weighted_median_leans_to_the_closer_neighbours():
    assert mg._median([3.0]) == 3.0 and mg._median([1.0, 4.0]) == 2.5
    assert mg._median([0.0, 1.0, 2.0]) == 1.0
    # 0, 1 | 2, 10: the left pair sits closer, so the median leans left of the midpoint 1.5
    assert mg._median([0.0, 1.0, 2.0, 10.0]) == pytest.approx((1 * 8 + 2 * 1) / 9)
    assert mg._median([0.0, 0.0, 5.0, 5.0]) == 2.5


def test_packing_keeps_order_and_gaps_and_gives_way_to_heavier_points():
    sizes = [20.0, 0.0, 20.0]
    # all three want the same place: equal weights meet in the middle
    even = mg._pack([0.0, 0.0, 0.0], sizes, [1.0, 1.0, 1.0])
    gap = 10.0 + mg._NODE_GAP
    assert even == pytest.approx([-gap, 0.0, gap])
    # a heavy middle point (a long edge) stays where it wants to be; the boxes move
    heavy = mg._pack([0.0, 0.0, 0.0], sizes, [1.0, 1000.0, 1.0])
    assert heavy[1] == pytest.approx(0.0) and heavy[2] - heavy[1] == pytest.approx(gap)
    # already apart: nothing moves
    assert mg._pack([-50.0, 0.0, 50.0], sizes, [1.0, 8.0, 1.0]) == [-50.0, 0.0, 50.0]


def layered(root: Value) -> tuple[list, list, list]:
    g = mg._Graph(*mg._graph_nodes(root)[:2])
    layers, _ = mg._add_virtual_points(g, mg._rank_nodes(g))
    return layers, g.up, g.down


def test_transposition_never_adds_crossings_and_ordering_keeps_the_best():
    layers, up, down = layered(mlp_sample_loss(2, [4, 4], "hinge", "relu")[0])
    for from_sinks in (False, True):
        start = mg._first_order(layers, up, down, from_sinks)
        assert sorted(map(len, start)) == sorted(map(len, layers))
        before = mg._total_crossings(start, down)
        mg._transpose(start, up, down)
        assert mg._total_crossings(start, down) <= before
    best = mg._order_ranks(layers, up, down)
    assert [set(layer) for layer in best] == [set(layer) for layer in layers]
    assert mg._total_crossings(best, down) <= min(
        mg._total_crossings(mg._first_order(layers, up, down, s), down) for s in (False, True))


def test_ordering_restarts_from_shuffled_copies_keep_the_best_and_repeat(monkeypatch):
    layers, up, down = layered(random_value_dag(2))
    once = mg._total_crossings(mg._dot_order(layers, up, down), down)
    best = mg._order_ranks(layers, up, down)
    assert mg._total_crossings(best, down) == 85 < once == 95  # the best of 9 runs
    assert mg._order_ranks(layers, up, down) == best  # seeded: the same every time
    assert [sorted(map(str, a)) for a in best] == [sorted(map(str, a)) for a in layers]
    # as many runs as the work allows: 9 up to 166 points, 1 (no restart) past 750 points,
    # each finding fewer crossings than the last here; a run that ties the best ends them
    runs, counts = [], iter(range(1000, 0, -1))

    def counted(layers: list, up: list, down: list) -> list:
        runs.append(len(layers))
        return [list(layer) for layer in layers]

    monkeypatch.setattr(mg, "_dot_order", counted)
    monkeypatch.setattr(mg, "_total_crossings", lambda layers, down: next(counts))
    for points, expected in ((166, 9), (300, 5), (500, 3), (750, 2), (752, 1)):
        runs.clear()
        # two ranks whose single edges all cross: never zero crossings, so never done early
        top, bottom = list(range(points // 2)), list(range(points // 2, points))
        up = [[] for _ in top] + [[points - 1 - b] for b in bottom]
        down = [[points - 1 - a] for a in top] + [[] for _ in bottom]
        mg._order_ranks([top, bottom], up, down)
        assert len(runs) == expected, points
    runs.clear()
    monkeypatch.setattr(mg, "_total_crossings", lambda layers, down: 7)
    mg._order_ranks([top[:50], bottom[:50]], up, down)
    assert len(runs) == 2


# Crossings between ranks (virtual points included) in dot 2.43's ordering, as `dot -v`
# reports them ("mincross G: N crossings"), next to ours.
DOT_MINCROSS = {"binary-op 2-4-4-1": 79, "mlp 2-8-8-1 hinge": 1748, "random 80, seed 0": 30,
                "random 80, seed 1": 63, "random 80, seed 2": 94}


def graphviz_mincross(root: Value) -> int:
    keys, edges, _ = mg._graph_nodes(root)
    name = {k: f"n{i}" for i, k in enumerate(keys)}
    lines = ["digraph G { rankdir=LR; node [shape=box fontname=monospace];"]
    lines += [f'{name[k]} [label="{mg._box_text(k)}"];' for k in keys]
    lines += [f"{name[a]} -> {name[b]};" for a, b in edges]
    err = subprocess.run(["dot", "-v", "-Tplain"], input="\n".join(lines) + "}", text=True,
                         capture_output=True, check=True).stderr
    return int(re.findall(r"^mincross G: (\d+) crossings", err, re.MULTILINE)[-1])


@pytest.mark.parametrize("case,ours", [("binary-op 2-4-4-1", 68), ("mlp 2-8-8-1 hinge", 1748),
                                       ("random 80, seed 0", 29), ("random 80, seed 1", 49),
                                       ("random 80, seed 2", 85)])
def test_ordering_against_graphviz_dot(case, ours):
    if case.startswith("binary"):
        model = mg.MLP(2, [4, 4, 1], activation="relu", output_activation="linear", seed=0)
        root = mg._binary_op_loss(mg._value_layers(model), [[0.5, -0.3]], [1.0])
    elif case.startswith("random"):
        root = random_value_dag(int(case[-1]))
    else:
        root = mlp_sample_loss(2, [8, 8], "hinge", "relu")[0]
    layers, up, down = layered(root)
    # our count, recorded so that a change for the worse shows; on the binary-op network it
    # is below dot's (68 against 79; 87 before the long edges out of one value shared a
    # line, 72 before restarts), on the fused network equal
    found = mg._total_crossings(mg._order_ranks(layers, up, down), down)
    assert found <= ours <= DOT_MINCROSS[case]
    if shutil.which("dot"):  # and against the dot installed here, whatever its version
        assert found <= 1.15 * graphviz_mincross(root)


def random_value_dag(seed: int, n: int = 80) -> Value:
    rng = random.Random(seed)
    values = [Value(rng.uniform(-1, 1), f"v{i}") for i in range(6)]
    while len(values) < n:
        a, b = rng.sample(values, 2)
        values.append(a * b if rng.random() < 0.5 else a + b)
    return Value.sum(values[-8:])


def drawn_segments(root: Value, rankdir: str = "LR") -> list:
    """The segments of the drawing's edges as drawn, each once (long edges out of one value
    share their first segments), with the values at the ends of an edge that draws each."""
    pos, edges, routes, size, _ = mg._layout(root, rankdir)
    lines = mg._edge_lines(pos, size, routes, edges, 0 if rankdir == "LR" else 1)
    segments = {}
    for (a, b), (points, _) in zip(edges, lines):
        for p, q in zip(points, points[1:]):
            segments.setdefault((*map(round, p), *map(round, q)), (a, b, p, q))
    return list(segments.values())


def drawn_crossings(root: Value) -> int:
    """Crossings among the drawn segments of edges that share no end."""
    segments = drawn_segments(root)
    return sum(len({a, b, c, d}) == 4 and segments_cross(p, q, r, s)
               for i, (a, b, p, q) in enumerate(segments)
               for c, d, r, s in segments[i + 1:])


@pytest.mark.parametrize("seed,most,level", [(0, 29, 14), (1, 49, 17), (2, 85, 83)])
def test_random_dags_cross_no_more_than_our_measured_counts(seed, most, level):
    # crossings as drawn (dot 2.43 reports 30, 63 and 94 between its ranks; this layout drew
    # 32, 49 and 95 before restarts from shuffled copies, 29, 48 and 102 before long edges
    # out of one value shared a line, 38, 88 and 144 before dot's ordering, and 55, 105 and
    # 143 before network simplex ranks)
    root = random_value_dag(seed)
    assert drawn_crossings(root) <= most
    # a long edge runs level across the ranks it passes (no long edge did before the
    # straightening pass), bending only where another long edge needs its line
    pos, edges, routes, _, _ = mg._layout(root, "LR")
    inner = {(a, b) for chain in routes.values() for a, b in zip(chain[1:-1], chain[2:-1])}
    assert sum(abs(pos[a][1] - pos[b][1]) < 1e-6 for a, b in inner) >= level


# ---------------------------------------------------------------------------------------------
# Your own ops, and code written for the original micrograd
# ---------------------------------------------------------------------------------------------

def cube(x: Value) -> Value:
    return Value.op(x.data ** 3, (x,), (3 * x.data ** 2,), "cube")


def smooth_step(x: Value) -> Value:
    """3x^2 - 2x^3 on [0, 1]."""
    t = x.data
    return Value.op(3 * t * t - 2 * t ** 3, (x,), (6 * t - 6 * t * t,), "smoothstep")


def test_a_custom_op_works_with_backward_no_grad_gradcheck_and_the_drawer(tmp_path):
    x = Value(1.5, "x")
    y = cube(x) * 2.0
    y.backward()
    assert y.data == 6.75 and x.grad == 13.5
    assert mg.gradcheck(lambda a: cube(a).tanh() + smooth_step(a * 0.3), [0.4])
    assert mg.gradcheck(lambda a, b: smooth_step(a * b), [0.6, 0.7])
    with mg.no_grad():
        assert cube(x)._children == () and cube(x).data == 3.375
    keys, edges, _ = mg._graph_nodes(cube(x))
    assert mg._box_text(keys[1]) == "cube"
    with pytest.raises(ValueError, match="1 children need as many local gradients, got 2"):
        Value.op(1.0, (x,), (1.0, 2.0), "bad")
    with pytest.raises(TypeError, match="children must be Values"):
        Value.op(1.0, (1.0,), (1.0,), "bad")
    with pytest.raises(ValueError, match="non-empty str"):
        Value.op(1.0, (x,), (1.0,), "")
    pytest.importorskip("matplotlib")
    fig = mg.draw_graph(cube(x) + x, str(tmp_path / "c.png"))
    assert "cube" in [t.get_text() for t in fig.axes[0].texts]


def original_trace(root) -> tuple[set, set]:
    """The traversal of the original micrograd's drawing notebook, written from its design:
    recursion over `_prev`, collecting nodes and (child, parent) edges."""
    nodes, edges = set(), set()

    def build(v):
        if v not in nodes:
            nodes.add(v)
            for child in v._prev:
                edges.add((child, v))
                build(child)
    build(root)
    return nodes, edges


def test_code_written_for_the_original_micrograd_traces_our_graphs():
    L = mg._expression()
    nodes, edges = original_trace(L)
    assert {v.label for v in nodes} == {"a", "b", "c", "d", "e", "f", "L"}
    assert {(a.label, b.label) for a, b in edges} == {("a", "e"), ("b", "e"), ("e", "d"),
                                                      ("c", "d"), ("d", "L"), ("f", "L")}
    assert {v._op for v in nodes} == {"", "*", "+"}
    with pytest.raises(AttributeError):
        L._prev = set()  # read-only: the children live in _children
    model = mg.MLP(2, [3, 1], activation="relu", output_activation="linear", seed=0)
    nodes, edges = original_trace(model([1.0, 2.0]))
    assert set(model.parameters()) <= nodes and len(edges) == 3 * 5 + 7


# ---------------------------------------------------------------------------------------------
# Save, resume, evaluate
# ---------------------------------------------------------------------------------------------

def test_optimizer_state_dict_round_trips_through_json_and_refuses_bad_ones():
    params = [Value(0.5), Value(-1.0)]
    opt = mg.Adam(params, lr=0.01, betas=(0.8, 0.99))
    for p in params:
        p.grad = 0.3
    opt.step()
    saved = json.loads(json.dumps(opt.state_dict()))
    assert saved["param_groups"][0]["betas"] == [0.8, 0.99] and set(saved["state"]) == {"0", "1"}
    other = mg.Adam([Value(0.5), Value(-1.0)])
    other.load_state_dict(saved)
    assert other.param_groups[0]["betas"] == (0.8, 0.99) and other.lr == 0.01
    assert other.state == opt.state
    before = (other.lr, [dict(s) for s in other.state])
    for bad in ({"state": {}, "param_groups": []},
                {**saved, "state": {"0": {"exp_avg": math.nan}}},
                {**saved, "state": {"0": {"momentum_buffer": 1.0}}},
                {**saved, "state": {"5": {"step": 1.0}}},
                {**saved, "param_groups": [{**saved["param_groups"][0], "eps": 0.0}]},
                {**saved, "param_groups": [{**saved["param_groups"][0], "params": [0]}]}):
        with pytest.raises(ValueError, match="not a state_dict of this Adam"):
            other.load_state_dict(bad)
        assert (other.lr, other.state) == before


@pytest.mark.parametrize("optim", list(mg.OPTIMIZERS))
def test_five_epochs_saved_and_five_resumed_equal_ten_bit_for_bit(optim, tmp_path, capsys):
    common = ["train", "--dataset", "moons", "--samples", "24", "--batch-size", "8",
              "--optim", optim, "--quiet"]
    paths = {name: str(tmp_path / f"{name}.json") for name in ("ten", "five", "resumed")}
    assert mg.main([*common, "--hidden", "5", "--epochs", "10", "--save", paths["ten"]]) == 0
    assert mg.main([*common, "--hidden", "5", "--epochs", "5", "--save", paths["five"]]) == 0
    assert mg.main([*common, "--epochs", "5", "--load", paths["five"],
                    "--save", paths["resumed"]]) == 0
    ten, resumed = (json.loads(Path(paths[k]).read_text()) for k in ("ten", "resumed"))
    assert ten["state_dict"] == resumed["state_dict"]
    assert ten["training"] == resumed["training"] and ten["training"]["epochs"] == 10
    assert ten["version"] == 2
    capsys.readouterr()


def test_epochs_zero_evaluates_a_saved_model_and_version_1_files_still_load(tmp_path, capsys):
    pytest.importorskip("matplotlib")  # it draws what --epochs 0 is asked for
    model = mg.MLP(2, [4, 1], activation="relu", output_activation="linear", seed=0)
    old = tmp_path / "old.json"
    model.save(str(old))
    assert json.loads(old.read_text())["version"] == 1
    args = ["train", "--dataset", "moons", "--samples", "30", "--load", str(old)]
    assert mg.main([*args, "--epochs", "0", "--boundary", str(tmp_path / "b.png")]) == 0
    out = capsys.readouterr().out
    X, y = mg.make_moons(30, seed=0)
    expected_loss = mg.evaluate(model, X, [2 * t - 1 for t in y], "hinge")[0]
    assert f"final: loss {expected_loss:.6f}" in out
    assert " on all 30 samples (evaluated only)\n" in out  # the file holds no run of its own
    assert "epoch 1" not in out and png_size(tmp_path / "b.png")[0] > 300
    toy = tmp_path / "toy.json"
    assert mg.main(["train", "--save", str(toy), "--quiet"]) == 0
    assert mg.main(["train", "--load", str(toy), "--epochs", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out[-3:]] == ["targets", "predictions", "final"]
    assert out[-1].endswith("(evaluated only, after 20 epochs of training)")
    resumable = tmp_path / "run.json"
    assert mg.main([*args[:-2], "--epochs", "3", "--quiet", "--save", str(resumable)]) == 0
    assert mg.main([*args[:-2], "--load", str(resumable), "--epochs", "0", "--quiet",
                    "--plot", str(tmp_path / "curves.png")]) == 0  # the saved run's curves
    assert png_size(tmp_path / "curves.png")[0] > 300
    assert len(json.loads(resumable.read_text())["training"]["history"]["loss"]) == 3
    assert mg.main([*args, "--epochs", "2", "--quiet"]) == 0  # a fresh optimizer
    with pytest.raises(SystemExit) as stop:
        mg.main(["train", "--epochs", "0"])
    assert stop.value.code == 2 and "--load" in capsys.readouterr().err
    broken = json.loads(old.read_text())
    broken["version"], broken["training"] = 2, {"optimizer": "adam", "epochs": 3}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(broken))
    assert mg.main([*args[:-1], str(bad), "--optim", "adam"]) == 1
    assert "cannot resume from" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Your own expression: built through a whitelist, checked by nudging, asked as a quiz
# ---------------------------------------------------------------------------------------------

EXPRESSIONS = {  # each with the same function written with Values, for gradcheck
    "tanh(x1*w1 + x2*w2 + b)": lambda x1, w1, x2, w2, b: (x1 * w1 + x2 * w2 + b).tanh(),
    "exp(-x**2/2) * sin(3*x) + cos(y)/y": lambda x, y: (-x ** 2 / 2).exp() * (3 * x).sin()
    + y.cos() / y,
    "log(sigmoid(a - b)) + sqrt(abs(a*b)) - relu(2 - a)": lambda a, b: (
        (a - b).sigmoid().log() + abs(a * b).sqrt() - (2 - a).relu()),
    "x**y + 2**x - -x/(y + 1)": lambda x, y: x ** y + 2 ** x - -x / (y + 1),
}
POINTS = {"x1": 2.0, "w1": -3.0, "x2": 0.5, "w2": 1.0, "b": 0.88, "x": 0.7, "y": 1.3,
          "a": 0.4}


@pytest.mark.parametrize("text", list(EXPRESSIONS))
def test_an_expression_builds_its_graph_with_the_right_gradients(text):
    f = EXPRESSIONS[text]
    names = list(inspect.signature(f).parameters)
    values = {name: POINTS[name] for name in names}
    root = mg.parse_expression(text, values)
    root.backward()
    leaves = {v.label: v for v in mg._topological_order(root) if v.label in values}
    assert set(leaves) == set(names) and root.label == "out"
    expected = [Value(values[n]) for n in names]
    out = f(*expected)
    out.backward()
    assert root.data == out.data
    assert [leaves[n].grad for n in names] == pytest.approx([v.grad for v in expected],
                                                              rel=1e-12, abs=1e-15)
    assert mg.gradcheck(f, [values[n] for n in names])


def test_sin_and_cos_have_torchs_slopes():
    x = Value(0.5)
    y = x.sin() * x.cos()
    y.backward()
    assert x.grad == pytest.approx(math.cos(1.0), rel=1e-15)  # d(sin x cos x) = cos 2x
    assert mg.gradcheck(lambda a: a.sin() + a.cos() * a, [1.3])
    assert math.isnan(Value(math.inf).sin().data) and math.isnan(Value(-math.inf).cos().data)


@pytest.mark.parametrize("text,message", [
    ('__import__("os").system("touch hacked")', "unknown function"),
    ("x.__class__.__bases__", "is not allowed"), ("(lambda: x)()", "unknown function"),
    ("[x for x in (1, 2)]", "is not allowed"), ("'x' * 2", "is not a number"),
    ("open('f')", "unknown function open()"), ("z * 2", "z has no value: give it with --at z=..."),
    ("x +", "is not an expression"), ("log(x, 2)", "takes one argument"),
    ("x if x else 2", "is not allowed"), ("x < 2", "is not allowed"), ("x", "no op"),
    ("log(-x)", "cannot be computed"), ("+".join(["x"] * 20000), "nested too deeply")])
def test_a_hostile_or_broken_expression_is_exit_2_and_runs_nothing(text, message, tmp_path):
    result = run_cli("expr", text, "--at", "x=2", cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert result.stderr.startswith("usage:") and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing run, nothing written


def test_expr_flags_work_on_an_expression(tmp_path):
    pytest.importorskip("matplotlib")  # expr draws its graph
    result = run_cli("expr", "tanh(x1*w1 + x2*w2 + b)", "--at",
                     "x1=2,x2=0,w1=-3,w2=1,b=6.8813735870195432", "--explain", "--color",
                     "grad", "--out", "g.svg", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:11]}
    assert rows["x1"][-1] == "-1.5000" and rows["w1"][-1] == "1.0000"
    assert rows["out"][1:] == ["tanh", "0.7071", "1.0000"]
    assert "dout/dx1 = dout/dn4 * d(x1*w1)/dx1 = 0.5000 * -3.0000 = -1.5000" in result.stdout
    assert "x1 | data 2.0000 | grad -1.5000" in (tmp_path / "g.svg").read_text()
    for flags, message in ((["x*y", "--at", "x=1,y=2,z=3"], "--at gives z, which"),
                           (["--at", "x=1"], "give it too"), (["x*y", "--at", "x=1,x=2"],
                                                              "x is given twice"),
                           (["x*y", "--at", "x=1;y=2"], "'1;y=2' is not a number"),
                           (["x*y", "--at", "x"], "NAME=NUMBER"),
                           (["x*y", "--at", "x=1,y=nan"], "finite number")):
        result = run_cli("expr", *flags, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, result.stderr


def check_rows(stdout: str) -> dict[str, list[str]]:
    lines = stdout.split("input")[1].splitlines()[1:]
    return {line.split()[0]: line.split() for line in lines if line and "saved" not in line}


def test_expr_check_nudges_each_input_and_gives_a_verdict(tmp_path):
    pytest.importorskip("matplotlib")  # expr draws its graph
    result = run_cli("expr", "--check", cwd=tmp_path)
    rows = check_rows(result.stdout)
    L = mg._expression()
    L.backward()
    grads = {v.label: v.grad for v in mg._topological_order(L)}
    assert sorted(rows) == ["a", "b", "c", "f"]
    for name, row in rows.items():
        assert float(row[1]) == grads[name] and abs(float(row[3]) - grads[name]) < 1e-6
        assert abs(float(row[2]) - grads[name]) < 1e-4  # the forward difference, less exact
        assert float(row[4]) < 1e-7 and row[5] == "right"
    # a relu whose input the step crosses: the differences cannot tell; a wrong gradient
    result = run_cli("expr", "relu(x*y) + abs(y)", "--at", "x=1e-7,y=2", "--check",
                     cwd=tmp_path)
    rows = check_rows(result.stdout)
    assert rows["x"][5:] == ["cannot", "tell:", "a", "kink", "(a", "kink", "within", "the",
                             "step)"]
    assert rows["y"][5] == "right"
    wrong = mg.nudge_check(lambda v: Value(v["x"] ** 2, (Value(v["x"], "x"),), "sq", (1.0,)),
                           {"x": 3.0})
    assert wrong[0]["verdict"] == "WRONG" and wrong[0]["error"] == pytest.approx(5 / 6, 1e-6)


def test_expr_check_says_where_a_nudge_leaves_the_domain_or_a_value_overflows(tmp_path):
    pytest.importorskip("matplotlib")  # expr draws its graph
    result = run_cli("expr", "sqrt(x) + log(y)", "--at", "x=0,y=2", "--check", cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    rows = check_rows(result.stdout)
    assert " ".join(rows["x"][5:]) == "cannot tell: x - h is outside the function's domain"
    assert rows["x"][1] == "inf" and float(rows["x"][2]) == 1000.0  # sqrt(1e-6) / 1e-6
    assert rows["y"][5] == "right"
    overflow = run_cli("expr", "exp(x)", "--at", "x=710", "--check", cwd=tmp_path)
    assert " ".join(check_rows(overflow.stdout)["x"][5:]) == "cannot tell: a value is not finite"
    assert mg.format_check(mg.nudge_check(lambda v: Value(2.0) * 3, {})) == \
        "no named input to check"
    with pytest.raises(TypeError, match="gradcheck needs f to return a Value, got float"):
        mg.gradcheck(lambda a: 3.0, [1.0])
    edge = mg.nudge_check(lambda v: (Value(v["x"], "x") - 1.0 + 1e-7).sqrt(), {"x": 1.0})
    assert edge[0]["verdict"] == "cannot tell: x - h is outside the function's domain"
    bad = run_cli("expr", "x", "--at", "x=nan", cwd=tmp_path)
    assert bad.returncode == 2 and "--at: must be a finite number, got nan" in bad.stderr


def test_quiz_asks_through_input_so_a_notebook_shows_a_box(monkeypatch):
    a, b = Value(2.0, "a"), Value(3.0, "b")
    c = a * b
    typed = iter(["2", "wrong"])
    monkeypatch.setattr("builtins.input", lambda: next(typed))
    marks = mg.quiz(c, say=lambda line: None)
    assert [marks[b], marks[a]] == [True, False]

    def no_input() -> str:  # what ipykernel raises where the frontend takes no input
        raise NotImplementedError("raw_input was called, but this frontend does not support "
                                  "input requests")

    monkeypatch.setattr("builtins.input", no_input)
    said = []
    assert list(mg.quiz(c, say=said.append).values()) == [False, False]
    assert said[-1] == "score 0/2"


def test_expr_quiz_reads_answers_marks_them_and_scores(tmp_path):
    pytest.importorskip("matplotlib")  # expr draws its graph
    answers = "4\n-2\n0.5\nabc\n-4.0005\n6\n"  # f d c e b a: right, right, wrong x2, right x2
    result = subprocess.run([sys.executable, SCRIPT, "expr", "--quiz", "--out", "q.png"],
                            input=answers, capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "MPLBACKEND": "Agg"}, timeout=60)
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and lines[-2] == "score 4/6", result.stdout
    assert "right: dL/df = 4.0000" in lines and "right: dL/db = -4.0000" in lines
    assert ("wrong (0.5): hint: dL/dd * d(e+c)/dc = -2.0000 * 1.0000; the answer is -2.0000"
            in lines)
    assert "wrong (abc): hint:" in result.stdout
    from PIL import Image

    with Image.open(tmp_path / "q.png") as image:  # boxes filled green and red
        colours = {c for _, c in image.convert("RGB").getcolors(1 << 20)}
    assert (0xc7, 0xf0, 0xc2) in colours and (0xff, 0xc9, 0xc9) in colours
    short = subprocess.run([sys.executable, SCRIPT, "expr", "--quiz"], input="4\n",
                           capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert short.stdout.splitlines()[-2] == "score 1/6"  # no more answers: the rest wrong


def parsed_steps(lines: list[str]) -> tuple[list[str], dict[str, float]]:
    """The forward steps' names, and each name's gradient summed from the backward steps."""
    forward = [line.split()[1] for line in lines if line.startswith("forward: ")]
    grads: dict[str, float] = {}
    for line in lines:
        if line.startswith("backward: "):
            for part in line.split(": ", 2)[2].split("; "):
                name = part.split(" += ")[0].split("/d", 1)[1]
                up, local = part.split(" += ")[1].split(" = ")[0].split(" * ")
                grads[name] = grads.get(name, 0.0) + float(up) * float(local)
    return forward, grads


def test_backprop_plays_step_by_step_in_frames_and_lines(tmp_path):
    pytest.importorskip("matplotlib")  # expr draws its graph
    result = run_cli("expr", "--steps", "s.gif", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines()
             if line.startswith(("forward: ", "backward: "))]
    forward, grads = parsed_steps(lines)
    assert forward == ["e", "d", "L"] and len(lines) == 6  # a line per op, each way
    L = mg._expression()
    L.backward()
    assert grads == {v.label: v.grad for v in mg._topological_order(L) if v.label != "L"}
    assert lines[3] == ("backward: L = d*f: dL/dd += 1.0000 * -2.0000 = -2.0000; "
                        "dL/df += 1.0000 * 4.0000 = 4.0000")
    from PIL import Image

    with Image.open(tmp_path / "s.gif") as gif:  # the forward frames and one per op
        assert gif.n_frames == 6 and gif.size[0] >= 800
    # a value used twice: its running sum; the frames as numbered PNGs in a folder
    a = Value(3.0, "a")
    r = a * a + a
    lines = mg.step_through(r, str(tmp_path / "frames"), say=lambda line: None)
    assert parsed_steps(lines)[1]["a"] == 7.0 == 2 * 3.0 + 1
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [
        "step_01.png", "step_02.png", "step_03.png", "step_04.png"]
    for flag in ("s.png", ""):
        result = run_cli("expr", "--steps", flag, cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr


def test_step_through_refuses_a_graph_too_large_to_play_before_any_work(tmp_path):
    # 41 values: its 62 frames would take a quarter of a minute and most of a gigabyte
    text = "+".join(f"tanh(x*{i}+y)" for i in range(1, 9))
    root = mg.parse_expression(text, {"x": 0.1, "y": 0.2})
    root.backward()
    assert len(mg._topological_order(root)) == 41 > mg.STEPS_LIMIT
    with pytest.raises(ValueError, match="the graph has 41 values, more than 40"):
        mg.step_through(root, str(tmp_path / "big.gif"), say=lambda line: None)
    lines = mg.step_through(root, say=lambda line: None)  # the lines alone: any size
    assert len(lines) == 2 * sum(1 for v in mg._topological_order(root) if v._children)
    result = run_cli("expr", text, "--at", "x=0.1,y=0.2", "--steps", "big.gif", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == "", result.stdout
    assert "cannot draw big.gif: the graph has 41 values, more than 40" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_expression_that_starts_with_a_minus_sign_is_an_expression_not_a_flag(tmp_path):
    pytest.importorskip("matplotlib")  # expr draws its graph
    result = run_cli("expr", "--check", "-x*y", "--at", "x=3,y=2", "--out", "g.png",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = check_rows(result.stdout)
    assert float(rows["x"][1]) == -2.0 and float(rows["y"][1]) == -3.0
    result = run_cli("descend", "-x*y + (x*y)**2", "--start", "-0.5,0.5", "--steps", "3",
                     "--out", "p.png", cwd=tmp_path)
    assert result.returncode == 0 and "after 3 steps" in result.stdout, result.stderr
    for flags, message in ((["-z", "--at", "x=1"], "z has no value"),
                           (["--bogus"], "unrecognized arguments: --bogus")):
        result = run_cli("expr", *flags, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, result.stderr


def test_the_drawing_tools_refuse_what_they_cannot_draw_before_any_work(tmp_path):
    pytest.importorskip("matplotlib")
    model, (X, y) = mg.MLP(2, [4, 1], seed=0), mg.make_moons(20, seed=0)
    before = model.state_dict()
    with pytest.raises(ValueError, match="an animation is written as a GIF"):
        mg.animate_training(model, X, y, str(tmp_path / "a.png"), epochs=1, verbose=False)
    assert model.state_dict() == before and list(tmp_path.iterdir()) == []  # nothing trained
    with pytest.raises(ValueError, match="X holds 20 samples and 5 labels"):
        mg.plot_decision_boundary(model, X, y[:5])
    for points, labels, message in (([[1.0, 2.0, 3.0]], [1], r"X\[0\] has 3 inputs"),
                                    ([[math.nan, 1.0]], [1], r"X\[0\]\[0\] is nan"),
                                    ([], [], "0 samples and 0 labels")):
        with pytest.raises(ValueError, match=message):
            mg.plot_decision_boundary(model, points, labels)
    with pytest.raises(ValueError, match="X holds 20 samples and 3 labels"):
        mg.plot_boundaries({"a": model}, X, y[:3])
    with pytest.raises(ValueError, match="at least one model"):
        mg.plot_boundaries({}, X, y)
    for points, labels, names, message in (
            (X, y[:3], None, "got 20 and 3"), ([[1.0, 2.0], [1.0]], [0, 1], None, r"X\[1\]"),
            ([[math.nan, 1.0]], [1], None, "finite"), (X, y, ["a"], "1 finite number a row")):
        with pytest.raises(ValueError, match=message):
            mg.save_csv(str(tmp_path / "d.csv"), points, labels, names)
    with pytest.raises(ValueError, match="MLP expects 2 inputs, got 3"):  # not zipped short
        mg.unit_health(model, [[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="MLP expects 2 inputs, got 3"):
        mg.HealthRecorder(model, [[1.0, 2.0, 3.0]])
    with pytest.raises(TypeError, match="the units of an MLP are drawn and checked, got "
                                        "function"):
        mg.HealthRecorder(lambda x: x, X)
    with pytest.raises(ValueError, match="step_through writes a GIF"):
        mg.step_through(mg._expression(), str(tmp_path / "s.png"), say=lambda line: None)
    with pytest.raises(TypeError, match="max_nodes must be a whole number, got str"):
        mg.draw_graph(mg._expression(), max_nodes="5")
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'; choose from sgd"):
        mg.descend("x*y", (1.0, 1.0), [("lbfgs", 0.1)])
    with pytest.raises(ValueError, match="no path has a point where f is finite"):
        mg.plot_paths("x*y", {})
    result = run_cli("descend", "exp(x)-exp(y)", "--start", "1000,1000", cwd=tmp_path)
    assert result.returncode == 2 and ("'exp(x)-exp(y)' is nan at x=1000, y=1000: there is "
                                       "no slope to descend from" in result.stderr)
    assert list(tmp_path.iterdir()) == []


ROSENBROCK = "(1-x)**2 + 100*(y-x**2)**2"


def test_descend_takes_each_optimizers_own_path():
    paths = mg.descend(ROSENBROCK, (-1.5, 2.0), [("sgd", 0.001), ("adam", 0.05),
                                                 ("rmsprop", 0.01)], 500)
    for (name, lr), path in zip((("sgd", 0.001), ("adam", 0.05), ("rmsprop", 0.01)),
                                paths.values()):
        x, y = Value(-1.5), Value(2.0)  # the same optimizer class, stepped by hand
        opt = mg.OPTIMIZERS[name]([x, y], lr=lr)
        by_hand = []
        for step in range(501):
            f = (1 - x) ** 2 + 100 * (y - x ** 2) ** 2
            by_hand.append((x.data, y.data, f.data))
            if step < 500:
                opt.zero_grad()
                f.backward()
                opt.step()
        assert path == by_hand
    # torch 2.13, float64, the same 500 steps: SGD and Adam end where these end, to the bit
    ends = [p[-1][:2] for p in paths.values()]
    assert ends[0] == (-1.112868440659592, 1.2463736587652636)
    assert ends[1] == (0.6652439080154956, 0.4415636096775462)


def test_descend_on_the_command_line_prints_and_draws(tmp_path):
    pytest.importorskip("matplotlib")
    result = run_cli("descend", ROSENBROCK, "--start", "-1.5,2", "--optim", "sgd,adam",
                     "--lr", "0.001,0.05", "--steps", "50", "--out", "p.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("sgd (lr 0.001)") and "after 50 steps" in lines[0]
    assert png_size(tmp_path / "p.png")[0] > 400
    result = run_cli("descend", "x*y", "--lr", "10", "--optim", "sgd", "--steps", "400",
                     "--start", "1,1", "--out", "d.png", cwd=tmp_path)
    assert result.returncode == 0 and "(diverged)" in result.stdout  # said, not a traceback
    # a step out of f's domain ends that path where it landed; the others go on
    result = run_cli("descend", "log(x) + y**2", "--start", "0.5,1", "--optim", "sgd,adam",
                     "--lr", "1,0.01", "--steps", "5", "--out", "l.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    sgd, adam = result.stdout.splitlines()[:2]
    assert sgd == ("sgd (lr 1)             after 1 step: x -1.5000, y -1.0000, f nan  "
                   "(stopped: f is not defined there)")
    assert "after 5 steps" in adam and "stopped" not in adam
    paths = mg.descend("log(x) + y**2", (0.5, 1.0), [("sgd", 1.0)], steps=5)
    assert paths["sgd (lr 1)"] == [(0.5, 1.0, math.log(0.5) + 1.0), (-1.5, -1.0, paths[
        "sgd (lr 1)"][1][2])] and math.isnan(paths["sgd (lr 1)"][1][2])
    for flags, message in ((["__import__('os')"], "unknown function"),
                           (["x*z"], "z has no value: descend's f is a function of x and y"),
                           (["log(x) + y", "--start", "-1,1"],
                            "log needs a positive number, got -1.0 (the start, --start)"),
                           ([ROSENBROCK, "--optim", "sgd,adam", "--lr", "1,2,3"],
                            "3 rates for 2 optimizers"),
                           ([ROSENBROCK, "--optim", "lbfgs"], "unknown optimizer"),
                           ([ROSENBROCK, "--start", "1"], "give X,Y")):
        result = run_cli("descend", *flags, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, result.stderr


# ---------------------------------------------------------------------------------------------
# The chain rule, spelled out
# ---------------------------------------------------------------------------------------------

def check_explained(root: Value, text: str) -> int:
    """Parse explain()'s lines; each must name the node's gradient as backward() stored it,
    and be the sum of the products it shows. Returns how many lines were checked."""
    order = mg._topological_order(root)[::-1]
    lines = text.splitlines()
    assert lines[0].endswith(" = 1.0000")
    pattern = re.compile(r"^d(\S+)/d(\S+) = (.+?) = (.+?) = (\S+)$")
    for v, line in zip(order[1:], lines[1:]):
        match = pattern.match(line)
        assert match, line
        top, name, symbols, numbers, value = match.groups()
        assert name == (v.label or name) and value == mg._digits(v.grad)
        products = [term.split(" * ") for term in numbers.split(" + ")]
        assert len(products) == len(symbols.split(" + ")) == sum(
            child is v for p in order for child in p._children)
        total = sum(float(a) * float(b) for a, b in products)
        assert abs(total - v.grad) <= 1e-3 * max(1.0, abs(v.grad)) * len(products), line
    return len(lines)


def test_explain_spells_out_the_chain_rule_with_the_numbers_backward_stored():
    L = mg._expression()
    L.backward()
    text = mg.explain(L)
    assert "dL/dd = dL/dL * d(d*f)/dd = 1.0000 * -2.0000 = -2.0000" in text.splitlines()
    for line in text.splitlines()[1:]:  # the local derivative is the op's own rule,
        left, right = line.split(" = ")[:2]  # never the left side's symbol again
        assert left not in right and right.split(" * ")[1].startswith("d(")
    assert check_explained(L, text) == 7
    a = Value(3.0, "a")
    twice = a + a
    twice.label = "t"
    twice.backward()
    assert mg.explain(twice).splitlines()[1] == (
        "dt/da = dt/dt * d(a+a)/da + dt/dt * d(a+a)/da = 1.0000 * 1.0000 + 1.0000 * 1.0000 = "
        "2.0000")
    for root in (mg.Neuron(3, "relu", random.Random(0))([0.5, -1.0, 2.0]) * 1.0,
                 Value.dot([Value(0.5), Value(2.0)], [Value(-1.0), Value(3.0)], 0.1) * 2.0,
                 cube(Value(1.2, "x")).tanh()):
        root.backward()
        check_explained(root, mg.explain(root))
    with pytest.raises(ValueError, match="backward"):
        mg.explain(Value(2.0) * 3.0)


def test_explain_says_when_leaves_hold_gradients_from_an_earlier_backward():
    x, y = Value(2.0, "x"), Value(3.0, "y")
    out = x * y
    out.backward()
    assert "note:" not in mg.explain(out)
    out.backward()  # x and y now hold two passes' worth
    lines = mg.explain(out).splitlines()
    assert lines[-1].startswith("note: y, x also hold gradients from an earlier backward()")
    assert "call zero_grad()" in lines[-1]
    x.grad = y.grad = 0.0
    out.backward()
    assert "note:" not in mg.explain(out)
    shown = []  # a str, which a notebook shows as its lines, not quoted

    class Printer:
        def text(self, text):
            shown.append(text)

    mg.explain(out)._repr_pretty_(Printer(), False)
    assert shown == [str(mg.explain(out))] and "\n" in shown[0]


def test_the_drawing_names_unlabelled_values_as_explain_does():
    a = Value(2.0, "a")
    root = (a * 3.0).tanh() + a
    root.backward()
    lines = mg.explain(root, full=True).splitlines()
    order = mg._topological_order(root)[::-1]  # explain's order, the root first
    names = {v: line.split(" = ")[0].split("/d", 1)[1] for v, line in zip(order, lines)}
    _, _, _, _, text = mg._layout(root, "LR")
    assert {v: text[v].split(" | ")[0] for v in order} == names
    assert sorted(names.values()) == ["a", "n1", "n2", "n3", "n4"]
    # and the numbers as explain writes them: a small gradient is not shown as 0.0000
    assert text[order[2]].endswith("grad 2.458e-05")


def test_explain_shortens_a_big_graph_unless_asked_for_all():
    loss, model = mlp_sample_loss(3, [4, 4], "mse", "tanh")
    short, full = mg.explain(loss), mg.explain(loss, full=True)
    nodes = len(mg._topological_order(loss))
    assert len(full.splitlines()) == nodes > 51
    assert check_explained(loss, full) == nodes
    lines = short.splitlines()
    assert len(lines) == 51 and lines[:35] == full.splitlines()[:35]
    assert lines[35] == (f"... {nodes - 50} more lines (explain(root, full=True) shows them "
                         "all) ...")
    assert lines[36:] == full.splitlines()[-15:]
    assert any("L1.N0.w" in line for line in full.splitlines())  # parameters by their names


def test_explain_names_never_collide_and_counts_mean_what_they_say():
    a, b = Value(2.0, "n1"), Value(3.0)  # a user's label that looks like a generated name
    root = a * b + b
    root.backward()
    lines = mg.explain(root, full=True).splitlines()
    assert lines[0] == "dn2/dn2 = 1.0000"  # the root: n1 is taken by a, so n2
    assert lines[1] == "dn2/dn3 = dn2/dn2 * d(n3+n4)/dn3 = 1.0000 * 1.0000 = 1.0000"
    assert lines[2:] == [  # b, used twice, is n4; a keeps its label n1
        "dn2/dn4 = dn2/dn2 * d(n3+n4)/dn4 + dn2/dn3 * d(n1*n4)/dn4 = 1.0000 * 1.0000 + "
        "1.0000 * 2.0000 = 3.0000", "dn2/dn1 = dn2/dn3 * d(n1*n4)/dn1 = 1.0000 * 3.0000 = "
        "3.0000"]
    plain = Value(1.5) * Value(2.0)
    plain.backward()
    assert mg.explain(plain).splitlines()[0] == "dn1/dn1 = 1.0000"  # counting from 1
    loss = mlp_sample_loss(3, [4, 4], "mse", "tanh")[0]
    full = mg.explain(loss, full=True).splitlines()
    for head, tail in ((0, 0), (0, 5), (5, 0), (3, 2)):
        lines = mg.explain(loss, head=head, tail=tail).splitlines()
        assert lines[:head] == full[:head] and len(lines) == head + tail + 1
        assert lines[head].startswith(f"... {len(full) - head - tail} more lines")
        assert lines[head + 1:] == (full[len(full) - tail:] if tail else [])
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="head to be a whole number"):
            mg.explain(loss, head=bad)


def test_gradcheck_refuses_steps_and_tolerances_that_cannot_check():
    for name in ("eps", "tol"):
        for bad in (0.0, -1e-6, math.nan, math.inf):
            with pytest.raises(ValueError, match=f"needs {name} to be a finite number"):
                mg.gradcheck(lambda a: a * a, [1.0], **{name: bad})
    # the tolerance as given: a gradient off by 1e-5 passes at 1e-4 and fails at 1e-6
    def nearly(a):  # the value of a*a, its slope 1e-5 too large
        return Value(a.data * a.data, (a,), "nearly", (2 * a.data + 1e-5,))

    assert mg.gradcheck(nearly, [1.5], tol=1e-4)
    with pytest.raises(ValueError, match="input 0"):
        mg.gradcheck(nearly, [1.5], tol=1e-6)
    assert mg.gradcheck(lambda a: (a - 1.0) ** 2, [1.0])  # a slope of exactly 0 is right


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # numpy's, drawn
def test_pictures_at_the_edges_of_floats(tmp_path):
    pytest.importorskip("matplotlib")
    c = Value(1.0, "c")
    root = (c * 1e308) * 1.7
    root.backward()
    assert c.grad == 1.7e308
    mg.draw_graph(root, str(tmp_path / "g.png"), color="grad")
    history = mg.History()
    history.loss, history.accuracy = [1e308, 1.7e308, 1e300], [None] * 3
    mg.plot_history(history, str(tmp_path / "h.png"))
    assert png_size(tmp_path / "g.png")[0] > 100 and png_size(tmp_path / "h.png")[0] > 100
    model = mg.MLP(2, [1], seed=0)
    for X, val, message in (([[0.0, 0.0], [1.0, math.nan]], None, r"X\[1\]\[1\] is nan"),
                            ([[0.0, 0.0], [1.0, 1.0]], ([[math.inf, 0.0]], [1]),
                             r"val X\[0\]\[0\] is inf")):
        with pytest.raises(ValueError, match=message):
            mg.plot_decision_boundary(model, X, [0, 1], val=val)


def test_expr_explain_prints_the_chain_rule(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    assert mg.main(["expr", "--explain", "--out", str(tmp_path / "g.png")]) == 0
    out = capsys.readouterr().out
    assert "dL/da = dL/de * d(a*b)/da = -2.0000 * -3.0000 = 6.0000" in out


# ---------------------------------------------------------------------------------------------
# Training you can watch
# ---------------------------------------------------------------------------------------------

def test_on_epoch_sees_each_epoch_with_the_model_and_the_history():
    X, y = mg.make_toy()
    model = mg.MLP(3, [4, 1], seed=0)
    seen = []
    mg.train(model, X, y, epochs=4, verbose=False,
             on_epoch=lambda epoch, m, history: seen.append((epoch, m is model, len(history))))
    assert seen == [(1, True, 1), (2, True, 2), (3, True, 3), (4, True, 4)]


def test_long_runs_are_sampled_to_about_sixty_frames():
    X, _ = mg.make_moons(20, seed=0)
    assert mg._Frames(X, 7).wanted == list(range(1, 8))
    wanted = mg._Frames(X, 500).wanted
    assert len(wanted) <= mg.MAX_FRAMES and wanted[0] == 1 and wanted[-1] == 500
    with pytest.raises(ValueError, match="2 inputs"):
        mg._Frames(mg.make_toy()[0], 5)


def test_animate_training_writes_a_gif_of_one_frame_per_epoch(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    X, y = mg.make_spiral(30, seed=0)
    model = mg.MLP(2, [6, 3], activation="relu", output_activation="linear", seed=0)
    history = mg.animate_training(model, X, y, str(tmp_path / "s.gif"), epochs=4, loss="ce",
                                  optimizer="adam", verbose=False)
    assert len(history) == 4
    with Image.open(tmp_path / "s.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == 4 and gif.size == (1000, 450)
        first = gif.convert("RGB")  # the loss panel shows the first epoch's point
        colours = first.crop((520, 40, 990, 400)).getcolors(1 << 20)
        assert any(r < 80 and g < 160 and b > 150 for _, (r, g, b) in colours)


def test_train_graph_draws_the_sample_with_the_largest_loss(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert mg.main(["train", "--dataset", "moons", "--samples", "40", "--epochs", "5",
                    "--graph", str(tmp_path / "g.svg")]) == 0
    out = capsys.readouterr().out
    saved = [line for line in out.splitlines() if line.startswith("graph of the loss")][0]
    worst = int(saved.split("sample ")[1].split(",")[0])
    X, y = mg.make_moons(40, seed=0)
    model = mg.MLP(2, [16, 16, 1], activation="relu", output_activation="linear", seed=0)
    mg.train(model, X, [2 * t - 1 for t in y], loss="hinge", optimizer="adam", epochs=5,
             seed=0, verbose=False)
    losses = [mg.hinge_loss([model(x)], [2 * t - 1]).data for x, t in zip(X, y)]
    assert losses[worst] == max(losses) > 0  # the sample with the largest loss
    svg = (tmp_path / "g.svg").read_text()
    assert f"the loss of sample {worst}, the largest of the 40" in svg  # named in the title
    grads = [float(g) for g in re.findall(r"grad (-?[0-9.e+-]+)<", svg)]
    assert sum(g != 0 for g in grads) > len(grads) / 2  # most gradients are not zero


def test_edges_into_a_neuron_show_their_weights(tmp_path):
    pytest.importorskip("matplotlib")
    neuron = mg.Neuron(2, "relu", rng=random.Random(0))
    neuron.w[0].data, neuron.w[1].data = 0.8, -0.3
    x0, x1 = Value(1.0, "x0"), Value(2.0, "x1")
    out = neuron([x0, x1])
    out.backward()
    head = ("op", out)
    (blue, wide), (red, thin) = mg._edge_style((x0, head)), mg._edge_style((x1, head))
    assert blue[2] > blue[0] and red[0] > red[2]  # the sign of the weight
    assert wide > thin and blue[3] < 1 and red[3] < 1  # its size; translucent
    assert mg._edge_style((neuron.w[0], head)) == ((0.33, 0.33, 0.33, 1.0), 1.0)


def test_compare_rows_equal_separate_runs_and_a_diverged_one_is_reported(tmp_path, capsys):
    common = ["train", "--dataset", "moons", "--samples", "30", "--epochs", "8"]
    assert mg.main([*common, "--compare", "lr=0.003,0.3,1e300"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["setting", "final", "loss", "accuracy", "run"]
    for row in rows[1:3]:
        setting, loss, share, status = row.split()
        assert status == "trained"
        assert mg.main([*common, "--lr", setting.split("=")[1], "--quiet"]) == 0
        final = capsys.readouterr().out  # the same run, on its own: the same numbers
        assert final.startswith(f"final: loss {loss}, accuracy {share} ")
    assert rows[3].split()[:4] == ["lr=1e300", "-", "-", "diverged:"]
    for setting, flag in (("hidden=4,8x8", "--hidden"), ("optim=sgd,adamw", "--optim"),
                          ("batch-size=5,30", "--batch-size"),
                          ("activation=tanh,gelu", "--activation")):
        assert mg.main([*common, "--compare", setting]) == 0
        rows = capsys.readouterr().out.splitlines()[1:]
        value = setting.split("=")[1].split(",")[1].replace("x", ",")
        assert mg.main([*common, flag, value, "--quiet"]) == 0
        assert capsys.readouterr().out.startswith(
            "final: loss " + rows[1].split()[1] + ", accuracy " + rows[1].split()[2])
    pytest.importorskip("matplotlib")
    assert mg.main([*common, "--compare", "lr=0.01,0.1", "--plot", str(tmp_path / "c.png"),
                    "--boundary", str(tmp_path / "b.png")]) == 0
    assert png_size(tmp_path / "b.png")[0] > 1.8 * png_size(tmp_path / "b.png")[1]  # two wide
    for flags in (["--compare", "lr"], ["--compare", "depth=3,4"], ["--compare", "lr=0,1"],
                  ["--compare", "lr=0.1", "--save", "m.json"],
                  ["--compare", "lr=0.1", "--export", "e.csv"],
                  ["--compare", "hidden=4,8", "--hidden", "3"],
                  ["--compare", "lr=0.1,0.2", "--dataset", "toy", "--boundary", "b.png"]):
        with pytest.raises(SystemExit) as stop:
            mg.main([*common, *flags])
        assert stop.value.code == 2
    errors = capsys.readouterr().err
    assert "--compare gives the values of --hidden: leave out --hidden" in errors
    assert "--boundary draws datasets with 2 inputs; toy has 3" in errors


def badges(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes[1:] for t in ax.texts]


def test_neurons_map_every_unit_and_badge_the_dead_and_the_saturated(tmp_path):
    pytest.importorskip("matplotlib")
    X, y = mg.make_moons(40, seed=0)
    model = mg.MLP(2, [6, 4, 1], activation="relu", output_activation="linear", seed=0)
    fig = mg.plot_neurons(model, X, y)
    assert len(fig.axes) == 1 + 2 + 6 + 4 + 1  # the board, the inputs and every unit
    assert all(len(ax.get_images()) == 1 for ax in fig.axes[1:])
    for neuron in model.layers[0].neurons[:4]:
        neuron.b.data = -100.0  # never positive on any sample: dead
    assert mg.unit_health(model, X)[0] == ["dead"] * 4 + ["", ""]
    assert badges(mg.plot_neurons(model, X, y)).count("dead") >= 4
    texts = [t.get_text() for t in mg.plot_neurons(model, X, y).axes[0].texts]
    assert "b -100.00" in texts and "x0" in texts  # biases and inputs written under them
    saturated = mg.MLP(2, [5, 1], activation="tanh", seed=0)
    for w in saturated.layers[0].neurons[0].w:
        w.data *= 50.0
    assert mg.unit_health(saturated, X)[0][0] == "saturated"
    assert "saturated" in badges(mg.plot_neurons(saturated, X, y))
    result = run_cli("train", "--dataset", "circles", "--activation", "tanh", "--init-scale",
                     "8", "--epochs", "2", "--samples", "40", "--neurons", "n.png",
                     cwd=tmp_path)
    assert result.returncode == 0 and "neurons saved to n.png" in result.stdout
    for flags in (["--neurons", "n.png"], ["--dataset", "moons", "--load", "m.json",
                                           "--init-scale", "2"]):
        assert run_cli("train", *flags, cwd=tmp_path).returncode == 2  # toy: 3 inputs


def test_init_scale_multiplies_the_initial_weights():
    plain, scaled = mg.MLP(3, [4, 4, 1], seed=0), mg.MLP(3, [4, 4, 1], seed=0)
    args = mg.build_parser().parse_args(["train", "--init-scale", "3", "--epochs", "1",
                                         "--quiet"])
    first = mg.run_train(args, mg.build_parser())["model"]
    mg.train(plain, *mg.make_toy(), epochs=1, verbose=False, seed=0)
    for layer in scaled.layers:
        for neuron in layer.neurons:
            for w in neuron.w:
                w.data *= 3
    mg.train(scaled, *mg.make_toy(), epochs=1, verbose=False, seed=0)
    assert first.state_dict() == scaled.state_dict() != plain.state_dict()


def test_health_verdicts_name_what_is_wrong_and_what_to_change(tmp_path, capsys):
    X, y = mg.make_moons(30, seed=0)
    labels = [2 * t - 1 for t in y]
    model = mg.MLP(2, [4, 4, 1], activation="relu", output_activation="linear", seed=0)
    for neuron in model.layers[1].neurons[:3]:
        neuron.b.data = -100.0  # dead on every sample
    health = mg.HealthRecorder(model, X)
    mg.train(model, X, labels, loss="hinge", optimizer="sgd", lr=1e-9, epochs=2,
             verbose=False, on_epoch=health.epoch, on_step=health.step)
    grads = mg._layer_signals(model, X, labels, "hinge")[1]
    verdicts = mg.health_verdicts(model, health, grads)
    assert "layer 2: 75% of relu units dead: use a lower learning rate, smaller initial " \
           "weights (--init-scale) or leaky_relu" in verdicts
    assert any(v.startswith("update/data ratio") and "raise the learning rate" in v
               for v in verdicts)  # 1e-9: the parameters barely move
    assert len(health.ratios[0]) == 2 and health.counts[-1][1] == (3, 0)
    model.layers[0].neurons[0].w[1].data = math.inf  # as a step that overflowed
    health.step(3, model)
    assert mg.health_verdicts(model, health, grads)[0] == (
        "L0.N0.w1 turned inf at step 3: lower the learning rate")
    pytest.importorskip("matplotlib")  # --diagnose draws
    assert mg.main(["train", "--dataset", "circles", "--activation", "tanh", "--samples",
                    "40", "--epochs", "3", "--init-scale", "8", "--quiet", "--diagnose",
                    str(tmp_path / "h.png")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "health:" and "% of tanh units saturated: use smaller initial weights " \
        "(--init-scale) or relu" in out[1]
    assert png_size(tmp_path / "h.png")[1] > 400


def test_no_output_overwrites_a_file_the_run_reads_and_labels_must_be_the_models_classes(
        tmp_path):
    data = "a,b,label\n0.5,0.25,1\n-1,0.5,0\n0.2,0.1,1\n-0.4,0.3,0\n"
    (tmp_path / "d.csv").write_text(data)
    assert run_cli("train", "--data", "d.csv", "--epochs", "2", "--save", "m.json",
                   cwd=tmp_path).returncode == 0
    model = (tmp_path / "m.json").read_text()
    for flags, message in (
            (["predict", "--load", "m.json", "--data", "d.csv", "--out", "./d.csv"],
             "--out ./d.csv would overwrite the --data file"),
            (["predict", "--load", "m.json", "--data", "d.csv", "--out", "m.json"],
             "--out m.json would overwrite the --load file"),
            (["train", "--data", "d.csv", "--save", "d.csv"],
             "--save d.csv would overwrite the --data file"),
            (["train", "--data", "d.csv", "--export", "d.csv"],
             "--export d.csv would overwrite the --data file")):
        result = run_cli(*flags, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    assert (tmp_path / "d.csv").read_text() == data  # nothing lost
    assert (tmp_path / "m.json").read_text() == model
    resumed = run_cli("train", "--data", "d.csv", "--epochs", "1", "--load", "m.json",
                      "--save", "m.json", cwd=tmp_path)  # a run resumed in place: allowed
    assert resumed.returncode == 0 and (tmp_path / "m.json").read_text() != model
    other = run_cli("train", "--load", "m.json", "--dataset", "spiral", "--loss", "ce",
                    cwd=tmp_path)
    assert other.returncode == 1 and ("the model maps 2 inputs to 1 output, but spiral with "
                                      "the ce loss needs 2 inputs and 3 outputs"
                                      in other.stderr), other.stderr
    (tmp_path / "seven.csv").write_text("a,b,label\n0.5,0.25,1\n-1,0.5,7\n")
    result = run_cli("predict", "--load", "m.json", "--data", "seven.csv", cwd=tmp_path)
    assert result.returncode == 2 and ("seven.csv: data row 2 has the label 7, not a class of "
                                       "the model (its classes: 0 and 1 (or -1 and 1))"
                                       in result.stderr), result.stderr
    (tmp_path / "one.csv").write_text("0.5,0.25,1\n")
    result = run_cli("predict", "--load", "m.json", "--data", "one.csv", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.endswith("on the 1 labelled row\n")


def test_your_own_data_round_trips_through_train_save_and_predict(tmp_path):
    result = run_cli("train", "--dataset", "moons", "--samples", "30", "--export", "m.csv",
                     cwd=tmp_path)
    assert result.returncode == 0 and "30 samples of moons saved to m.csv" in result.stdout
    X, y, names = mg.load_csv(str(tmp_path / "m.csv"))
    assert (X, y) == mg.make_moons(30) and names == ["x0", "x1"]  # every digit kept
    own = run_cli("train", "--data", "m.csv", "--epochs", "5", "--save", "m.json",
                  cwd=tmp_path)
    made = run_cli("train", "--dataset", "moons", "--samples", "30", "--epochs", "5",
                   cwd=tmp_path)
    assert own.returncode == 0 and own.stdout.splitlines()[-2].split(" after")[0] == \
        made.stdout.splitlines()[-1].split(" after")[0]  # the same data, the same run
    result = run_cli("predict", "--load", "m.json", "--data", "m.csv", "--out", "p.csv",
                     cwd=tmp_path)
    assert result.returncode == 0 and "30 predictions written to p.csv" in result.stdout
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0] == "score,class" and len(rows) == 31
    model = mg.MLP.load(str(tmp_path / "m.json"))
    scores = mg.predict(model, X)
    assert [float(r.split(",")[0]) for r in rows[1:]] == scores
    assert [int(r.split(",")[1]) for r in rows[1:]] == [int(s > 0) for s in scores]
    accuracy = mg.accuracy(scores, y)
    assert f"accuracy {mg._percent(accuracy)} on the 30 labelled rows" in result.stdout
    (tmp_path / "new.csv").write_text("0.5,0.25\n-1,0.5\n")  # no header, no labels
    result = run_cli("predict", "--load", "m.json", "--data", "new.csv", cwd=tmp_path)
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("row 1: score ")
    assert float(lines[0].split()[3]) == pytest.approx(mg.predict(model, [[0.5, 0.25]])[0],
                                                       abs=5e-5)


@pytest.mark.parametrize("text,message", [
    ("a,b,label\n1,2,0\n3,x,1\n", "row 3, column 2: 'x' is not a number"),
    ("1,2,0\n3,4\n", "row 2 has 2 cells, the first row 3"),
    ("", "holds no rows"), ("a,b,label\n", "holds a header and no rows"),
    ("1,2,1\n3,4,1\n", "every row has the label 1"),
    ("1,2,0\n3,4,0.5\n", "row 2, column 3: the label 0.5 is not a class"),
    ("1,2,0\n3,4,7\n", "the labels are 0, 7"),
    ("1,nan,0\n3,4,1\n", "row 1, column 2: nan is not finite"),
    ("label\n0\n1\n", "has one column: a label needs inputs beside it"),
    ("a;b;label\n1;2;0\n3;4;1\n", "has one column: separate the cells by commas"),
    ("a,b;c,label\n1,2;3,0\n", "'2;3' is not a number; separate the cells by commas")])
def test_a_bad_data_file_is_exit_2_naming_the_row_and_column(tmp_path, text, message):
    (tmp_path / "d.csv").write_text(text)
    result = run_cli("train", "--data", "d.csv", cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_data_files_take_a_target_column_and_refuse_what_does_not_fit(tmp_path):
    (tmp_path / "d.csv").write_text("y,a,b\n1,0.5,0.5\n0,-0.5,0.25\n1,0.75,0.1\n")
    X, y, names = mg.load_csv(str(tmp_path / "d.csv"), target="y")
    assert (X, y, names) == ([[0.5, 0.5], [-0.5, 0.25], [0.75, 0.1]], [1, 0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="no column named 'z'; its columns: y, a, b"):
        mg.load_csv(str(tmp_path / "d.csv"), target="z")
    with pytest.raises(ValueError, match="at most 2 are read"):
        mg.load_csv(str(tmp_path / "d.csv"), target="y", max_rows=2)
    for flags, message in ((["--data", "d.csv", "--dataset", "moons"], "give one"),
                           (["--target", "y"], "--target names a column"),
                           (["--data", "d.csv", "--samples", "10"], "--data gives one"),
                           (["--data", "missing.csv"], "no such file")):
        result = run_cli("train", *flags, cwd=tmp_path)
        assert result.returncode in (1, 2) and message in result.stderr, result.stderr
    assert run_cli("train", "--data", "d.csv", "--target", "y", "--epochs", "2",
                   "--save", "m.json", cwd=tmp_path).returncode == 0
    (tmp_path / "wide.csv").write_text("1,2,3,4\n")
    result = run_cli("predict", "--load", "m.json", "--data", "wide.csv", cwd=tmp_path)
    assert result.returncode == 2 and "has 4 columns; the model takes 2 inputs" in \
        result.stderr


def test_train_animate_on_the_command_line(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from PIL import Image

    gif_path = str(tmp_path / "run.gif")
    assert mg.main(["train", "--dataset", "moons", "--samples", "30", "--epochs", "3",
                    "--animate", gif_path]) == 0
    assert f"drawing 3 frames of {gif_path}" in capsys.readouterr().out
    with Image.open(gif_path) as gif:
        assert gif.n_frames == 3
    for flags, message in ((["--animate", "a.gif"], "2 inputs"),
                           (["--dataset", "moons", "--animate", "a.png"], "name in .gif")):
        with pytest.raises(SystemExit) as stop:
            mg.main(["train", *flags])
        assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "a.gif").exists()
