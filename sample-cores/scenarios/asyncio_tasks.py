# Scenario "asyncio_tasks" (3.8+): one event loop with tasks that await a
# coroutine chain, another task, a gather of two tasks; a cancelled task; the
# process aborts inside the running main task. The truth lists every task: its
# name, state, coroutine chain (innermost first), what it awaits and which
# tasks await it.
import asyncio
import os

import _truth


async def sleeper(seconds):
    await asyncio.sleep(seconds)  # SLEEPER_AWAIT


async def worker(seconds):
    await sleeper(seconds)  # WORKER_AWAIT


async def waiter(task):
    await task  # WAITER_AWAIT


async def gatherer(*tasks):
    await asyncio.gather(*tasks)  # GATHERER_AWAIT


def coroutine_chain(coro, crash_line):
    """The coroutine's frames, innermost first, as `cr_await` links them."""
    chain = []
    seen = set()
    while type(coro).__name__ == "coroutine" and id(coro) not in seen:
        seen.add(id(coro))
        frame = coro.cr_frame
        if frame is None:
            break
        line = frame.f_lineno
        if coro.cr_running:
            # The running coroutine dies on the crash line, after this snapshot.
            line = crash_line
        chain.append({"function": frame.f_code.co_name, "file": frame.f_code.co_filename,
                      "line": line})
        coro = coro.cr_await
    chain.reverse()
    return chain


def awaited_tasks(waited):
    """The tasks a task waits for through `waited` (its `_fut_waiter`)."""
    if isinstance(waited, asyncio.Task):
        return [waited]
    return [c for c in getattr(waited, "_children", None) or [] if isinstance(c, asyncio.Task)]


def describe(tasks, loop, crash_line):
    out = []
    for task in tasks:
        waited = task._fut_waiter
        awaits = None
        if waited is not None:
            awaits = {"address": id(waited), "type": type(waited).__name__,
                      "tasks": [id(t) for t in awaited_tasks(waited)]}
        out.append({
            "address": id(task),
            "name": task.get_name(),
            "state": task._state.lower(),
            "loop": id(task._loop),
            "coroutine": coroutine_chain(task.get_coro(), crash_line),
            "running": bool(task.get_coro().cr_running),
            "awaits": awaits,
            "awaited_by": sorted(id(u) for u in tasks if task in awaited_tasks(u._fut_waiter)),
        })
    return {"address": id(loop), "type": type(loop).__name__, "tasks": out}


async def main():
    loop = asyncio.get_running_loop()
    worker_task = asyncio.create_task(worker(3600), name="worker")
    sleeper_task = asyncio.create_task(sleeper(3600), name="sleeper")
    waiter_task = asyncio.create_task(waiter(worker_task), name="waiter")
    gather_task = asyncio.create_task(gatherer(worker_task, sleeper_task), name="gatherer")
    cancelled = asyncio.create_task(sleeper(3600), name="cancelled")
    for _ in range(3):
        await asyncio.sleep(0)
    cancelled.cancel()
    for _ in range(3):
        await asyncio.sleep(0)
    tasks = list(asyncio.all_tasks(loop)) + [cancelled]
    crash_line = _truth.marker_line("CRASH")
    asyncio_truth = describe(tasks, loop, crash_line)
    _truth.write_truth("asyncio_tasks", crash_marker="CRASH",
                       extra={"asyncio": {"loops": [asyncio_truth]}},
                       objects={"tasks": [id(t) for t in tasks],
                                "held": [id(waiter_task), id(gather_task)]})
    os.abort()  # CRASH


if __name__ == "__main__":
    asyncio.run(main())
