# SPDX-License-Identifier: GPL-2.0-only
"""Which CPU a kernel run is pinned to: the one servicing the swap disk's interrupts.

A page that ``pageout`` writes to swap ends its writeback in the block
device's completion interrupt, and is rotated through the LRU batch of the
CPU that took it; that batch holds a reference on the page until its CPU
drains it.  Pinned to that CPU, the run's own drains (a later ``pageout``)
release it; pinned anywhere else they cannot, and the same trace ends
differently (docs/kernel-notes.md, docs/trace-format.md).

The way there (choose_cpu): the swap directory's st_dev, its
``/sys/dev/block/MAJ:MIN`` entry, the whole disk (a partition's parent, a
device-mapper disk's slaves), the bus device above the disk that has an
``msi_irqs/`` directory (a PCI function, virtio or NVMe or AHCI), the
effective affinity of each of those IRQs, and when they land on several
CPUs, the one that has serviced most of them according to /proc/interrupts.
When no such IRQ can be found (a loop or zram device, a disk on a bus
without MSI, a CPU the run may not use), the run falls back to the
highest-numbered CPU it may use, and says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

#: How far above the disk in sysfs to look for its bus device's msi_irqs/.
MAX_PARENTS = 12


@dataclass(frozen=True, slots=True)
class Irq:
    """One MSI interrupt of the swap disk: where it lands, how often each CPU took it."""

    irq: int
    cpus: frozenset[int]
    counts: dict[int, int] = field(hash=False)


@dataclass(frozen=True, slots=True)
class CpuChoice:
    """The CPU a run is pinned to, and the evidence for it (for ``--verbose``)."""

    cpu: int
    #: The swap disk (e.g. "vda (254:0)"), its bus device, its IRQs; empty when unknown.
    disk: str = ""
    bus_device: str = ""
    irqs: tuple[Irq, ...] = ()
    #: Why this CPU, in one sentence.
    reason: str = ""
    #: True when no interrupt CPU was found or usable and the fallback was taken.
    fallback: bool = False

    def describe(self) -> str:
        """One line saying which CPU and why."""
        text = f"CPU {self.cpu}: {self.reason}"
        if self.disk:
            text += f"; swap disk {self.disk}"
        if self.bus_device:
            text += f" on {self.bus_device}"
        if self.irqs:
            text += "; MSI IRQs " + ", ".join(
                f"{i.irq} -> CPU {','.join(map(str, sorted(i.cpus))) or '?'} "
                f"(serviced {' '.join(f'CPU{c}:{n}' for c, n in sorted(i.counts.items()))})"
                for i in self.irqs)
        return text


def parse_cpulist(text: str) -> set[int]:
    """CPUs of a kernel cpulist such as ``0-2,5``."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def parse_interrupts(text: str) -> dict[int, dict[int, int]]:
    """Numbered IRQs of /proc/interrupts: irq -> {cpu: times serviced}."""
    lines = text.splitlines()
    if not lines:
        return {}
    cpus = [int(name[3:]) for name in lines[0].split() if name.startswith("CPU")]
    out: dict[int, dict[int, int]] = {}
    for line in lines[1:]:
        label, _, rest = line.partition(":")
        if not label.strip().isdigit():
            continue  # NMI, LOC and the other per-CPU event lines
        fields = rest.split()
        counts = {}
        for cpu, value in zip(cpus, fields, strict=False):
            if not value.isdigit():
                break
            counts[cpu] = int(value)
        out[int(label)] = counts
    return out


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def whole_disks(sys_root: str, major: int, minor: int) -> list[str]:
    """sysfs directories of the disks under device MAJ:MIN (a partition's
    parent; a stacked device's slaves, recursively); [] when it is none."""
    entry = os.path.join(sys_root, "dev", "block", f"{major}:{minor}")
    if not os.path.exists(entry):
        return []
    path = os.path.realpath(entry)
    if os.path.exists(os.path.join(path, "partition")):
        path = os.path.dirname(path)
    slaves = os.path.join(path, "slaves")
    below = sorted(os.listdir(slaves)) if os.path.isdir(slaves) else []
    if not below:
        return [path]
    out: list[str] = []
    for name in below:
        dev = (_read(os.path.join(slaves, name, "dev")) or "").strip()
        if ":" in dev:
            ma, mi = dev.split(":")
            out += whole_disks(sys_root, int(ma), int(mi))
    return out


def msi_device(disk: str) -> str | None:
    """The nearest device at or above ``disk``'s device that has MSI IRQs."""
    dev = os.path.join(disk, "device")
    path = os.path.realpath(dev) if os.path.exists(dev) else disk
    for _ in range(MAX_PARENTS):
        msi = os.path.join(path, "msi_irqs")
        if os.path.isdir(msi) and os.listdir(msi):
            return path
        parent = os.path.dirname(path)
        if parent == path or os.path.basename(parent) == "devices":
            return None
        path = parent
    return None


def _disk_name(disk: str) -> str:
    dev = (_read(os.path.join(disk, "dev")) or "").strip()
    return f"{os.path.basename(disk)} ({dev})" if dev else os.path.basename(disk)


def choose_cpu(directory: str | None, allowed: set[int], *, sys_root: str = "/sys",
               proc_root: str = "/proc") -> CpuChoice:
    """The CPU to pin a run to whose swap file lives in ``directory`` (None: no swap directory).

    ``allowed`` is the set of CPUs the run may use (its affinity).  The roots
    are parameters so tests can build a sysfs and procfs of their own.
    """
    last = max(allowed)

    def fallback(why: str, disk: str = "", bus_device: str = "",
                 irqs: tuple[Irq, ...] = ()) -> CpuChoice:
        return CpuChoice(last, disk, bus_device, irqs,
                         reason=f"{why}; fell back to the highest-numbered allowed CPU "
                                "(a trace that pages out may not be repeatable here)",
                         fallback=True)

    if directory is None:
        return fallback("no swap directory")
    st_dev = os.stat(directory).st_dev
    major, minor = os.major(st_dev), os.minor(st_dev)
    disks = whole_disks(sys_root, major, minor)
    if not disks:
        return fallback(f"{directory} is on device {major}:{minor}, which is no block device "
                        "in sysfs")
    names = ", ".join(_disk_name(d) for d in disks)
    buses = [b for b in (msi_device(d) for d in disks) if b is not None]
    if not buses:
        return fallback(f"no device with MSI interrupts above {names}", disk=names)
    counts = parse_interrupts(_read(os.path.join(proc_root, "interrupts")) or "")
    irqs = []
    for bus in dict.fromkeys(buses):
        for name in sorted(os.listdir(os.path.join(bus, "msi_irqs")), key=int):
            n = int(name)
            text = _read(os.path.join(proc_root, "irq", name, "effective_affinity_list"))
            cpus = parse_cpulist(text) if text else set()
            irqs.append(Irq(n, frozenset(cpus), counts.get(n, {})))
    bus_names = ", ".join(os.path.basename(b) for b in dict.fromkeys(buses))
    landing: set[int] = set().union(*(i.cpus for i in irqs))
    if not landing:  # no effective affinity files: judge by the counts alone
        landing = set().union(*(set(i.counts) for i in irqs))
    usable = landing & allowed
    if not usable:
        return fallback(f"its interrupts land on CPU {sorted(landing)}, none of which this "
                        f"run may use (allowed: {sorted(allowed)})", names, bus_names, tuple(irqs))
    total = {cpu: sum(i.counts.get(cpu, 0) for i in irqs) for cpu in usable}
    # Most interrupts serviced; a tie (a disk not used yet) goes to the higher CPU.
    cpu = max(usable, key=lambda c: (total[c], c))
    if len(usable) == 1:
        reason = "the CPU the swap disk's interrupts are routed to"
    else:
        reason = (f"of the CPUs its interrupts land on ({', '.join(map(str, sorted(usable)))}), "
                  f"the one that has serviced most of them ({total[cpu]})")
    return CpuChoice(cpu, names, bus_names, tuple(irqs), reason=reason)
