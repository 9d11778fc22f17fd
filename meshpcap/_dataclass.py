"""``dataclass``: the standard library's decorator, making slotted records at a fifth of its cost.

Every record of meshpcap is ``@dataclass(frozen=True, slots=True)`` (or a slotted mutable one), and about
sixty of them are defined when ``analyze`` starts.  The standard decorator (Python 3.11, 3.12) writes the
source of six methods per class (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__``,
``__delattr__``) and compiles each, and checks every string annotation three times for ``ClassVar``,
``InitVar`` and ``KW_ONLY`` with regular expressions: about 0.5 ms a class, a quarter of the start-up of a
small run.  Here the fields are made as its ``_get_field`` makes them for a plain annotation (the class
attribute as default, or the ``field()`` given, marked with its own ``_FIELD``), the class is made again
with slots as its ``_add_slots`` does, and the methods are closures over the field names, the same
functions for every class; only ``__init__`` is compiled (its signature must name the fields), storing the
arguments through ``object.__setattr__`` as the standard frozen ``__init__`` does.  The result behaves the
same: the same signature, defaults and default factories, ``__doc__``, ``__match_args__``,
``__dataclass_fields__``/``__dataclass_params__``, ``repr``, equality and hash (over the same tuples),
``FrozenInstanceError`` on assignment and deletion, pickling and ``dataclasses.replace``/``fields``/
``asdict`` (one difference: setting an attribute that is not a field of a frozen record raises
``FrozenInstanceError``, where Python 3.11's own raises a ``TypeError`` from a ``super()`` call that names
the class as it was before slots were added).  ``tests/test_dataclass.py`` compares every meshpcap record
and a set of edge cases with the standard decorator's result.

Anything else is handed to the standard decorator unchanged: other options (``order``, ``kw_only``,
``unsafe_hash`` ...), a class without ``slots=True``, one with bases or a metaclass, ``ClassVar``/
``InitVar``/``KW_ONLY`` annotations, ``init=False`` or keyword-only fields, ``__post_init__``, a method of
its own among those generated, or a Python whose ``dataclasses`` lacks the markers used here.  Set
:data:`FAST` to False before the records' modules are imported to build them all with the standard
decorator (the tests do).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import MISSING, Field, FrozenInstanceError
from itertools import repeat
from operator import attrgetter
from reprlib import recursive_repr

FAST = True
"""False: every class goes to the standard decorator (read when each class is decorated)."""

# methods the standard decorator would make (or call): a class that defines one keeps the standard path
_MADE = frozenset({"__init__", "__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__", "__getstate__",
                   "__setstate__", "__post_init__", "__slots__"})
_OPTIONS = {"init": True, "repr": True, "eq": True, "order": False, "unsafe_hash": False, "match_args": True,
            "kw_only": False, "weakref_slot": False}


class _Factory:
    """The default of a parameter whose field has a default factory (shown as ``<factory>``, as the
    standard library's is)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()
# the standard library's own markers, as its decorator sets them (a Python without them: its decorator)
_FIELD = getattr(dataclasses, "_FIELD", None)
_DataclassParams = getattr(dataclasses, "_DataclassParams", None)
_PARAMS_SET = {"init": True, "repr": True, "eq": True, "order": False, "unsafe_hash": False, "frozen": None,
               "match_args": True, "kw_only": False, "slots": True, "weakref_slot": False}
_PRIVATE = (_FIELD is not None and "_field_type" in Field.__slots__ and _DataclassParams is not None
            and set(getattr(_DataclassParams, "__slots__", ())) <= set(_PARAMS_SET))
_PARAMS: dict[bool, object] = {}
_osa = object.__setattr__
_consume = deque(maxlen=0).extend  # runs an iterator to its end, keeping nothing
_LINES = 12  # up to this many fields, one line each runs quicker than the map (and than the standard one)


def dataclass(cls=None, /, *, frozen: bool = False, slots: bool = False, **options):
    """:func:`dataclasses.dataclass`, with the same arguments and result (see the module's docstring)."""

    def wrap(c):
        if FAST and _PRIVATE and slots and all(options.get(k, v) == v for k, v in _OPTIONS.items()) and _plain(c):
            return _slotted(c, frozen)
        return dataclasses.dataclass(c, frozen=frozen, slots=slots, **options)

    unknown = set(options) - set(_OPTIONS)
    if unknown:
        raise TypeError(f"dataclass() got an unexpected keyword argument {sorted(unknown)[0]!r}")
    return wrap if cls is None else wrap(cls)


def _plain(cls) -> bool:
    """Only plain fields with defaults or default factories, no base but object, no method of its own
    among those made: the cases :func:`_slotted` builds."""
    own = cls.__dict__
    if cls.__bases__ != (object,) or type(cls) is not type or not _MADE.isdisjoint(own):
        return False
    annotations = own.get("__annotations__", {})
    for name, kind in annotations.items():
        text = kind if type(kind) is str else str(kind)
        if "ClassVar" in text or "InitVar" in text or "KW_ONLY" in text or name == "self" or name[:5] == "__mp_":
            return False
    for name, value in own.items():  # a Field without annotation is an error the standard decorator reports
        if isinstance(value, Field) and (name not in annotations or not value.init or value.kw_only is True):
            return False
    return True


def _slotted(cls, frozen: bool):
    fields = _fields(cls)
    names = tuple(f.name for f in fields)
    space = dict(cls.__dict__)  # the class again, with slots (as the standard decorator remakes it)
    for name in (*names, "__dict__", "__weakref__"):
        space.pop(name, None)
    space.update(__slots__=names, __match_args__=names, __dataclass_fields__={f.name: f for f in fields},
                 __dataclass_params__=_params(frozen))
    if not space.get("__doc__"):
        space["__doc__"] = None  # given below, from the signature of the __init__ made here
    made = type(cls.__name__, cls.__bases__, space)
    made.__qualname__ = cls.__qualname__
    _method(made, _init(made, fields))
    _method(made, _repr(tuple(f.name for f in fields if f.repr)))
    _method(made, _eq(_values(tuple(f.name for f in fields if f.compare))))
    if frozen:
        _method(made, _hash(_values(tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash)))))
        for fn in _frozen(made, frozenset(names)) + _state(_values(names), names):
            _method(made, fn)
    else:
        made.__hash__ = None  # eq without frozen: unhashable, as the standard decorator makes it
    if made.__doc__ is None:  # the standard decorator's docstring for a class without one: name and signature
        import inspect

        made.__doc__ = made.__name__ + str(inspect.signature(made)).replace(" -> None", "")
    return made


def _fields(cls) -> list[Field]:
    """The class's fields, as the standard decorator makes them (``dataclasses._get_field`` for a plain
    annotation: a Field of the class attribute as default, or the Field given)."""
    out = []
    defaults = False
    for name, kind in cls.__dict__.get("__annotations__", {}).items():
        default = getattr(cls, name, MISSING)
        f = default if isinstance(default, Field) else dataclasses.field(default=default)
        f.name, f.type, f._field_type = name, kind, _FIELD
        if f.kw_only is MISSING:
            f.kw_only = False
        if f.default.__class__.__hash__ is None:  # the standard decorator's check (a list, dict or set)
            raise ValueError(f"mutable default {type(f.default)} for field {name} is not allowed: use default_factory")
        if f.default is MISSING and f.default_factory is MISSING:
            if defaults:  # as the standard decorator says it (rather than the compiler's SyntaxError)
                raise TypeError(f"non-default argument {name!r} follows default argument")
        else:
            defaults = True
        out.append(f)
    return out


def _params(frozen: bool):
    """The ``__dataclass_params__`` the standard decorator gives a class decorated ``(frozen=frozen,
    slots=True)`` (one for all such classes: nothing changes them)."""
    if frozen not in _PARAMS:
        params = object.__new__(_DataclassParams)
        for name in _DataclassParams.__slots__:
            object.__setattr__(params, name, _PARAMS_SET[name] if name != "frozen" else frozen)
        _PARAMS[frozen] = params
    return _PARAMS[frozen]


def _method(cls, fn) -> None:
    fn.__qualname__ = f"{cls.__qualname__}.{fn.__name__}"
    fn.__module__ = cls.__module__
    setattr(cls, fn.__name__, fn)


def _values(names: tuple[str, ...]):
    """``obj`` -> the tuple of those attributes (also for none or one)."""
    if len(names) > 1:
        return attrgetter(*names)
    if names:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return lambda obj: ()


def _init(cls, fields):
    """``__init__(self, <fields with their defaults>)``, compiled: it stores the arguments through
    ``object.__setattr__``, one line per field, or for more than :data:`_LINES` fields in one
    ``map`` over them all (half the compiling, and as quick to run as the standard one at that size)."""
    scope = {"__mp_osa": _osa, "__mp_factory": _FACTORY, "__mp_consume": _consume, "__mp_repeat": repeat,
             "__mp_names": tuple(f.name for f in fields), "__name__": cls.__module__}
    params, body = [], []
    for i, f in enumerate(fields):
        if f.default is not MISSING:
            scope[f"__mp_d{i}"] = f.default
            params.append(f"{f.name}=__mp_d{i}")
        elif f.default_factory is not MISSING:
            scope[f"__mp_f{i}"] = f.default_factory
            params.append(f"{f.name}=__mp_factory")
            body.append(f" if {f.name} is __mp_factory: {f.name} = __mp_f{i}()")
        else:
            params.append(f.name)
    if len(fields) > _LINES:
        body.append(f" __mp_consume(map(__mp_osa, __mp_repeat(self), __mp_names, ({', '.join(scope['__mp_names'])})))")
    else:
        body += [f" __mp_osa(self, {f.name!r}, {f.name})" for f in fields]
    exec("\n".join([f"def __init__(self, {', '.join(params)}):", *(body or [" pass"])]), scope)  # noqa: S102
    fn = scope["__init__"]
    fn.__annotations__ = {**{f.name: f.type for f in fields}, "return": None}
    return fn


def _repr(names: tuple[str, ...]):
    @recursive_repr("...")
    def __repr__(self):
        return f"{self.__class__.__qualname__}({', '.join([f'{n}={getattr(self, n)!r}' for n in names])})"

    return __repr__


def _eq(values):
    def __eq__(self, other):
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented

    return __eq__


def _hash(values):
    def __hash__(self):
        return hash(values(self))

    return __hash__


def _frozen(cls, names: frozenset[str]):
    def __setattr__(self, name, value):
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self, name):
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    return (__setattr__, __delattr__)


def _state(values, names: tuple[str, ...]):
    """Pickling a frozen slotted record (the standard decorator adds the same pair)."""

    def __getstate__(self):
        return list(values(self))

    def __setstate__(self, state):
        for name, value in zip(names, state):
            _osa(self, name, value)

    return (__getstate__, __setstate__)


def twin_class(cls):
    """A plain class with the slots of ``cls`` (a frozen slotted dataclass without a base), in its order,
    whose ``__init__`` stores them: an instance becomes a ``cls`` when its ``__class__`` is set to
    ``cls``, the two layouts being the same.  None where Python does not allow that."""
    names = tuple(f.name for f in dataclasses.fields(cls))
    if cls.__slots__ != names or cls.__bases__ != (object,):
        return None
    body = "".join(f"        self.{n} = {n}\n" for n in names) or "        pass\n"
    ns: dict = {}
    exec(f"class Twin:\n    __slots__ = {names!r}\n    def __init__(self, {', '.join(names)}):\n{body}", ns)
    twin = ns["Twin"]
    probe = twin(*range(len(names)))
    try:
        probe.__class__ = cls
    except TypeError:  # pragma: no cover - a Python without __class__ assignment between equal layouts
        return None
    assert type(probe) is cls and tuple(getattr(probe, n) for n in names) == tuple(range(len(names)))
    return twin


def record_maker(cls):
    """``make(values)``: ``cls(*values)`` for a frozen slotted dataclass, without its ``__init__``
    (which sets each field through ``object.__setattr__``): filled as a :func:`twin_class` instance,
    five times quicker, else through the slots' own setters, twice as quick.  No defaults, no
    ``__post_init__``: every field is given.  A scan makes millions of records."""
    twin = twin_class(cls)
    if twin is not None:
        def make(values):
            r = twin(*values)
            r.__class__ = cls
            return r

        return make
    setters = tuple(getattr(cls, f.name).__set__ for f in dataclasses.fields(cls))
    new = object.__new__

    def make_by_setters(values):  # pragma: no cover - see twin_class
        r = new(cls)
        for put, v in zip(setters, values):
            put(r, v)
        return r

    return make_by_setters
