"""The package root's table of public names agrees with ``__all__``, the lazy loader and the
type-checking imports editors and mypy read (as Ray's ``__init__.py`` asserts its lists)."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import placement

ROOT = Path(placement.__file__)


def _type_checking_imports() -> dict[str, str]:
    """name -> module of every ``from .x import Name as Name`` under ``if TYPE_CHECKING:``."""
    tree = ast.parse(ROOT.read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom), ast.dump(statement)
                assert statement.level == 1, "relative imports of the package only"
                for alias in statement.names:
                    assert alias.asname == alias.name, (
                        f"{alias.name} must be re-exported as itself ('X as X')")
                    found[alias.name] = f"placement.{statement.module}"
    return found


def test_all_is_the_table():
    assert placement.__all__ == sorted(placement.PUBLIC)


def test_type_checking_imports_are_the_table():
    assert _type_checking_imports() == placement.PUBLIC


@pytest.mark.parametrize("name", sorted(placement.PUBLIC))
def test_each_name_loads_from_its_module(name):
    module = importlib.import_module(placement.PUBLIC[name])
    assert getattr(placement, name) is getattr(module, name)
    assert name in dir(placement)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        placement.Nope  # noqa: B018
