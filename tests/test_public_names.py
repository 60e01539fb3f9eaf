"""The package root's table of public names agrees with ``__all__``, the lazy loader and the
type-checking imports editors and mypy read (as Ray's ``__init__.py`` asserts its lists)."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import placement

ROOT = Path(placement.__file__)


def _re_exports() -> dict[str, str]:
    """name -> module of every ``from .x import Name as Name`` of the root: eager ones and those
    under ``if TYPE_CHECKING:``."""
    tree = ast.parse(ROOT.read_text())
    statements: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            assert all(isinstance(s, ast.ImportFrom) for s in node.body)
            statements += node.body
        elif isinstance(node, ast.ImportFrom) and node.level == 1:
            statements.append(node)
    found: dict[str, str] = {}
    for statement in statements:
        assert isinstance(statement, ast.ImportFrom) and statement.level == 1
        for alias in statement.names:
            if alias.asname == alias.name:  # 'X as X': a re-export
                found[alias.name] = f"placement.{statement.module}"
    return found


def test_all_is_the_table():
    assert placement.__all__ == sorted(placement.PUBLIC)


def test_re_exports_are_the_table():
    assert _re_exports() == placement.PUBLIC


@pytest.mark.parametrize("name", sorted(placement.PUBLIC))
def test_each_name_loads_from_its_module(name):
    module = importlib.import_module(placement.PUBLIC[name])
    assert getattr(placement, name) is getattr(module, name)
    assert name in dir(placement)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        placement.Nope  # noqa: B018
