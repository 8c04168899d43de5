"""The twistd commands: each command's ``Options`` and ``makeService``.

As Twisted's own ``twisted.web.tap``: ``twisted/plugins/aleph_*.py`` are one
``ServiceMaker`` each, naming a module here; the module turns the command
line into plain arguments and calls the library, which never sees an option.

* :mod:`.http` (``twistd aleph-http``), :mod:`.tcp` (``aleph-tcp``),
  :mod:`.statsd` (``aleph-statsd``): one command each;
* :mod:`.options`: the options they share (TLS, the garbage collector,
  ``--workers`` and ``--shutdown-timeout``, ``--bus``) and their checks;
* :mod:`.scaling`: the service tree ``--workers`` and ``--bus`` build around
  a command's server.

Nothing in the library imports this package: it sits above the transports
and the demo handlers, below the plugin files.
"""
