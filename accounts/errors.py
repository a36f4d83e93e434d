"""Domain errors raised by services. The API layers map them to HTTP in one place each."""


class ServiceError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, message: str, *, details=None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details if details is not None else {}
        if code:
            self.code = code


class NotFoundError(ServiceError):
    """Missing, or another tenant's: the same answer for both."""

    status = 404
    code = "not_found"

    def __init__(self, message: str = "Not found.", **kwargs):
        super().__init__(message, **kwargs)


class PermissionDeniedError(ServiceError):
    status = 403
    code = "permission_denied"


class ConflictError(ServiceError):
    status = 409
    code = "conflict"


class InvalidError(ServiceError):
    status = 400
    code = "invalid"


class PayloadTooLargeError(ServiceError):
    status = 413
    code = "payload_too_large"
