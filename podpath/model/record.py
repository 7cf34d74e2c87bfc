"""Records: plain classes whose fields are their __slots__, compared, printed and turned
into dicts by those fields, as dataclasses are, for the classes the lab's node processes load.

The dataclasses module imports inspect, and with it ast, dis, tokenize and enum: about
1.2 MiB in each process that loads it, and three node processes run in every lab
(docs/performance.md, the lab at rest). A record class lists its fields in __slots__, in
the order a dataclass would have them, and writes its own __init__.
"""
from __future__ import annotations


class Record:
    """Equality, repr and as_dict by the fields in __slots__ (unhashable, as a dataclass with
    eq=True is)."""

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{self.__class__.__name__}({fields})"

    def as_dict(self) -> dict:
        """The fields as a dict in their order, records and lists of them turned into dicts and
        lists too (what dataclasses.asdict gives)."""
        return {name: _plain(getattr(self, name)) for name in self.__slots__}


def _plain(value):
    if isinstance(value, Record):
        return value.as_dict()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
