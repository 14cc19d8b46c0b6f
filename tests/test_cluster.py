"""llmfbn.cluster: connecting, per-worker resources, tasks, failures (LocalCluster of 2)."""

import functools
import os

import pytest

from llmfbn.cluster import (
    TaskFailedError,
    check_scheduler,
    connect,
    register_resource,
    run_tasks,
    use_resource,
)


@pytest.fixture(scope="module")
def session():
    with connect("local:2") as session:
        yield session


@pytest.mark.parametrize("value, expected", [
    ("local:2", ("local", 2)), ("tcp://10.0.0.1:8786", ("address", "tcp://10.0.0.1:8786")),
    (" local:1 ", ("local", 1)),
])
def test_check_scheduler(value, expected):
    assert check_scheduler(value) == expected


@pytest.mark.parametrize("value, match", [
    ("local:0", "at least 1 worker"), ("local", "'local:N'"), ("host:8786", "'local:N'"),
    ("missing.json", "does not exist"), (3, "'local:N'"),
])
def test_check_scheduler_errors_say_what_is_allowed(value, match):
    with pytest.raises((ValueError, TypeError), match=match) as err:
        check_scheduler(value)
    assert "'scheduler' must be" in str(err.value)


def test_unreachable_scheduler_is_one_error():
    with pytest.raises(OSError, match="could not be reached"):
        with connect("tcp://127.0.0.1:1", timeout=2):
            pass


def test_local_session_shares_the_cores(session):
    assert session.n_workers == 2
    assert session.threads_per_worker == max((os.cpu_count() or 1) // 2, 1)
    assert "2 workers" in session.describe()


def _make_resource():
    return {"pid": os.getpid(), "built": os.times().elapsed}


def _resource_task(item):
    with use_resource("test-resource") as value:
        return item * 2, value["pid"], value["built"]


def test_resource_is_built_once_per_worker(session):
    register_resource(session.client, "test-resource", _make_resource)
    results = dict(run_tasks(session.client, _resource_task, list(range(12)), verbose=0))
    assert sorted(results) == list(range(12))
    assert [results[i][0] for i in range(12)] == [2 * i for i in range(12)]
    builds = {(pid, built) for _, pid, built in results.values()}
    pids = {pid for pid, _ in builds}
    assert len(builds) == len(pids) <= 2  # one build per worker process
    assert os.getpid() not in pids
    # Registered again (a second call in the same session): the workers keep what they built.
    register_resource(session.client, "test-resource", _make_resource)
    again = {(pid, built) for _, (_, pid, built) in
             run_tasks(session.client, _resource_task, list(range(12)), verbose=0)}
    assert again <= builds


def test_use_resource_outside_a_worker_is_refused():
    with pytest.raises(RuntimeError, match="No resource 'nowhere'"):
        with use_resource("nowhere"):
            pass


def _fail_on_three(item):
    if item == 3:
        raise ValueError("bad item")
    return item


def test_a_failed_task_is_one_error_naming_it(session):
    with pytest.raises(TaskFailedError, match=r"^item 3 failed on the cluster: ValueError: "
                                              r"bad item$"):
        list(run_tasks(session.client, _fail_on_three, list(range(6)),
                       describe=lambda i: f"item {i}", verbose=0))


def _die_once(marker_dir, item):
    marker = os.path.join(marker_dir, f"died-{item}")
    if item == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)  # the worker process dies mid-task; its nanny starts another
    return item


def test_a_killed_worker_is_retried_without_loss_or_doubles(session, tmp_path):
    seen = [i for i, _ in run_tasks(session.client,
                                    functools.partial(_die_once, str(tmp_path)),
                                    list(range(6)), verbose=0)]
    assert sorted(seen) == list(range(6))
    assert (tmp_path / "died-1").exists()


def test_a_scheduler_started_from_the_shell(tmp_path):
    """The README's recipe: `dask scheduler --scheduler-file`, `dask worker`, then connect."""
    import subprocess
    import sys
    import time

    file = tmp_path / "scheduler.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                                  "--port", "0", "--no-dashboard", "--scheduler-file",
                                  str(file)], **quiet)
    worker = None
    try:
        for _ in range(100):
            if file.exists() and file.stat().st_size:
                break
            time.sleep(0.1)
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker",
                                   "--scheduler-file", str(file), "--nthreads", "2",
                                   "--no-dashboard"], **quiet)
        with connect(str(file), timeout=30) as session:
            assert (session.n_workers, session.threads_per_worker) == (1, 2)
            # A builtin: these processes cannot import this test module.
            assert sorted(r for _, r in run_tasks(session.client, abs, [0, -1, -2],
                                                  verbose=0)) == [0, 1, 2]
    finally:
        for process in (worker, scheduler):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
