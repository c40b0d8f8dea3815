# Scenario "subinterp_nested" (3.12+): interpreters 0 -> 1 -> 2 on the main thread, which aborts in interpreter 2.
# Every thread state records its own frames (see _subinterp.py).
import _subinterp


def main():
    _subinterp.run_scenario("subinterp_nested", [2],
                            notes="interpreters 0 -> 1 -> 2 on the main thread, which aborts in interpreter 2")


if __name__ == "__main__":
    main()
