# Scenario "subinterp_threads" (3.12+): one subinterpreter per worker thread: each worker creates its own interpreter and parks in it; the main thread aborts in the main interpreter.
# Every thread state records its own frames (see _subinterp.py).  A thread
# that ended first left a thread state behind (matching no thread of the core).
import _subinterp


def main():
    _subinterp.run_scenario("subinterp_threads", [0, 1, 1, 1], orphan=True,
                            notes="one subinterpreter per worker thread: each worker creates its own interpreter and parks in it; the main thread aborts in the main interpreter")


if __name__ == "__main__":
    main()
