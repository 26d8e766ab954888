"""The operator: kopf handlers over the reconcile layer, and the node agent.

Only this package imports kopf. Handlers stay thin (parse kopf's arguments,
call :class:`controller.handlers.agent.Agent`); what to do lives in
``controller.reconcile``.
"""
