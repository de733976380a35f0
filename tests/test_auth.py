"""The delivery-report request flows one way: auth.py authenticates, the rules apply."""

from __future__ import annotations

import ast
from pathlib import Path

from django_mitto import auth, callbacks, views

MOVED = ("TokenCheck", "address_allowed", "batch_token", "check_token", "client_address")


def test_the_moved_names_are_still_importable_from_callbacks() -> None:
    for name in (*MOVED, "message_token"):
        assert getattr(callbacks, name) is getattr(auth, name), name


def _imported_from(module: Path, source: str) -> set[str]:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    return {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == source and node.level == 1
        for alias in node.names
    }


def test_the_views_authenticate_through_auth_not_callbacks() -> None:
    path = Path(views.__file__)
    assert set(MOVED) & _imported_from(path, "callbacks") == set()
    assert {"check_token", "client_address", "address_allowed"} <= _imported_from(path, "auth")


def test_the_views_leave_body_parsing_to_the_serializers() -> None:
    # The body cleaning used to live in views.py; it is the serializers' job now.
    assert not hasattr(views, "_clean") and not hasattr(views, "_flat")
    assert {"json_safe", "flatten"} <= _imported_from(Path(views.__file__), "serializers")
