"""What to do: the lifecycle of StoragePods and StorageContainers, free of kopf.

The operator's handlers and the manifest-file mode both call into this
package; it calls into ``controller.storage`` for everything on the node.
"""

from controller.reconcile.children import ChildPlan, desired_children, owned_by, plan_children
from controller.reconcile.reconciler import EventSink, Outcome, Reconciler, SecretSource
from controller.reconcile.status import status_patch
from controller.reconcile.view import NodeView

__all__ = [
    "ChildPlan",
    "EventSink",
    "NodeView",
    "Outcome",
    "Reconciler",
    "SecretSource",
    "desired_children",
    "owned_by",
    "plan_children",
    "status_patch",
]
