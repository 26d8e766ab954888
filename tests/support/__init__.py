"""Helpers behind the test fixtures in ``tests/conftest.py``.

The integration tests drive the real tools (``containers-storage``, ``skopeo``,
``docker-registry``, ``umoci``, ``runc``). These modules start and stop those tools for
the fixtures, and let tests read a store back with the same command line that podstore
uses, so that a test never trusts podstore's own view of what it did.

- :mod:`tests.support.commands`: running a tool (argument list, timeout, typed failure).
- :mod:`tests.support.registry`: throw-away ``docker-registry`` servers.
- :mod:`tests.support.images`: busybox-based test images built with ``umoci``.
- :mod:`tests.support.stores`: temporary stores, reading them back, tearing them down.
- :mod:`tests.support.runc`: running an OCI bundle once with ``runc``.
"""
