"""Process-wide counters for the metrics endpoint, cheap enough for the hot path.

Plain ints in dicts, incremented in place (``RECEIVED_C2S[tag] += 1``): no lock, no call
into a metrics library per stanza (about 40 ns each; a ``Counter`` takes four times that, a
``prometheus_client`` counter takes a lock). The event loop is the only writer; the metrics
endpoint (``roost.server.metrics``) reads them when scraped, on the same loop. Like the
``process_*`` metrics they count for the whole process (every ``Server`` in it).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import Final

__all__ = [
    "AUTH",
    "CONNECTIONS_ACCEPTED",
    "RECEIVED_C2S",
    "RECEIVED_S2S",
    "ROUTING",
    "SENT_C2S",
    "SENT_S2S",
    "STORAGE",
    "LatencyHistogram",
]

#: stanzas by kind (message, presence, iq) from clients and from peer servers
RECEIVED_C2S: Final[defaultdict[str, int]] = defaultdict(int)
RECEIVED_S2S: Final[defaultdict[str, int]] = defaultdict(int)
#: stanzas by kind written to local client sessions and to peer servers
SENT_C2S: Final[defaultdict[str, int]] = defaultdict(int)
SENT_S2S: Final[defaultdict[str, int]] = defaultdict(int)
#: SASL and legacy logins: "success", "failure" (credentials that did not verify)
AUTH: Final[defaultdict[str, int]] = defaultdict(int)
#: client connections accepted, by listener kind ("c2s")
CONNECTIONS_ACCEPTED: Final[defaultdict[str, int]] = defaultdict(int)


class LatencyHistogram:
    """Observations in fixed buckets (seconds), kept as counts per bucket (not cumulative)."""

    __slots__ = ("active", "bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0
        #: whether anyone reads it (a metrics endpoint serves): timing a stanza costs two
        #: clock reads and a bisect, about 10% of routing one, so it is skipped otherwise
        self.active = False

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count) pairs as Prometheus wants them, ending with +Inf."""
        out, total = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return out


#: how long routing one stanza from a client or a peer server takes on the event loop
#: (until it is delivered, answered or handed to a task), 10 µs to 1 s
ROUTING: Final = LatencyHistogram(
    (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1.0)
)

#: how long a storage operation takes as the event loop sees it (waiting for the database
#: worker included), 100 µs to 10 s
STORAGE: Final = LatencyHistogram(
    (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0, 10.0)
)
