"""daxproxy: a DAX-style caching proxy that speaks DynamoDB's own wire protocol."""

__version__ = "0.1.0"
