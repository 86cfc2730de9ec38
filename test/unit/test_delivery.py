"""gateway/delivery.py: the status an answer left with, and a client gone, in both modes."""

import asyncio

import pytest
from starlette.types import Message

from gateway.delivery import Delivery

START = {"type": "http.response.start", "status": 201, "headers": []}
BODY = {"type": "http.response.body", "body": b"{}"}


def test_the_status_that_left_is_recorded() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    delivery = Delivery(send, reraise=False)
    assert (delivery.status, delivery.client_gone) == (0, False)
    asyncio.run(delivery.send(START))
    asyncio.run(delivery.send(BODY))
    assert (delivery.status, delivery.client_gone) == (201, False)
    assert sent == [START, BODY]


@pytest.mark.parametrize("failure", [OSError("connection reset"), RuntimeError("closed")])
def test_a_failed_write_is_dropped_with_every_message_after_it(failure: Exception) -> None:
    attempts: list[Message] = []

    async def broken_send(message: Message) -> None:
        attempts.append(message)
        raise failure

    delivery = Delivery(broken_send, reraise=False)
    asyncio.run(delivery.send(START))
    asyncio.run(delivery.send(BODY))
    assert (delivery.status, delivery.client_gone) == (201, True)
    assert attempts == [START]


def test_a_failed_write_is_re_raised_when_asked() -> None:
    async def broken_send(message: Message) -> None:
        raise OSError("connection reset")

    delivery = Delivery(broken_send, reraise=True)
    with pytest.raises(OSError, match="connection reset"):
        asyncio.run(delivery.send(START))
    assert (delivery.status, delivery.client_gone) == (201, True)
