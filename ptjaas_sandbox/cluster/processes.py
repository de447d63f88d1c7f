"""Container processes, started off the node agent's event loop.

``asyncio.create_subprocess_exec`` forks (vforks) in the event loop's thread and waits there
until the child has called exec; on a busy machine that held the whole embedded cluster (API
server, controllers, node agent) ~8 ms per container, a sixth of its time at a few hundred pods
a minute. Here the process is started by one long-lived starter thread, and its exit is read
through a pidfd on the event loop (a waiting thread where pidfds are missing).

A container's parent-death signal (set by ``podexec``, or by the preexec hook when not root)
belongs to the starter thread, which lives as long as the node agent's process: containers die
with that process if it goes away without stopping them.
"""

import asyncio
import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

_STARTER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ptjaas-container-start")


class ContainerProcess:
    """What the node agent needs of a running container process: ``pid``, ``returncode``
    (None while it runs; negative: killed by that signal) and ``await wait()``."""

    def __init__(self, popen):
        self._popen = popen
        self.pid = popen.pid
        self.returncode = None
        self._loop = asyncio.get_running_loop()
        self._done = self._loop.create_future()
        try:
            self._fd = os.pidfd_open(popen.pid)
            self._loop.add_reader(self._fd, self._readable)
        except (AttributeError, OSError):   # no pidfd on this kernel: a thread waits
            self._fd = None
            threading.Thread(target=self._wait_in_thread, daemon=True, name=f"ptjaas-wait-{self.pid}").start()

    def _readable(self):
        code = self._popen.poll()
        if code is None:
            return
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._finish(code)

    def _wait_in_thread(self):
        code = self._popen.wait()
        try:
            self._loop.call_soon_threadsafe(self._finish, code)
        except RuntimeError:   # the loop is closed
            pass

    def _finish(self, code):
        self.returncode = code
        if not self._done.done():
            self._done.set_result(code)

    async def wait(self):
        return await asyncio.shield(self._done)


async def start_process(argv, *, env, cwd, stdout, preexec_fn=None):
    """Start ``argv`` in its own session, stdin from /dev/null, stdout and stderr to ``stdout``
    (a file, closed by the caller); raises OSError as ``subprocess.Popen`` does."""
    def start():
        return subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=preexec_fn)
    popen = await asyncio.get_running_loop().run_in_executor(_STARTER, start)
    return ContainerProcess(popen)
