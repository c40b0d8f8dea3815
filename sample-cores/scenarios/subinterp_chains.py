# Scenario "subinterp_chains" (3.12+): two worker threads each run interpreters 0 -> 1 -> 2 and park in 2; the main thread aborts in interpreter 1.
# Every thread state records its own frames (see _subinterp.py).
import _subinterp


def main():
    _subinterp.run_scenario("subinterp_chains", [1, 2, 2],
                            notes="two worker threads each run interpreters 0 -> 1 -> 2 and park in 2; the main thread aborts in interpreter 1")


if __name__ == "__main__":
    main()
