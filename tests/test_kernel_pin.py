# SPDX-License-Identifier: GPL-2.0-only
"""Which CPU a kernel run is pinned to (rmaplab/kernel/pin.py).

The rule is checked on sysfs and procfs trees built here (no root needed),
then on this machine's kernel: the runner picks the CPU that services the
swap disk's interrupts (checked against /proc/interrupts read independently),
the trace that needs it (tests/traces/irq_cpu_pageout.jsonl) is repeatable
there and agrees with the model, and pinned to another CPU it is not.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rmaplab.kernel.diff import compare_runs, format_report
from rmaplab.kernel.pin import choose_cpu, parse_cpulist, parse_interrupts
from rmaplab.kernel.runner import KernelRun, run_on_kernel
from rmaplab.kernel.swap import choose_swap_dir
from rmaplab.replay import replay
from rmaplab.trace import load_trace

from kernel_util import LOCK_WAIT, TRACES, needs_kernel, read_jsonl

IRQ_TRACE = TRACES / "irq_cpu_pageout.jsonl"
KERNEL_RUN = [sys.executable, "-m", "rmaplab.kernel.cli", "kernel-run"]

INTERRUPTS = """\
           CPU0       CPU1       CPU2       CPU3
 24:          1          0          0          0  IO-APIC   5-edge      ACPI:Ged
 35:          0          1          0          0  PCI-MSIX-0000:00:02.0   0-edge  virtio1-config
 36:         10        900          5       4000  PCI-MSIX-0000:00:02.0   1-edge  virtio1-req.0
 37:          0          0          0          0  PCI-MSIX-0000:00:02.0   2-edge  virtio1-req.1
NMI:          0          0          0          0   Non-maskable interrupts
ERR:          0
"""


def fake_machine(tmp: Path, directory: Path, *, bus: str = "pci", partition: bool = True,
                 affinity: dict[int, str] | None = None) -> tuple[str, str]:
    """A sysfs and procfs in which ``directory`` lives on a virtio disk (or a loop
    device, bus="virtual") whose MSI IRQs are 35-37; returns (sys_root, proc_root)."""
    st = os.stat(directory)
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    sysr, procr = tmp / "sys", tmp / "proc"
    if bus == "pci":
        pci = sysr / "devices/pci0000:00/0000:00:02.0"
        (pci / "msi_irqs").mkdir(parents=True)
        for n in (35, 36, 37):
            (pci / "msi_irqs" / str(n)).write_text("msix\n")
        disk = pci / "virtio1/block/vda"
        disk.mkdir(parents=True)
        (disk / "device").symlink_to(pci / "virtio1")
    else:
        disk = sysr / "devices/virtual/block/loop0"
        disk.mkdir(parents=True)
    (disk / "dev").write_text("254:0\n")
    target = disk
    if partition:
        target = disk / "vda1"
        target.mkdir()
        (target / "partition").write_text("1\n")
    (sysr / "dev/block").mkdir(parents=True)
    (sysr / "dev/block" / f"{major}:{minor}").symlink_to(target)
    procr.mkdir()
    (procr / "interrupts").write_text(INTERRUPTS)
    for n, cpus in (affinity or {35: "1", 36: "1", 37: "1"}).items():
        (procr / "irq" / str(n)).mkdir(parents=True)
        (procr / "irq" / str(n) / "effective_affinity_list").write_text(cpus + "\n")
    return str(sysr), str(procr)


def test_cpulists_and_interrupts_parse():
    assert parse_cpulist("0-2,5\n") == {0, 1, 2, 5}
    assert parse_cpulist("3") == {3}
    table = parse_interrupts(INTERRUPTS)
    assert table[36] == {0: 10, 1: 900, 2: 5, 3: 4000}
    assert set(table) == {24, 35, 36, 37}  # NMI, ERR: not numbered IRQs


def test_pins_to_the_cpu_the_swap_disks_irqs_go_to(tmp_path):
    sysr, procr = fake_machine(tmp_path, tmp_path)
    c = choose_cpu(str(tmp_path), {0, 1, 2, 3}, sys_root=sysr, proc_root=procr)
    assert (c.cpu, c.fallback) == (1, False)
    assert c.disk == "vda (254:0)" and c.bus_device == "0000:00:02.0"
    assert [i.irq for i in c.irqs] == [35, 36, 37]
    text = c.describe()
    assert text.startswith("CPU 1: ") and "36 -> CPU 1" in text and "CPU3:4000" in text


def test_irqs_on_several_cpus_pick_the_one_that_serviced_most(tmp_path):
    sysr, procr = fake_machine(tmp_path, tmp_path, partition=False,
                               affinity={35: "1", 36: "1,3", 37: "0"})
    c = choose_cpu(str(tmp_path), {0, 1, 2, 3}, sys_root=sysr, proc_root=procr)
    assert c.cpu == 3 and not c.fallback  # 4000 of IRQ 36 against CPU 1's 901 and CPU 0's 10
    assert "serviced most of them (4000)" in c.reason
    # A CPU the run may not use is not a candidate: CPU 1 is next.
    c = choose_cpu(str(tmp_path), {0, 1, 2}, sys_root=sysr, proc_root=procr)
    assert c.cpu == 1


def test_no_msi_irqs_falls_back_and_says_so(tmp_path):
    sysr, procr = fake_machine(tmp_path, tmp_path, bus="virtual", partition=False)
    c = choose_cpu(str(tmp_path), {0, 1}, sys_root=sysr, proc_root=procr)
    assert (c.cpu, c.fallback) == (1, True)
    assert "no device with MSI interrupts above loop0" in c.reason
    assert "highest-numbered allowed CPU" in c.describe()


def test_no_block_device_or_unusable_irq_cpu_falls_back(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    c = choose_cpu(str(tmp_path), {0, 1}, sys_root=str(empty), proc_root=str(empty))
    assert c.fallback and "no block device" in c.reason
    sysr, procr = fake_machine(tmp_path, tmp_path)
    c = choose_cpu(str(tmp_path), {0, 2}, sys_root=sysr, proc_root=procr)
    assert (c.cpu, c.fallback) == (2, True) and "none of which this run may use" in c.reason
    assert choose_cpu(None, {0, 1}).fallback


# -- on this machine's kernel -------------------------------------------------

def interrupt_cpu_from_proc() -> int | None:
    """The swap disk's interrupt CPU, found another way than pin.py: the PCI
    address in the disk's sysfs path, and the /proc/interrupts lines that name
    it, summed per CPU.  None when the disk is not on PCI with MSI."""
    dev = os.stat(choose_swap_dir()).st_dev
    path = os.path.realpath(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    addrs = re.findall(r"/([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f])/", path)
    if not addrs:
        return None
    lines = Path("/proc/interrupts").read_text().splitlines()
    cpus = [int(c[3:]) for c in lines[0].split()]
    totals = dict.fromkeys(cpus, 0)
    for line in lines[1:]:
        if "MSI" in line and addrs[-1] in line:
            for cpu, value in zip(cpus, line.split(":", 1)[1].split()):
                totals[cpu] += int(value)
    if not any(totals.values()):
        return None
    allowed = os.sched_getaffinity(0)
    return max((c for c in totals if c in allowed), key=lambda c: (totals[c], c))


def model_answer(path: Path) -> tuple[list[dict], list[dict]]:
    out = replay(load_trace(path))
    return out.results, out.snapshots


@needs_kernel
def test_runner_pins_to_the_swap_disks_interrupt_cpu():
    expected = interrupt_cpu_from_proc()
    if expected is None:
        pytest.skip("the swap disk here has no MSI interrupts on PCI; the runner falls back")
    with KernelRun(wait_lock=LOCK_WAIT) as kr:
        assert kr.cpu == expected and kr.cpu_choice is not None
        assert not kr.cpu_choice.fallback
        assert os.sched_getaffinity(0) == {expected}


@needs_kernel
def test_kernel_run_verbose_says_which_cpu_and_why(tmp_path):
    out = subprocess.run([*KERNEL_RUN, str(IRQ_TRACE), "--verbose", "--results",
                          str(tmp_path / "r"), "--wait-lock", str(LOCK_WAIT)],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    line = out.stderr.strip().splitlines()[0]
    assert re.match(r"rmaplab kernel-run: pinned to CPU \d+: ", line), line
    expected = interrupt_cpu_from_proc()
    if expected is not None:
        assert line.startswith(f"rmaplab kernel-run: pinned to CPU {expected}: ")
        assert "swap disk " in line and "MSI IRQs " in line and "serviced" in line


@needs_kernel
def test_irq_cpu_trace_is_repeatable_and_agrees_with_the_model():
    ops = load_trace(IRQ_TRACE)
    first = run_on_kernel(ops, wait_lock=LOCK_WAIT)
    second = run_on_kernel(ops, wait_lock=LOCK_WAIT)
    assert first == second, "the kernel answered the 13-op trace differently on two runs"
    assert first == (read_jsonl(IRQ_TRACE.with_name("irq_cpu_pageout.results.jsonl")),
                     read_jsonl(IRQ_TRACE.with_name("irq_cpu_pageout.snapshots.jsonl")))
    divs = compare_runs(ops, *model_answer(IRQ_TRACE), *first)
    assert not divs, "\n" + format_report(divs)


@needs_kernel
def test_pinned_to_another_cpu_the_irq_trace_goes_wrong():
    """Why the rule matters: on a CPU other than the interrupt CPU the kernel
    keeps t1's lazily freed page (most runs) where the interrupt CPU's run and
    the model discard it."""
    expected = interrupt_cpu_from_proc()
    others = sorted(os.sched_getaffinity(0) - {expected}) if expected is not None else []
    if not others:
        pytest.skip("needs the swap disk's interrupt CPU and another CPU to run on")
    ops = load_trace(IRQ_TRACE)
    right = run_on_kernel(ops, wait_lock=LOCK_WAIT)
    wrong = [run_on_kernel(ops, cpu=others[0], wait_lock=LOCK_WAIT) for _ in range(4)]
    assert any(w != right for w in wrong), (
        f"pinned to CPU {others[0]} the trace gave the interrupt CPU's answer 4 times")
    kept = [w for w in wrong if "0x100000038000" in w[1][0]["tasks"]["t1"]["pages"]]
    assert kept, "the runs that differ should be those that kept t1's page"


@needs_kernel
def test_a_fallback_cpu_is_said_on_stderr(monkeypatch, capsys):
    def no_irqs(directory, allowed):
        return choose_cpu(None, allowed)  # as for a loop device: the fallback

    monkeypatch.setattr("rmaplab.kernel.runner.choose_cpu", no_irqs)
    run_on_kernel(load_trace(IRQ_TRACE)[:3], wait_lock=LOCK_WAIT)
    err = capsys.readouterr().err
    assert "rmaplab: warning: pinned to CPU " in err and "fell back" in err
