"""A real tqdm bar on stderr, as transformers' Trainer shows it: 8 steps, 0.15 s apart."""

import time

from tqdm import tqdm

for _ in tqdm(range(8), mininterval=0, desc="train"):
    time.sleep(0.15)
