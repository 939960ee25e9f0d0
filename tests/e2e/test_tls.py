"""HTTP/2 over TLS with ALPN h2, with a throwaway CA made by trustme."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio
import trustme

from broker.client import Client
from broker.client.transport import ConnectionLostError
from broker.server.listener import server_ssl_context

from .harness import read_all, serve


async def test_client_over_https_with_alpn_h2(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    pem = tmp_path / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    server_context = server_ssl_context(str(pem), str(pem))
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async with serve(tmp_path / "data", ssl_context=server_context) as served:
        assert served.endpoint.startswith("https://")
        async with Client(served.endpoint, ssl_context=client_context) as client:
            await client.create_stream("s", 1)
            put = await client.put_records(
                "s", [{"Data": f"r{i}".encode(), "PartitionKey": "k"} for i in range(5)]
            )
            assert put.failed_record_count == 0
            records = await read_all(client, "s", "shardId-000000000000")
            assert [r.data for r in records] == [f"r{i}".encode() for i in range(5)]

        raw_context = ssl.create_default_context()
        ca.configure_trust(raw_context)
        raw_context.set_alpn_protocols(["h2"])
        tcp = await trio.open_tcp_stream("127.0.0.1", served.port)
        tls = trio.SSLStream(tcp, raw_context, server_hostname="127.0.0.1")
        await tls.do_handshake()
        assert tls.selected_alpn_protocol() == "h2"
        await tls.aclose()

        untrusting = ssl.create_default_context()  # the throwaway CA is not trusted
        async with Client(served.endpoint, ssl_context=untrusting, timeout=5.0) as stranger:
            with pytest.raises(ConnectionLostError):  # the handshake fails: a named error
                await stranger.list_streams()
