"""Stop in pdb (breakpoint()), then say what x is."""

x = 6
breakpoint()
print(f"after pdb x={x}", flush=True)
