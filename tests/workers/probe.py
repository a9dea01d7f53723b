"""Prints what a program can see of how it was started, then ends as argv[1] says.

Run directly (``python -u probe.py MODE``) and through the worker bootstrap,
both runs must print the same bytes and end the same way.
"""

import atexit
import json
import multiprocessing
import os
import re
import sys
import warnings

ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def state() -> dict[str, object]:
    main = sys.modules["__main__"]
    spec = main.__spec__
    return {
        "argv": sys.argv,
        "orig_argv": sys.orig_argv[1:],
        "path0": sys.path[0],
        "path": sys.path,
        "flags": repr(sys.flags),
        "main_keys": sorted(vars(main)),
        "main": {k: ADDRESS.sub("", repr(v)) for k, v in vars(main).items() if k.startswith("__")},
        "spec": None if spec is None else [spec.name, spec.origin, spec.parent],
        "name": __name__,
        "file": globals().get("__file__"),
        "same_main": main.__dict__ is globals(),
        "builtins": type(__builtins__).__name__,
        "warnoptions": sys.warnoptions,
        "environ_keys": sorted(os.environ),
        "cwd": os.getcwd(),
    }


def child(queue: "multiprocessing.Queue[object]") -> None:
    queue.put(["child", __name__, getattr(sys.modules["__main__"], "__file__", None), square(7)])


def square(x: int) -> int:
    return x * x


def nested() -> None:
    try:
        empty: dict[str, int] = {}
        empty["missing"] += 1
    except KeyError as exc:
        raise ValueError("bad value") from exc


def run(mode: str) -> None:
    atexit.register(lambda: print("atexit ran", flush=True))
    print(json.dumps(state(), sort_keys=True), flush=True)
    if mode == "raise":
        nested()
    elif mode == "exit3":
        sys.exit(3)
    elif mode == "exitmsg":
        sys.exit("a message for stderr")
    elif mode == "interrupt":
        raise KeyboardInterrupt
    elif mode == "excepthook":
        sys.excepthook = lambda t, v, tb: print(
            "hook", t.__name__, tb and tb.tb_frame.f_code.co_name
        )
        nested()
    elif mode == "warn":
        warnings.warn("careful", UserWarning, stacklevel=1)
    elif mode == "spawn":
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=child, args=(queue,))
        proc.start()
        print(json.dumps(queue.get(timeout=60)), flush=True)
        proc.join()
        print("child exit", proc.exitcode, flush=True)


if __name__ == "__main__":
    run(sys.argv[1] if len(sys.argv) > 1 else "")
