"""torch's TCPStore, served by the agent without torch.

``wire`` is the protocol as a pure codec, ``state`` the keys, queues and waits, ``server``
the asyncio driver, and ``host`` the thread that runs it beside the agent. See
``docs/torch-store.md``.
"""
