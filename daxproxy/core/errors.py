"""DynamoDB's errors, as the proxy itself raises them.

Each class is named exactly after the AWS error code and carries the HTTP status and the
``__type`` namespace that DynamoDB uses for it, so that a client cannot tell an error the
proxy produced from one DynamoDB produced. Errors from the upstream are never rebuilt from
these classes: they are passed through verbatim. The one place that turns an error into
bytes on the wire is :func:`daxproxy.core.wire.encode_error`.
"""

from __future__ import annotations

# DynamoDB answers protocol-level faults from its service framework ("coral"), validation
# from its validator, and everything else from the DynamoDB service itself. SDKs read the
# code after "#", but a user comparing bodies sees the namespace too. Observed values:
# dynalite's index.js mirrors them, and SDK issues quote them (aws-sdk-unity#54).
CORAL_SERVICE = "com.amazon.coral.service"
CORAL_VALIDATE = "com.amazon.coral.validate"
DYNAMODB = "com.amazonaws.dynamodb.v20120810"
# Where AWS's service framework puts request-rate throttling.
CORAL_AVAILABILITY = "com.amazon.coral.availability"


class DynamoDBError(Exception):
    """An error with DynamoDB's wire shape: ``{"__type": ..., "message": ...}``."""

    status: int = 400
    namespace: str = DYNAMODB

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    @property
    def code(self) -> str:
        return type(self).__name__

    @property
    def type(self) -> str:
        return f"{self.namespace}#{self.code}"

    @property
    def is_client_error(self) -> bool:
        return self.status < 500


class SerializationException(DynamoDBError):
    """The body is not a JSON object."""

    namespace = CORAL_SERVICE


class UnknownOperationException(DynamoDBError):
    """``X-Amz-Target`` is missing or names no service and operation the proxy can route."""

    namespace = CORAL_SERVICE


class ValidationException(DynamoDBError):
    """A request the proxy must read is structurally invalid."""

    namespace = CORAL_VALIDATE


class RequestEntityTooLargeException(DynamoDBError):
    """The request body is larger than the configured limit (DynamoDB: 16 MiB, HTTP 413)."""

    status = 413
    namespace = CORAL_SERVICE


class MethodNotAllowedException(DynamoDBError):
    """A method other than POST on the DynamoDB endpoint."""

    status = 405
    namespace = CORAL_SERVICE


class ThrottlingException(DynamoDBError):
    """Too many requests at once: the proxy sheds this one. Every SDK retries it with backoff."""

    namespace = CORAL_AVAILABILITY


class InternalServerError(DynamoDBError):
    """The proxy's own fault, or an upstream that failed after the request was sent.

    A write that ends this way may or may not have been applied, exactly as with a 500 from
    DynamoDB; every SDK retries it.
    """

    status = 500


class ServiceUnavailable(DynamoDBError):
    """The upstream could not be reached, so the request was certainly not applied."""

    status = 503


# Authentication and authorization (the ``auth_file`` setting). AWS's request framework
# answers these before DynamoDB sees the request, all with HTTP 400 and the coral service
# namespace, as SDK issues quote them (e.g. aws-sdk-ios-samples#111, sebdah/dynamic-dynamodb
# #321) and dynalite's index.js mirrors them.


class MissingAuthenticationTokenException(DynamoDBError):
    """No ``Authorization`` header, or one that is not an ``AWS4-`` signature."""

    namespace = CORAL_SERVICE


class IncompleteSignatureException(DynamoDBError):
    """An ``Authorization`` header that lacks a part or cannot be read."""

    namespace = CORAL_SERVICE


class InvalidSignatureException(DynamoDBError):
    """A signature that does not match, is out of the clock skew, or has the wrong scope."""

    namespace = CORAL_SERVICE


class UnrecognizedClientException(DynamoDBError):
    """An access key id (or a session token) the proxy does not know."""

    namespace = CORAL_SERVICE


class AccessDeniedException(DynamoDBError):
    """A well-signed request that its access key may not make."""

    namespace = CORAL_SERVICE


class RequestTimeoutException(DynamoDBError):
    """A client that began a request and did not finish sending it in time
    (``client_read_timeout_millis``). Every SDK retries this code as a transient error."""

    status = 408
    namespace = CORAL_SERVICE
