"""contd_trio: the container daemon of a 0-OS style node, on Trio.

Layering, from the bottom up (a module only imports from layers below it):

* ``zbus.codec``, ``containerd.spec``, ``containerd.events``, ``module.startup``,
  ``module.types``: pure code, values in and values out, no I/O.
* ``containerd.channel`` (grpclib) is the only module that imports asyncio
  libraries: every asyncio object is created and awaited there, through
  trio-asyncio, and nothing asyncio leaks out of it. ``runtime`` runs a Trio
  main with the bridge, for every program of the package. ``zbus.transport``
  speaks RESP on Trio sockets itself (``resp`` is its codec): redis-py under
  trio-asyncio could not answer a call as fast as Go zbus
  (``tests/unit/test_layers.py`` checks all this).
* ``zbus.server``, ``zbus.client``, ``containerd.client``: plain Trio services
  built on those adapters. ``zbus`` and ``containerd`` know nothing of
  the module, nor of each other.
* ``module``: the container module: the RPC facade (``container``), the
  operations it shares with supervision (``operations``), supervision.
* ``app``, ``cli``, ``ctl``, ``repl``: the daemon's nursery and the programs.
"""

__version__ = "0.1.0"
