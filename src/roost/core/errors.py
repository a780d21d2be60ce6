"""Stream and stanza errors (RFC 6120 §4.9 and §8.3) with XEP-0086 legacy codes.

Two families, one conversion point each: a ``StreamError`` ends the stream (the connection
driver writes it), a ``StanzaError`` answers one stanza (the router writes it).
"""

from __future__ import annotations

from enum import StrEnum

from roost.core import ns
from roost.core.xml.element import XML_LANG, Element

__all__ = [
    "StanzaError",
    "StanzaErrorCondition",
    "StanzaErrorType",
    "StreamError",
    "StreamErrorCondition",
    "error_reply",
    "parse_stanza_error",
    "parse_stream_error",
]


class StreamErrorCondition(StrEnum):
    """RFC 6120 §4.9.3: every defined stream error condition."""

    BAD_FORMAT = "bad-format"
    BAD_NAMESPACE_PREFIX = "bad-namespace-prefix"
    CONFLICT = "conflict"
    CONNECTION_TIMEOUT = "connection-timeout"
    HOST_GONE = "host-gone"
    HOST_UNKNOWN = "host-unknown"
    IMPROPER_ADDRESSING = "improper-addressing"
    INTERNAL_SERVER_ERROR = "internal-server-error"
    INVALID_FROM = "invalid-from"
    INVALID_NAMESPACE = "invalid-namespace"
    INVALID_XML = "invalid-xml"
    NOT_AUTHORIZED = "not-authorized"
    NOT_WELL_FORMED = "not-well-formed"
    POLICY_VIOLATION = "policy-violation"
    REMOTE_CONNECTION_FAILED = "remote-connection-failed"
    RESET = "reset"
    RESOURCE_CONSTRAINT = "resource-constraint"
    RESTRICTED_XML = "restricted-xml"
    SEE_OTHER_HOST = "see-other-host"
    SYSTEM_SHUTDOWN = "system-shutdown"
    UNDEFINED_CONDITION = "undefined-condition"
    UNSUPPORTED_ENCODING = "unsupported-encoding"
    UNSUPPORTED_FEATURE = "unsupported-feature"
    UNSUPPORTED_STANZA_TYPE = "unsupported-stanza-type"
    UNSUPPORTED_VERSION = "unsupported-version"


class StreamError(Exception):
    """A condition that ends the stream (RFC 6120 §4.9)."""

    def __init__(
        self,
        condition: StreamErrorCondition,
        text: str | None = None,
        content: str | None = None,
        *,
        extra: Element | None = None,
    ) -> None:
        super().__init__(f"{condition.value}: {text}" if text else condition.value)
        self.condition = condition
        self.text = text
        #: element content, used by see-other-host (RFC 6120 §4.9.3.19)
        self.content = content
        #: an application-specific condition (RFC 6120 §4.9.4)
        self.extra = extra

    def to_element(self) -> Element:
        """``<stream:error>`` with the condition and optional text."""
        err = Element("error", ns.STREAM)
        cond = err.sub(self.condition.value, ns.STREAMS)
        if self.content:
            cond.children.append(self.content)
        if self.extra is not None:
            err.append(self.extra)
        if self.text:
            err.sub("text", ns.STREAMS, {XML_LANG: "en"}, self.text)
        return err


class StanzaErrorType(StrEnum):
    """RFC 6120 §8.3.2."""

    AUTH = "auth"
    CANCEL = "cancel"
    CONTINUE = "continue"
    MODIFY = "modify"
    WAIT = "wait"


class StanzaErrorCondition(StrEnum):
    """RFC 6120 §8.3.3: every defined stanza error condition."""

    BAD_REQUEST = "bad-request"
    CONFLICT = "conflict"
    FEATURE_NOT_IMPLEMENTED = "feature-not-implemented"
    FORBIDDEN = "forbidden"
    GONE = "gone"
    INTERNAL_SERVER_ERROR = "internal-server-error"
    ITEM_NOT_FOUND = "item-not-found"
    JID_MALFORMED = "jid-malformed"
    NOT_ACCEPTABLE = "not-acceptable"
    NOT_ALLOWED = "not-allowed"
    NOT_AUTHORIZED = "not-authorized"
    PAYMENT_REQUIRED = "payment-required"
    POLICY_VIOLATION = "policy-violation"
    RECIPIENT_UNAVAILABLE = "recipient-unavailable"
    REDIRECT = "redirect"
    REGISTRATION_REQUIRED = "registration-required"
    REMOTE_SERVER_NOT_FOUND = "remote-server-not-found"
    REMOTE_SERVER_TIMEOUT = "remote-server-timeout"
    RESOURCE_CONSTRAINT = "resource-constraint"
    SERVICE_UNAVAILABLE = "service-unavailable"
    SUBSCRIPTION_REQUIRED = "subscription-required"
    UNDEFINED_CONDITION = "undefined-condition"
    UNEXPECTED_REQUEST = "unexpected-request"


_C = StanzaErrorCondition
_T = StanzaErrorType

#: Default type (RFC 6120 §8.3.3) and XEP-0086 §3 legacy code of each condition.
#: policy-violation is newer than XEP-0086 and has no legacy code there; we send none.
CONDITION_DEFAULTS: dict[StanzaErrorCondition, tuple[StanzaErrorType, int | None]] = {
    _C.BAD_REQUEST: (_T.MODIFY, 400),
    _C.CONFLICT: (_T.CANCEL, 409),
    _C.FEATURE_NOT_IMPLEMENTED: (_T.CANCEL, 501),
    _C.FORBIDDEN: (_T.AUTH, 403),
    _C.GONE: (_T.MODIFY, 302),
    _C.INTERNAL_SERVER_ERROR: (_T.WAIT, 500),
    _C.ITEM_NOT_FOUND: (_T.CANCEL, 404),
    _C.JID_MALFORMED: (_T.MODIFY, 400),
    _C.NOT_ACCEPTABLE: (_T.MODIFY, 406),
    _C.NOT_ALLOWED: (_T.CANCEL, 405),
    _C.NOT_AUTHORIZED: (_T.AUTH, 401),
    _C.PAYMENT_REQUIRED: (_T.AUTH, 402),
    _C.POLICY_VIOLATION: (_T.MODIFY, None),
    _C.RECIPIENT_UNAVAILABLE: (_T.WAIT, 404),
    _C.REDIRECT: (_T.MODIFY, 302),
    _C.REGISTRATION_REQUIRED: (_T.AUTH, 407),
    _C.REMOTE_SERVER_NOT_FOUND: (_T.CANCEL, 404),
    _C.REMOTE_SERVER_TIMEOUT: (_T.WAIT, 504),
    _C.RESOURCE_CONSTRAINT: (_T.WAIT, 500),
    _C.SERVICE_UNAVAILABLE: (_T.CANCEL, 503),
    _C.SUBSCRIPTION_REQUIRED: (_T.AUTH, 407),
    _C.UNDEFINED_CONDITION: (_T.CANCEL, 500),
    _C.UNEXPECTED_REQUEST: (_T.WAIT, 400),
}

#: XEP-0086 §3 table 2: legacy code -> condition, for errors from old entities.
LEGACY_CODES: dict[int, StanzaErrorCondition] = {
    302: _C.REDIRECT,
    400: _C.BAD_REQUEST,
    401: _C.NOT_AUTHORIZED,
    402: _C.PAYMENT_REQUIRED,
    403: _C.FORBIDDEN,
    404: _C.ITEM_NOT_FOUND,
    405: _C.NOT_ALLOWED,
    406: _C.NOT_ACCEPTABLE,
    407: _C.REGISTRATION_REQUIRED,
    408: _C.REMOTE_SERVER_TIMEOUT,
    409: _C.CONFLICT,
    500: _C.INTERNAL_SERVER_ERROR,
    501: _C.FEATURE_NOT_IMPLEMENTED,
    502: _C.SERVICE_UNAVAILABLE,
    503: _C.SERVICE_UNAVAILABLE,
    504: _C.REMOTE_SERVER_TIMEOUT,
}


class StanzaError(Exception):
    """An error answering one stanza (RFC 6120 §8.3); raise it from a handler."""

    def __init__(
        self,
        condition: StanzaErrorCondition,
        text: str | None = None,
        *,
        type: StanzaErrorType | None = None,
        by: str | None = None,
        code: int | None = None,
        app: Element | None = None,
    ) -> None:
        super().__init__(f"{condition.value}: {text}" if text else condition.value)
        default_type, default_code = CONDITION_DEFAULTS[condition]
        #: an application-specific condition (RFC 6120 §8.3.4), e.g. XEP-0050 <bad-sessionid/>
        self.app = app
        self.condition = condition
        self.text = text
        self.type = default_type if type is None else type
        self.by = by
        self.code = default_code if code is None else code

    def to_element(self) -> Element:
        """The ``<error/>`` child, with the XEP-0086 ``code`` attribute."""
        attrs = {"type": self.type.value}
        if self.code is not None:
            attrs["code"] = str(self.code)
        if self.by:
            attrs["by"] = self.by
        err = Element("error", ns.CLIENT, attrs)
        err.sub(self.condition.value, ns.STANZAS)
        if self.text:
            err.sub("text", ns.STANZAS, {XML_LANG: "en"}, self.text)
        if self.app is not None:
            err.append(self.app)
        return err


def parse_stanza_error(error: Element) -> StanzaError:
    """Read an ``<error/>`` child, understanding a bare legacy ``code`` (XEP-0086 §3)."""
    condition: StanzaErrorCondition | None = None
    text = None
    for child in error.elements():
        if child.ns != ns.STANZAS:
            continue
        if child.tag == "text":
            text = child.text
        elif condition is None:
            try:
                condition = StanzaErrorCondition(child.tag)
            except ValueError:
                condition = StanzaErrorCondition.UNDEFINED_CONDITION
    code_attr = error.get("code")
    code = int(code_attr) if code_attr and code_attr.isdigit() else None
    if condition is None:
        condition = LEGACY_CODES.get(code or 0, StanzaErrorCondition.UNDEFINED_CONDITION)
    type_attr = error.get("type")
    try:
        etype = StanzaErrorType(type_attr) if type_attr else None
    except ValueError:
        etype = None
    return StanzaError(condition, text, type=etype, code=code)


def error_reply(stanza: Element, err: StanzaError) -> Element:
    """The error stanza answering ``stanza`` (RFC 6120 §8.3.1): addresses swapped, type error.

    The original payload is not echoed (§8.3.1 makes it optional; Prosody does the same), which
    keeps error replies small and never reflects content back. ``from`` is the original ``to``;
    the router fills it in when the original had none.
    """
    attrs: dict[str, str] = {"type": "error"}
    if (sid := stanza.attrs.get("id")) is not None:
        attrs["id"] = sid
    if (frm := stanza.attrs.get("from")) is not None:
        attrs["to"] = frm
    if (to := stanza.attrs.get("to")) is not None:
        attrs["from"] = to
    return Element(stanza.tag, stanza.ns, attrs, [err.to_element()])


def parse_stream_error(el: Element) -> StreamError:
    """A peer's ``<stream:error/>`` as a ``StreamError`` (RFC 6120 §4.9.2)."""
    condition = StreamErrorCondition.UNDEFINED_CONDITION
    text = None
    for child in el.elements():
        if child.ns != ns.STREAMS:
            continue
        if child.tag == "text":
            text = child.text
        else:
            try:
                condition = StreamErrorCondition(child.tag)
            except ValueError:
                condition = StreamErrorCondition.UNDEFINED_CONDITION
    return StreamError(condition, text)
