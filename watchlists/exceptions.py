from anomalyhub.lib.errors import ConflictError, InvalidError, PayloadTooLargeError


class UnknownSymbol(InvalidError):
    code = "unknown_symbol"


class BatchTooLarge(PayloadTooLargeError):
    pass


class SeriesConflict(ConflictError):
    pass
