"""SASL for XMPP (RFC 6120 §6): SCRAM-SHA-1/-256 with -PLUS (RFC 5802, RFC 7677) and PLAIN.

Sans-IO: nonces and salts come from the caller, and the driver answers ``NeedCredentials``
and ``NeedPasswordCheck`` by calling the mechanism back.
"""

from roost.core.sasl.base import (
    Challenge,
    Failure,
    NeedCredentials,
    NeedPasswordCheck,
    SaslClientError,
    SaslCondition,
    SaslStep,
    ScramCredentials,
    ServerMechanism,
    Success,
)
from roost.core.sasl.plain import PlainClient, PlainServer
from roost.core.sasl.scram import HASHES, derive_credentials, salted_password, verify_password
from roost.core.sasl.scram_client import MAX_ITERATIONS, ScramClient
from roost.core.sasl.scram_server import ScramServer

__all__ = [
    "HASHES",
    "MAX_ITERATIONS",
    "MECHANISMS",
    "Challenge",
    "Failure",
    "NeedCredentials",
    "NeedPasswordCheck",
    "PlainClient",
    "PlainServer",
    "SaslClientError",
    "SaslCondition",
    "SaslStep",
    "ScramClient",
    "ScramCredentials",
    "ScramServer",
    "ServerMechanism",
    "Success",
    "derive_credentials",
    "salted_password",
    "verify_password",
]

#: Every mechanism Roost implements, best first: the default offer and preference.
MECHANISMS = (
    "SCRAM-SHA-256-PLUS",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1",
    "PLAIN",
)
