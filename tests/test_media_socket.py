"""The media WebSocket the telephony server accepts (voxtrio/transports/telephony/media_socket.py),
against real clients on an in-memory stream: trio-websocket's, and wsproto's own
client for what trio-websocket will not send (fragments, a malformed frame)."""

import pytest
import trio
import trio.testing
import trio_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    Request,
    TextMessage,
)

from voxtrio.transports.telephony.media_socket import CLOSE_TIMEOUT, ConnectionClosed, MediaSocket


async def accepted(nursery, **options):
    """A trio-websocket client connected to a MediaSocket."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    server: list[MediaSocket] = []

    async def accept():
        server.append(await MediaSocket.accept(server_stream, **options))

    nursery.start_soon(accept)
    client = await trio_websocket.wrap_client_stream(nursery, client_stream, "phone.example", "/media")
    await trio.testing.wait_all_tasks_blocked()
    return client, server[0]


class RawClient:
    """wsproto's client, driven by hand."""

    def __init__(self, stream):
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)

    async def connect(self):
        await self.stream.send_all(self.ws.send(Request(host="phone.example", target="/media")))
        assert isinstance(await self.next_event(), AcceptConnection)

    async def send(self, event):
        await self.stream.send_all(self.ws.send(event))

    async def next_event(self):
        while True:
            for event in self.ws.events():
                return event
            data = await self.stream.receive_some(65536)
            self.ws.receive_data(data or None)


async def raw_pair(nursery, **options):
    client_stream, server_stream = trio.testing.memory_stream_pair()
    client = RawClient(client_stream)
    server: list[MediaSocket] = []

    async def accept():
        server.append(await MediaSocket.accept(server_stream, **options))

    nursery.start_soon(accept)
    await client.connect()
    await trio.testing.wait_all_tasks_blocked()
    return client, server[0]


async def test_messages_go_both_ways_in_order_text_and_binary(autojump_clock):
    async with trio.open_nursery() as nursery:
        client, server = await accepted(nursery)
        for message in ['{"event": "connected"}', b"\x00\x01" * 320, '{"event": "media"}']:
            await client.send_message(message)
        assert [await server.get_message() for _ in range(3)] == ['{"event": "connected"}', b"\x00\x01" * 320, '{"event": "media"}']
        await server.send_message('{"event": "mark"}')
        await server.send_message(b"\xff" * 10)
        assert [await client.get_message(), await client.get_message()] == ['{"event": "mark"}', b"\xff" * 10]
        nursery.cancel_scope.cancel()


async def test_a_fragmented_message_is_returned_whole(autojump_clock):
    async with trio.open_nursery() as nursery:
        client, server = await raw_pair(nursery)
        await client.send(TextMessage(data='{"event": ', message_finished=False))
        await client.send(TextMessage(data='"media"}', message_finished=True))
        assert await server.get_message() == '{"event": "media"}'
        nursery.cancel_scope.cancel()


async def test_a_ping_is_answered_while_reading(autojump_clock):
    async with trio.open_nursery() as nursery:
        client, server = await raw_pair(nursery)

        async def read():
            assert await server.get_message() == "after the ping"

        nursery.start_soon(read)
        await client.send(Ping(payload=b"are you there"))
        assert await client.next_event() == Pong(payload=b"are you there")
        await client.send(TextMessage(data="after the ping"))
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()


async def test_the_providers_close_is_answered_and_ends_the_stream(autojump_clock):
    async with trio.open_nursery() as nursery:
        client, server = await accepted(nursery)
        await client.send_message("last")
        async with trio.open_nursery() as closing:
            closing.start_soon(client.aclose, 4000, "call over")
            assert await server.get_message() == "last"  # what came before the close is kept
            with pytest.raises(ConnectionClosed) as closed:
                await server.get_message()
        assert (closed.value.code, closed.value.reason) == (4000, "call over")
        assert client.closed.code == 4000  # trio-websocket got our answer to its close
        with pytest.raises(ConnectionClosed):
            await server.send_message("too late")
        nursery.cancel_scope.cancel()


async def test_aclose_while_another_task_reads_closes_both_sides(autojump_clock):
    async with trio.open_nursery() as nursery:
        client, server = await accepted(nursery)
        reader_saw: list[ConnectionClosed] = []

        async def read():
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await server.get_message()
            reader_saw.append(closed.value)

        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        await server.aclose(1000, "agent hung up")
        assert trio.current_time() - start < CLOSE_TIMEOUT  # the client answered
        await trio.testing.wait_all_tasks_blocked()
        assert reader_saw and reader_saw[0].code == 1000
        with pytest.raises(trio_websocket.ConnectionClosed) as client_closed:
            await client.get_message()
        assert (client_closed.value.reason.code, client_closed.value.reason.reason) == (1000, "agent hung up")


async def test_aclose_is_bounded_when_the_provider_never_answers(autojump_clock):
    async with trio.open_nursery() as nursery:
        client, server = await raw_pair(nursery)  # RawClient answers nothing unless asked
        start = trio.current_time()
        await server.aclose(1000)
        assert trio.current_time() - start == pytest.approx(CLOSE_TIMEOUT)
        assert isinstance(await client.next_event(), CloseConnection)
        assert await client.stream.receive_some(100) == b""  # the connection was dropped
        nursery.cancel_scope.cancel()


async def test_a_client_that_vanishes_ends_the_stream_with_1006(autojump_clock):
    async with trio.open_nursery() as nursery:
        client, server = await raw_pair(nursery)
        await client.send(TextMessage(data="hello"))
        await client.stream.aclose()
        assert await server.get_message() == "hello"
        with pytest.raises(ConnectionClosed) as closed:
            await server.get_message()
        assert closed.value.code == 1006
        with pytest.raises(ConnectionClosed):
            await server.send_message("anyone?")
        await server.aclose()  # no handshake to wait for
        nursery.cancel_scope.cancel()


async def test_an_oversized_message_closes_the_stream_with_1009(autojump_clock):
    async with trio.open_nursery() as nursery:
        client, server = await raw_pair(nursery, max_message_bytes=1000)
        await client.send(TextMessage(data="x" * 600, message_finished=False))
        await client.send(TextMessage(data="x" * 600, message_finished=True))
        with pytest.raises(ConnectionClosed) as closed:
            await server.get_message()
        assert closed.value.code == 1009
        event = await client.next_event()
        assert isinstance(event, CloseConnection) and event.code == 1009
        nursery.cancel_scope.cancel()


async def test_a_malformed_frame_closes_the_stream_with_a_protocol_error(autojump_clock):
    async with trio.open_nursery() as nursery:
        client, server = await raw_pair(nursery)
        await client.stream.send_all(b"\x81\x05hello")  # a client frame must be masked
        with pytest.raises(ConnectionClosed) as closed:
            await server.get_message()
        assert closed.value.code == 1002
        event = await client.next_event()
        assert isinstance(event, CloseConnection) and event.code == 1002
        nursery.cancel_scope.cancel()


async def test_a_request_that_is_not_a_websocket_handshake_is_refused(autojump_clock):
    client_stream, server_stream = trio.testing.memory_stream_pair()
    await client_stream.send_all(b"POST /media HTTP/1.1\r\nhost: phone.example\r\ncontent-length: 0\r\n\r\n")
    with pytest.raises(ConnectionClosed):
        await MediaSocket.accept(server_stream)
    client_stream, server_stream = trio.testing.memory_stream_pair()
    await client_stream.send_all(b"GET /media HTTP/1.1\r\nhost: phone")
    await client_stream.aclose()
    with pytest.raises(ConnectionClosed):
        await MediaSocket.accept(server_stream)


async def test_two_readers_at_once_are_refused(autojump_clock):
    async with trio.open_nursery() as nursery:
        client, server = await raw_pair(nursery)
        nursery.start_soon(server.get_message)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await server.get_message()
        nursery.cancel_scope.cancel()


async def test_a_send_while_the_reader_answers_a_ping_keeps_both_frames_whole(autojump_clock):
    async with trio.open_nursery() as nursery:
        client, server = await raw_pair(nursery)
        nursery.start_soon(server.get_message)
        await client.send(Ping(payload=b"p"))
        await server.send_message(b"a" * 5000)
        events = [await client.next_event(), await client.next_event()]
        assert Pong(payload=b"p") in events
        assert BytesMessage(data=b"a" * 5000) in events
        nursery.cancel_scope.cancel()


async def test_behind_the_http_server_it_reads_the_socket_itself_once_the_head_is_replayed(autojump_clock):
    from voxtrio.transports.telephony.http import ReplayedStream

    client_stream, server_stream = trio.testing.memory_stream_pair()
    ws = WSConnection(ConnectionType.CLIENT)
    head = ws.send(Request(host="phone.example", target="/media"))
    replayed = ReplayedStream(server_stream, head)  # the head was read by the HTTP server
    async with trio.open_nursery() as nursery:
        sockets = []

        async def accept():
            sockets.append(await MediaSocket.accept(replayed))

        nursery.start_soon(accept)
        client = RawClient(client_stream)
        client.ws = ws
        assert isinstance(await client.next_event(), AcceptConnection)
        await trio.testing.wait_all_tasks_blocked()
        await client.send(TextMessage(data="hello"))
        assert await sockets[0].get_message() == "hello"
        assert sockets[0]._stream is server_stream
