#!/usr/bin/env python3
"""Run a scenario as a live process that waits where it would have died.

    live.py INTERP SCENARIO WORKDIR

Starts SCENARIO on INTERP (as generate.py does: chroot for the Debian chroot
interpreters) with live-site/ on PYTHONPATH, whose sitecustomize.py turns the
scenario's os.abort() into a read() that never returns. When the truth file
is written and a thread is blocked in that read(), prints one JSON line:
{"pid", "truth", "sysroot", "debug_dirs", "version"} (host paths). Then it
waits for its stdin to close, kills the process and removes what it made.
The live-process tests (tests/it/live.rs) drive it.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import generate  # noqa: E402

WAIT_FD = 1000
READ_SYSCALL = 0  # x86-64
TIMEOUT = 120


def blocked_in_wait(pid):
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return False
    for tid in tasks:
        try:
            with open("/proc/%d/task/%s/syscall" % (pid, tid)) as f:
                fields = f.read().split()
        except OSError:
            continue
        if len(fields) >= 2 and fields[0] == str(READ_SYSCALL) and int(fields[1], 16) == WAIT_FD:
            return True
    return False


def main():
    name, scenario, work_root = sys.argv[1:4]
    ip = generate.Interp(name)
    ip.probe()
    site_in = os.path.join(HERE, "live-site")
    if ip.sysroot:
        generate.prepare_chroot(ip)
        site_in = generate.CHROOT_SCEN + "/live-site"
        site_host = ip.host_path(site_in)
        shutil.rmtree(site_host, ignore_errors=True)
        shutil.copytree(os.path.join(HERE, "live-site"), site_host)
        tag = "live-%s-%s-%d" % (name, scenario, os.getpid())
        work_in = "%s/%s" % (generate.CHROOT_WORK, tag)
        script_in = "%s/%s" % (generate.CHROOT_SCEN, generate.scenario_script(scenario)[0])
    else:
        work_in = os.path.join(work_root, "%s-%s" % (name, scenario))
        script_in = os.path.join(generate.SCEN_DIR, generate.scenario_script(scenario)[0])
    work = ip.host_path(work_in)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    truth_in = work_in + "/truth.json"
    env = dict(os.environ, PYTHONPATH=site_in)
    errf = open(os.path.join(work_root, "%s-%s.stderr" % (name, scenario)), "wb")
    proc = subprocess.Popen(ip.argv(script_in, truth_in), cwd=work, stdin=subprocess.DEVNULL,
                            stdout=errf, stderr=errf, env=env, start_new_session=True)
    try:
        deadline = time.time() + TIMEOUT
        truth = ip.host_path(truth_in)
        while not (os.path.exists(truth) and blocked_in_wait(proc.pid)):
            if proc.poll() is not None:
                raise SystemExit("%s %s exited with %s before waiting (stderr in %s)"
                                 % (name, scenario, proc.returncode, errf.name))
            if time.time() > deadline:
                raise SystemExit("%s %s did not reach its wait within %ss" % (name, scenario, TIMEOUT))
            time.sleep(0.02)
        print(json.dumps({"pid": proc.pid, "truth": truth, "sysroot": ip.sysroot,
                          "debug_dirs": ip.debug_dirs, "version": ip.version}), flush=True)
        sys.stdin.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        errf.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
