"""Print N numbered lines of about 60 characters to stdout as fast as Python can."""

import sys

count = int(sys.argv[1])
write = sys.stdout.write
for i in range(count):
    write(f"line {i:09d} the quick brown fox jumps over the lazy dog\n")
