"""Every Python block of README.md and docs/*.md runs, and the shapes its comments promise
are asserted.

Conventions for a doc's ```python blocks (a block in another language is not run):

- The blocks of one file run in order in one namespace (a later block may use an earlier
  block's names), in a fresh temporary directory, so files they write vanish. KERAS_BACKEND
  defaults to torch, the backend the test extra brings.
- `<!-- test: setup CODE -->` on the line(s) just before a block runs CODE first, unseen by
  readers: for files a block reads (`torch.save(..., "rnn.pt")`).
- `<!-- test: skip REASON -->` just before a block keeps it from running: for signatures and
  fragments that are not meant to run. Use sparingly; the reason is reported.
- A shape comment asserts shapes: in an assignment's trailing comment, a parenthesised tuple
  with at least one comma, of integers, names or `name=integer` items, is a promised shape.
  A tuple after a name (`# y (10, 3, 5), h_n (4, 3, 32)`) is that assigned name's shape;
  unnamed tuples (`# (T, B, 5), (B, 32)`) are the assigned names' shapes in order. A name
  such as T, B or input_size stands for the same number throughout the block. Tuples after
  a name that is not assigned there (`# ids (T=3, B=2) -> ...`) are not checked.
"""

import ast
import io
import os
import pathlib
import re
import tokenize

import pytest

# Keras' own arrays trip a NumPy 2 deprecation inside Keras; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))

FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
MARKER = re.compile(r"<!--\s*test:\s*(skip|setup)\b(.*)-->", re.S)
TUPLE = re.compile(r"(?:\b([A-Za-z_]\w*)\s*)?\(([^()]*)\)")
DIM = re.compile(r"^(?:\d+|[A-Za-z_]\w*|[A-Za-z_]\w*\s*=\s*\d+)$")


def python_blocks(path):
    """(line number, code, marker, marker argument) of each ```python block, in order."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip()
        last_comment = before[before.rfind("<!--") :] if before.endswith("-->") else ""
        marker = MARKER.fullmatch(last_comment)
        kind, arg = (marker.group(1), marker.group(2).strip()) if marker else (None, None)
        blocks.append((before.count("\n") + 1, m.group(1), kind, arg))
    return blocks


def shape_promises(comment):
    """[(name or None, dims)] for each shape tuple of a comment."""
    out = []
    for name, inner in TUPLE.findall(comment):
        items = [i.strip() for i in inner.split(",")]
        if "," not in inner:
            continue
        if items[-1] == "":  # (B,)
            items = items[:-1]
        if items and all(DIM.match(i) for i in items):
            out.append((name or None, [i.replace(" ", "") for i in items]))
    return out


def assigned_names(stmt):
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
    names = []
    for t in targets:
        for node in [t] if isinstance(t, ast.Name) else getattr(t, "elts", []):
            names.append(node.id if isinstance(node, ast.Name) else None)
    return names


class ShapeChecks(ast.NodeTransformer):
    """After each assignment with a shape comment, a call __shape_check__(line, {name: value})."""

    def __init__(self, comments):
        self.comments = comments  # line -> comment text
        self.promises = {}  # line -> [(name, dims)]

    def generic_visit(self, node):
        super().generic_visit(node)
        for field in ("body", "orelse", "finalbody"):
            stmts = getattr(node, field, None)
            if isinstance(stmts, list) and stmts and isinstance(stmts[0], ast.stmt):
                setattr(node, field, [s for stmt in stmts for s in self.checked(stmt)])
        return node

    def checked(self, stmt):
        if not isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            return [stmt]
        text = " ".join(self.comments.get(n, "") for n in range(stmt.lineno, stmt.end_lineno + 1))
        names = assigned_names(stmt)
        promised, unnamed = [], [n for n in names]
        for name, dims in shape_promises(text):
            if name is None:
                if unnamed:
                    promised.append((unnamed.pop(0), dims))
            elif name in names:
                promised.append((name, dims))
                if name in unnamed:
                    unnamed.remove(name)
        promised = [(n, d) for n, d in promised if n is not None]
        if not promised:
            return [stmt]
        self.promises[stmt.lineno] = promised
        values = ast.Dict([ast.Constant(n) for n, _ in promised], [ast.Name(n, ast.Load()) for n, _ in promised])
        call = ast.Call(ast.Name("__shape_check__", ast.Load()), [ast.Constant(stmt.lineno), values], [])
        return [stmt, ast.copy_location(ast.Expr(call), stmt)]


def instrument(code, filename):
    """The block compiled with its shape checks, and the promises {line: [(name, dims)]}."""
    comments = {}
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = comments.get(tok.start[0], "") + tok.string
    tree = ShapeChecks(comments)
    module = ast.fix_missing_locations(tree.visit(ast.parse(code, filename)))
    return compile(module, filename, "exec"), tree.promises


def make_checker(promises, where, lines, counter):
    symbols = {}

    def check(line, values):
        for name, dims in promises[line]:
            shape = getattr(values[name], "shape", None)
            what = f"{where} line {line}: `{lines[line - 1].strip()}`"
            assert shape is not None, f"{what}: {name} has no shape, the comment promises {dims}"
            shape = tuple(int(n) for n in shape)
            promised = "(" + ", ".join(dims) + ")"
            assert len(shape) == len(dims), f"{what}: {name}.shape is {shape}, the comment says {promised}"
            for size, dim in zip(shape, dims):
                sym, _, fixed = dim.partition("=")
                if dim.isdigit() or fixed:
                    assert size == int(fixed or dim), f"{what}: {name}.shape is {shape}, the comment says {promised}"
                if not dim.isdigit():
                    bound = symbols.setdefault(sym, size)
                    assert bound == size, (
                        f"{what}: {name}.shape is {shape}, the comment says {promised} with {sym} = {bound} "
                        f"earlier in the block"
                    )
            counter.append(name)

    return check


def run_doc(path, monkeypatch, tmp_path):
    """Runs every block of one doc file; returns the names whose shapes were checked."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "torch"))
    namespace = {"__name__": "__doc__"}
    checked = []
    rel = path.relative_to(ROOT)
    for i, (line, code, kind, arg) in enumerate(python_blocks(path)):
        where = f"{rel} python block {i + 1} (line {line})"
        if kind == "skip":
            assert arg, f"{where}: a skip marker needs a reason"
            continue
        if kind == "setup":
            exec(compile(arg, f"{where} setup", "exec"), namespace)
        compiled, promises = instrument(code, where)
        namespace["__shape_check__"] = make_checker(promises, where, code.splitlines(), checked)
        try:
            exec(compiled, namespace)
        except ModuleNotFoundError as e:  # a peer of the test extra: a skip (a failure in CI)
            pytest.importorskip(e.name)
            raise
        except AssertionError:
            raise
        except Exception as e:  # pragma: no cover - the message is the point
            raise AssertionError(f"{where} fails: {e!r}\n{code}") from e
    return checked


DOCS_WITH_CODE = [p for p in DOCS if python_blocks(p)]


@pytest.mark.parametrize("path", DOCS_WITH_CODE, ids=[str(p.relative_to(ROOT)) for p in DOCS_WITH_CODE])
def test_doc_python_blocks_run_and_keep_their_shape_comments(path, monkeypatch, tmp_path):
    checked = run_doc(path, monkeypatch, tmp_path)
    if path.name == "README.md":  # the quick start's and the model section's promises
        assert {"x", "logits", "h_n", "y"} <= set(checked), checked


def test_readme_and_docs_have_python_blocks():
    assert len(python_blocks(ROOT / "README.md")) >= 3
    assert len(DOCS_WITH_CODE) >= 4


SAMPLE = """\
x = np.zeros((4, 2, 3))            # (T, B, input_size)
y, h = x[..., :2], x[0]            # (T, B, 2), (B, 3)
z = x                              # z (4, 2, 3), w (9, 9): w is not assigned here
for _ in range(2):
    q = x[0]                       # (B, input_size) inside a loop
"""


def test_shape_comments_are_parsed_and_checked():
    _, promises = instrument(SAMPLE, "sample")
    assert promises == {
        1: [("x", ["T", "B", "input_size"])],
        2: [("y", ["T", "B", "2"]), ("h", ["B", "3"])],
        3: [("z", ["4", "2", "3"])],
        5: [("q", ["B", "input_size"])],
    }
    assert shape_promises("# (PyTorch's two biases summed), (default), ids (T=3, B=2)") == [("ids", ["T=3", "B=2"])]

    import numpy as np

    def run(code):
        compiled, promises = instrument(code, "sample")
        checked = []
        exec(compiled, {"np": np, "__shape_check__": make_checker(promises, "sample", code.splitlines(), checked)})
        return checked

    assert run(SAMPLE) == ["x", "y", "h", "z", "q", "q"]
    with pytest.raises(AssertionError, match=r"y.shape is \(4, 2, 2\), the comment says \(T, B, 3\)"):
        run(SAMPLE.replace("(T, B, 2)", "(T, B, 3)"))
    with pytest.raises(AssertionError, match=r"with T = 4 earlier in the block"):
        run(SAMPLE.replace("(B, 3)", "(T, 3)"))
    with pytest.raises(AssertionError, match=r"the comment says \(T, B\)"):
        run(SAMPLE.replace("(T, B, input_size)", "(T, B)"))
