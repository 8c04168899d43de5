"""The twistd commands (``twisted_aleph.tap``): the plugin files name them, the
shared options refuse bad values, ``--workers``/``--bus`` build the service
tree, and the names that moved here are still found, with a warning, where
they were.

Each command's own options, every one given a non-default value and checked
on the built service, are tested with its transport: tests/test_tcp_sockets.py
(aleph-tcp), tests/test_http_client.py (aleph-http), tests/test_statsd.py
(aleph-statsd), tests/test_tls_transports.py (the TLS options of both servers);
aleph-http's limits (--max-request-body and its kin) are tested here, down to
the running server's site.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, List

from twisted.application.service import IServiceMaker, Service
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial import unittest

from twisted_aleph import server
from twisted_aleph.tap import http as tap_http
from twisted_aleph.tap import options as tap_options
from twisted_aleph.tap import scaling
from twisted_aleph.tap import statsd as tap_statsd
from twisted_aleph.tap import tcp as tap_tcp
from twisted_aleph.redisbus import RedisEventBus, RedisUnavailable
from twisted_aleph.workers import WorkerGroup


class PluginTests(unittest.TestCase):
    def test_each_command_is_its_tap_module(self) -> None:
        makers = {p.tapname: p for p in getPlugins(IServiceMaker)}
        for command, module in [("aleph-http", tap_http), ("aleph-tcp", tap_tcp),
                                ("aleph-statsd", tap_statsd)]:
            self.assertIs(makers[command].options, module.Options)


class ScalingOptionTests(unittest.TestCase):
    def options(self, **values: Any) -> dict:
        base = {"workers": 1, "shutdown-timeout": 10.0, "inherit-fd": None, "bus": None,
                "port": 0, "interface": "127.0.0.1"}
        base.update(values)
        return base

    def test_bad_values_are_usage_errors(self) -> None:
        for bad in ({"workers": 0}, {"shutdown-timeout": -1}, {"bus": "http://x"}):
            self.assertRaises(usage.UsageError, tap_options.check_options, self.options(**bad))
        tap_options.check_options(self.options(workers=3, bus="redis://127.0.0.1:6379"))

    def test_app_factory(self) -> None:
        from twisted_aleph.demo.http import make_app
        self.assertIs(tap_http.app_factory(tap_http.DEFAULT_APP), make_app)
        self.assertIs(tap_http.app_factory(tap_http.DEFAULT_APP_FACTORY), make_app)
        self.assertRaises(usage.UsageError, tap_http.app_factory,
                          "twisted_aleph.demo.websocket:STATIC")  # not callable
        self.assertRaises(usage.UsageError, tap_http.app_factory, "no.such:thing")
        e = self.assertRaises(usage.UsageError, tap_http.app_factory,
                              "twisted_aleph.demo.http:app_not_the_default")
        self.assertIn("--app", str(e))

    def test_bus_makes_the_app_from_its_factory(self) -> None:
        from twisted_aleph.demo.http import make_app
        options = tap_http.Options()
        options.parseOptions(["--bus", "redis://127.0.0.1:1"])
        self.assertIs(options["app_factory"], make_app)

    def test_worker_header_only_with_several_processes(self) -> None:
        self.assertIsNone(scaling.worker_headers(self.options()))
        self.assertEqual(scaling.worker_headers(self.options(workers=2)),
                         {"x-aleph-worker": str(os.getpid())})
        self.assertEqual(scaling.worker_headers(self.options(**{"inherit-fd": 3})),
                         {"x-aleph-worker": str(os.getpid())})

    def test_one_process_without_bus_is_just_the_server(self) -> None:
        service = Service()
        self.assertIs(scaling.scaled_service(self.options(), lambda fd, bus: service), service)

    def test_bus_service_is_stopped_after_the_server(self) -> None:
        made: List[Any] = []
        top = scaling.scaled_service(self.options(bus="redis://127.0.0.1:1"),
                                     lambda fd, bus: made.append((fd, bus)) or Service())
        bus_service, group = list(top)
        self.assertIsInstance(bus_service, RedisEventBus)
        self.assertFalse(bus_service.running)  # connects when the service starts
        self.assertIsInstance(group, WorkerGroup)
        self.assertEqual(made, [])  # built when the service starts
        group.privilegedStartService()
        self.assertEqual(made, [(None, bus_service)])
        self.assertFalse(bus_service.is_active("room"))
        self.failureResultOf(bus_service.publish("room", "hi"), RedisUnavailable)  # not started

    def test_redis_bus_service_is_a_deprecated_bus(self) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            bus = scaling.RedisBusService("redis://127.0.0.1:1")
        self.assertIsInstance(bus, RedisEventBus)
        self.assertFalse(bus.running)
        self.assertEqual([w.category for w in caught], [DeprecationWarning])


class HTTPLimitOptionTests(unittest.TestCase):
    """aleph-http's limits: each given a value that is not its default reaches
    the service, and the server it starts."""

    ARGV = ["--port", "0", "--interface", "127.0.0.1", "--max-request-body", "3M",
            "--header-timeout", "4.5", "--idle-timeout", "33", "--body-timeout", "7",
            "--max-connections", "123", "--compression"]

    def test_every_limit_reaches_the_running_server(self) -> None:
        from twisted_aleph.http.options import ServerOptions
        defaults = ServerOptions()
        options = tap_http.Options()
        options.parseOptions(self.ARGV)
        service = tap_http.makeService(options)
        expected = {"max_request_body": 3 * 1024 * 1024, "header_timeout": 4.5,
                    "idle_timeout": 33.0, "body_timeout": 7.0, "max_connections": 123,
                    "compression": True}
        for name, value in expected.items():
            self.assertEqual(getattr(service.options, name), value, name)
            self.assertNotEqual(getattr(defaults, name), value, name)  # not the default
        service.startService()
        self.addCleanup(service.stopService)
        site = service.server.site
        self.assertEqual(site.options, service.options)
        self.assertEqual(site.timeOut, 33.0)  # twisted.web's idle timer

    def test_defaults_are_the_servers(self) -> None:
        from twisted_aleph.http.options import ServerOptions
        options = tap_http.Options()
        options.parseOptions([])
        self.assertEqual(options["server_options"], ServerOptions())

    def test_zero_turns_a_limit_off(self) -> None:
        options = tap_http.Options()
        options.parseOptions(["--header-timeout", "0", "--idle-timeout", "0",
                              "--body-timeout", "0", "--max-connections", "0"])
        limits = options["server_options"]
        self.assertEqual((limits.header_timeout, limits.idle_timeout, limits.body_timeout,
                          limits.max_connections), (None, None, None, None))

    def test_bad_values_are_usage_errors(self) -> None:
        for argv in (["--max-request-body", "lots"], ["--max-request-body", "-1"],
                     ["--header-timeout", "-1"], ["--idle-timeout", "-2"],
                     ["--body-timeout", "-0.5"], ["--max-connections", "-3"],
                     ["--header-timeout", "soon"]):
            self.assertRaises(usage.UsageError, tap_http.Options().parseOptions, argv)

    def test_sizes(self) -> None:
        self.assertEqual([tap_http.parse_size(x) for x in ("100", "2k", "16M", "1GiB", "3mb")],
                         [100, 2048, 16 << 20, 1 << 30, 3 << 20])
        for bad in ("", "1.5M", "M", "1T", "-1", "\u0661"):
            self.assertRaises(ValueError, tap_http.parse_size, bad)


# (old module, old name, new home, new name): every name that moved in the
# twistd commands' reorganisation.
MOVED = [
    ("twisted_aleph.tls", "ServerTLSOptions", tap_options, "ServerTLSOptions"),
    ("twisted_aleph.tls", "server_tls_from_options", tap_options, "server_tls_from_options"),
    ("twisted_aleph.server", "GCOptions", tap_options, "GCOptions"),
    ("twisted_aleph.server", "check_gc_option", tap_options, "check_gc_option"),
    ("twisted_aleph.server", "GC_OPTION", tap_options, "GC_OPTION"),
    ("twisted_aleph.statsd", "Options", tap_statsd, "Options"),
    ("twisted_aleph.statsd", "makeService", tap_statsd, "makeService"),
    ("twisted_aleph.workers", "adopt", server, "adopt"),
    ("twisted_aleph.workers", "family_of", server, "family_of"),
    ("twisted_aleph.workers", "SCALING_OPTIONS", tap_options, "SCALING_OPTIONS"),
    ("twisted_aleph.workers", "BUS_OPTION", tap_options, "BUS_OPTION"),
    ("twisted_aleph.workers", "ScalingOptions", tap_options, "ScalingOptions"),
    ("twisted_aleph.workers", "BusOptions", tap_options, "BusOptions"),
    ("twisted_aleph.workers", "check_options", tap_options, "check_options"),
    ("twisted_aleph.workers", "RedisBusService", scaling, "RedisBusService"),
    ("twisted_aleph.workers", "worker_headers", scaling, "worker_headers"),
    ("twisted_aleph.workers", "scaled_service", scaling, "scaled_service"),
    ("twisted_aleph.workers", "STOP_MARGIN", scaling, "STOP_MARGIN"),
    ("twisted_aleph.workers", "app_factory", tap_http, "app_factory"),
    ("twisted_aleph.workers", "DEMO_APP", tap_http, "DEFAULT_APP"),
    ("twisted_aleph.workers", "DEMO_APP_FACTORY", tap_http, "DEFAULT_APP_FACTORY"),
    ("twisted_aleph.http.server", "load_handler", server, "load_object"),
    ("twisted_aleph.http", "load_handler", server, "load_object"),
]


class DeprecatedAliasTests(unittest.TestCase):
    """Old names stay importable from the old place for one release, with a
    DeprecationWarning naming what to use instead."""

    def test_each_moved_name_warns_and_is_the_new_one(self) -> None:
        import importlib
        for old_module, old_name, home, new_name in MOVED:
            module = importlib.import_module(old_module)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                value = getattr(module, old_name)
            self.assertIs(value, getattr(home, new_name), (old_module, old_name))
            self.assertEqual([w.category for w in caught], [DeprecationWarning], old_name)
            self.assertIn(f"{home.__name__}.{new_name}", str(caught[0].message))
            self.assertNotIn(old_name, getattr(module, "__all__", ()))

    def test_from_import_of_an_old_name_works(self) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from twisted_aleph.http import load_handler
            from twisted_aleph.tls import ServerTLSOptions
        self.assertIs(load_handler, server.load_object)
        self.assertIs(ServerTLSOptions, tap_options.ServerTLSOptions)
        # (Python looks a name up twice in a package's `from ... import`: twice the same warning)
        self.assertEqual({(w.category, w.filename) for w in caught},
                         {(DeprecationWarning, __file__)})  # pointing at the user's import
        self.assertEqual({str(w.message).split()[0] for w in caught},
                         {"twisted_aleph.http.load_handler", "twisted_aleph.tls.ServerTLSOptions"})

    def test_unknown_names_are_still_attribute_errors(self) -> None:
        import twisted_aleph.http
        import twisted_aleph.http.server
        import twisted_aleph.statsd
        import twisted_aleph.tls
        import twisted_aleph.workers
        for module in (server, twisted_aleph.tls, twisted_aleph.statsd, twisted_aleph.workers,
                       twisted_aleph.http, twisted_aleph.http.server):
            self.assertRaises(AttributeError, getattr, module, "no_such_name")
            self.assertFalse(hasattr(module, "no_such_name"))
