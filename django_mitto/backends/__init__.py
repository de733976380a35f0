"""Task backends: where and when sends run. ``MITTO_TASK_BACKEND`` picks one.

``"inline"`` (default), ``"celery"``, ``"tasks"`` (Django's Tasks framework) or the dotted
path of a :class:`~django_mitto.backends.base.TaskBackend` subclass. :func:`get_backend`
returns the configured one; the backend modules are imported only when chosen, so a missing
optional dependency (Celery, django-tasks) matters only to whoever picks that backend.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from django.utils.module_loading import import_string

from ..conf import conf

if TYPE_CHECKING:
    from .base import TaskBackend

__all__ = ["BUILTIN_BACKENDS", "backend_path", "get_backend", "load_backend_class"]

#: The short names ``MITTO_TASK_BACKEND`` accepts, and the class each stands for.
BUILTIN_BACKENDS = {
    "inline": "django_mitto.backends.inline.InlineBackend",
    "celery": "django_mitto.backends.celery.CeleryBackend",
    "tasks": "django_mitto.backends.tasks.TasksBackend",
}

_instances: dict[str, TaskBackend] = {}
_lock = threading.Lock()


def backend_path(value: str) -> str:
    """The dotted path of the class a ``MITTO_TASK_BACKEND`` value names."""
    return BUILTIN_BACKENDS.get(value.lower(), value)


def load_backend_class(value: str) -> type[TaskBackend]:
    """Import the class a ``MITTO_TASK_BACKEND`` value names.

    Raises ``ImportError`` when it cannot be imported (a missing optional dependency too) and
    ``TypeError`` when it is not a :class:`~django_mitto.backends.base.TaskBackend` subclass.
    """
    from .base import TaskBackend

    cls = import_string(backend_path(value))
    if not isinstance(cls, type) or not issubclass(cls, TaskBackend):
        raise TypeError(f"{value} is not a subclass of django_mitto.backends.base.TaskBackend.")
    return cls


def get_backend() -> TaskBackend:
    """The task backend ``MITTO_TASK_BACKEND`` names (one instance per value, made on first use).

    Raises :class:`~django_mitto.exceptions.MittoConfigurationError` when the setting names
    no usable backend (the system check ``django_mitto.E009`` says so earlier).
    """
    from ..exceptions import MittoConfigurationError

    value = conf.TASK_BACKEND
    backend = _instances.get(value)
    if backend is None:
        with _lock:
            backend = _instances.get(value)
            if backend is None:
                try:
                    backend = load_backend_class(value)()
                except (ImportError, TypeError) as exc:
                    raise MittoConfigurationError(
                        f"MITTO_TASK_BACKEND = {value!r} cannot be used: {exc}"
                    ) from exc
                _instances[value] = backend
    return backend
