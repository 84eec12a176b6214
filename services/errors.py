"""Domain errors. serving/ maps each to one gRPC status code; nothing here knows gRPC."""


EXCERPT_CHARS = 40


def excerpt(value: str, limit: int = EXCERPT_CHARS) -> str:
    """A bad value as an error quotes it: repr'd, cut to `limit` characters with its length said."""
    value = str(value)
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"


class TailorError(Exception):
    """Base of every error Tailor reports to a caller on purpose."""


class FieldError(TailorError):
    """An error about one request field; `field` names it (e.g. "k", "item_ids[2]")."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self):  # errors cross Ray process boundaries: keep them picklable
        return (type(self), (self.field, self.message))


class InvalidArgument(FieldError):
    """A request field is out of range or malformed."""


class NotFound(FieldError):
    """A user or item the request names is not in the published build."""


class OptedOut(FieldError):
    """The shopper said no to what the request would do (a channel they opted out of)."""


class Unavailable(TailorError):
    """A model or artifact is not ready yet (loading, or no build published)."""


class Overloaded(TailorError):
    """More requests wait than can be answered in time: refused at once, to be retried later."""


class DataFileError(TailorError):
    """A data file cannot be read as it stands; names the file, and the row and column when known.

    `row` is the 1-based data row (the header is not counted), so row 1 of a CSV is its line 2.
    """

    def __init__(self, file: str, message: str, row: int | None = None, column: str | None = None):
        where = str(file)
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {message}")
        self.file = str(file)
        self.message = message
        self.row = row
        self.column = column

    def __reduce__(self):
        return (type(self), (self.file, self.message, self.row, self.column))
