"""The ADS server's thread pool: every task runs, idle threads end, the limit holds."""

import threading
import time

from support.helpers import wait_for

from envoyage.process import ElasticExecutor


def test_every_task_runs_up_to_the_limit_then_as_threads_free_up_and_idle_threads_end():
    ex = ElasticExecutor(max_workers=20, idle=0.3)
    release = threading.Event()
    running, done = [], []

    def task(i):
        running.append(i)
        release.wait(5)
        done.append(i)

    futures = [ex.submit(task, i) for i in range(50)]
    wait_for(lambda: len(running) == 20, 5, what="20 tasks running at the limit")
    time.sleep(0.2)
    assert len(running) == 20 and ex.threads == 20  # the limit holds
    release.set()
    wait_for(lambda: len(done) == 50, 5, what="every task to run")
    assert all(f.result() is None for f in futures)
    wait_for(lambda: ex.threads == 0, 5, what="idle threads to end")
    assert ex.submit(lambda: 42).result(timeout=5) == 42  # and new work still finds a thread
    ex.shutdown()


def test_a_burst_of_short_tasks_never_strands_one():
    ex = ElasticExecutor(max_workers=8, idle=0.05)
    results = [ex.submit(lambda i=i: i * i) for i in range(2000)]
    assert [f.result(timeout=10) for f in results] == [i * i for i in range(2000)]
    ex.shutdown()
