"""Allocate memory until the kernel's OOM killer ends this process."""

chunks = []
while True:
    chunks.append(bytearray(32 * 2**20))
