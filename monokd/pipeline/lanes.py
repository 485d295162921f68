"""Commands side by side: the demo's trainings that do not depend on each other run as
parallel lanes (the cores shared among them), each lane a sequence of ``python -m monokd.cli ...`` child
processes (train, then evaluate).

Output: every child's stdout and stderr go, line by line, to its lane's log file. What the
user sees depends on where our stdout goes:

- a terminal: one live line per lane, rewritten in place (the lane's latest progress line,
  e.g. ``baseline | epoch 3/12 step 120/600 loss 20.14 ... eta 0:05:12``);
- a file or a pipe: the progress lines themselves, prefixed with the lane's name, as plain
  lines (no carriage returns, no cursor movement).

The children write plain progress lines because their stdout is a pipe (``monokd train``
then uses ``monokd.training.callbacks.PlainProgress`` instead of Lightning's bar).
Interrupting the parent (Ctrl-C, SIGTERM) terminates every running child, so no training
is left behind; their ``last.ckpt`` lets the next run resume.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Sequence

# A child line is progress (shown live / echoed) when it starts with one of these.
PROGRESS_PREFIXES = ("epoch ", "val ", "evaluat", "error", "monokd ", "Traceback", "depth predict:")


class Display:
    """Where the lanes' progress shows: live lines on a terminal, prefixed plain lines
    otherwise. Thread-safe."""

    def __init__(self, lanes: Sequence[str], stream=None, live: bool | None = None):
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.lanes = list(lanes)
        self.width = max((len(n) for n in self.lanes), default=0)
        self.text = {name: "waiting" for name in self.lanes}
        self.lock = threading.Lock()
        self.drawn = False

    def _row(self, name: str) -> str:
        row = f"{name:<{self.width}} | {self.text[name]}"
        columns = shutil.get_terminal_size((100, 20)).columns
        return row[: max(columns - 1, 20)]  # a wrapped line would break the cursor arithmetic

    def _redraw(self) -> None:
        if self.drawn:
            self.stream.write(f"\x1b[{len(self.lanes)}F")  # to the start of our first line
        for name in self.lanes:
            self.stream.write("\x1b[2K" + self._row(name) + "\n")
        self.drawn = True
        self.stream.flush()

    def show(self, lane: str, line: str, tag: str = "") -> None:
        """One line of ``lane``'s output; only progress lines are displayed, after ``tag``
        (what the command is for, when the lane runs a command twice)."""
        line = line.rstrip()
        if not line.startswith(PROGRESS_PREFIXES):
            return
        line = tag + line
        with self.lock:
            if self.live:
                self.text[lane] = line
                self._redraw()
            else:
                print(f"[{lane}] {line}", file=self.stream, flush=True)

    def status(self, lane: str, text: str) -> None:
        """A status of the lane's own (e.g. ``done in 0:06:10``), shown in either mode."""
        with self.lock:
            self.text[lane] = text
            if self.live:
                self._redraw()
            else:
                print(f"[{lane}] {text}", file=self.stream, flush=True)


class Lanes:
    """Runs child processes for several lanes at once and stops them all on interrupt."""

    def __init__(self):
        self.children: set[subprocess.Popen] = set()
        self.lock = threading.Lock()

    def run(self, command: list[str], log: str | Path, on_line: Callable[[str], None],
            env: dict | None = None, on_cpu: Callable[[float], None] | None = None) -> int:
        """Run ``command``, appending its output to ``log`` and passing each line to
        ``on_line``; return its exit code. ``on_cpu`` gets its CPU seconds (user + system)."""
        log = Path(log)
        log.parent.mkdir(parents=True, exist_ok=True)
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 bufsize=1, env={**os.environ, **(env or {})})
        with self.lock:
            self.children.add(child)
        try:
            with log.open("a") as sink:
                sink.write("$ " + " ".join(command) + "\n")
                for line in child.stdout:
                    sink.write(line)
                    sink.flush()
                    on_line(line)
            code, cpu = self._reap(child)
            if on_cpu is not None:
                on_cpu(cpu)
            return code
        finally:
            with self.lock:
                self.children.discard(child)

    def _reap(self, child: subprocess.Popen) -> tuple[int, float]:
        """Wait for ``child``: (its exit code, its CPU seconds from ``wait4``; 0 where the
        platform has no wait4)."""
        if not hasattr(os, "wait4"):
            return child.wait(), 0.0
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        return child.returncode, usage.ru_utime + usage.ru_stime

    def stop(self) -> None:
        """Terminate every running child (then kill those still alive after 30 s)."""
        with self.lock:
            children = list(self.children)
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()

    def side_by_side(self, jobs: dict[str, Callable[[], object]]) -> dict[str, object]:
        """Run each job (a lane's whole work) in its own thread; return their results. The
        first exception of any lane is raised once all lanes have ended; an interrupt of
        ours stops every child first."""
        results: dict[str, object] = {}
        errors: dict[str, BaseException] = {}

        def work(name: str, job: Callable[[], object]) -> None:
            try:
                results[name] = job()
            except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
                errors[name] = err

        threads = [threading.Thread(target=work, args=item, daemon=True) for item in jobs.items()]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)  # short joins keep Ctrl-C deliverable to this thread
        except BaseException:
            self.stop()
            for thread in threads:
                thread.join(35)
            raise
        for name in jobs:
            if name in errors:
                raise errors[name]
        return results


class Lane:
    """One lane's way to run a command: through ``lanes``, output to ``log`` and to the
    ``display`` under ``name``, each displayed line after ``tag``."""

    def __init__(self, name: str, log: str | Path, lanes: Lanes, display: Display, tag: str = ""):
        self.name, self.log, self.lanes, self.display, self.tag = name, Path(log), lanes, display, tag
        self.cpu_seconds = 0.0

    def tagged(self, tag: str) -> "Lane":
        """The same lane (name, log, display) showing its lines after ``tag``; its CPU time
        is counted apart."""
        return Lane(self.name, self.log, self.lanes, self.display, tag)

    def run(self, command: list[str], env: dict | None = None) -> int:
        """Run ``command`` in this lane; its CPU time is added to ``self.cpu_seconds``."""
        def add(seconds: float) -> None:
            self.cpu_seconds += seconds

        return self.lanes.run(command, self.log, lambda line: self.display.show(self.name, line, self.tag), env, add)

    def tail(self, lines: int = 15) -> str:
        """The last lines of the log (for an error message)."""
        if not self.log.is_file():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
