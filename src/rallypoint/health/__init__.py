"""Watching the workers from the side: torch's elastic file timers.

The variable names live here, in the package itself, so that the launch path can
check whether timers are on without importing the timer modules.
"""

ENABLE_VARIABLE = "TORCHELASTIC_ENABLE_FILE_TIMER"
FILE_VARIABLE = "TORCHELASTIC_TIMER_FILE"
