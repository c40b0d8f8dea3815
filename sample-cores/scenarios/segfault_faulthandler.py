# Scenario "segfault_faulthandler": the "segfault" crash (SIGSEGV reading
# address 8 through ctypes inside read_null_pointer()) with faulthandler
# enabled, so the kernel core is written from inside faulthandler's signal
# handler, which re-raises the signal: the crashing stack runs handler, then
# the signal frame (__restore_rt), then the faulting C function, then Python.
# Python 2.7 has no faulthandler; its truth file says so and the crash is the
# plain one.
import segfault

try:
    import faulthandler
except ImportError:  # 2.7
    faulthandler = None


if __name__ == "__main__":
    if faulthandler is not None:
        faulthandler.enable()
    segfault.main("segfault_faulthandler", faulthandler is not None)
