"""The exception tree of the contract.

- ``PricestreamError``: base of everything the contract raises.
  - ``DecodeError`` (also ``ValueError``): bytes that are not a valid message of the contract.
  - ``InvalidSymbol`` (also ``ValueError``): a symbol not of the ``XAU-USD`` form.
  - ``UnknownResolution`` (also ``LookupError``): a resolution name outside ``RESOLUTIONS``.
  - ``StoreError``: the store could not complete an operation; carries the operation in its text.
    - ``StoreUnavailable``: the store cannot be reached right now; the same call may succeed
      later, so callers that must not lose data retry it.
  - ``BusError``: the bus refused an operation (a topic cannot be created, a broker rejects a
    setting); carries the operation in its text.
"""

from __future__ import annotations


class PricestreamError(Exception):
    """Base of every error the contract raises."""


class DecodeError(PricestreamError, ValueError):
    """Raised by every ``decode_*`` function for bytes that are not a valid message."""


class InvalidSymbol(PricestreamError, ValueError):
    """A symbol that is not two or more upper-case alphanumeric parts joined by ``-``."""


class UnknownResolution(PricestreamError, LookupError):
    """A resolution name that the service does not keep."""


class StoreError(PricestreamError):
    """A store operation failed; the message names the operation and the cause is chained."""


class StoreUnavailable(StoreError):
    """The store cannot be reached now (network, failover, timeout); retrying may succeed."""


class BusError(PricestreamError):
    """The bus could not complete an operation; the message names it and the cause is chained."""
