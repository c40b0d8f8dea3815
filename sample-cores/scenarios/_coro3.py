# Python 3.5+ only (async syntax): imported by generator.py when available.


class Suspend(object):
    def __await__(self):
        yield "suspended"  # CORO_YIELD


async def coro_waiter(tag):
    await Suspend()  # CORO_SUSPENDED
    return tag
