"""``roost bench``: a load generator on Roost's own sans-IO client core.

It targets any XMPP server (``--server HOST:PORT --domain D``), spreads sessions over worker
processes, and runs four scenarios: ``login`` (logins/s, login time), ``idle`` (server memory
per session), ``messages`` (stepped chat rates: latency, server CPU per message, the highest
sustainable rate) and ``presence`` (roster fan-out). ``provision`` fills Roost's storage with
accounts and mutual rosters for it.
"""

from roost.bench.options import SCENARIOS, BenchOptions

__all__ = ["SCENARIOS", "BenchOptions"]
