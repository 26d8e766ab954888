"""podstore: pods and containers kept in containers/storage, driven by Kubernetes."""

__version__ = "0.1.0"
