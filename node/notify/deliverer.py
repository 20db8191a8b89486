"""The deliverer: a task in every node process that empties the partition's outbox.

    lease (up to `batch` due deliveries, held `lease` seconds)
      └─ for each, concurrently (at most `concurrency` in flight):
           send its notices in order, from where the last holder stopped
             ├─ all sent ............................ done: the delivery goes
             ├─ one failed, the retry policy has more  retry: due again after the policy's
             │                                          delay, its progress kept
             ├─ one failed, the policy is spent ...... done, abandoned
             └─ half the lease gone .................. retry at once: released with its
                                                        progress, before another holder could
                                                        take it and send again

A deliverer killed mid-send leaves its leases to expire; any deliverer of the partition then
takes them and sends from the last recorded progress: at least once, never lost. A post never
waits for this: it only wakes the deliverer of its own process (`OutboxStore.wait`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from ground.logs import get_logger
from node.encryption import ENCRYPTED, MessageCipher
from node.errors import QueueDoesNotExist, QueueFrozen, StorageUnavailable
from node.notify.errors import DeliveryFailed
from node.notify.liveness import split_live
from node.notify.metrics import ABANDONED, DELIVERED, FAILURES, LAG, OUTBOX_DEPTH, RETRIES
from node.notify.policy import choose, next_delay
from node.notify.settings import NotifySettings
from node.storage.base import QueueStore, SubscriptionStore
from node.storage.outbox import Deliveries, Delivery, OutboxStore

log = get_logger("node.notify")


class Sender(Protocol):
    async def send(self, delivery: Delivery, notice: dict[str, Any]) -> None:
        """Deliver one notice; raises `DeliveryFailed` when the subscriber did not take it."""

    async def close(self) -> None: ...


class Deliverer:
    def __init__(
        self,
        outbox: OutboxStore,
        queues: QueueStore,
        senders: Mapping[str, Sender],
        settings: NotifySettings,
        clock: Callable[[], float] = time.time,
        cipher: MessageCipher | None = None,
        *,
        subscriptions: SubscriptionStore,
    ) -> None:
        self.outbox = outbox
        self.subscriptions = subscriptions  # asked whether a delivery's subscription is live
        # A queue with `_enable_encrypt_messages` stores its bodies (and so its notices) as
        # ciphertext; subscribers get them as posted, as Zaqar notifies before encrypting.
        self.cipher = cipher
        self.queues = queues
        self.senders = senders
        self.settings = settings
        self.clock = clock
        self.owner = uuid.uuid4().hex
        self._in_flight: set[asyncio.Task[None]] = set()
        self._finished: list[str] = []  # settled by the next step, in one write

    async def run(self) -> None:
        """Deliver until cancelled; storage failures are logged and waited out."""
        counter = asyncio.create_task(self._count_forever())
        try:
            while True:
                try:
                    await self.step()
                except StorageUnavailable as exc:
                    stop_if_cancelled(exc)
                    log.warning("outbox_unavailable", error=str(exc))
                    await asyncio.sleep(self.settings.poll_interval * 10)
                stop_if_cancelled()  # a cancellation pymongo retried past, swallowed
        finally:
            if self._finished:  # sent: settle them if the storage still answers
                with contextlib.suppress(Exception):
                    await self.outbox.done(self.owner, self._finished)
            counter.cancel()
            for task in [counter, *self._in_flight]:
                task.cancel()
            await asyncio.gather(counter, *self._in_flight, return_exceptions=True)
            for sender in self.senders.values():
                await sender.close()

    async def step(self) -> None:
        """Settle what was sent, lease what there is room for and start sending it; nap when
        nothing is due. A nap cut short by a post waits `gather` seconds more, so that one
        lease takes the deliveries of many posts rather than one write per post."""
        if self._finished:
            finished, self._finished = self._finished, []
            await self.outbox.done(self.owner, finished)
        room = self.settings.concurrency - len(self._in_flight)
        if room <= 0:
            await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
            return
        taken = await self.outbox.lease(
            self.owner, limit=min(room, self.settings.batch), lasts=self.settings.lease
        )
        for delivery in await self._live(taken):
            task = asyncio.create_task(self.deliver(delivery))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        if len(taken) < min(room, self.settings.batch):
            await self.outbox.wait(self.settings.poll_interval)
            await asyncio.sleep(self.settings.gather)

    async def _live(self, taken: Deliveries) -> Deliveries:
        """The deliveries whose subscription is live; the others are settled unsent."""
        if not taken:
            return taken
        kept, gone = await split_live(self.subscriptions, taken)
        if gone:
            ABANDONED.labels("unsubscribed").inc(len(gone))
            self._finished.extend(gone)
        return kept

    async def drain(self) -> None:
        """Wait for the deliveries in flight (for tests and a clean stop)."""
        while self._in_flight:
            await asyncio.wait(self._in_flight)

    async def deliver(self, delivery: Delivery) -> None:
        try:
            await self._deliver(delivery)
        except StorageUnavailable as exc:  # the lease expires; another holder takes over
            log.warning("delivery_unsettled", delivery=delivery.id, error=str(exc))
        except Exception:
            log.exception("delivery_crashed", delivery=delivery.id)

    async def _deliver(self, d: Delivery) -> None:
        started = self.clock()
        scheme = urlsplit(d.subscriber).scheme
        sender = self.senders.get(scheme)
        if sender is None or (self.settings.require_confirmation and not d.confirmed):
            ABANDONED.labels("unconfirmed" if sender else "scheme").inc()
            self._finished.append(d.id)
            return
        sent, failures = d.sent, d.failures
        while sent < len(d.notices):
            if self.clock() - started > self.settings.lease / 2:
                await self.outbox.retry(
                    self.owner, d.id, due=self.clock(), failures=failures, sent=sent
                )
                return
            try:
                await sender.send(d, await self._clear(d, d.notices[sent]))
            except DeliveryFailed as exc:
                FAILURES.labels(scheme).inc()
                failures += 1
                policy = choose(d.options, await self._queue_metadata(d))
                delay = next_delay(policy, failures)
                if delay is None:
                    ABANDONED.labels("retries").inc()
                    log.warning("notification_abandoned", delivery=d.id, error=str(exc))
                    sent += 1  # this notice is given up; the post's next ones still go
                    failures = 0
                    continue
                RETRIES.labels(scheme).inc()
                await self.outbox.retry(
                    self.owner, d.id, due=self.clock() + delay, failures=failures, sent=sent
                )
                return
            DELIVERED.labels(scheme).inc()
            LAG.observe(max(0.0, self.clock() - d.posted))
            sent, failures = sent + 1, 0
        self._finished.append(d.id)

    async def _clear(self, d: Delivery, notice: dict[str, Any]) -> dict[str, Any]:
        """The notice with its body as the client posted it."""
        if self.cipher is None or "body" not in notice:
            return notice
        if not (await self._queue_metadata(d)).get(ENCRYPTED):
            return notice
        return {**notice, "body": self.cipher.decrypt(notice["body"])}

    async def _queue_metadata(self, d: Delivery) -> dict[str, Any]:
        with contextlib.suppress(QueueDoesNotExist, QueueFrozen):
            return await self.queues.get_metadata(d.project, d.queue)
        return {}

    async def _count_forever(self) -> None:
        while True:
            try:
                OUTBOX_DEPTH.set(await self.outbox.depth())
            except StorageUnavailable as exc:
                stop_if_cancelled(exc)
            stop_if_cancelled()
            await asyncio.sleep(self.settings.depth_interval)


def stop_if_cancelled(exc: StorageUnavailable | None = None) -> None:
    """Raise `CancelledError` when the task was cancelled: pymongo reports an operation cut
    short by a cancellation as a failure (`_OperationCancelled`), which the loops above would
    otherwise wait out and go on from, so that the task never stopped (seen as a node's
    cleanup hanging on MongoDB). That failure is an `AutoReconnect`: a retryable read retries
    it, and then nothing is raised at all, so the loops also ask after each turn."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError() from exc
