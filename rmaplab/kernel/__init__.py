# SPDX-License-Identifier: GPL-2.0-only
"""Running traces on the real kernel, and comparing the model with it.

``runner.run_on_kernel`` executes a validated trace in real processes (one
worker per task, ``worker``), reads their state back from /proc
(``observe``) while owning the machine-wide settings a run needs (``swap``);
``diff`` compares the kernel's answers with the model's; ``cli`` holds the
``kernel-run`` and ``kernel-diff`` commands.
"""

from .observe import KernelUnavailable
from .runner import Interrupted, RunnerError, run_on_kernel

__all__ = ["Interrupted", "KernelUnavailable", "RunnerError", "run_on_kernel"]
