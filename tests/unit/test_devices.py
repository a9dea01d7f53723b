"""GPU counting without torch: CUDA_VISIBLE_DEVICES narrows what the driver shows."""

from __future__ import annotations

from rallypoint.devices import SystemDevices, _visible, cpu_count


def test_visible_devices_narrow_the_physical_count() -> None:
    assert _visible(4, None) == 4
    assert _visible(4, "0,2") == 2
    assert _visible(4, "") == 0
    assert _visible(2, "0,5,1") == 1  # CUDA stops at the first invalid index
    assert _visible(0, "0,1") == 0


def test_this_machine_has_no_gpu_and_some_cpus() -> None:
    devices = SystemDevices({})
    assert devices.gpus() == 0  # CI and this machine have no GPU
    assert devices.cpus() == cpu_count() >= 1
