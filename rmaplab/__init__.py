# SPDX-License-Identifier: GPL-2.0-only
"""rmaplab: an executable, measurable model of Linux anonymous memory and rmap.

The package layout follows the kernel's mm/: faults in ``memory``, fork and
exit in ``fork``, VMA surgery in ``mmap``/``mprotect``/``mremap``/``mlock``/
``madvise``, reverse mapping in ``rmap`` (one module per scheme behind one
protocol), and the whole machine state in ``machine.Machine``.
"""

__version__ = "0.1.0"
