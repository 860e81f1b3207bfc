"""One replacement of a dependency's attribute (or of a mapping's entry), installed for a run and removed after."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_ABSENT = object()


@dataclass
class Patch:
    """`owner.name = replacement` (or `owner[name] = replacement` with item=True), undone by remove()."""

    owner: Any
    name: str
    replacement: Any
    item: bool = False
    original: Any = field(default=_ABSENT, init=False, repr=False)

    def apply(self) -> None:
        if self.item:
            self.original = self.owner.get(self.name, _ABSENT)
            self.owner[self.name] = self.replacement
        else:
            self.original = self.owner.__dict__.get(self.name, _ABSENT) if isinstance(self.owner, type) \
                else getattr(self.owner, self.name, _ABSENT)
            setattr(self.owner, self.name, self.replacement)

    def remove(self) -> None:
        if self.item:
            if self.original is _ABSENT:
                self.owner.pop(self.name, None)
            else:
                self.owner[self.name] = self.original
        elif self.original is _ABSENT:
            delattr(self.owner, self.name)
        else:
            setattr(self.owner, self.name, self.original)
        self.original = _ABSENT
