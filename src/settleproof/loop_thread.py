"""An asyncio loop on a daemon thread, so our aiohttp servers can be used from plain sync code."""

import asyncio
import threading
from typing import Any, Callable, Coroutine, Optional, TypeVar


T = TypeVar("T")


class LoopThread:
    """Runs one event loop on its own thread: started with a coroutine, stopped with another."""

    def __init__(self, name: str) -> None:
        """Nothing runs until `start()`."""
        self.name = name
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def running(self) -> bool:
        """Whether the loop's thread is up."""
        return self._thread is not None

    def start(self, startup: Callable[[], Coroutine[Any, Any, Any]], timeout: float = 30.0) -> None:
        """Start the thread and run `startup()` on it; a startup error stops the thread and is re-raised."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=self.name, daemon=True)
        self._thread.start()
        try:
            self.call(startup(), timeout)
        except BaseException:
            self.stop()
            raise

    def call(self, work: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the loop from another thread; its result."""
        if self._loop is None:
            work.close()
            raise RuntimeError(f"{self.name} is not running")
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout)

    def stop(
        self, shutdown: Optional[Callable[[], Coroutine[Any, Any, Any]]] = None, timeout: float = 15.0
    ) -> None:
        """Run `shutdown()` (if given), then stop the loop and join the thread; safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if shutdown is not None:
                asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            loop.close()
            self._loop = self._thread = None
