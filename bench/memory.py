"""A process's peak memory, for the benchmarks (stdlib only: the benches' child processes import it
without pulling anything into the memory they measure)."""

from __future__ import annotations


def vm_hwm_mb(pid: int | str = "self") -> float:
    """A process's peak resident memory in MB (Linux's VmHWM); 0.0 if it is gone or not Linux.

    Not ru_maxrss: Linux carries a parent's peak into a child's ru_maxrss across fork and exec, so a
    small worker started from a big process would report the big one's size."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
