"""The sync loop's moving parts: observe the node, execute plans, drive the sources.

``controller.reconcile`` decides (pure functions of spec and facts); this
package does: :class:`NodeView` reads the store once per pass,
:mod:`~controller.sync.observe` turns it into facts,
:class:`~controller.sync.execute.Executor` runs the planned steps through
``controller.storage``, :class:`Reconciler` puts the three together for one
object, and :mod:`~controller.sync.driver` is the loop both sources (the
agent's API objects, ``podstore run``'s files) feed.
"""

from controller.sync.execute import EventSink, Executor, LogEvents, SecretSource
from controller.sync.reconciler import Reconciler
from controller.sync.view import NodeView

__all__ = ["EventSink", "Executor", "LogEvents", "NodeView", "Reconciler", "SecretSource"]
