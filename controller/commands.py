"""The node-side commands (run, ps, pods, images, inspect) register here."""
