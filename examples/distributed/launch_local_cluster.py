"""Launches a whole TF_CONFIG cluster on this machine: one command, four processes.

    python examples/distributed/launch_local_cluster.py --model_dir /tmp/cluster_run

starts a parameter server, a chief, a worker and an evaluator, each running
`trainer.py` with its own `TF_CONFIG` on free ports of 127.0.0.1, and writes
each task's log to `<log_dir>/<task>.log`. It waits until the chief, the worker
and the evaluator have finished, then stops the parameter server (which never
stops by itself) and exits with status 0 if every task ended cleanly.

Any argument it does not know is passed on to `trainer.py` (for example
`--max_steps 1000`). The `LocalCluster` class is what the cluster tests drive.
"""

import argparse
import contextlib
import ctypes
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
TRAINER = os.path.join(HERE, "trainer.py")
LOOPBACK = "127.0.0.1"

#: The tasks of the cluster, in the order they are started.
TASKS = ("ps", "chief", "worker", "evaluator")
#: The tasks that finish by themselves; the ps is stopped once they have.
FINISHING_TASKS = ("chief", "worker", "evaluator")

# What TensorFlow logs when a server cannot bind its port: another process took
# the free port between picking it and the server starting.
_PORT_TAKEN_MARKERS = ("Address already in use", "Could not start gRPC server")


def _die_with_parent() -> None:
    """Has Linux kill the task when the launcher dies, however it dies.

    Without it a killed launcher would leave its parameter server serving
    forever. Runs in the child between fork and exec.
    """
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class ClusterError(RuntimeError):
    """A task failed, or the cluster did not finish in time."""


def pick_free_ports(count: int, host: str = LOOPBACK) -> List[int]:
    """Returns `count` distinct ports that were free on `host` a moment ago.

    The sockets are held open together so the ports differ, and closed before
    returning: another process may take a port before the task binds it, which
    `LocalCluster.run` handles by starting again with new ports once.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


def cluster_spec(ports: Sequence[int], host: str = LOOPBACK) -> Dict[str, List[str]]:
    """The cluster of one ps, one chief and one worker. The evaluator is not part of it."""
    ps, chief, worker = ports
    return {
        "ps": [f"{host}:{ps}"],
        "chief": [f"{host}:{chief}"],
        "worker": [f"{host}:{worker}"],
    }


def tf_config(cluster: Mapping[str, List[str]], task: str, index: int = 0) -> str:
    """The TF_CONFIG of one task."""
    return json.dumps({"cluster": dict(cluster), "task": {"type": task, "index": index}})


@dataclasses.dataclass
class Task:
    """One running (or finished) task process."""

    name: str
    process: subprocess.Popen
    log_path: str
    started: float


class LocalCluster:
    """The processes of one cluster on this machine, and their logs.

    Use it as a context manager: on exit every process still running is
    killed, whatever happened.

    Args:
      model_dir: the model directory shared by all tasks.
      log_dir: where each task's output goes, as `<task>.log` (a restarted
        task appends to its log).
      trainer_args: extra arguments for `trainer.py`.
      python: the interpreter to run the tasks with.
    """

    def __init__(
        self,
        model_dir: str,
        log_dir: str,
        trainer_args: Sequence[str] = (),
        python: str = sys.executable,
    ):
        self.model_dir = model_dir
        self.log_dir = log_dir
        self.trainer_args = list(trainer_args)
        self.python = python
        self.tasks: Dict[str, Task] = {}
        self.cluster: Dict[str, List[str]] = {}
        os.makedirs(log_dir, exist_ok=True)

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc_info) -> None:
        self.kill_all()

    def log_path(self, name: str) -> str:
        return os.path.join(self.log_dir, f"{name}.log")

    def start(self) -> None:
        """Starts all four tasks on new free ports."""
        self.cluster = cluster_spec(pick_free_ports(3))
        for name in TASKS:
            self.start_task(name)

    def start_task(self, name: str) -> Task:
        """Starts (or restarts) one task; its output is appended to its log."""
        env = dict(os.environ, TF_CONFIG=tf_config(self.cluster, name), PYTHONUNBUFFERED="1")
        command = [self.python, TRAINER, "--model_dir", self.model_dir, *self.trainer_args]
        with open(self.log_path(name), "ab") as log:
            log.write(f"==> {' '.join(command)}\n==> TF_CONFIG={env['TF_CONFIG']}\n".encode())
            log.flush()
            process = subprocess.Popen(
                command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        task = Task(name, process, self.log_path(name), time.monotonic())
        self.tasks[name] = task
        return task

    def returncode(self, name: str) -> Optional[int]:
        return self.tasks[name].process.poll()

    def signal(self, name: str, signum: int) -> None:
        """Sends a signal to one task, if it is still running."""
        process = self.tasks[name].process
        if process.poll() is None:
            process.send_signal(signum)

    def check_tasks(self) -> None:
        """Raises ClusterError if a task failed, or the ps stopped, so far."""
        for name, task in self.tasks.items():
            code = task.process.poll()
            if code not in (None, 0):
                raise ClusterError(f"task {name} exited with status {code}")
            if name == "ps" and code is not None:
                raise ClusterError("the parameter server stopped before it was asked to")

    def wait_until(
        self, condition: Callable[[], object], deadline: float, what: str, poll_secs: float = 0.2
    ) -> None:
        """Waits until `condition()` is true, watching the tasks meanwhile.

        Args:
          condition: what to wait for.
          deadline: a `time.monotonic()` value to give up at.
          what: the condition in words, for the error message.
          poll_secs: how often to look.

        Raises:
          ClusterError: as soon as a task fails, or at the deadline.
        """
        while True:
            self.check_tasks()
            if condition():
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out waiting for {what}")
            time.sleep(poll_secs)

    def wait_for(self, names: Sequence[str], deadline: float) -> None:
        """Waits until the named tasks have exited, each with status 0.

        Raises:
          ClusterError: as soon as a task fails, or at the deadline.
        """
        self.wait_until(
            lambda: all(self.returncode(name) == 0 for name in names),
            deadline,
            f"tasks {', '.join(names)} to finish",
        )

    def kill(self, name: str, timeout: float = 30.0) -> int:
        """Kills one task with SIGKILL, as a preempted machine would be, and reaps it."""
        process = self.tasks[name].process
        if process.poll() is None:
            process.kill()
        return process.wait(timeout)

    def stop_ps(self, timeout: float = 30.0) -> int:
        """Asks the parameter server to stop (SIGTERM) and returns its exit status.

        A ps serves until it is told to stop; it ended cleanly if it was still
        serving when asked and then exited with status 0.

        Raises:
          ClusterError: if it had already stopped, or did not stop in time.
        """
        process = self.tasks["ps"].process
        if process.poll() is not None:
            raise ClusterError(f"the parameter server had already exited ({process.returncode})")
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired as e:
            raise ClusterError(f"the parameter server did not stop within {timeout}s") from e

    def kill_all(self) -> None:
        """Kills every task still running and reaps it."""
        for task in self.tasks.values():
            if task.process.poll() is None:
                task.process.kill()
        for task in self.tasks.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                task.process.wait(10)

    def port_was_taken(self) -> bool:
        """Whether a task failed because another process took its port."""
        for name, task in self.tasks.items():
            if task.process.poll() not in (None, 0) and any(
                marker in self.read_log(name) for marker in _PORT_TAKEN_MARKERS
            ):
                return True
        return False

    def read_log(self, name: str) -> str:
        try:
            with open(self.log_path(name), encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tails(self, lines: int = 30) -> str:
        """The last lines of every task's log, for a failure report."""
        parts = []
        for name in TASKS:
            tail = self.read_log(name).splitlines()[-lines:]
            code = self.returncode(name) if name in self.tasks else "not started"
            parts.append(f"----- {name} (status {code}): {self.log_path(name)}")
            parts.extend(tail)
        return "\n".join(parts)

    def run(
        self, timeout: float, during: Optional[Callable[["LocalCluster", float], None]] = None
    ) -> None:
        """Starts the cluster, waits until training ends, then stops the ps.

        If a task could not bind its port (taken between picking and binding),
        everything is killed and started again once with new ports; training
        resumes from the checkpoints already in model_dir.

        Args:
          timeout: seconds for the whole run.
          during: called as `during(cluster, deadline)` once the tasks are
            started, to inject faults (kill and restart a task, ...).

        Raises:
          ClusterError: if a task failed or the run took longer than timeout.
        """
        deadline = time.monotonic() + timeout
        for attempt in range(2):
            self.start()
            try:
                if during is not None:
                    during(self, deadline)
                self.wait_for(FINISHING_TASKS, deadline)
                break
            except ClusterError:
                if attempt or not self.port_was_taken():
                    raise
                self.kill_all()
        code = self.stop_ps()
        if code != 0:
            raise ClusterError(f"the parameter server exited with status {code} on SIGTERM")


def parse_args(argv: Optional[Sequence[str]] = None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Other arguments are passed to trainer.py.",
        allow_abbrev=False,
    )
    parser.add_argument("--model_dir", required=True, help="the model directory of the run")
    parser.add_argument("--log_dir", help="where the task logs go (default: <model_dir>/logs)")
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds before everything is killed"
    )
    return parser.parse_known_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args, trainer_args = parse_args(argv)
    log_dir = args.log_dir or os.path.join(args.model_dir, "logs")
    with LocalCluster(args.model_dir, log_dir, trainer_args) as cluster:
        print(f"Logs: {', '.join(cluster.log_path(name) for name in TASKS)}", flush=True)
        try:
            cluster.run(args.timeout)
        except (ClusterError, KeyboardInterrupt) as e:
            print(f"FAILED: {e or 'interrupted'}\n{cluster.log_tails()}", file=sys.stderr)
            return 1
    export_dir = os.path.join(args.model_dir, "export", "best_exporter")
    versions = sorted(os.listdir(export_dir)) if os.path.isdir(export_dir) else []
    print(f"All tasks finished cleanly. Exports in {export_dir}: {versions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
