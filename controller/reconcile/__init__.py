"""What to do: the lifecycle of StoragePods and StorageContainers, as pure decisions.

No I/O and no kopf here. :mod:`~controller.reconcile.model` parses specs into
typed values, :mod:`~controller.reconcile.facts` holds what was observed on
the node, :mod:`~controller.reconcile.plan` turns both into the steps of
:mod:`~controller.reconcile.actions` and the status to write,
:mod:`~controller.reconcile.children` plans a StoragePod's owned
StorageContainers and :mod:`~controller.reconcile.status` writes conditions
after the API conventions. ``controller.sync`` observes and executes.
"""

from controller.reconcile.children import (
    ChildPlan,
    desired_children,
    owned_by,
    plan_children,
    planned_members,
)
from controller.reconcile.plan import Outcome
from controller.reconcile.status import status_patch

__all__ = [
    "ChildPlan",
    "Outcome",
    "desired_children",
    "owned_by",
    "plan_children",
    "planned_members",
    "status_patch",
]
