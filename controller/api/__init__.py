"""podstore's API types: the single source of the CRDs (:mod:`controller.api.schema`)."""
