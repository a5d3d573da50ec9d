"""Keeps the deep-learning backends' own log lines off the terminal.

TensorFlow, absl and XLA write log lines from C++ straight to file
descriptor 2 ("I0000 00:00:... port.cc:153] oneDNN custom operations are
on ...", "WARNING: All log messages before absl::InitializeLog() ...",
"This TensorFlow binary is optimized to use ..."). They mean nothing to a
microscopist. ``TF_CPP_MIN_LOG_LEVEL=3`` silences the ones logged after
TensorFlow is imported, but not those logged while it is imported, so the
command line also passes file descriptor 2 through a filter that drops
lines in absl's log format and lets everything else through at once
(progress bars, Python warnings, errors). ``keras-rmz --verbose`` (or
``--verbose`` after any command) turns both off.
"""

import contextlib
import os
import re
import sys
import threading

# absl / glog: "I0000 00:00:1796617567.732918   16851 port.cc:153] message".
_LOG_LINE = re.compile(rb"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\s:]+:\d+\] ")
_DROPPED_LINES = (
    _LOG_LINE,
    re.compile(rb"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"),
    re.compile(rb"^To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags"),
)
# A segment that starts with one of these may become a dropped line: it is
# held back until its end arrives, so that nothing of a log line reaches the
# terminal (any other line is written at once, progress bars included).
_HELD_FIRST_BYTES = b"IWEFT"


def is_backend_log_line(line):
    """Whether ``line`` (bytes, without its end) is a backend log line."""
    return any(pattern.match(line) for pattern in _DROPPED_LINES)


class LogLineFilter:
    """Splits a byte stream into segments ending in ``\\n`` or ``\\r`` and
    writes those that are not backend log lines to ``write``. A segment
    without its end yet is written at once unless it may become a log line
    (so a progress bar's ``\\r`` updates show as they come)."""

    def __init__(self, write):
        self.write = write
        self.pending = b""  # the start of a segment held back
        self.passing = False  # the current segment was judged harmless and is being written

    def feed(self, data):
        while data:
            cut = min((i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0), default=-1)
            piece, data = (data, b"") if cut < 0 else (data[:cut + 1], data[cut + 1:])
            ended = cut >= 0
            if self.passing:
                self.write(piece)
                self.passing = not ended
                continue
            segment = self.pending + piece
            if ended:
                self.pending = b""
                if not is_backend_log_line(segment[:-1]):
                    self.write(segment)
            elif segment[0] in _HELD_FIRST_BYTES:
                self.pending = segment
            else:
                self.pending = b""
                self.write(segment)
                self.passing = True

    def close(self):
        if self.pending and not is_backend_log_line(self.pending):
            self.write(self.pending)
        self.pending = b""


@contextlib.contextmanager
def quiet_backend_logs(enabled=True):
    """Within the block, the backends' C++ log lines are kept off file
    descriptor 2 (see the module docstring); everything else written there
    still appears, in order. ``enabled=False`` changes nothing."""
    if not enabled:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        sys.stderr.flush()
        terminal = os.dup(2)
    except (OSError, ValueError):  # no file descriptor 2 (an embedding host)
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward(data):
        with contextlib.suppress(OSError):
            os.write(terminal, data)

    log_filter = LogLineFilter(forward)

    def pump():
        while True:
            data = os.read(read_end, 65536)
            if not data:
                break
            log_filter.feed(data)
        log_filter.close()

    thread = threading.Thread(target=pump, name="keras-rmz-log-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(terminal, 2)  # closes the pipe's last write end: the pump reads to its end
        thread.join(timeout=5)
        os.close(read_end)
        os.close(terminal)
