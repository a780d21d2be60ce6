"""Stream drivers: each glues a transport to a sans-IO core stream and feeds sessions.

``c2s`` drives client streams over TCP (STARTTLS and Direct TLS); WebSocket, BOSH and
server-to-server drivers sit beside it.
"""
