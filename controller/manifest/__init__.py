"""The node-side commands: the operator's reconciler driven by manifest files, and
what podstore keeps in a store, read from the store.

- :mod:`~controller.manifest.loader`: files and documents, with located problems.
- :mod:`~controller.manifest.resources`: manifests made into API objects (UIDs,
  generations, the StorageContainers a StoragePod owns), as the API server would.
- :mod:`~controller.manifest.state`: those objects and their status, kept between runs.
- :mod:`~controller.manifest.session`: passes of :class:`controller.reconcile.Reconciler`.
- :mod:`~controller.manifest.run`: ``podstore run`` (``--once`` and watching).
- :mod:`~controller.manifest.inventory`: ``podstore ps``, ``pods``, ``images``, ``inspect``.

Nothing here imports kopf or an API client.
"""
