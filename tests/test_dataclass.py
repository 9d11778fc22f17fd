"""meshpcap._dataclass builds the same classes as the standard library's ``dataclasses.dataclass``."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import json
import os
import pickle
import pkgutil
import subprocess
import sys
from typing import ClassVar

import pytest

import meshpcap
from meshpcap import _dataclass
from tests.conftest import REPO


def _fast(cls) -> bool:
    """Did meshpcap._dataclass make this class's methods (rather than the standard decorator)?"""
    init = cls.__dict__.get("__init__")
    return init is not None and "__mp_osa" in getattr(init, "__globals__", {})


def _sample(cls, salt: str = ""):
    """An instance from distinct values for the fields without a default."""
    args = [f"{salt}{f.name}-{i}" for i, f in enumerate(dataclasses.fields(cls))
            if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    return cls(*args)


def _outcome(fn) -> str:
    try:
        return repr(fn())
    except Exception as exc:  # noqa: BLE001 - the kind and text of the error are what is compared
        return f"{type(exc).__name__}: {exc}"


def _shown(value) -> str:
    """A default as text that is the same in every process (no addresses)."""
    if value is dataclasses.MISSING:
        return "MISSING"
    return getattr(value, "__qualname__", None) or repr(value)


def describe(cls) -> dict:
    """What a user of the class can observe: its declaration and how an instance behaves."""
    out = {
        "signature": str(inspect.signature(cls)),
        "doc": cls.__doc__,
        "params": {k: getattr(cls.__dataclass_params__, k) for k in ("init", "repr", "eq", "order", "unsafe_hash",
                                                                      "frozen")},
        "match_args": getattr(cls, "__match_args__", None),
        "slots": getattr(cls, "__slots__", None),
        "fields": [(f.name, str(f.type), _shown(f.default), _shown(f.default_factory), f.init,
                    f.repr, f.hash, f.compare, repr(f.kw_only)) for f in dataclasses.fields(cls)],
        "hashable": cls.__hash__ is not None,
        "init annotations": {k: str(v) for k, v in cls.__init__.__annotations__.items()},
        "method names": sorted(n for n in ("__init__", "__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__",
                                           "__getstate__", "__setstate__") if n in cls.__dict__),
    }
    try:
        a, b, other = _sample(cls), _sample(cls), _sample(cls, "x")
    except Exception as exc:  # noqa: BLE001 - e.g. a __post_init__ that checks its values: both alike
        out["instance"] = f"{type(exc).__name__}: {exc}"
        return out
    first = dataclasses.fields(cls)[0].name if dataclasses.fields(cls) else None
    out["instance"] = {
        "repr": _outcome(lambda: repr(a)),
        "eq": [a == b, a != b, a == other, a != other, a == 1, (a == 1) is False],
        "hash": _outcome(lambda: hash(a) == hash(b)),
        # the hash of the tuple of the hashed fields (None and objects hash by address: not comparable across runs)
        "hash value": _outcome(lambda: hash(a) == hash(tuple(getattr(a, f.name) for f in dataclasses.fields(cls)
                                                            if (f.compare if f.hash is None else f.hash)))),
        "asdict": _outcome(lambda: dataclasses.asdict(a)),
        "astuple": _outcome(lambda: dataclasses.astuple(a)),
        "replace": _outcome(lambda: dataclasses.replace(a) == a),
        "pickle": _outcome(lambda: pickle.loads(pickle.dumps(a)) == a),
        "copy": _outcome(lambda: (copy.copy(a) == a, copy.deepcopy(a) == a)),
        "set field": _outcome(lambda: setattr(copy.copy(a), first, 1)) if first else "-",
        "del field": _outcome(lambda: delattr(copy.copy(a), first)) if first else "-",
        # not a field: refused either way (by the standard one of Python 3.11 with a TypeError from its
        # super() call, which names the class before slots were added; FrozenInstanceError here)
        "set other": _outcome(lambda: setattr(copy.copy(a), "not_a_field", 1)).split(":")[0] in (
            "AttributeError", "TypeError", "FrozenInstanceError"),
        "match": _outcome(lambda: [getattr(a, n) for n in cls.__match_args__]),
    }
    return out


def describe_all() -> dict:
    """``describe`` of every dataclass defined in meshpcap (all its modules imported), by qualified name."""
    for info in pkgutil.walk_packages(meshpcap.__path__, "meshpcap."):
        try:
            importlib.import_module(info.name)
        except ImportError:  # an optional dependency (both runs alike)
            pass
    out = {}
    for name, module in sorted(sys.modules.items()):
        if not name.startswith("meshpcap"):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == name:
                out[f"{name}.{value.__qualname__}"] = dict(describe(value), fast=_fast(value))
    return out


def _run(fast: bool) -> dict:
    code = (f"import json, meshpcap._dataclass as d\nd.FAST = {fast}\nfrom tests.test_dataclass import describe_all\n"
            "print(json.dumps(describe_all(), default=str))")
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same hash values in both runs
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout)


def test_every_meshpcap_record_is_what_the_standard_decorator_makes():
    standard, cheap = _run(False), _run(True)
    assert set(standard) == set(cheap)
    assert not any(d.pop("fast") for d in standard.values())
    fast = {name for name, d in cheap.items() if d.pop("fast")}
    assert {"meshpcap.flows.model.Flow", "meshpcap.capture.source.Batch", "meshpcap.rules.model.PortSet",
            "meshpcap.report.compare.Comparison"} - fast == {"meshpcap.report.compare.Comparison"}  # __post_init__
    assert len(fast) > 50, sorted(set(cheap) - fast)
    for name in standard:
        assert cheap[name] == standard[name], name


# -- edge cases, each class body built twice: by the standard decorator and by meshpcap's ----------


def _bodies():
    def empty(deco):
        @deco
        class Empty:
            pass
        return Empty

    def one(deco):
        @deco
        class One:
            """Doc of One."""

            x: int

        return One

    def defaults(deco):
        @deco
        class Defaults:
            a: int
            b: str = "b"
            c: tuple = ()
            d: list = dataclasses.field(default_factory=list)
            e: float = dataclasses.field(default=1.5, repr=False)
            f: str = dataclasses.field(default="", compare=False)
            g: int = dataclasses.field(default=0, hash=False)
            h: int = dataclasses.field(default=0, compare=False, hash=True)

            def total(self) -> int:
                return self.a + self.g

        return Defaults

    def factories(deco):
        @deco
        class Factories:
            m: dict = dataclasses.field(default_factory=dict)
            s: set = dataclasses.field(default_factory=lambda: {1})

        return Factories

    def nested(deco):
        @deco
        class Nested:
            inner: object = None
            items: tuple = ()

        return Nested

    def wide(deco):  # more fields than _dataclass._LINES: the other form of __init__
        ns = {"__annotations__": {f"f{i}": "int" for i in range(_dataclass._LINES + 3)}, "__module__": __name__}
        ns.update({"f14": 14, "f13": dataclasses.field(default_factory=list)})
        return deco(type("Wide", (), ns))

    return [empty, one, defaults, factories, nested, wide]


def _decorators():
    out = []
    for frozen in (True, False):
        out.append(("frozen" if frozen else "mutable", dataclasses.dataclass(frozen=frozen, slots=True),
                    _dataclass.dataclass(frozen=frozen, slots=True)))
    return out


@pytest.mark.parametrize("body", _bodies(), ids=lambda b: b.__name__)
@pytest.mark.parametrize("kind,standard,cheap", _decorators(), ids=lambda d: d if isinstance(d, str) else "")
def test_edge_cases_match_the_standard_decorator(body, kind, standard, cheap):
    a, b = body(standard), body(cheap)
    assert _fast(b) and not _fast(a)
    da, db = describe(a), describe(b)
    da["doc"], db["doc"] = da["doc"].replace(".<locals>", ""), db["doc"].replace(".<locals>", "")
    assert db == da
    x, y = _sample(a), _sample(b)
    assert repr(y) == repr(x)
    for fa, fb in zip(dataclasses.fields(a), dataclasses.fields(b)):
        assert getattr(y, fb.name) == getattr(x, fa.name)
    assert b.__init__.__qualname__.endswith(f"{b.__name__}.__init__")
    assert b.__init__.__module__ == __name__


def test_a_record_holding_itself_repr_stops():
    for deco in (dataclasses.dataclass(slots=True), _dataclass.dataclass(slots=True)):
        @deco
        class Loop:
            other: object = None

        loop = Loop()
        loop.other = loop
        assert repr(loop) == "test_a_record_holding_itself_repr_stops.<locals>.Loop(other=...)"


def test_frozen_assignment_and_deletion_raise():
    @_dataclass.dataclass(frozen=True, slots=True)
    class Point:
        x: int
        y: int = 2

    p = Point(1)
    assert _fast(Point) and (p.x, p.y) == (1, 2) and p == Point(1, 2) and hash(p) == hash((1, 2))
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'x'"):
        p.x = 3
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'y'"):
        del p.y
    assert dataclasses.replace(p, y=5) == Point(1, 5)
    with pytest.raises(TypeError):
        Point()  # x has no default


def test_other_cases_go_to_the_standard_decorator():
    @_dataclass.dataclass(frozen=True, slots=True, order=True)
    class Ordered:
        x: int

    @_dataclass.dataclass(slots=True)
    class WithPostInit:
        x: int

        def __post_init__(self) -> None:
            self.x += 1

    @_dataclass.dataclass(frozen=True)
    class NoSlots:
        x: int

    @_dataclass.dataclass(frozen=True, slots=True)
    class WithClassVar:
        x: int
        shared: ClassVar[int] = 3

    @_dataclass.dataclass(slots=True)
    class NotInInit:
        x: int
        y: int = dataclasses.field(default=0, init=False)

    @_dataclass.dataclass(slots=True)
    class OwnRepr:
        x: int

        def __repr__(self) -> str:
            return "mine"

    for cls in (Ordered, WithPostInit, NoSlots, WithClassVar, NotInInit, OwnRepr):
        assert not _fast(cls), cls
    assert Ordered(1) < Ordered(2) and WithPostInit(1).x == 2 and WithClassVar(1).shared == 3
    assert NotInInit(1).y == 0 and repr(OwnRepr(1)) == "mine" and not hasattr(NoSlots(1), "__slots__")
    with pytest.raises(TypeError, match="unexpected keyword argument 'ordr'"):
        _dataclass.dataclass(ordr=True)


def test_the_standard_decorators_errors():
    for deco in (dataclasses.dataclass(frozen=True, slots=True), _dataclass.dataclass(frozen=True, slots=True)):
        with pytest.raises(ValueError, match="mutable default <class 'list'> for field x is not allowed"):
            @deco
            class MutableDefault:
                x: list = []  # noqa: RUF012

        with pytest.raises(TypeError, match="'y' is a field but has no type annotation"):
            @deco
            class NoAnnotation:
                x: int
                y = dataclasses.field(default=1)

        with pytest.raises(TypeError, match="non-default argument 'y' follows default argument"):
            @deco
            class Order:
                x: int = 0
                y: int
