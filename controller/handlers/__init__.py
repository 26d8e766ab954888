"""The operator: kopf handlers over the reconcile layer, and the node agent.

Only this package imports kopf. Handlers stay thin (parse kopf's arguments,
call :class:`controller.handlers.agent.Agent`); what to do lives in
``controller.reconcile``.
"""

import sys

# kopf imports the kubernetes package when it is installed, to accept its models as
# objects to adopt; the agent never passes kopf such models and makes its own API calls
# without the package (controller.handlers.apiclient). Kept out of kopf's import it
# never loads: about 20 MB less resident memory for the agent's whole life.
if "kopf" not in sys.modules and "kubernetes" not in sys.modules:
    sys.modules["kubernetes"] = None  # type: ignore[assignment]
    try:
        import kopf  # noqa: F401
    finally:
        if sys.modules.get("kubernetes", 0) is None:
            del sys.modules["kubernetes"]
