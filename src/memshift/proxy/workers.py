"""``memshift serve --workers N``: N proxy processes sharing one port and the state db.

Each worker is a whole proxy instance (the same as N instances behind a load
balancer): the kernel spreads connections among them (``SO_REUSEPORT``), and the
control state, write log, id map and reports meet in the shared state db. The admin
API is served by every worker on its port too; ``/metrics`` adds up all workers'
figures (prometheus-client's multiprocess mode, in a directory of this run).

The supervisor starts the workers, restarts one that dies, and on Ctrl-C or SIGTERM
stops them all and waits for them to finish their in-flight work.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from multiprocessing.process import BaseProcess
from typing import Any

import structlog

from memshift import logs
from memshift.config.load import load_settings
from memshift.webutil import check_free

log = structlog.get_logger("memshift.proxy")

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
RESTART_AFTER_S = 1.0
STOP_WITHIN_S = 30.0


def _worker(settings_path: str, index: int, log_options: dict[str, Any]) -> None:
    from memshift.proxy.serve import run_proxy

    logs.configure(**log_options)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when to stop
    run_proxy(settings_path, worker=index)


def run_workers(settings_path: str, count: int, log_options: dict[str, Any]) -> int:
    """Run ``count`` workers until a stop signal; return 0 after a clean stop."""
    settings = load_settings(settings_path)  # a bad config fails here, once
    check_free([(settings.proxy.listen, "proxy.listen"), (settings.admin.listen, "admin.listen")])
    metrics_dir = tempfile.mkdtemp(prefix="memshift-metrics-")
    os.environ[METRICS_DIR_ENV] = metrics_dir  # workers start fresh and inherit it
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()

    def start(index: int) -> BaseProcess:
        proc = context.Process(
            target=_worker,
            args=(settings_path, index, log_options),
            name=f"memshift-worker-{index}",
        )
        proc.start()
        return proc

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    workers = {i: start(i) for i in range(count)}
    log.info("workers_started", workers=count, listen=str(settings.proxy.listen))
    try:
        while not stop.wait(0.5):
            for index, proc in list(workers.items()):
                if proc.is_alive():
                    continue
                _forget_metrics(proc.pid)
                log.error("worker_died", worker=index, exitcode=proc.exitcode)
                if stop.wait(RESTART_AFTER_S):
                    break
                workers[index] = start(index)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for proc in workers.values():
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WITHIN_S
        for proc in workers.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        log.info("workers_stopped", workers=count)
    return 0


def _forget_metrics(pid: int | None) -> None:
    from prometheus_client import multiprocess

    if pid is not None:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
