"""The one error type of the query panel, shared by the guard and the service."""

from __future__ import annotations

from rtfd.errors import RtfdError


class QueryError(RtfdError):
    """Bad SQL, a forbidden statement, or a query that ran out of time."""

    title = "Query error"
