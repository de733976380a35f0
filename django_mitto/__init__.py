"""django-mitto: send SMS through Mitto from Django and track every delivery report."""

__version__ = "0.1.0"
