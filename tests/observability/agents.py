"""A pair of agents a post travels through: signal → queue → call → queue.

``Front`` receives the ``obs.post`` signal and queues ``obs.work``; ``Back`` consumes it,
calls ``obs.ask`` (answered by ``Front``) and queues ``obs.done`` with the answer, which
``Front`` consumes. Run in one process, or each in its own (``microhive run
tests.observability.agents:Front``), every hop crosses the transport.
"""

from __future__ import annotations

from microhive import MicroAgent, Queue, Signal, consumer, receiver

POST = Signal("obs.post", ["n"])
ASK = Signal("obs.ask", ["n"])
WORK = Queue("obs.work")
DONE = Queue("obs.done")


class Front(MicroAgent):
    done: list[int]

    @receiver(POST)
    async def post(self, n: int) -> None:
        await self.broker.send(WORK, {"n": n})

    @receiver(ASK)
    async def ask(self, n: int) -> int:
        return n * 2

    @consumer(DONE)
    async def finish(self, n: int, doubled: int) -> None:
        self.settings.get("done", []).append(doubled)


class Back(MicroAgent):
    @consumer(WORK)
    async def work(self, n: int) -> None:
        doubled = await self.bus.signal(ASK).call(n=n, timeout=30)
        await self.broker.send(DONE, {"n": n, "doubled": doubled})
