"""Template tags for django-mitto's admin pages."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe

from ..models import STATUS_GROUPS, STATUS_INFO

register = template.Library()


def status_css() -> str:
    """The admin's colour rules for every status and status group, from ``STATUS_INFO``.

    Generated rather than kept by hand in a .css file, so a status added to or changed in the
    table is coloured everywhere at once. Colours are checked to be plain hex by the table.
    """
    lines = [
        ":root { "
        + " ".join(f"--mitto-{g.key.replace('_', '-')}: {g.colour};" for g in STATUS_GROUPS)
        + " }"
    ]
    for group in STATUS_GROUPS:
        var = f"var(--mitto-{group.key.replace('_', '-')})"
        lines.append(f".mitto-{group.key} {{ fill: {var}; background-color: {var}; }}")
    for status, info in STATUS_INFO.items():
        # Two classes: wins over the plain `.mitto-status` rule whichever sheet comes later.
        lines.append(f".mitto-status.mitto-status--{status} {{ background: {info.colour}; }}")
        lines.append(
            f".mitto-status-{status} {{ fill: {info.chart_colour}; "
            f"background-color: {info.chart_colour}; }}"
        )
    return "\n".join(lines)


@register.simple_tag
def mitto_status_styles() -> SafeString:
    """A ``<style>`` element with :func:`status_css`."""
    # Only hex colours and the status and group keys (slugs) are in it: safe as it is.
    return mark_safe(f'<style id="mitto-status-styles">\n{status_css()}\n</style>')
