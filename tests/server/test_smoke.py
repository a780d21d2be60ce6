from roost.server.app import Server
from tests.helpers import RawClient


async def test_login_and_message(server: Server) -> None:
    a = await RawClient.connect(server.port())
    jid_a = await a.login("alice", "alice-secret", "phone")
    assert jid_a == "alice@localhost/phone"
    b = await RawClient.connect(server.port(direct_tls=True), direct_tls=True)
    await b.open()
    res = await b.auth("bob", "bob-secret", "SCRAM-SHA-1")
    assert res.tag == "success"
    await b.open()
    jid_b = await b.bind()
    await a.send(f"<message to='{jid_b}' type='chat' id='1'><body>hi</body></message>")
    msg = await b.expect(lambda e: e.tag == "message")
    assert msg.get("from") == jid_a
    await a.close()
    await b.close()
