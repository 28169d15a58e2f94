# SPDX-License-Identifier: GPL-2.0-only
"""rmaplab: an executable, measurable model of Linux anonymous memory and rmap.

The package layout follows the kernel's mm/: faults in ``memory``, fork and
exit in ``fork``, VMA surgery in ``mmap``/``mprotect``/``mremap``/``mlock``/
``madvise``, reclaim in ``vmscan``, swap in ``swapfile``/``swap_state``/
``swap``, reverse mapping in ``rmap`` (one module per scheme behind one
protocol). The machine state is ``mm_state.MMState``; ``machine.Machine``
adds the syscalls on top. docs/architecture.md gives the layer order.
"""

__version__ = "0.1.0"
